package counters

import "strconv"

// Kind says how a metric behaves over time.
type Kind uint8

// Metric kinds, as Prometheus has them.
const (
	Counter Kind = iota // only grows
	Gauge               // goes up and down
)

// Metric describes one metric: its name (without the "macvsw_" prefix the
// metrics endpoint adds), what it means, and its label names.
type Metric struct {
	Name   string
	Help   string
	Kind   Kind
	Labels []string
}

// Visitor receives one sample: a metric, its value, and the label values
// in the order of m.Labels.
type Visitor func(m *Metric, value float64, labels ...string)

func metric(kind Kind, name, help string, labels ...string) *Metric {
	m := &Metric{Name: name, Help: help, Kind: kind, Labels: labels}
	Metrics = append(Metrics, m)
	return m
}

// Metrics lists every metric Visit may emit, for a collector's Describe.
var Metrics []*Metric

// The metrics. Every series of a port or queue exists from the moment the
// port does, at zero.
var (
	MFrames        = metric(Counter, "switch_frames_total", "Frames by ingress outcome (accepted, forwarded, defrag_merged).", "outcome")
	MSwitchDrops   = metric(Counter, "switch_drops_total", "Frames the switch dropped at ingress, by reason.", "reason")
	MDefragPending = metric(Gauge, "switch_defrag_pending", "IPv4 fragments waiting for the rest of their datagram.")
	MDefragBytes   = metric(Gauge, "switch_defrag_bytes", "Memory IPv4 reassembly holds, bookkeeping included.")
	MDefragDgrams  = metric(Gauge, "switch_defrag_datagrams", "IPv4 datagrams waiting for fragments.")
	MBcastLen      = metric(Gauge, "broadcast_queue_length", "Floods waiting in the broadcast queue.")
	MBcastCap      = metric(Gauge, "broadcast_queue_capacity", "Broadcast queue capacity (largest bcqueuelen request).")
	MBcastEnqueued = metric(Counter, "broadcast_queue_enqueued_total", "Floods queued on the broadcast queue.")
	MBcastDropped  = metric(Counter, "broadcast_queue_dropped_total", "Floods dropped because the broadcast queue was full.")

	MLowerUp       = metric(Gauge, "lower_up", "1 if the lower has carrier.")
	MLowerPackets  = metric(Counter, "lower_packets_total", "Frames through the lower, by direction.", "direction")
	MLowerBytes    = metric(Counter, "lower_bytes_total", "Bytes through the lower, by direction.", "direction")
	MLowerDrops    = metric(Counter, "lower_drops_total", "Frames dropped at the lower, by direction and reason.", "direction", "reason")
	MLowerQueueLen = metric(Gauge, "lower_queue_length", "Frames waiting in a queue toward the wire.", "queue")
	MLowerQueueDrp = metric(Counter, "lower_queue_dropped_total", "Frames dropped because a queue toward the wire was full.", "queue")
	MLowerWritten  = metric(Counter, "lower_link_written_total", "Frames the lower's endpoint accepted.")
	MLowerWriteErr = metric(Counter, "lower_link_write_errors_total", "Frames the lower's endpoint refused.")
	MLowerEPUp     = metric(Gauge, "lower_endpoint_queue_up", "1 if the lower's socket is open and working.", "queue")
	MLowerEPFail   = metric(Counter, "lower_endpoint_failures_total", "Socket errors that took a lower queue down.", "queue")
	MLowerEPDrops  = metric(Counter, "lower_endpoint_drops_total", "Frames the lower's endpoint dropped, by queue, direction and reason.", "queue", "direction", "reason")
	MLowerReopens  = metric(Counter, "lower_reopens_total", "Fresh socket sets opened after the lower came back.")

	MPortUp        = metric(Gauge, "port_up", "1 if the port is admin up.", "port")
	MPortCarrier   = metric(Gauge, "port_carrier", "1 if the port can pass frames: up, its device there, the lower up.", "port")
	MPortPackets   = metric(Counter, "port_packets_total", "Frames a port received from (rx) or sent into (tx) the switch.", "port", "direction")
	MPortBytes     = metric(Counter, "port_bytes_total", "Bytes a port received (rx) or sent (tx).", "port", "direction")
	MPortMulticast = metric(Counter, "port_multicast_total", "Flood deliveries to a port.", "port")
	MPortRxErrors  = metric(Counter, "port_rx_errors_total", "Deliveries that failed on the port (queue full, MTU).", "port")
	MPortDrops     = metric(Counter, "port_drops_total", "Frames dropped on a port, by direction and reason.", "port", "direction", "reason")
	MQueueLen      = metric(Gauge, "queue_length", "Frames waiting in a port queue.", "port", "queue")
	MQueuePackets  = metric(Counter, "queue_packets_total", "Frames queued on a port queue.", "port", "queue")
	MQueueDropped  = metric(Counter, "queue_dropped_total", "Frames dropped because a port queue was full.", "port", "queue")
	MQueueAttached = metric(Gauge, "queue_attached", "1 if the queue is in flow-hash selection.", "port", "queue")
	MLinkWritten   = metric(Counter, "link_written_total", "Frames the port's endpoint accepted.", "port")
	MLinkWriteErr  = metric(Counter, "link_write_errors_total", "Frames the port's endpoint refused.", "port")
	MEPPackets     = metric(Counter, "endpoint_packets_total", "Frames the port's endpoint read (rx) or wrote (tx), by queue.", "port", "queue", "direction")
	MEPBytes       = metric(Counter, "endpoint_bytes_total", "Bytes the port's endpoint read (rx) or wrote (tx), by queue.", "port", "queue", "direction")
	MEPDrops       = metric(Counter, "endpoint_drops_total", "Frames the port's endpoint dropped, by queue, direction and reason.", "port", "queue", "direction", "reason")
	MEPVnet        = metric(Counter, "endpoint_vnet_errors_total", "virtio-net headers refused, by queue and reason.", "port", "queue", "reason")
	MEPSegmented   = metric(Counter, "endpoint_segmented_total", "Super-frames segmented in software, by queue.", "port", "queue")
	MEPChecksummed = metric(Counter, "endpoint_checksummed_total", "Partial checksums completed in software, by queue.", "port", "queue")
	MEPBusyPolled  = metric(Counter, "endpoint_busy_polled_total", "Reads that found frames while the reader busy polled, by queue.", "port", "queue")
	MEPQueueUp     = metric(Gauge, "endpoint_queue_up", "1 if the endpoint queue's FD is open and working.", "port", "queue")
	MEPFailures    = metric(Counter, "endpoint_failures_total", "FD errors that took an endpoint queue down.", "port", "queue")
	MEPDevDrops    = metric(Counter, "endpoint_device_drops_total", "Frames the sandbox sent that its tap dropped, unread by the switch (the tap's tx_dropped).", "port")
	MEPConnects    = metric(Counter, "endpoint_connects_total", "Peers a socket port accepted.", "port")
	MEPRefused     = metric(Counter, "endpoint_refused_total", "Connections or frames a socket port refused, by reason.", "port", "reason")
)

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Visit walks every counter of s as samples, in a stable order: switch,
// lower, then each port (its counters, its queues, its endpoint's queues).
func (s *Snapshot) Visit(v Visitor) {
	c := func(m *Metric, x uint64, l ...string) { v(m, float64(x), l...) }
	sw := &s.Switch
	c(MFrames, sw.Accepted, "accepted")
	c(MFrames, sw.Forwarded, "forwarded")
	c(MFrames, sw.Merged, "defrag_merged")
	for _, r := range sw.Drops {
		c(MSwitchDrops, r.Count, r.Name)
	}
	v(MDefragPending, float64(sw.Pending))
	v(MDefragBytes, float64(sw.DefragBytes))
	v(MDefragDgrams, float64(sw.DefragDatagrams))
	v(MBcastLen, float64(sw.Broadcast.Len))
	v(MBcastCap, float64(sw.Broadcast.Cap))
	c(MBcastEnqueued, sw.Broadcast.Enqueued)
	c(MBcastDropped, sw.Broadcast.Dropped)

	lo := &s.Lower
	v(MLowerUp, b2f(lo.Switch.Up))
	c(MLowerPackets, lo.Switch.RxPackets, "rx")
	c(MLowerPackets, lo.Switch.TxPackets, "tx")
	c(MLowerBytes, lo.Switch.RxBytes, "rx")
	c(MLowerBytes, lo.Switch.TxBytes, "tx")
	for _, r := range lo.Switch.RxDrops {
		c(MLowerDrops, r.Count, "rx", r.Name)
	}
	for _, r := range lo.Switch.TxDrops {
		c(MLowerDrops, r.Count, "tx", r.Name)
	}
	for _, q := range lo.Switch.Queues {
		qi := strconv.Itoa(q.Index)
		v(MLowerQueueLen, float64(q.Len), qi)
		c(MLowerQueueDrp, q.Dropped, qi)
	}
	c(MLowerWritten, lo.Link.Written)
	c(MLowerWriteErr, lo.Link.WriteErrors)
	for _, q := range lo.Endpoint.Queues {
		qi := strconv.Itoa(q.Index)
		v(MLowerEPUp, b2f(q.State == "up"), qi)
		c(MLowerEPFail, q.Failures, qi)
		visitDrops(v, MLowerEPDrops, q.RxDrops, qi, "rx")
		visitDrops(v, MLowerEPDrops, q.TxDrops, qi, "tx")
	}
	c(MLowerReopens, lo.Endpoint.Reopens)

	for i := range s.Ports {
		p := &s.Ports[i]
		n := p.Name
		v(MPortUp, b2f(p.Up), n)
		v(MPortCarrier, b2f(p.Carrier), n)
		ps := &p.Switch
		c(MPortPackets, ps.RxPackets, n, "rx")
		c(MPortPackets, ps.TxPackets, n, "tx")
		c(MPortBytes, ps.RxBytes, n, "rx")
		c(MPortBytes, ps.TxBytes, n, "tx")
		c(MPortMulticast, ps.Multicast, n)
		c(MPortRxErrors, ps.RxErrors, n)
		for _, r := range ps.RxDrops {
			c(MPortDrops, r.Count, n, "rx", r.Name)
		}
		for _, r := range ps.TxDrops {
			c(MPortDrops, r.Count, n, "tx", r.Name)
		}
		for _, q := range ps.Queues {
			qi := strconv.Itoa(q.Index)
			v(MQueueLen, float64(q.Len), n, qi)
			c(MQueuePackets, q.Packets, n, qi)
			c(MQueueDropped, q.Dropped, n, qi)
			v(MQueueAttached, b2f(q.Attached), n, qi)
		}
		c(MLinkWritten, p.Link.Written, n)
		c(MLinkWriteErr, p.Link.WriteErrors, n)
		for _, q := range p.Endpoint.Queues {
			qi := strconv.Itoa(q.Index)
			c(MEPPackets, q.RxPackets, n, qi, "rx")
			c(MEPPackets, q.TxPackets, n, qi, "tx")
			c(MEPBytes, q.RxBytes, n, qi, "rx")
			c(MEPBytes, q.TxBytes, n, qi, "tx")
			visitDrops(v, MEPDrops, q.RxDrops, n, qi, "rx")
			visitDrops(v, MEPDrops, q.TxDrops, n, qi, "tx")
			visitDrops(v, MEPVnet, q.VnetErrors, n, qi)
			c(MEPSegmented, q.Segmented, n, qi)
			c(MEPChecksummed, q.Checksummed, n, qi)
			c(MEPBusyPolled, q.BusyPolled, n, qi)
			v(MEPQueueUp, b2f(q.State == "up"), n, qi)
			c(MEPFailures, q.Failures, n, qi)
		}
		c(MEPDevDrops, p.Endpoint.DeviceDrops, n)
		c(MEPConnects, p.Endpoint.Connects, n)
		visitDrops(v, MEPRefused, p.Endpoint.Refused, n)
	}
}

// visitDrops emits one sample per reason, with the reason as the last
// label after labels.
func visitDrops(v Visitor, m *Metric, d Drops, labels ...string) {
	for _, r := range d {
		v(m, float64(r.Count), append(labels[:len(labels):len(labels)], r.Name)...)
	}
}
