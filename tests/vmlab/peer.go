package vmlab

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
)

// MaxFrame bounds the frames the connections below accept. QEMU's own
// receive buffer is 68 KiB (NET_BUFSIZE); a larger length prefix means the
// stream is out of step.
const MaxFrame = 69632

// FrameConn carries Ethernet frames over a QEMU netdev socket, with no
// virtio-net header: the first byte of a frame is its destination MAC.
type FrameConn interface {
	ReadFrame() ([]byte, error)
	WriteFrame(frame []byte) error
	Close() error
}

// streamConn is QEMU's stream framing: every frame is preceded by its
// length as a 4-byte big-endian integer (-netdev stream, and -netdev socket
// with a stream socket).
type streamConn struct {
	c  net.Conn
	r  *bufio.Reader
	wm sync.Mutex
}

// NewStreamConn frames c the way QEMU's stream and stream-socket netdevs
// do.
func NewStreamConn(c net.Conn) FrameConn {
	return &streamConn{c: c, r: bufio.NewReaderSize(c, 1<<16)}
}

func (s *streamConn) ReadFrame() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, fmt.Errorf("vmlab: stream frame length %d > %d: out of step", n, MaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *streamConn) WriteFrame(f []byte) error {
	b := make([]byte, 4+len(f))
	binary.BigEndian.PutUint32(b, uint32(len(f)))
	copy(b[4:], f)
	s.wm.Lock()
	defer s.wm.Unlock()
	_, err := s.c.Write(b)
	return err
}

func (s *streamConn) Close() error { return s.c.Close() }

// dgramConn is QEMU's datagram framing: one frame per datagram.
type dgramConn struct {
	c      *net.UnixConn
	remote *net.UnixAddr
}

// NewDgramConn frames a unix datagram socket the way QEMU's dgram netdev
// (and -netdev socket with a datagram fd) does: one frame per datagram.
// Frames go to remote, or, with remote nil, to c's connected peer.
func NewDgramConn(c *net.UnixConn, remote *net.UnixAddr) FrameConn {
	return &dgramConn{c: c, remote: remote}
}

func (d *dgramConn) ReadFrame() ([]byte, error) {
	b := make([]byte, MaxFrame+1)
	n, _, err := d.c.ReadFromUnix(b)
	if err != nil {
		return nil, err
	}
	return b[:n], nil
}

func (d *dgramConn) WriteFrame(f []byte) error {
	var err error
	if d.remote != nil {
		_, err = d.c.WriteToUnix(f, d.remote)
	} else {
		_, err = d.c.Write(f)
	}
	return err
}

func (d *dgramConn) Close() error { return d.c.Close() }

// Responder is a tiny IPv4 host on a FrameConn: it answers ARP requests
// and ICMP echo requests for IP, and records every frame it reads.
type Responder struct {
	MAC net.HardwareAddr
	IP  netip.Addr

	mu     sync.Mutex
	frames [][]byte
	sent   int
}

// Serve answers frames from c until reading fails, and returns that error
// (io.EOF or net.ErrClosed when the other side or Close ends it).
func (r *Responder) Serve(c FrameConn) error {
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.frames = append(r.frames, f)
		r.mu.Unlock()
		if reply := r.reply(f); reply != nil {
			if err := c.WriteFrame(reply); err != nil {
				return err
			}
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
		}
	}
}

// Frames returns the frames read so far.
func (r *Responder) Frames() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.frames...)
}

// Sent is how many replies the responder wrote.
func (r *Responder) Sent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

// ARPRequest describes an Ethernet ARP request frame (ethertype 0x0806,
// opcode 1): sender and target hardware and protocol addresses.
type ARPRequest struct {
	SrcMAC           net.HardwareAddr
	SenderIP, Target netip.Addr
}

// ParseARPRequest parses an untagged Ethernet/IPv4 ARP request.
func ParseARPRequest(f []byte) (ARPRequest, error) {
	if len(f) < 42 {
		return ARPRequest{}, errors.New("short frame")
	}
	if binary.BigEndian.Uint16(f[12:]) != 0x0806 {
		return ARPRequest{}, fmt.Errorf("ethertype %#04x, not ARP", binary.BigEndian.Uint16(f[12:]))
	}
	a := f[14:]
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != 0x0800 || a[4] != 6 || a[5] != 4 {
		return ARPRequest{}, errors.New("not Ethernet/IPv4 ARP")
	}
	if binary.BigEndian.Uint16(a[6:]) != 1 {
		return ARPRequest{}, errors.New("not a request")
	}
	return ARPRequest{
		SrcMAC:   net.HardwareAddr(append([]byte(nil), f[6:12]...)),
		SenderIP: netip.AddrFrom4([4]byte(a[14:18])),
		Target:   netip.AddrFrom4([4]byte(a[24:28])),
	}, nil
}

func (r *Responder) reply(f []byte) []byte {
	if len(f) < 14 {
		return nil
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0806:
		req, err := ParseARPRequest(f)
		if err != nil || req.Target != r.IP {
			return nil
		}
		out := make([]byte, 42)
		copy(out[0:6], f[6:12])
		copy(out[6:12], r.MAC)
		binary.BigEndian.PutUint16(out[12:], 0x0806)
		a := out[14:]
		binary.BigEndian.PutUint16(a[0:], 1)
		binary.BigEndian.PutUint16(a[2:], 0x0800)
		a[4], a[5] = 6, 4
		binary.BigEndian.PutUint16(a[6:], 2) // reply
		copy(a[8:14], r.MAC)
		ip := r.IP.As4()
		copy(a[14:18], ip[:])
		copy(a[18:24], f[6:12])
		copy(a[24:28], f[14+14:14+18])
		return out
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return nil
		}
		ihl := int(ip[0]&15) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || tot < ihl+8 || tot > len(ip) || ip[9] != 1 || netip.AddrFrom4([4]byte(ip[16:20])) != r.IP {
			return nil
		}
		if ip[ihl] != 8 { // echo request
			return nil
		}
		out := make([]byte, 14+tot)
		copy(out[0:6], f[6:12])
		copy(out[6:12], r.MAC)
		binary.BigEndian.PutUint16(out[12:], 0x0800)
		o := out[14:]
		copy(o, ip[:tot])
		copy(o[12:16], ip[16:20])
		copy(o[16:20], ip[12:16])
		o[8] = 64
		o[10], o[11] = 0, 0
		binary.BigEndian.PutUint16(o[10:], checksum(o[:ihl]))
		o[ihl] = 0 // echo reply
		o[ihl+2], o[ihl+3] = 0, 0
		binary.BigEndian.PutUint16(o[ihl+2:], checksum(o[ihl:tot]))
		return out
	}
	return nil
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
