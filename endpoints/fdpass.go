//go:build linux

package endpoints

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifNameSize is IFNAMSIZ (include/uapi/linux/if.h): the interface name
// field at the start of a broker message, NUL-padded, as UML's uml_net
// helper sends it.
const ifNameSize = unix.IFNAMSIZ

// SendFDs sends fds over conn with SCM_RIGHTS in one message whose payload
// starts with name in an IFNAMSIZ-byte field: the uml_net broker pattern,
// where a privileged helper opens taps (OpenTapQueues) and hands only the
// FDs to an unprivileged switch. The caller keeps its copies of fds.
func SendFDs(conn *net.UnixConn, name string, fds []int) error {
	if len(name) >= ifNameSize {
		return fmt.Errorf("send fds: interface name %q too long", name)
	}
	var payload [ifNameSize]byte
	copy(payload[:], name)
	oob := unix.UnixRights(fds...)
	n, oobn, err := conn.WriteMsgUnix(payload[:], oob, nil)
	if err != nil {
		return fmt.Errorf("send %d fds for %q: %w", len(fds), name, err)
	}
	if n != len(payload) || oobn != len(oob) {
		return fmt.Errorf("send %d fds for %q: short write", len(fds), name)
	}
	return nil
}

// ReceiveFDs receives one message of up to max FDs sent with SCM_RIGHTS
// (by SendFDs or a uml_net-style broker) and returns the interface name
// from the first IFNAMSIZ bytes of the payload (empty if the payload is
// shorter or blank) and the FDs, which the caller owns. They arrive
// close-on-exec (Go receives with MSG_CMSG_CLOEXEC). Pass them to
// AdoptTap. On any error — more FDs than max, a truncated or malformed
// control message, no FD at all — every FD the message carried is closed.
func ReceiveFDs(conn *net.UnixConn, max int) (string, []int, error) {
	if max < 1 {
		return "", nil, fmt.Errorf("receive fds: max %d", max)
	}
	buf := make([]byte, ifNameSize+256)
	oob := make([]byte, unix.CmsgSpace(4*max))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return "", nil, fmt.Errorf("receive fds: %w", err)
	}
	fds, err := rightsOf(oob[:oobn])
	switch {
	case err != nil:
	case flags&unix.MSG_CTRUNC != 0 || len(fds) > max:
		err = fmt.Errorf("more than %d fds sent", max)
	case len(fds) == 0:
		err = fmt.Errorf("message carried no fds")
	}
	if err != nil {
		closeFDs(fds)
		return "", nil, fmt.Errorf("receive fds: %w", err)
	}
	var name string
	if n >= ifNameSize {
		field := buf[:ifNameSize]
		if i := bytes.IndexByte(field, 0); i >= 0 {
			field = field[:i]
		}
		name = string(field)
	}
	return name, fds, nil
}

// rightsOf returns every FD in the SCM_RIGHTS messages of a control
// buffer. It walks the buffer itself rather than stopping at the first
// malformed header, so that on an error the FDs it did find are returned
// with it, for the caller to close: none is leaked.
func rightsOf(oob []byte) ([]int, error) {
	var fds []int
	hdr := unix.CmsgSpace(0)
	for len(oob) > 0 {
		if len(oob) < unix.SizeofCmsghdr {
			return fds, fmt.Errorf("control message: %d stray bytes", len(oob))
		}
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			// Take what the claimed length covers, then stop.
			l = min(max(l, hdr), len(oob))
			fds = appendRights(fds, h, oob[hdr:l])
			return fds, fmt.Errorf("control message: bad length %d", h.Len)
		}
		fds = appendRights(fds, h, oob[hdr:l])
		oob = oob[min(len(oob), unix.CmsgSpace(l-hdr)):]
	}
	return fds, nil
}

func appendRights(fds []int, h *unix.Cmsghdr, data []byte) []int {
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_RIGHTS {
		return fds
	}
	for ; len(data) >= 4; data = data[4:] {
		fds = append(fds, int(int32(binary.NativeEndian.Uint32(data))))
	}
	return fds
}
