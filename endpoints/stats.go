//go:build linux

package endpoints

import (
	"fmt"
	"sync/atomic"

	"github.com/macvsw/macvsw/switch/counters"
)

// DropReason names why an endpoint dropped a frame. Virtio-net header
// rejections are counted separately, by VnetReason.
type DropReason uint8

// Drop reasons.
const (
	// DropTxFull: the FD would block (tap ring or socket buffer full); the
	// endpoint never blocks a writer.
	DropTxFull DropReason = iota
	// DropTxError: the write failed with an error that took the queue down.
	DropTxError
	// DropQueueDown: no queue was alive to write to.
	DropQueueDown
	// DropOversize: a frame above the MTU that is not GSO (TX), or a frame
	// larger than the receive buffer (RX).
	DropOversize
	// DropUnsupportedGSO: a GSO kind we cannot pass on or segment (UFO).
	DropUnsupportedGSO
	// DropMalformed: software segmentation or checksum completion failed on
	// malformed headers.
	DropMalformed
	// DropRunt: a received frame shorter than an Ethernet header.
	DropRunt
	// DropOutgoing: an AF_PACKET frame with sll_pkttype PACKET_OUTGOING, the
	// host's own transmission looped back.
	DropOutgoing
	// DropClosed: a write after Close.
	DropClosed
	// DropGSOSegments: a GSO packet for a receiver without offloads that
	// software segmentation would cut into more than MaxGSOSegments
	// segments (ErrTooManySegments).
	DropGSOSegments

	numDropReasons
)

// NumDropReasons is the number of DropReason values.
const NumDropReasons = int(numDropReasons)

var dropReasonNames = [numDropReasons]string{
	DropTxFull:         "tx_full",
	DropTxError:        "tx_error",
	DropQueueDown:      "queue_down",
	DropOversize:       "oversize",
	DropUnsupportedGSO: "unsupported_gso",
	DropMalformed:      "malformed",
	DropRunt:           "runt",
	DropOutgoing:       "outgoing",
	DropClosed:         "closed",
	DropGSOSegments:    "gso_segments",
}

// String returns the counter name of r, such as "tx_full".
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return fmt.Sprintf("DropReason(%d)", uint8(r))
}

// ParseDropReason is the inverse of DropReason.String.
func ParseDropReason(s string) (DropReason, error) {
	for i, n := range dropReasonNames {
		if n == s {
			return DropReason(i), nil
		}
	}
	return 0, fmt.Errorf("unknown drop reason %q", s)
}

// QueueState is the life state of one queue of an endpoint.
type QueueState uint8

// Queue states.
//
//	Up ──DetachQueue──► Detached ──AttachQueue──► Up
//	Up/Detached ──FD error──► Dead ──AttachFD──► Up (new FD in the slot)
const (
	QueueUp QueueState = iota
	QueueDetached
	QueueDead
)

// String returns "up", "detached" or "dead".
func (s QueueState) String() string {
	switch s {
	case QueueUp:
		return "up"
	case QueueDetached:
		return "detached"
	case QueueDead:
		return "dead"
	}
	return fmt.Sprintf("QueueState(%d)", uint8(s))
}

// queueCounters are the live counters behind QueueStats.
type queueCounters struct {
	rxPackets   atomic.Uint64
	rxBytes     atomic.Uint64
	txPackets   atomic.Uint64
	txBytes     atomic.Uint64
	rxDrops     [numDropReasons]atomic.Uint64
	txDrops     [numDropReasons]atomic.Uint64
	vnetErrors  [numVnetReasons]atomic.Uint64
	segmented   atomic.Uint64
	checksummed atomic.Uint64
	busyPolled  atomic.Uint64 // reads that found frames while busy polling
	failures    atomic.Uint64
	lastError   atomic.Pointer[string]
}

// lastErr returns the last error that took the queue down, or "".
func (c *queueCounters) lastErr() string {
	if e := c.lastError.Load(); e != nil {
		return *e
	}
	return ""
}

func (c *queueCounters) setLastError(op string, err error) {
	s := op + ": " + err.Error()
	c.lastError.Store(&s)
}

// dropNames and vnetNames are the reason names in enum order, for
// snapshots.
var (
	dropNames = dropReasonNames[:]
	vnetNames = vnetReasonNames[:]
)

func (c *queueCounters) snapshot(idx int, state QueueState) counters.EndpointQueue {
	var rx, tx [numDropReasons]uint64
	var vn [numVnetReasons]uint64
	for i := range c.rxDrops {
		rx[i] = c.rxDrops[i].Load()
		tx[i] = c.txDrops[i].Load()
	}
	for i := range c.vnetErrors {
		vn[i] = c.vnetErrors[i].Load()
	}
	s := counters.EndpointQueue{
		Index:       idx,
		State:       state.String(),
		RxPackets:   c.rxPackets.Load(),
		RxBytes:     c.rxBytes.Load(),
		TxPackets:   c.txPackets.Load(),
		TxBytes:     c.txBytes.Load(),
		RxDrops:     counters.NewDrops(dropNames, rx[:]),
		TxDrops:     counters.NewDrops(dropNames, tx[:]),
		VnetErrors:  counters.NewDrops(vnetNames, vn[:]),
		Segmented:   c.segmented.Load(),
		Checksummed: c.checksummed.Load(),
		BusyPolled:  c.busyPolled.Load(),
		Failures:    c.failures.Load(),
		LastError:   c.lastErr(),
	}
	return s
}
