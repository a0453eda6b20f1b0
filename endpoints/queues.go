//go:build linux

package endpoints

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// MaxQueues is the most queues one endpoint may have: MAX_TAP_QUEUES
// (drivers/net/tun.c), the kernel's limit for a tap, which is also
// vswitch.MaxQueues (a test ties them).
const MaxQueues = 256

// engine is the multi-queue FD engine every endpoint kind is built on: a
// set of queues, each one FD (a tap queue, a socket of an AF_PACKET fanout
// group, a connection to a VM) with its life state, counters, reader
// goroutine and writer lock. What differs between kinds are two small
// strategies, chosen when the endpoint is made: how a queue's reader takes
// frames from its FD (reader: io_uring batches, readv, recvmmsg, a
// TPACKET_V3 ring, a length-prefixed stream) and how a batch of frames goes
// out (writer: io_uring batches, writev, sendmmsg, a stream). The kinds (Tap, Packet, Socket) add their
// own control plane around it.
//
// Queue states:
//
//	Up ──DetachQueue──► Detached ──AttachQueue──► Up
//	Up/Detached ──FD error──► Dead ──setFD (AttachFD, reopen, reconnect)──► Up
//	any ──Close──► Dead
//
// Readers run only while the endpoint is attached: one goroutine per live
// queue (rxLoop), parked on Go's netpoller (pollWaiter) while its FD is
// empty. attach(nil), setFD and Close stop them and wait, so no delivery
// happens after they return. An FD error takes down only its own queue;
// when every queue is dead the close action runs.
//
// Lock order: mu, then a queue's wmu, then its stopMu. Never held while
// delivering.
type engine struct {
	linkAttrs // MTU, MAC, dispatcher, close action

	log     *slog.Logger
	kind    string // "tap", "af_packet", "socket": for logs and errors
	hdrSize int    // virtio-net header bytes per frame, 0 without
	canGSO  bool   // TX may carry GSO super-frames (needs hdrSize > 0)
	canCsum bool   // TX may carry partial checksums (needs hdrSize > 0)

	newReader func(q *fdQueue) reader
	newWriter func(q *fdQueue) writer
	syscallIO bool        // no io_uring: one system call per frame (taps)
	noUring   atomic.Bool // io_uring was refused once (logged)
	// onDead, if set, hears a queue the engine marked dead after an
	// error, and why (a socket port's peer going away).
	onDead func(q *fdQueue, err error)

	name         atomic.Pointer[string]
	onQueueState atomic.Pointer[func(q int, up bool)]
	closed       atomic.Bool
	queues       atomic.Pointer[[]*fdQueue] // copy-on-write, under mu
	busyPoll     atomic.Int64               // ns a reader polls before parking; see SetBusyPoll

	// mu serializes the control plane: attach, setFD, state changes,
	// Close.
	mu       sync.Mutex
	attached bool
	wg       sync.WaitGroup // running readers
}

// fdQueue is one queue of an engine.
type fdQueue struct {
	e     *engine
	idx   int
	state atomic.Uint32 // QueueState
	c     queueCounters

	// fd (-1 when none) and ring change only with e.mu and wmu held and
	// no reader running; a reader takes them when it starts.
	fd   int
	ring *rxRing // TPACKET_V3 mode of Packet only

	// The running reader, under e.mu: stop is its waiter (nil when none),
	// done closes when it exits. stopMu guards stop against a writer that
	// fails the queue concurrently.
	stopMu sync.Mutex
	stop   *pollWaiter
	done   chan struct{}

	// wmu guards fd for writing (against Close and setFD) and w's scratch.
	wmu sync.Mutex
	w   writer
}

// reader is a receive strategy: one per running reader goroutine, holding
// its scratch memory.
type reader interface {
	// read waits on w until frames are ready, then takes and delivers
	// them. It returns errStopped once w is stopped, or the error that
	// takes the queue down, with the operation that failed.
	read(w *pollWaiter) (op string, err error)
	// release returns the reader's pooled memory.
	release()
}

// writer is a transmit strategy: one per queue, holding its scratch. A
// writer holding a resource beyond memory (an io_uring) also has a close
// method, which the engine calls when it replaces the writer or closes.
type writer interface {
	// write sends pkts (borrowed) on fd, counting every frame as sent or
	// dropped in c, and returns how many went out. A non-zero broken is
	// an error that makes the FD unusable; terr is what WritePackets
	// reports for refused frames.
	//
	// Preconditions: q.wmu is held and fd is valid.
	write(fd int, pkts []*stack.PacketBuffer) (sent int, broken unix.Errno, terr tcpip.Error)
}

// closeWriter releases w's resources, if it has any.
func closeWriter(w writer) {
	if c, ok := w.(interface{ close() }); ok {
		c.close()
	}
}

// closedWriter is a closed queue's writer. writeBatch refuses frames for
// a closed engine before it reaches a writer; this one is never called.
type closedWriter struct{}

func (closedWriter) write(int, []*stack.PacketBuffer) (int, unix.Errno, tcpip.Error) {
	return 0, unix.EBADF, &tcpip.ErrClosedForSend{}
}

// ring returns a fresh io_uring for a queue's reader or writer, or nil
// when the endpoint does without (SyscallIO) or the kernel refuses one.
func (e *engine) ring(entries int) *uring {
	if e.syscallIO {
		return nil
	}
	r, err := newUring(entries)
	if err != nil {
		e.noteNoUring(err)
		return nil
	}
	return r
}

// noteNoUring logs, once per endpoint, that io_uring is unavailable and
// its queues write one frame per system call.
func (e *engine) noteNoUring(err error) {
	if !e.noUring.Swap(true) {
		e.log.Warn("io_uring unavailable: one system call per frame", "err", err)
	}
}

// errStopped is what reader.read returns once its waiter was stopped.
var errStopped = errors.New("reader stopped")

// init names the engine and gives it its logger. Call it first.
func (e *engine) init(kind, name string, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e.kind, e.log = kind, log
	e.setName(name)
}

// setQueues gives the engine one queue per fd (-1 for a queue that has no
// FD yet). The engine owns the FDs from here on.
func (e *engine) setQueues(fds []int) {
	qs := make([]*fdQueue, len(fds))
	for i, fd := range fds {
		qs[i] = e.newQueue(i, fd)
	}
	e.queues.Store(&qs)
}

func (e *engine) newQueue(idx, fd int) *fdQueue {
	q := &fdQueue{e: e, idx: idx, fd: fd}
	if fd < 0 {
		q.state.Store(uint32(QueueDead))
	}
	q.w = e.newWriter(q)
	return q
}

// Name returns the interface (or socket) name the endpoint serves.
func (e *engine) Name() string { return *e.name.Load() }

func (e *engine) setName(n string) { e.name.Store(&n) }

// NumQueues returns the number of queue slots, dead ones included.
func (e *engine) NumQueues() int { return len(*e.queues.Load()) }

func (e *engine) queueList() []*fdQueue { return *e.queues.Load() }

// SetQueueStateFunc installs f (nil removes it), called when a queue goes
// down (FD error, DetachQueue, peer gone) or comes back (AttachFD,
// AttachQueue, reopen, new peer). It runs on the goroutine that noticed
// the change and must not block. The bridge package installs one that
// keeps the switch port's queue selection in step.
func (e *engine) SetQueueStateFunc(f func(q int, up bool)) {
	if f == nil {
		e.onQueueState.Store(nil)
		return
	}
	e.onQueueState.Store(&f)
}

func (e *engine) notifyQueue(q int, up bool) {
	if f := e.onQueueState.Load(); f != nil {
		(*f)(q, up)
	}
}

// Wait implements stack.LinkEndpoint.Wait: it returns when no reader runs.
func (e *engine) Wait() { e.wg.Wait() }

// Attach implements stack.LinkEndpoint.Attach. A non-nil dispatcher starts
// one reader per live queue; nil stops them and returns after they exited,
// so no delivery happens after Attach(nil) returns.
func (e *engine) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d == nil {
		e.stopReadersLocked()
		e.dispatch.Store(nil)
		e.attached = false
		return
	}
	e.dispatch.Store(newDispatchers(d))
	if e.attached || e.closed.Load() {
		return
	}
	e.attached = true
	for _, q := range e.queueList() {
		e.startReaderLocked(q)
	}
}

// Preconditions: e.mu is held.
func (e *engine) startReaderLocked(q *fdQueue) {
	if q.done != nil || q.fd < 0 || QueueState(q.state.Load()) == QueueDead {
		return
	}
	w, err := newPollWaiter(q.fd, &e.busyPoll, &q.c.busyPolled)
	if err != nil {
		e.log.Error("reader not started", e.kind, e.Name(), "queue", q.idx, "err", err)
		return
	}
	q.stopMu.Lock()
	q.stop = w
	q.stopMu.Unlock()
	q.done = make(chan struct{})
	e.wg.Add(1)
	go e.rxLoop(q, w, q.done)
}

// MaxBusyPoll bounds SetBusyPoll.
const MaxBusyPoll = 100 * time.Millisecond

// SetBusyPoll makes every reader of the endpoint poll its FD for up to d
// after it finds the FD empty, before it parks on the netpoller (0, the
// default: park at once). A frame that arrives while a reader polls is
// read without waking a thread: lower latency and fewer wake-ups, for up
// to d of CPU time each time a queue runs dry. It applies from each
// reader's next wait; d is clamped to [0, MaxBusyPoll].
//
// On an AF_PACKET endpoint it also sets SO_BUSY_POLL (in µs) on the
// sockets it opens from then on, so the kernel polls a NAPI device's
// queue for a reader that would otherwise sleep.
func (e *engine) SetBusyPoll(d time.Duration) {
	e.busyPoll.Store(int64(min(max(d, 0), MaxBusyPoll)))
}

// BusyPoll returns the endpoint's busy-poll time (SetBusyPoll).
func (e *engine) BusyPoll() time.Duration { return time.Duration(e.busyPoll.Load()) }

// Preconditions: e.mu is held.
func (e *engine) stopReaderLocked(q *fdQueue) {
	if q.done == nil {
		return
	}
	q.stop.Stop()
	<-q.done
	q.stopMu.Lock()
	q.stop = nil
	q.stopMu.Unlock()
	q.done = nil
}

// stopReadersLocked stops every reader at once, then waits for each.
//
// Preconditions: e.mu is held.
func (e *engine) stopReadersLocked() {
	qs := e.queueList()
	for _, q := range qs {
		if q.done != nil {
			q.stop.Stop()
		}
	}
	for _, q := range qs {
		e.stopReaderLocked(q)
	}
}

// rxLoop runs one queue's reader until it is stopped or its FD fails.
func (e *engine) rxLoop(q *fdQueue, w *pollWaiter, done chan struct{}) {
	defer e.wg.Done()
	defer close(done)
	// The waiter's dup keeps the FD open in the kernel: release it as soon
	// as the reader ends, so a failed tap queue is detached at once.
	defer w.Close()
	r := e.newReader(q)
	defer r.release()
	for {
		op, err := r.read(w)
		switch {
		case err == errStopped:
			return
		case err != nil:
			e.queueFailed(q, op, err)
			return
		}
	}
}

// queueFailed marks q dead after an error on its FD; only that queue
// stops. When every queue is dead, the close action runs.
func (e *engine) queueFailed(q *fdQueue, op string, err error) {
	if e.closed.Load() {
		return
	}
	if QueueState(q.state.Swap(uint32(QueueDead))) == QueueDead {
		return
	}
	q.c.failures.Add(1)
	q.c.setLastError(op, err)
	q.stopMu.Lock()
	if q.stop != nil {
		q.stop.Stop() // a writer noticed: stop the reader too
	}
	q.stopMu.Unlock()
	e.log.Warn("queue down", e.kind, e.Name(), "queue", q.idx, "op", op, "err", err)
	e.notifyQueue(q.idx, false)
	if e.onDead != nil {
		e.onDead(q, err)
	}
	if e.allDead() {
		e.runCloseAction()
	}
}

// allDead reports whether no queue is alive.
func (e *engine) allDead() bool {
	for _, q := range e.queueList() {
		if QueueState(q.state.Load()) != QueueDead {
			return false
		}
	}
	return true
}

// setFD installs fd (owned from now on) in queue slot idx, or in a new
// slot when idx == len(queues), closing the slot's old FD: the queue is Up
// again and, while attached, its reader restarts. ring goes with fd
// (Packet's TPACKET_V3 mode), nil otherwise. The counters carry on.
//
// Preconditions: e.mu is held.
func (e *engine) setFDLocked(idx, fd int, ring *rxRing) error {
	if e.closed.Load() {
		return ErrClosed
	}
	qs := e.queueList()
	var q *fdQueue
	switch {
	case idx < len(qs):
		q = qs[idx]
		e.stopReaderLocked(q)
	case idx == len(qs) && idx < MaxQueues:
		q = e.newQueue(idx, -1)
		next := make([]*fdQueue, len(qs), len(qs)+1)
		copy(next, qs)
		next = append(next, q)
		e.queues.Store(&next)
	default:
		return fmt.Errorf("%s %q: no queue slot %d (have %d, at most %d)", e.kind, e.Name(), idx, len(qs), MaxQueues)
	}
	q.wmu.Lock()
	if q.fd >= 0 {
		unix.Close(q.fd)
	}
	q.ring.unmap()
	q.fd, q.ring = fd, ring
	// A fresh writer: whatever the old one kept for its FD (a stream's
	// unsent tail) must never reach this one, even under the same number.
	closeWriter(q.w)
	q.w = e.newWriter(q)
	q.state.Store(uint32(QueueUp))
	q.wmu.Unlock()
	if e.attached {
		e.startReaderLocked(q)
	}
	e.notifyQueue(idx, true)
	return nil
}

// dropFDLocked closes queue idx's FD and marks it dead without counting a
// failure: its peer went away on purpose (a socket port between VMs), or
// the endpoint is re-opening its FDs. It reports whether the queue was
// alive.
//
// Preconditions: e.mu is held.
func (e *engine) dropFDLocked(idx int) bool {
	q := e.queueList()[idx]
	e.stopReaderLocked(q)
	q.wmu.Lock()
	if q.fd >= 0 {
		unix.Close(q.fd)
		q.fd = -1
	}
	q.ring.unmap()
	q.ring = nil
	was := QueueState(q.state.Swap(uint32(QueueDead))) != QueueDead
	q.wmu.Unlock()
	if was {
		e.notifyQueue(idx, false)
	}
	return was
}

// liveQueueLocked returns queue idx if it exists and is not dead.
//
// Preconditions: e.mu is held.
func (e *engine) liveQueueLocked(idx int) (*fdQueue, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	qs := e.queueList()
	if idx < 0 || idx >= len(qs) {
		return nil, fmt.Errorf("%s %q: no queue %d", e.kind, e.Name(), idx)
	}
	if QueueState(qs[idx].state.Load()) == QueueDead {
		return nil, fmt.Errorf("%s %q queue %d: queue is dead", e.kind, e.Name(), idx)
	}
	return qs[idx], nil
}

// pick returns the first live queue at or after i (mod n), or nil.
func pick(qs []*fdQueue, i int) *fdQueue {
	for k := range qs {
		q := qs[(i+k)%len(qs)]
		if QueueState(q.state.Load()) != QueueDead {
			return q
		}
	}
	return nil
}

// WritePackets implements stack.LinkWriter.WritePackets. Each packet (the
// whole frame, borrowed) goes to queue pkt.Hash % NumQueues(), or the next
// live one; consecutive packets for the same queue go out in one batch. It
// never blocks: a frame that does not fit is dropped and counted
// (tx_full). It returns the number of frames written and, if any could not
// be, the last error (ErrWouldBlock for a full queue, ErrClosedForSend
// after Close or with no live queue); dropped frames are not retried.
func (e *engine) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	qs := e.queueList()
	all := pkts.AsSlice()
	n := 0
	var terr tcpip.Error
	for len(all) > 0 {
		qi := int(all[0].Hash % uint32(len(qs)))
		j := 1
		for j < len(all) && int(all[j].Hash%uint32(len(qs))) == qi {
			j++
		}
		sent, err := e.writeBatch(pick(qs, qi), all[:j])
		n += sent
		if err != nil {
			terr = err
		}
		all = all[j:]
	}
	return n, terr
}

// WriteQueue writes pkts (borrowed) to queue q folded into the queue range
// (q % NumQueues(), or the next live queue). Results are as WritePackets'.
// The bridge package calls it with the queue the switch picked by flow
// hash, so the flow's frames keep one queue end to end.
func (e *engine) WriteQueue(q int, pkts stack.PacketBufferList) (int, tcpip.Error) {
	qs := e.queueList()
	return e.writeBatch(pick(qs, q%len(qs)), pkts.AsSlice())
}

func (e *engine) writeBatch(q *fdQueue, pkts []*stack.PacketBuffer) (int, tcpip.Error) {
	if q == nil {
		e.queueList()[0].c.txDrops[DropQueueDown].Add(uint64(len(pkts)))
		return 0, &tcpip.ErrClosedForSend{}
	}
	q.wmu.Lock()
	if e.closed.Load() || q.fd < 0 {
		q.wmu.Unlock()
		q.c.txDrops[DropClosed].Add(uint64(len(pkts)))
		return 0, &tcpip.ErrClosedForSend{}
	}
	sent, broken, terr := q.w.write(q.fd, pkts)
	q.wmu.Unlock()
	if broken != 0 {
		e.queueFailed(q, "write", broken)
	}
	return sent, terr
}

// Stats returns a snapshot of every queue's counters.
func (e *engine) Stats() counters.Endpoint {
	qs := e.queueList()
	s := counters.Endpoint{Queues: make([]counters.EndpointQueue, len(qs))}
	for i, q := range qs {
		s.Queues[i] = q.c.snapshot(i, QueueState(q.state.Load()))
	}
	return s
}

// closeQueues is the engine's part of Close: stop the readers and wait for
// them, then fence the writers queue by queue and close the FDs. It
// reports false if the engine was already closed.
func (e *engine) closeQueues() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Swap(true) {
		return false
	}
	e.stopReadersLocked()
	e.dispatch.Store(nil)
	e.attached = false
	for _, q := range e.queueList() {
		q.wmu.Lock()
		if q.fd >= 0 {
			unix.Close(q.fd)
			q.fd = -1
		}
		q.ring.unmap() // its reader has returned
		q.state.Store(uint32(QueueDead))
		closeWriter(q.w)
		q.w = closedWriter{}
		q.wmu.Unlock()
	}
	return true
}

// liveFD returns the FD of the first live queue, for ioctls that act on
// the whole device (TUNSETCARRIER, memberships), or -1.
//
// Preconditions: e.mu is held.
func (e *engine) liveFDLocked() int {
	for _, q := range e.queueList() {
		if q.fd >= 0 && QueueState(q.state.Load()) != QueueDead {
			return q.fd
		}
	}
	return -1
}
