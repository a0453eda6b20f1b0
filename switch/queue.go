package vswitch

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DefaultQueueLen is a queue's bound when none is configured: 1000 frames,
// the kernel's default tx_queue_len for Ethernet devices.
const DefaultQueueLen = 1000

// MaxQueues is the most queues a port may have (MAX_TAP_QUEUES in
// include/linux/if_tap.h).
const MaxQueues = 256

// initialRing is the ring size a queue starts with; it doubles up to its
// bound, so ten thousand idle ports do not pin ten thousand full rings.
const initialRing = 64

// Queue is one bounded FIFO of frames waiting for a port (or the lower) to
// take them, like one macvtap queue's ptr_ring. The switch fills it; the
// port's owner drains it with Dequeue, waiting on Ready when it is empty.
// Safe for concurrent use.
type Queue struct {
	ready chan struct{}

	mu     sync.Mutex
	ring   []*stack.PacketBuffer // len is a power of two
	head   int
	n      int
	limit  int
	closed bool

	enqueued      atomic.Uint64
	enqueuedBytes atomic.Uint64
	dequeued      atomic.Uint64
	dropped       atomic.Uint64
}

// QueueStats is a snapshot of one queue.
type QueueStats struct {
	Index    int    `json:"index"`
	Attached bool   `json:"attached"`
	Len      int    `json:"len"`
	Limit    int    `json:"limit"`
	Packets  uint64 `json:"packets"` // enqueued
	Bytes    uint64 `json:"bytes"`
	Dequeued uint64 `json:"dequeued"`
	Dropped  uint64 `json:"dropped"` // queue full
}

func newQueue(limit int) *Queue {
	if limit <= 0 {
		limit = DefaultQueueLen
	}
	return &Queue{ready: make(chan struct{}, 1), limit: limit}
}

// push adds a reference to pkt and queues it. It reports false, without
// taking a reference, when the queue is full or closed.
func (q *Queue) push(pkt *stack.PacketBuffer) (ok, closed bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false, true
	}
	if q.n >= q.limit {
		q.mu.Unlock()
		q.dropped.Add(1)
		return false, false
	}
	if q.n == len(q.ring) {
		q.growLocked()
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = pkt.IncRef()
	q.n++
	wake := q.n == 1
	q.mu.Unlock()
	q.enqueued.Add(1)
	q.enqueuedBytes.Add(uint64(pkt.Size()))
	if wake {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return true, false
}

// growLocked doubles the ring. It allocates, but only while a queue first
// fills up to its bound; a queue in steady state never grows.
//
// Preconditions: q.mu is held.
func (q *Queue) growLocked() {
	size := len(q.ring) * 2
	if size == 0 {
		size = initialRing
	}
	ring := make([]*stack.PacketBuffer, size)
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
	}
	q.ring, q.head = ring, 0
}

// Dequeue moves up to max queued frames to the back of list and returns how
// many it moved. The caller owns the moved references (write them, then
// list.Reset()). It never blocks; wait on Ready when it returns 0.
func (q *Queue) Dequeue(list *stack.PacketBufferList, max int) int {
	q.mu.Lock()
	m := min(q.n, max)
	for i := 0; i < m; i++ {
		j := (q.head + i) & (len(q.ring) - 1)
		list.PushBack(q.ring[j])
		q.ring[j] = nil
	}
	if m > 0 {
		q.head = (q.head + m) & (len(q.ring) - 1)
		q.n -= m
	}
	q.mu.Unlock()
	q.dequeued.Add(uint64(m))
	return m
}

// Ready is signalled when a frame is queued into an empty queue, and when the
// queue is closed. A drainer loops: Dequeue until it returns 0, then wait on
// Ready (or on its own stop signal) and check Closed.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Len returns the number of queued frames.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Closed reports whether the queue was closed (its port removed).
func (q *Queue) Closed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// setLimit changes the bound; frames already queued above it stay.
func (q *Queue) setLimit(limit int) {
	q.mu.Lock()
	q.limit = limit
	q.mu.Unlock()
}

// close drops every queued frame, counting each as DropRemoved in drops, and
// refuses later pushes.
func (q *Queue) close(drops *dropCounters) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	for i := 0; i < q.n; i++ {
		j := (q.head + i) & (len(q.ring) - 1)
		q.ring[j].DecRef()
		q.ring[j] = nil
	}
	dropped := q.n
	q.n = 0
	q.mu.Unlock()
	drops[DropRemoved].Add(uint64(dropped))
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *Queue) stats(i int, attached bool) QueueStats {
	q.mu.Lock()
	n, limit := q.n, q.limit
	q.mu.Unlock()
	return QueueStats{
		Index:    i,
		Attached: attached,
		Len:      n,
		Limit:    limit,
		Packets:  q.enqueued.Load(),
		Bytes:    q.enqueuedBytes.Load(),
		Dequeued: q.dequeued.Load(),
		Dropped:  q.dropped.Load(),
	}
}
