package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The Prometheus endpoint (metrics.listen). Everything is read from the
// switch's own counters at scrape time by one collector, so the data path
// pays nothing for metrics.

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("macvsw_"+name, help, labels, nil)
}

var (
	mFrames        = desc("switch_frames_total", "Frames by ingress outcome (accepted, forwarded, defrag_merged).", "outcome")
	mSwitchDrops   = desc("switch_drops_total", "Frames the switch dropped at ingress, by reason.", "reason")
	mDefragPending = desc("switch_defrag_pending", "IPv4 fragments waiting for the rest of their datagram.")
	mBcastLen      = desc("broadcast_queue_length", "Floods waiting in the broadcast queue.")
	mBcastCap      = desc("broadcast_queue_capacity", "Broadcast queue capacity (largest bcqueuelen request).")
	mBcastDropped  = desc("broadcast_queue_dropped_total", "Floods dropped because the broadcast queue was full.")
	mLowerUp       = desc("lower_up", "1 if the lower has carrier.")
	mLower         = desc("lower_packets_total", "Frames through the lower, by direction.", "direction")
	mLowerBytes    = desc("lower_bytes_total", "Bytes through the lower, by direction.", "direction")
	mLowerDrops    = desc("lower_drops_total", "Frames dropped at the lower, by direction and reason.", "direction", "reason")
	mPortUp        = desc("port_up", "1 if the port is admin up.", "port")
	mPortCarrier   = desc("port_carrier", "1 if the port is up and the lower has carrier.", "port")
	mPortPackets   = desc("port_packets_total", "Frames a port received from (rx) or sent into (tx) the switch.", "port", "direction")
	mPortBytes     = desc("port_bytes_total", "Bytes a port received (rx) or sent (tx).", "port", "direction")
	mPortMulticast = desc("port_multicast_total", "Flood deliveries to a port.", "port")
	mPortRxErrors  = desc("port_rx_errors_total", "Deliveries that failed on the port (queue full, MTU).", "port")
	mPortDrops     = desc("port_drops_total", "Frames dropped on a port, by direction and reason.", "port", "direction", "reason")
	mQueueLen      = desc("queue_length", "Frames waiting in a port queue.", "port", "queue")
	mQueuePackets  = desc("queue_packets_total", "Frames queued on a port queue.", "port", "queue")
	mQueueDropped  = desc("queue_dropped_total", "Frames dropped because a port queue was full.", "port", "queue")
	mQueueAttached = desc("queue_attached", "1 if the queue is in flow-hash selection.", "port", "queue")
	mEPDrops       = desc("endpoint_drops_total", "Frames the port's OS endpoint dropped, by queue, direction and reason.", "port", "queue", "direction", "reason")
	mEPVnet        = desc("endpoint_vnet_errors_total", "virtio-net headers rejected, by queue and reason.", "port", "queue", "reason")
)

type collector struct{ d *daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mFrames, mSwitchDrops, mDefragPending, mBcastLen, mBcastCap, mBcastDropped,
		mLowerUp, mLower, mLowerBytes, mLowerDrops, mPortUp, mPortCarrier, mPortPackets, mPortBytes, mPortMulticast,
		mPortRxErrors, mPortDrops, mQueueLen, mQueuePackets, mQueueDropped, mQueueAttached, mEPDrops, mEPVnet} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.stats("")
	counter := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	s := st.Switch
	counter(mFrames, s.Accepted, "accepted")
	counter(mFrames, s.Forwarded, "forwarded")
	counter(mFrames, s.Merged, "defrag_merged")
	for r, v := range s.Drops {
		counter(mSwitchDrops, v, r)
	}
	gauge(mDefragPending, float64(s.Pending))
	gauge(mBcastLen, float64(s.Broadcast.Len))
	gauge(mBcastCap, float64(s.Broadcast.Cap))
	counter(mBcastDropped, s.Broadcast.Dropped)
	l := st.Lower
	gauge(mLowerUp, b2f(l.Up))
	counter(mLower, l.RxPackets, "rx")
	counter(mLower, l.TxPackets, "tx")
	counter(mLowerBytes, l.RxBytes, "rx")
	counter(mLowerBytes, l.TxBytes, "tx")
	for r, v := range l.RxDrops {
		counter(mLowerDrops, v, "rx", r)
	}
	for r, v := range l.TxDrops {
		counter(mLowerDrops, v, "tx", r)
	}
	for name, p := range st.Ports {
		ps := p.Switch
		gauge(mPortUp, b2f(p.Port.Up), name)
		gauge(mPortCarrier, b2f(p.Port.Carrier), name)
		counter(mPortPackets, ps.RxPackets, name, "rx")
		counter(mPortPackets, ps.TxPackets, name, "tx")
		counter(mPortBytes, ps.RxBytes, name, "rx")
		counter(mPortBytes, ps.TxBytes, name, "tx")
		counter(mPortMulticast, ps.Multicast, name)
		counter(mPortRxErrors, ps.RxErrors, name)
		for r, v := range ps.RxDrops {
			counter(mPortDrops, v, name, "rx", r)
		}
		for r, v := range ps.TxDrops {
			counter(mPortDrops, v, name, "tx", r)
		}
		for _, q := range ps.Queues {
			qi := strconv.Itoa(q.Index)
			gauge(mQueueLen, float64(q.Len), name, qi)
			counter(mQueuePackets, q.Packets, name, qi)
			counter(mQueueDropped, q.Dropped, name, qi)
			gauge(mQueueAttached, b2f(q.Attached), name, qi)
		}
		for _, q := range p.Endpoint {
			qi := fmt.Sprint(q["queue"])
			for dir, key := range map[string]string{"rx": "rx_drops", "tx": "tx_drops"} {
				for r, v := range q[key].(map[string]uint64) {
					counter(mEPDrops, v, name, qi, dir, r)
				}
			}
			for r, v := range q["vnet_errors"].(map[string]uint64) {
				counter(mEPVnet, v, name, qi, r)
			}
		}
	}
}

// startMetrics serves /metrics on addr; the returned function stops it.
func startMetrics(d *daemon, addr string, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collector{d}); err != nil {
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
