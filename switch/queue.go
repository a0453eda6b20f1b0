package vswitch

import (
	"sync"
	"sync/atomic"

	"github.com/macvsw/macvsw/switch/counters"
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

// Writer hands a batch of frames to an endpoint. It borrows the packets and
// must not block: an endpoint that cannot take a frame drops and counts it.
type Writer func(list *stack.PacketBufferList)

// maxDirectRounds bounds how many batches a producer writes for others
// before it hands the rest of the queue to the drainer goroutine.
const maxDirectRounds = 4

// Queue is one bounded FIFO of frames waiting for a port (or the lower) to
// take them, like one macvtap queue's ptr_ring. The switch fills it. Its
// owner either drains it with Dequeue, waiting on Ready when it is empty,
// or installs a Writer: then the producer that finds no write in progress
// writes the queue out itself (the kernel's qdisc bypass and "running"
// bit), so an idle path costs no goroutine hand-off, and the owner's
// goroutine calls Drain when Ready fires. Either way one writer at a time
// takes frames in FIFO order. Safe for concurrent use.
type Queue struct {
	ready chan struct{}

	mu      sync.Mutex
	idle    sync.Cond             // signalled when running goes false; uses mu
	ring    []*stack.PacketBuffer // len is a power of two
	head    int
	n       int
	limit   int
	closed  bool
	writer  Writer
	batch   int
	running bool                   // a goroutine is writing the queue out
	scratch stack.PacketBufferList // the running writer's batch

	enqueued      atomic.Uint64
	enqueuedBytes atomic.Uint64
	dequeued      atomic.Uint64
	dropped       atomic.Uint64
}

func newQueue(limit int) *Queue {
	if limit <= 0 {
		limit = DefaultQueueLen
	}
	q := &Queue{ready: make(chan struct{}, 1), limit: limit}
	q.idle.L = &q.mu
	return q
}

// SetWriter installs (or, with nil, removes) the queue's writer; batch is
// the most frames per call. Removing it waits for a write in progress, so
// afterwards w is never called again.
func (q *Queue) SetWriter(w Writer, batch int) {
	q.mu.Lock()
	q.writer, q.batch = w, max(batch, 1)
	for w == nil && q.running {
		q.idle.Wait()
	}
	q.mu.Unlock()
}

// Drain writes the queue out through its writer until it is empty, unless
// another goroutine is already doing so. The owner calls it when Ready
// fires.
func (q *Queue) Drain() {
	q.mu.Lock()
	if q.running || q.writer == nil || q.n == 0 {
		q.mu.Unlock()
		return
	}
	q.running = true
	q.mu.Unlock()
	q.writeOut(-1)
}

// writeOut runs with q.running set: it writes batches until the queue is
// empty or, when rounds >= 0, after that many batches, then clears running
// (handing leftovers to the drainer goroutine through Ready).
func (q *Queue) writeOut(rounds int) {
	for i := 0; ; i++ {
		q.mu.Lock()
		w := q.writer
		if q.n == 0 || q.closed || w == nil || (rounds >= 0 && i >= rounds) {
			left := q.n > 0 && !q.closed
			q.running = false
			q.idle.Broadcast()
			q.mu.Unlock()
			if left {
				q.wake()
			}
			return
		}
		m := q.dequeueLocked(&q.scratch, q.batch)
		q.mu.Unlock()
		q.dequeued.Add(uint64(m))
		w(&q.scratch)
		q.scratch.Reset()
	}
}

func (q *Queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Plug holds back the writes one producer would make itself while it
// forwards a batch of frames read together, so that each destination
// queue takes the batch in one write instead of one write per frame (the
// kernel's xmit_more). A plugged producer that finds a queue's writer idle
// claims it (running) and defers the write to Flush; other producers then
// find it running and only queue, as they do behind any writer. A Plug
// belongs to one goroutine; its zero value is ready.
type Plug struct {
	on    bool
	held  []*Queue
	bytes int // queued under the plug since the last flush
}

// plugHold is the most queues a plug holds back; writes to others go out
// at once.
const plugHold = 8

// plugBytes bounds what a plug holds: past it, the plug flushes. A batch
// of large frames gains little from one write (the copies dominate) and,
// held whole, arrives as a burst that overflows a slow receiver's socket
// (gVisor's AF_PACKET endpoint in a runsc sandbox lost a third of its
// throughput from a sibling).
const plugBytes = 32 << 10

// Begin starts a batch: direct writes are held until Flush or End.
func (pl *Plug) Begin() {
	if pl.held == nil {
		pl.held = make([]*Queue, 0, plugHold)
	}
	pl.on = true
}

// Flush writes out every queue the plug holds; the batch goes on.
func (pl *Plug) Flush() {
	for i, q := range pl.held {
		q.writeOut(maxDirectRounds)
		pl.held[i] = nil
	}
	pl.held = pl.held[:0]
	pl.bytes = 0
}

// End flushes and ends the batch.
func (pl *Plug) End() {
	pl.Flush()
	pl.on = false
}

// hold takes q, whose writer pl's producer just claimed, into the batch,
// or reports false (write it now).
func (pl *Plug) hold(q *Queue) bool {
	if pl == nil || !pl.on || len(pl.held) == cap(pl.held) {
		return false
	}
	pl.held = append(pl.held, q)
	return true
}

// push adds a reference to pkt and queues it. It reports false, without
// taking a reference, when the queue is full or closed. A producer that
// claims the idle writer writes the queue out at once, or, under a plug,
// when the plug flushes.
func (q *Queue) push(pkt *stack.PacketBuffer, pl *Plug) (ok, closed bool) {
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
	direct := q.writer != nil && !q.running
	if direct {
		q.running = true
	}
	wake := q.n == 1 && q.writer == nil
	q.mu.Unlock()
	q.enqueued.Add(1)
	q.enqueuedBytes.Add(uint64(pkt.Size()))
	switch {
	case direct && pl.hold(q):
	case direct:
		q.writeOut(maxDirectRounds)
	case wake:
		q.wake()
	}
	if pl != nil && pl.on {
		if pl.bytes += pkt.Size(); pl.bytes >= plugBytes {
			pl.Flush()
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
// many it moved. It is for queues without a Writer. The caller owns the moved references (write them, then
// list.Reset()). It never blocks; wait on Ready when it returns 0.
func (q *Queue) Dequeue(list *stack.PacketBufferList, max int) int {
	q.mu.Lock()
	m := q.dequeueLocked(list, max)
	q.mu.Unlock()
	q.dequeued.Add(uint64(m))
	return m
}

// dequeueLocked moves up to max frames to list.
//
// Preconditions: q.mu is held.
func (q *Queue) dequeueLocked(list *stack.PacketBufferList, max int) int {
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
	q.wake()
}

func (q *Queue) stats(i int, attached bool) counters.Queue {
	q.mu.Lock()
	n, limit := q.n, q.limit
	q.mu.Unlock()
	return counters.Queue{
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
