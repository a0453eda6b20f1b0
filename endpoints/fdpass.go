//go:build linux

package endpoints

import (
	"bytes"
	"fmt"
	"net"

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
// shorter or blank) and the FDs, which the caller owns (set close-on-exec).
// Pass them to AdoptTap. If the message carried more FDs than max or was
// truncated, every received FD is closed and an error returned.
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
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return "", nil, fmt.Errorf("receive fds: parse control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			closeFDs(fds)
			return "", nil, fmt.Errorf("receive fds: %w", err)
		}
		fds = append(fds, got...)
	}
	if flags&unix.MSG_CTRUNC != 0 || len(fds) > max {
		closeFDs(fds)
		return "", nil, fmt.Errorf("receive fds: more than %d fds sent", max)
	}
	if len(fds) == 0 {
		return "", nil, fmt.Errorf("receive fds: message carried no fds")
	}
	for _, fd := range fds {
		unix.CloseOnExec(fd)
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
