//go:build linux

package endpoints

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring, used synchronously: a queue's reader or writer
// prepares up to the ring's size of readv or writev requests on its
// nonblocking FD, and one io_uring_enter submits them all and waits for all
// their completions. That turns a batch of per-frame system calls into one
// (the kernel still runs each read or write, in order, inline). Because
// every request completes before submit returns, no buffer outlives the
// call and the ring never holds a request across calls.
//
// Layouts and constants follow include/uapi/linux/io_uring.h.

const (
	uringOpReadv  = 1 // IORING_OP_READV
	uringOpWritev = 2 // IORING_OP_WRITEV

	uringSetupSubmitAll   = 1 << 7 // IORING_SETUP_SUBMIT_ALL
	uringSetupCoopTaskrun = 1 << 8 // IORING_SETUP_COOP_TASKRUN

	uringFeatSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP
	uringFeatNoDrop     = 1 << 1 // IORING_FEAT_NODROP

	uringEnterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS

	uringOffSQRing = 0
	uringOffCQRing = 0x8000000
	uringOffSQEs   = 0x10000000
)

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

// uringSQE is struct io_uring_sqe (64 bytes).
type uringSQE struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	rwFlags  uint32
	userData uint64
	bufIndex uint16
	pers     uint16
	spliceFD int32
	addr3    uint64
	pad      uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// uring is one io_uring instance. It is not safe for concurrent use: each
// reader and writer owns its own.
type uring struct {
	fd      int
	rings   []byte // the SQ and CQ rings (one mapping)
	sqeMem  []byte
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []uringSQE
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []uringCQE

	queued int      // SQEs prepared since the last submit
	res    []int32  // per-request results of the last submit, by index
	done   []uint64 // scratch
}

// errNoUring is returned when the kernel refuses io_uring (disabled by
// kernel.io_uring_disabled, a seccomp filter, or a kernel without it).
var errNoUring = errors.New("io_uring unavailable")

// newUring sets up a ring for up to entries requests per submit.
func newUring(entries int) (*uring, error) {
	var p uringParams
	p.flags = uringSetupSubmitAll | uringSetupCoopTaskrun
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if e == unix.EINVAL {
		// A kernel before 5.19 knows neither flag; both are optimizations.
		p = uringParams{}
		fd, _, e = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	}
	if e != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %v", errNoUring, e)
	}
	r := &uring{fd: int(fd)}
	if err := r.mapRings(&p); err != nil {
		r.close()
		return nil, err
	}
	r.res = make([]int32, p.sqEntries)
	return r, nil
}

func (r *uring) mapRings(p *uringParams) error {
	if p.features&uringFeatSingleMmap == 0 || p.features&uringFeatNoDrop == 0 {
		// Kernels before 5.5: not worth a second code path.
		return fmt.Errorf("%w: kernel lacks IORING_FEAT_SINGLE_MMAP/NODROP", errNoUring)
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{}))
	size := max(sqSize, cqSize)
	mem, err := unix.Mmap(r.fd, uringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring rings: %w", err)
	}
	r.rings = mem
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(uringSQE{}))
	sqeMem, err := unix.Mmap(r.fd, uringOffSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mmap io_uring SQEs: %w", err)
	}
	r.sqeMem = sqeMem
	base := unsafe.Pointer(&mem[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff.head))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff.tail))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff.array)), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff.head))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff.tail))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Add(base, p.cqOff.cqes)), p.cqEntries)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	return nil
}

// size is the most requests one submit takes.
func (r *uring) size() int { return len(r.sqes) }

// prep queues a readv or writev of iovs on fd as request number
// r.queued. The iovecs and the memory they point at must stay put until
// submit returns. Every request carries RWF_NOWAIT: an empty FD answers
// EAGAIN (a full one refuses a write) at once instead of parking the
// request in the ring, where O_NONBLOCK does not reach, so submit never
// waits on the FD.
func (r *uring) prep(op uint8, fd int, iovs []unix.Iovec) {
	tail := atomic.LoadUint32(r.sqTail) + uint32(r.queued)
	i := tail & r.sqMask
	r.sqes[i] = uringSQE{
		opcode:   op,
		fd:       int32(fd),
		off:      ^uint64(0), // -1: the file's position, as read/write do
		addr:     uint64(uintptr(unsafe.Pointer(&iovs[0]))),
		len:      uint32(len(iovs)),
		rwFlags:  unix.RWF_NOWAIT,
		userData: uint64(r.queued),
	}
	r.sqArray[i] = i
	r.queued++
}

// submit submits the queued requests and waits for all of them; results
// (bytes, or a negated errno) are then in r.res, in the order queued. An
// error means the ring itself failed; the caller must not use it again.
func (r *uring) submit() error {
	n := r.queued
	if n == 0 {
		return nil
	}
	r.queued = 0
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+uint32(n))
	for got, submitted := 0, 0; got < n; {
		toSubmit := n - submitted
		k, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(n-got), uringEnterGetEvents, 0, 0)
		switch e {
		case 0:
			submitted += int(k)
		case unix.EINTR, unix.EAGAIN, unix.EBUSY:
			// Retry; EBUSY means completions wait to be reaped first.
		default:
			// Requests not consumed stay in the ring and would run on
			// the next submit: the ring is done for.
			return fmt.Errorf("io_uring_enter: %w", e)
		}
		got += r.reap()
	}
	return nil
}

// reap moves completions into r.res and returns how many it moved.
func (r *uring) reap() int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	k := 0
	for ; head != tail; head++ {
		c := &r.cqes[head&r.cqMask]
		if c.userData < uint64(len(r.res)) {
			r.res[c.userData] = c.res
		}
		k++
	}
	atomic.StoreUint32(r.cqHead, head)
	return k
}

func (r *uring) close() {
	if r.rings != nil {
		unix.Munmap(r.rings)
		r.rings = nil
	}
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}
