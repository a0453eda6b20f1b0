//go:build linux

package endpoints

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// writevRaw is one writev(2) that reports how many bytes went.
func writevRaw(fd int, iovs []unix.Iovec) (int, unix.Errno) {
	if len(iovs) == 0 {
		return 0, 0
	}
	n, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// unsafeSlice is the n bytes at p (an iovec's base).
func unsafeSlice(p *byte, n int) []byte { return unsafe.Slice(p, n) }
