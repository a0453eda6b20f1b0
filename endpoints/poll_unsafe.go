//go:build linux

package endpoints

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
)

// pollWaiter makes a reader's blocking wait a goroutine park on Go's
// netpoller (epoll) instead of an OS thread blocked in ppoll, as gVisor's
// rawfile.Blocking*UntilStopped do. That matters for latency: when one
// switch reader writes a frame into a tap and the kernel answers at once
// (ping), the answer's reader goroutine is found ready by the same thread's
// netpoll and runs without waking another OS thread.
//
// It holds a dup of the FD registered with the poller; reads still go to
// the original FD, so an FD that is closed or replaced under the endpoint
// fails the read as before. Stop sets a past read deadline, which ends a
// pending or later wait; Close releases the dup.
type pollWaiter struct {
	fd int // the FD read from; the dup in f only signals readiness
	f  *os.File
	rc syscall.RawConn

	// busy is the engine's busy-poll time (ns): how long wait tries the
	// FD in a loop before it parks. stopped ends such a loop.
	busy    *atomic.Int64
	polled  *atomic.Uint64 // counts the waits that polling answered
	stopped atomic.Bool

	// Per-call state for the preallocated callbacks, so a read allocates
	// nothing. Only the waiter's reader goroutine uses them.
	iov     []unix.Iovec
	mmsg    []rawfile.MMsgHdr
	n       int
	errno   unix.Errno
	readvF  func(uintptr) bool
	recvmmF func(uintptr) bool
}

func newPollWaiter(fd int, busy *atomic.Int64, polled *atomic.Uint64) (*pollWaiter, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup fd %d: %w", fd, err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, fmt.Errorf("nonblock fd %d: %w", nfd, err)
	}
	f := os.NewFile(uintptr(nfd), fmt.Sprintf("fd%d", fd))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &pollWaiter{fd: fd, f: f, rc: rc, busy: busy, polled: polled}
	w.readvF = func(uintptr) bool {
		r, _, e := unix.RawSyscall(unix.SYS_READV, uintptr(w.fd), uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
		return w.done(r, e)
	}
	w.recvmmF = func(uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(w.fd), uintptr(unsafe.Pointer(&w.mmsg[0])), uintptr(len(w.mmsg)), unix.MSG_DONTWAIT, 0, 0)
		return w.done(r, e)
	}
	return w, nil
}

// done records a raw syscall's result; false means wait and retry. A
// failed call returns r = -1, which must not read as the stop result.
func (w *pollWaiter) done(r uintptr, e unix.Errno) bool {
	switch e {
	case unix.EAGAIN, unix.EINTR:
		return false
	case 0:
		w.n, w.errno = int(r), 0
	default:
		w.n, w.errno = 0, e
	}
	return true
}

// Stop ends the reader's current or next wait: it then returns -1.
func (w *pollWaiter) Stop() {
	w.stopped.Store(true)
	w.f.SetReadDeadline(time.Unix(1, 0))
}

// Close releases the waiter's FD. Call it after the reader has returned.
func (w *pollWaiter) Close() { w.f.Close() }

// readv reads one frame into iov, parking on the netpoller while the FD is
// empty. It returns -1 once stopped.
func (w *pollWaiter) readv(iov []unix.Iovec) (int, unix.Errno) {
	w.iov = iov
	return w.wait(w.readvF)
}

// recvmmsg receives a batch into hdrs, parking while the socket is empty.
// It returns -1 once stopped.
func (w *pollWaiter) recvmmsg(hdrs []rawfile.MMsgHdr) (int, unix.Errno) {
	w.mmsg = hdrs
	return w.wait(w.recvmmF)
}

func (w *pollWaiter) wait(f func(uintptr) bool) (int, unix.Errno) {
	if d := w.busy.Load(); d > 0 && w.poll(f, time.Duration(d)) {
		return w.n, w.errno
	}
	if err := w.rc.Read(f); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
			return -1, 0
		}
		var errno unix.Errno
		if errors.As(err, &errno) {
			return 0, errno
		}
		return 0, unix.EIO
	}
	return w.n, w.errno
}

// pollYield is how many empty tries poll makes between yields to the Go
// scheduler, so that goroutines made ready meanwhile (another queue's
// reader, the control plane) still run on this P.
const pollYield = 16

// poll tries f until it reports a result or d has passed, without
// parking. It reports whether f did.
func (w *pollWaiter) poll(f func(uintptr) bool, d time.Duration) bool {
	start := time.Now()
	for i := 1; !w.stopped.Load(); i++ {
		if f(uintptr(w.fd)) {
			if i > 1 { // found after an empty try: a park saved
				w.polled.Add(1)
			}
			return true
		}
		if i%pollYield == 0 {
			if time.Since(start) >= d {
				return false
			}
			runtime.Gosched()
		}
	}
	return false
}
