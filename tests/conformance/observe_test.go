package conformance

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rawSocket is an AF_PACKET socket bound to an interface inside a network
// namespace, used both to send a case's frames and to observe who got them.
type rawSocket struct {
	fd      int
	ifindex int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openRaw opens the socket on a thread that has joined namespace ns; the
// socket stays in that namespace.
func openRaw(ns, ifname string) (*rawSocket, error) {
	type result struct {
		s   *rawSocket
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{err: err}
			return
		}
		s, err := func() (*rawSocket, error) {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return nil, err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
			if err != nil {
				return nil, err
			}
			if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
				unix.Close(fd)
				return nil, err
			}
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			return &rawSocket{fd: fd, ifindex: ifi.Index}, nil
		}()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		ch <- result{s, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("raw socket on %s in %s: %w", ifname, ns, r.err)
	}
	return r.s, nil
}

func (s *rawSocket) close() { unix.Close(s.fd) }

func (s *rawSocket) send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6})
}

// drain reads everything queued and counts the incoming frames whose
// payload contains label (frames this interface sent are not observations).
func (s *rawSocket) drain(label []byte) int {
	buf := make([]byte, 70000)
	n := 0
	for {
		m, from, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return n
		}
		if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if label != nil && bytes.Contains(buf[:m], label) {
			n++
		}
	}
}

// frame builds a labelled Ethernet frame.
func frame(dst, src net.HardwareAddr, etherType uint16, label string, size int) []byte {
	b := make([]byte, max(size, 60))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:14], etherType)
	copy(b[14:], label)
	return b
}

// settle is how long a case waits for floods, which both the kernel and
// macvsw deliver asynchronously (switch/BEHAVIOUR.md §8.1: at least 0.5 s).
const settle = 500 * time.Millisecond
