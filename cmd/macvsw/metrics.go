package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The Prometheus endpoint (metrics.listen). Everything is read from the
// switch's own counters at scrape time by one collector, which walks the
// same snapshot as `macvsw stats` (counters.Snapshot.Visit), so the data
// path pays nothing for metrics and both print the same names.

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

// startMetrics serves /metrics on addr; the returned function stops it.
func startMetrics(d *daemon, addr string, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(newCollector(d)); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
