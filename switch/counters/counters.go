// Package counters is macvsw's one vocabulary for statistics: the typed
// snapshots that the switch core (vswitch), the OS endpoints, the control
// API, the CLI and the Prometheus collector all use, with stable JSON
// names, and one visitor (Snapshot.Visit) that walks a snapshot as metric
// samples, so that the metrics endpoint and the CLI's table print the
// same numbers under the same names.
//
// It is a leaf: it imports only the standard library, so every other
// package may use it. Producers fill the structs from their atomic
// counters; nothing here is live.
package counters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Reason is one named drop counter.
type Reason struct {
	Name  string
	Count uint64
}

// Drops is a set of named drop counters in their producer's stable order,
// every reason present (zero or not), so that a reason enum indexes it:
// Drops[DropQueueFull].Count. Its JSON is an object, {"queue_full": 3,
// ...}, in that order.
type Drops []Reason

// NewDrops pairs names with counts; both are in the producer's order.
func NewDrops(names []string, counts []uint64) Drops {
	d := make(Drops, len(names))
	for i, n := range names {
		d[i] = Reason{Name: n, Count: counts[i]}
	}
	return d
}

// Get returns the count of the named reason, 0 if there is none.
func (d Drops) Get(name string) uint64 {
	for _, r := range d {
		if r.Name == name {
			return r.Count
		}
	}
	return 0
}

// Total sums every reason.
func (d Drops) Total() uint64 {
	var t uint64
	for _, r := range d {
		t += r.Count
	}
	return t
}

// NonZero returns the reasons whose count is not zero.
func (d Drops) NonZero() Drops {
	var out Drops
	for _, r := range d {
		if r.Count != 0 {
			out = append(out, r)
		}
	}
	return out
}

// add returns d with o's counts added, reason by reason (o in the same
// order, or d empty).
func (d Drops) add(o Drops) Drops {
	if len(d) == 0 {
		return append(Drops(nil), o...)
	}
	for i := range d {
		if i < len(o) {
			d[i].Count += o[i].Count
		}
	}
	return d
}

// MarshalJSON writes an object of name: count, in order.
func (d Drops) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, r := range d {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(r.Name))
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(r.Count, 10))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object of name: count, keeping its order.
func (d *Drops) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t == nil {
		*d = nil
		return nil
	}
	if t != json.Delim('{') {
		return fmt.Errorf("drops: want an object, got %v", t)
	}
	out := Drops{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		v, err := dec.Token()
		if err != nil {
			return err
		}
		num, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("drops: %v: want a count, got %v", k, v)
		}
		n, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return fmt.Errorf("drops: %v: %w", k, err)
		}
		out = append(out, Reason{Name: k.(string), Count: n})
	}
	*d = out
	return nil
}

// Switch counts frames at ingress, from the lower and from ports.
// Invariant: Accepted == Forwarded + Merged + Pending + Drops.Total().
// Forwarded frames were handed to at least one destination; each copy is
// then counted on its receiver (Port rx counters or a receive drop).
type Switch struct {
	Accepted    uint64 `json:"accepted"`
	Forwarded   uint64 `json:"forwarded"`
	Merged      uint64 `json:"defrag_merged"`      // fragments consumed by a completed reassembly
	Pending     uint64 `json:"defrag_pending"`     // fragments waiting for the rest of their datagram
	Reassembled uint64 `json:"defrag_reassembled"` // datagrams produced (also counted in Accepted)
	// DefragBytes is the memory reassembly holds now, bookkeeping
	// included; DefragDatagrams the datagrams waiting for fragments.
	DefragBytes     int       `json:"defrag_bytes"`
	DefragDatagrams int       `json:"defrag_datagrams"`
	Drops           Drops     `json:"drops"`
	Broadcast       Broadcast `json:"broadcast"`
}

// Broadcast describes the broadcast queue.
type Broadcast struct {
	Len      int    `json:"len"`      // floods queued now
	Cap      int    `json:"cap"`      // largest bcqueuelen request
	Enqueued uint64 `json:"enqueued"` // floods ever queued
	Dropped  uint64 `json:"dropped"`  // queue full
}

// Queue is one of the switch's queues toward a port or the wire.
type Queue struct {
	Index    int    `json:"index"`
	Attached bool   `json:"attached"` // in flow-hash selection
	Len      int    `json:"len"`
	Limit    int    `json:"limit"`
	Packets  uint64 `json:"packets"` // enqueued
	Bytes    uint64 `json:"bytes"`
	Dequeued uint64 `json:"dequeued"`
	Dropped  uint64 `json:"dropped"` // queue full
}

// Lower is the switch's view of its uplink. Rx are frames from the wire;
// Tx frames queued toward it.
type Lower struct {
	MAC       string  `json:"mac"`
	MTU       uint32  `json:"mtu"`
	Up        bool    `json:"up"`
	RxPackets uint64  `json:"rx_packets"`
	RxBytes   uint64  `json:"rx_bytes"`
	RxDropped uint64  `json:"rx_dropped"`
	TxPackets uint64  `json:"tx_packets"`
	TxBytes   uint64  `json:"tx_bytes"`
	TxDropped uint64  `json:"tx_dropped"`
	RxDrops   Drops   `json:"rx_drops"`
	TxDrops   Drops   `json:"tx_drops"`
	Queues    []Queue `json:"queues"`
}

// Port is a port's counters in the switch: the kernel's macvlan counters
// plus a counter per drop reason. Rx counts frames the switch handed to
// the port's queues, Tx frames the port sent into the switch. RxDropped
// is RxErrors plus every other receive-side drop, as the kernel reports
// rx_dropped.
type Port struct {
	RxPackets uint64  `json:"rx_packets"`
	RxBytes   uint64  `json:"rx_bytes"`
	Multicast uint64  `json:"multicast"`
	RxErrors  uint64  `json:"rx_errors"`
	RxDropped uint64  `json:"rx_dropped"`
	TxPackets uint64  `json:"tx_packets"`
	TxBytes   uint64  `json:"tx_bytes"`
	TxDropped uint64  `json:"tx_dropped"`
	RxDrops   Drops   `json:"rx_drops"`
	TxDrops   Drops   `json:"tx_drops"`
	Queues    []Queue `json:"queues"`
}

// Link counts what the bridge handed an endpoint.
type Link struct {
	Written     uint64 `json:"written"`      // frames the endpoint accepted
	WriteErrors uint64 `json:"write_errors"` // frames it refused (full, closed, too big)
}

// EndpointQueue is one queue of an OS endpoint (a tap queue, an AF_PACKET
// socket, a VM's connection): frames read from and written to its FD.
type EndpointQueue struct {
	Index      int    `json:"index"`
	State      string `json:"state"` // up, detached, dead
	RxPackets  uint64 `json:"rx_packets"`
	RxBytes    uint64 `json:"rx_bytes"`
	TxPackets  uint64 `json:"tx_packets"`
	TxBytes    uint64 `json:"tx_bytes"`
	RxDrops    Drops  `json:"rx_drops"`
	TxDrops    Drops  `json:"tx_drops"`
	VnetErrors Drops  `json:"vnet_errors"` // virtio-net headers refused, by reason
	// Segmented counts super-frames cut in software (TX fallback, or USO
	// on receive); Checksummed partial checksums completed.
	Segmented   uint64 `json:"segmented"`
	Checksummed uint64 `json:"checksummed"`
	// BusyPolled counts reads that found frames while the reader busy
	// polled (SetBusyPoll): wake-ups the polling saved.
	BusyPolled uint64 `json:"busy_polled"`
	// Failures counts FD errors that took the queue down; LastError is the
	// last of them, empty if none.
	Failures  uint64 `json:"failures"`
	LastError string `json:"last_error,omitempty"`
}

// Endpoint is an OS endpoint's counters, one entry per queue, and what the
// endpoint kind adds.
type Endpoint struct {
	Queues []EndpointQueue `json:"queues"`
	// Reopens counts fresh socket sets an AF_PACKET endpoint opened after
	// its interface came back; Connects counts peers a socket port took.
	Reopens  uint64 `json:"reopens,omitempty"`
	Connects uint64 `json:"connects,omitempty"`
	// DeviceDrops is a tap's tx_dropped: frames its sandbox sent that the
	// tap dropped because the switch had not read its queue in time (tun
	// gives the sender no backpressure).
	DeviceDrops uint64 `json:"device_drops,omitempty"`
	Refused     Drops  `json:"refused,omitempty"` // connections or peers refused, by reason
}

// Total sums every queue (State is "up" if any queue is).
func (e Endpoint) Total() EndpointQueue {
	t := EndpointQueue{Index: -1, State: "dead"}
	for _, q := range e.Queues {
		if q.State == "up" {
			t.State = "up"
		}
		t.RxPackets += q.RxPackets
		t.RxBytes += q.RxBytes
		t.TxPackets += q.TxPackets
		t.TxBytes += q.TxBytes
		t.RxDrops = t.RxDrops.add(q.RxDrops)
		t.TxDrops = t.TxDrops.add(q.TxDrops)
		t.VnetErrors = t.VnetErrors.add(q.VnetErrors)
		t.Segmented += q.Segmented
		t.Checksummed += q.Checksummed
		t.BusyPolled += q.BusyPolled
		t.Failures += q.Failures
		if q.LastError != "" {
			t.LastError = q.LastError
		}
	}
	return t
}

// LowerSnapshot is the lower as the API reports it: the switch's view,
// what the bridge wrote to it, and its endpoint.
type LowerSnapshot struct {
	Interface string   `json:"interface,omitempty"`
	Switch    Lower    `json:"switch"`
	Link      Link     `json:"link"`
	Endpoint  Endpoint `json:"endpoint"`
}

// PortSnapshot is one port as the API reports its counters.
type PortSnapshot struct {
	Name     string   `json:"name"`
	Up       bool     `json:"up"`
	Carrier  bool     `json:"carrier"`
	Switch   Port     `json:"switch"`
	Link     Link     `json:"link"`
	Endpoint Endpoint `json:"endpoint"`
}

// Snapshot is every counter of a running switch.
type Snapshot struct {
	Switch Switch         `json:"switch"`
	Lower  LowerSnapshot  `json:"lower"`
	Ports  []PortSnapshot `json:"ports"`
}

// Port returns the named port's snapshot, or nil.
func (s *Snapshot) Port(name string) *PortSnapshot {
	for i := range s.Ports {
		if s.Ports[i].Name == name {
			return &s.Ports[i]
		}
	}
	return nil
}
