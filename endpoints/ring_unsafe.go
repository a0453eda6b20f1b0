//go:build linux

package endpoints

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockStatus points at block i's block_status, the word through which
// the kernel and the reader pass the block between them
// (Documentation/networking/packet_mmap.rst, TPACKET_V3).
func (r *rxRing) blockStatus(i int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.mem[i*r.blockSize+blockStatusOff]))
}

// ready reports whether the kernel has handed the next block over. The
// atomic load orders the reads of the block's frames after it, as the
// kernel's smp_wmb orders its writes before setting the status.
func (r *rxRing) ready() bool {
	return atomic.LoadUint32(r.blockStatus(r.next))&unix.TP_STATUS_USER != 0
}

// release hands the next block back to the kernel, after its frames have
// been copied out, and moves on.
func (r *rxRing) release() {
	atomic.StoreUint32(r.blockStatus(r.next), unix.TP_STATUS_KERNEL)
	r.next++
	if r.next == r.blocks {
		r.next = 0
	}
}
