package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The Prometheus endpoint (metrics.listen). The switch's series are read
// from its own counters at scrape time by one collector, which walks the
// same snapshot as `macvsw stats` (counters.Snapshot.Visit), so the data
// path pays nothing for metrics and both print the same names; every
// series of the switch, the lower and each port exists from the start,
// at zero. Beside them: macvsw_build_info, and client_golang's Go runtime
// (go_*) and process (process_*) collectors.

type collector struct {
	d     *daemon
	descs map[*counters.Metric]*prometheus.Desc
}

func newCollector(d *daemon) *collector {
	c := &collector{d: d, descs: map[*counters.Metric]*prometheus.Desc{}}
	for _, m := range counters.Metrics {
		c.descs[m] = prometheus.NewDesc("macvsw_"+m.Name, m.Help, m.Labels, nil)
	}
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range counters.Metrics {
		ch <- c.descs[m]
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st, _ := c.d.stats("")
	st.Visit(func(m *counters.Metric, v float64, labels ...string) {
		t := prometheus.CounterValue
		if m.Kind == counters.Gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(c.descs[m], t, v, labels...)
	})
}

// buildInfo is macvsw_build_info{version,commit,go} 1, the usual way to
// export a build's identity.
func buildInfo() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "macvsw_build_info",
		Help:        "Always 1; the labels say which macvsw runs: its version, the commit it was built from, and the Go version.",
		ConstLabels: prometheus.Labels{"version": version, "commit": buildCommit(), "go": runtime.Version()},
	}, func() float64 { return 1 })
}

// newRegistry returns the registry /metrics serves.
func newRegistry(d *daemon) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		newCollector(d),
		buildInfo(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// metricsServer is the metrics endpoint: bound at start-up before anything
// else (an address in use stops the start before any tap is made), served
// once the daemon runs.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenMetrics binds addr.
func listenMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	return &metricsServer{ln: ln}, nil
}

func (m *metricsServer) addr() string { return m.ln.Addr().String() }

// serve serves /metrics for d until close.
func (m *metricsServer) serve(d *daemon, log *slog.Logger) error {
	reg, err := newRegistry(d)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", m.addr())
	return nil
}

// close stops serving, or releases the address if serve never ran.
func (m *metricsServer) close() {
	if m.srv == nil {
		m.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m.srv.Shutdown(ctx)
}
