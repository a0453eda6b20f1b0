package vswitch

import (
	"sync"
	"sync/atomic"

	"github.com/macvsw/macvsw/switch/counters"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// bcastQueue is the port set's broadcast queue (BEHAVIOUR.md §2.4): floods from the
// wire wait here and are delivered asynchronously, by whoever calls
// DrainBroadcast. Its capacity is the largest bcqueuelen request of the ports.
type bcastQueue struct {
	ready chan struct{}

	mu     sync.Mutex
	ring   []bcastEntry
	head   int
	n      int
	cap    int
	closed bool

	enqueued atomic.Uint64
	dropped  atomic.Uint64
}

type bcastEntry struct {
	pkt     *stack.PacketBuffer
	f       frame
	src     *Port // the local port whose MAC is the source, if any
	srcMode Mode
	rxQueue int
}

func (b *bcastQueue) init() { b.ready = make(chan struct{}, 1) }

func (b *bcastQueue) setCap(n int) {
	b.mu.Lock()
	b.cap = n
	b.mu.Unlock()
}

// push queues a reference to pkt; false when full.
func (b *bcastQueue) push(pkt *stack.PacketBuffer, f *frame, src *Port, srcMode Mode, rxQueue int) bool {
	b.mu.Lock()
	if b.closed || b.n >= b.cap {
		b.mu.Unlock()
		b.dropped.Add(1)
		return false
	}
	if b.n == len(b.ring) {
		size := max(2*len(b.ring), initialRing)
		ring := make([]bcastEntry, size)
		for i := 0; i < b.n; i++ {
			ring[i] = b.ring[(b.head+i)%len(b.ring)]
		}
		b.ring, b.head = ring, 0
	}
	e := bcastEntry{pkt: pkt.IncRef(), f: *f, src: src, srcMode: srcMode, rxQueue: rxQueue}
	// The drainer delivers on its own goroutine: the producer's plug,
	// which only its goroutine may touch, stays behind.
	e.f.plug = nil
	b.ring[(b.head+b.n)%len(b.ring)] = e
	b.n++
	wake := b.n == 1
	b.mu.Unlock()
	b.enqueued.Add(1)
	if wake {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
	return true
}

func (b *bcastQueue) pop() (bcastEntry, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return bcastEntry{}, false
	}
	e := b.ring[b.head]
	b.ring[b.head] = bcastEntry{}
	b.head = (b.head + 1) % len(b.ring)
	b.n--
	return e, true
}

func (b *bcastQueue) close(drops *dropCounters) {
	b.mu.Lock()
	b.closed = true
	var dropped uint64
	for b.n > 0 {
		b.ring[b.head].pkt.DecRef()
		b.ring[b.head] = bcastEntry{}
		b.head = (b.head + 1) % len(b.ring)
		b.n--
		dropped++
	}
	b.mu.Unlock()
	drops[DropRemoved].Add(dropped)
}

func (b *bcastQueue) stats() counters.Broadcast {
	b.mu.Lock()
	defer b.mu.Unlock()
	return counters.Broadcast{Len: b.n, Cap: b.cap, Enqueued: b.enqueued.Load(), Dropped: b.dropped.Load()}
}

// BroadcastReady is signalled when a flood is queued into an empty broadcast
// queue. The owner of the lower waits on it and calls DrainBroadcast.
func (s *Switch) BroadcastReady() <-chan struct{} { return s.bcq.ready }

// DrainBroadcast delivers up to max queued floods (macvlan_process_broadcast)
// and returns how many it delivered. It runs on the caller's goroutine.
func (s *Switch) DrainBroadcast(max int) int {
	n := 0
	for ; n < max; n++ {
		e, ok := s.bcq.pop()
		if !ok {
			break
		}
		flood(s.fib.Load(), e.pkt, &e.f, e.src, e.srcMode, e.rxQueue)
		e.pkt.DecRef()
	}
	return n
}
