package vswitch

import (
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// egress is a destination's set of queues: a port's, or the lower's toward
// the wire. The switch picks one attached queue per frame by flow hash.
type egress struct {
	queues []*Queue
	// active lists the attached queue indexes in selection order. Detach
	// moves the last attached queue into the hole and Attach appends, as
	// TUNSETQUEUE does on a macvtap (drivers/net/tap.c tap_disable_queue).
	active atomic.Pointer[[]int]
}

func (e *egress) init(n, limit int) {
	e.queues = make([]*Queue, n)
	act := make([]int, n)
	for i := range e.queues {
		e.queues[i] = newQueue(limit)
		act[i] = i
	}
	e.active.Store(&act)
}

// pick returns the queue a frame goes to, or nil when none is attached.
func (e *egress) pick(hash uint32, rxQueue int) *Queue {
	act := *e.active.Load()
	if len(act) == 0 {
		return nil
	}
	return e.queues[act[selectQueue(len(act), hash, rxQueue)]]
}

// NumQueues returns how many queues exist, attached or not.
func (e *egress) NumQueues() int { return len(e.queues) }

// Queue returns queue i; the owner drains it.
func (e *egress) Queue(i int) *Queue { return e.queues[i] }

func (e *egress) queueStats() []counters.Queue {
	act := *e.active.Load()
	out := make([]counters.Queue, len(e.queues))
	for i, q := range e.queues {
		attached := false
		for _, a := range act {
			attached = attached || a == i
		}
		out[i] = q.stats(i, attached)
	}
	return out
}

// Port is one virtual port: a macvlan/macvtap device in software. Frames the
// switch delivers to it wait in its queues (Queue(i)); frames it sends enter
// through Switch.Transmit. Its control-plane setters live on Switch so that
// every rule is checked against the siblings under one lock.
type Port struct {
	egress
	sw   *Switch
	name string
	ctr  portCounters

	// view is the data path's read-only copy of the port's state, replaced
	// on every change.
	view atomic.Pointer[portView]

	// Control-plane state, guarded by sw.mu. linkDown says the port's
	// device is gone or set down on its side (SetLinkUp).
	st       portState
	linkDown bool
	removed  bool
	// police is the port's ingress policer (nil: none); it is replaced
	// only when the port's Police setting changes, so its buckets
	// survive other changes.
	police *policer
}

// portView is an immutable snapshot of a port's forwarding state.
type portView struct {
	p        *Port
	mode     Mode
	mac      MAC
	mtu      uint32
	up       bool // forwarding: admin up and the device's link up
	adminUp  bool
	linkUp   bool
	removed  bool
	allMulti bool
	nodst    bool
	groups   map[MAC]struct{} // never written after the view is published
	police   *policer         // nil: no limits
	guard    *guard           // nil: no anti-spoofing
}

// accepts is the port's multicast filter (macvlan_compute_filter): every group
// when all-multicast, else its subscriptions plus broadcast. The kernel's
// filter is an 8-bit hash and leaks unsubscribed groups at random; ours is
// exact.
func (v *portView) accepts(dst MAC) bool {
	if v.allMulti || dst.IsBroadcast() {
		return true
	}
	_, ok := v.groups[dst]
	return ok
}

// Throttle returns how long the port's reader should wait before it reads
// the next frame: 0, unless the port's policer dropped its last several
// frames, in which case it is the time until the limit lets a frame pass
// again (at most 10 ms). A reader that honours it (bridge's links do)
// spends no CPU on a storm beyond the limit: the excess stays in, or
// overflows, the port's own device.
func (p *Port) Throttle() time.Duration {
	if pl := p.view.Load().police; pl != nil {
		return pl.throttle()
	}
	return 0
}

// Name returns the port's name.
func (p *Port) Name() string { return p.name }

// Switch returns the switch the port belongs to.
func (p *Port) Switch() *Switch { return p.sw }

// MAC returns the port's current address.
func (p *Port) MAC() MAC { return p.view.Load().mac }

// MTU returns the port's current MTU.
func (p *Port) MTU() uint32 { return p.view.Load().mtu }

// Mode returns the port's current mode.
func (p *Port) Mode() Mode { return p.view.Load().mode }

// Up reports the port's admin state.
func (p *Port) Up() bool { return p.view.Load().adminUp }

// LinkUp reports the state of the port's device as its endpoint last
// reported it (SetLinkUp): there and up on its side.
func (p *Port) LinkUp() bool { return p.view.Load().linkUp }

// Carrier reports the carrier the port's device should show: admin up and
// the lower up (netif_stacked_transfer_operstate).
func (p *Port) Carrier() bool {
	return p.view.Load().adminUp && p.sw.fib.Load().lowerUp
}

// Running reports whether the port passes frames: carrier, and its device
// there and up.
func (p *Port) Running() bool {
	v := p.view.Load()
	return v.up && p.sw.fib.Load().lowerUp
}

// Stats returns a snapshot of the port's counters and queues.
func (p *Port) Stats() counters.Port {
	st := p.ctr.snapshot()
	st.Queues = p.queueStats()
	return st
}

// deliverKind says how a delivered copy is counted.
type deliverKind int

const (
	deliverUnicast deliverKind = iota // unicast, echo, source copy: not "multicast"
	deliverFlood                      // flood from the wire or the broadcast queue
	deliverDirect                     // bridge sibling flood on the TX path
)

// deliver queues one reference to pkt on port v, counting the copy on the
// port either as received or under a receive drop reason.
func deliver(v *portView, pkt *stack.PacketBuffer, f *frame, rxQueue int, kind deliverKind) {
	p := v.p
	q := p.pick(f.hash, rxQueue)
	if q == nil {
		p.ctr.rxDrops[DropNoQueue].Add(1)
		return
	}
	ok, closed := q.push(pkt, f.plug)
	switch {
	case closed:
		p.ctr.rxDrops[DropRemoved].Add(1)
	case !ok:
		// macvtap counts a full ring as rx_errors (BEHAVIOUR.md §6).
		p.ctr.rxErrors.Add(1)
		p.ctr.rxDrops[DropQueueFull].Add(1)
	default:
		p.ctr.rxPackets.Add(1)
		n := uint64(f.size)
		if kind == deliverDirect {
			// The kernel counts a bridge sibling's flood with its link
			// header twice (BEHAVIOUR.md §5.4 quirk 1, case 43); so do we.
			n += ethHeaderLen
		}
		p.ctr.rxBytes.Add(n)
		if kind != deliverUnicast {
			p.ctr.multicast.Add(1)
		}
	}
}
