package vswitch

import (
	"sync/atomic"

	"github.com/macvsw/macvsw/switch/counters"
)

// DropReason names why a frame, or one copy of it, was not delivered. Every
// frame the switch accepts is delivered or counted under exactly one reason.
type DropReason int

// Drop reasons. The String names are stable: they appear in the API, the CLI
// and the metrics.
const (
	DropMalformed         DropReason = iota // shorter than an Ethernet header
	DropLowerDown                           // the lower is down or has no carrier
	DropPortDown                            // sent by, or addressed only to, an admin-down port
	DropNoPort                              // wire unicast for no port (the kernel passes it to the lower's own stack)
	DropNoMember                            // flood that no port may receive (mode, filter, cutoff)
	DropPause                               // MAC control (0x8808) frames are never flooded
	DropBroadcastQueue                      // the broadcast queue was full (counted on the lower, as rx_dropped)
	DropQueueFull                           // the receiving port's queue was full
	DropNoQueue                             // the receiving port has no attached queue
	DropMTU                                 // above the receiver's MTU on a bridge flood, or the lower's on bridge unicast
	DropDefragTimeout                       // fragment of a datagram not complete within the reassembly timeout
	DropDefragOverflow                      // fragment of a datagram evicted, oldest first, when reassembly memory passed its high threshold
	DropDefragInvalid                       // a zero-length fragment, or an ECN mix RFC 3168 forbids: the whole datagram
	DropDefragDuplicate                     // a fragment wholly inside data already held (the kernel's IPFRAG_DUP): that fragment only
	DropDefragOverlap                       // a fragment partly overlapping data already held (IPFRAG_OVERLAP): the whole datagram
	DropDefragEnd                           // a last fragment contradicting the end known, or data past it: the whole datagram
	DropDefragOversize                      // a datagram longer than 65535 bytes with its header: the whole datagram
	DropDefragSourceLimit                   // refused: its source address already holds Reassembly.MaxPerSource bytes
	DropRemoved                             // queued for a port that was removed meanwhile
	DropPoliced                             // over the sending port's rate limit (Police.PPS, Police.BPS)
	DropStorm                               // a flood over the sending port's storm control limit (Police.FloodPPS)
	DropSpoofMAC                            // sent with a source MAC that is not the port's (SpoofCheck)
	DropSpoofIP                             // sent with a source address outside the port's AllowedIPs (SpoofCheck)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	DropMalformed:         "malformed",
	DropLowerDown:         "lower_down",
	DropPortDown:          "port_down",
	DropNoPort:            "no_port",
	DropNoMember:          "no_member",
	DropPause:             "pause",
	DropBroadcastQueue:    "broadcast_queue_full",
	DropQueueFull:         "queue_full",
	DropNoQueue:           "no_queue",
	DropMTU:               "mtu",
	DropDefragTimeout:     "defrag_timeout",
	DropDefragOverflow:    "defrag_overflow",
	DropDefragInvalid:     "defrag_invalid",
	DropDefragDuplicate:   "defrag_duplicate",
	DropDefragOverlap:     "defrag_overlap",
	DropDefragEnd:         "defrag_bad_end",
	DropDefragOversize:    "defrag_oversize",
	DropDefragSourceLimit: "defrag_source_limit",
	DropRemoved:           "removed",
	DropPoliced:           "policed",
	DropStorm:             "storm",
	DropSpoofMAC:          "spoofed_mac",
	DropSpoofIP:           "spoofed_ip",
}

// String returns the reason's stable name.
func (r DropReason) String() string {
	if r >= 0 && r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// dropCounters is one counter per reason.
type dropCounters [NumDropReasons]atomic.Uint64

// snapshot returns every reason's count, in DropReason order.
func (d *dropCounters) snapshot() counters.Drops {
	var v [NumDropReasons]uint64
	for i := range d {
		v[i] = d[i].Load()
	}
	return counters.NewDrops(dropNames[:], v[:])
}

func (d *dropCounters) total() uint64 {
	var t uint64
	for i := range d {
		t += d[i].Load()
	}
	return t
}

// portCounters are a port's kernel-style counters (macvlan_count_rx,
// macvlan_start_xmit) plus a counter per drop reason on each side.
type portCounters struct {
	rxPackets atomic.Uint64
	rxBytes   atomic.Uint64
	multicast atomic.Uint64
	rxErrors  atomic.Uint64
	txPackets atomic.Uint64
	txBytes   atomic.Uint64
	rxDrops   dropCounters
	txDrops   dropCounters
}

func (c *portCounters) snapshot() counters.Port {
	return counters.Port{
		RxPackets: c.rxPackets.Load(),
		RxBytes:   c.rxBytes.Load(),
		Multicast: c.multicast.Load(),
		RxErrors:  c.rxErrors.Load(),
		RxDropped: c.rxDrops.total(),
		TxPackets: c.txPackets.Load(),
		TxBytes:   c.txBytes.Load(),
		TxDropped: c.txDrops.total(),
		RxDrops:   c.rxDrops.snapshot(),
		TxDrops:   c.txDrops.snapshot(),
	}
}
