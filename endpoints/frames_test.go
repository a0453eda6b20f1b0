//go:build linux

package endpoints

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"gvisor.dev/gvisor/pkg/refs"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	code := m.Run()
	refs.DoLeakCheck()
	os.Exit(code)
}

var (
	testSrcMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	testDstMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	testSrc4   = tcpip.AddrFrom4([4]byte{10, 0, 0, 1})
	testDst4   = tcpip.AddrFrom4([4]byte{10, 0, 0, 2})
	testSrc6   = tcpip.AddrFrom16([16]byte{0xfd, 15: 1})
	testDst6   = tcpip.AddrFrom16([16]byte{0xfd, 15: 2})
)

// frameSpec describes a test frame built with gVisor's header package.
type frameSpec struct {
	v6       bool
	udp      bool
	vlan     bool
	payload  int
	tcpFlags header.TCPFlags
	tcpOpts  int // bytes of TCP options (multiple of 4)
	seq      uint32
	ipID     uint16
	partial  bool // L4 checksum field holds the pseudo-header sum only
}

func (s frameSpec) l2() int {
	if s.vlan {
		return 18
	}
	return 14
}

func (s frameSpec) l3() int {
	if s.v6 {
		return header.IPv6MinimumSize
	}
	return header.IPv4MinimumSize
}

func (s frameSpec) l4hdr() int {
	if s.udp {
		return header.UDPMinimumSize
	}
	return header.TCPMinimumSize + s.tcpOpts
}

func testPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/251)
	}
	return p
}

// build returns the frame.
func (s frameSpec) build() []byte {
	l2, l3, l4 := s.l2(), s.l3(), s.l4hdr()
	f := make([]byte, l2+l3+l4+s.payload)
	ethType := header.IPv4ProtocolNumber
	if s.v6 {
		ethType = header.IPv6ProtocolNumber
	}
	eth := header.Ethernet(f)
	eth.Encode(&header.EthernetFields{SrcAddr: testSrcMAC, DstAddr: testDstMAC, Type: ethType})
	if s.vlan {
		copy(f[16:18], f[12:14])
		binary.BigEndian.PutUint16(f[12:], 0x8100)
		binary.BigEndian.PutUint16(f[14:], 100)
	}
	proto := header.TCPProtocolNumber
	if s.udp {
		proto = header.UDPProtocolNumber
	}
	src, dst := testSrc4, testDst4
	if s.v6 {
		src, dst = testSrc6, testDst6
		header.IPv6(f[l2:]).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(l4 + s.payload),
			TransportProtocol: proto,
			HopLimit:          64,
			SrcAddr:           src,
			DstAddr:           dst,
		})
	} else {
		ip := header.IPv4(f[l2:])
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(l3 + l4 + s.payload),
			ID:          s.ipID,
			TTL:         64,
			Protocol:    uint8(proto),
			SrcAddr:     src,
			DstAddr:     dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	copy(f[l2+l3+l4:], testPayload(s.payload))
	l4b := f[l2+l3:]
	var csumOff int
	if s.udp {
		header.UDP(l4b).Encode(&header.UDPFields{SrcPort: 5000, DstPort: 6000, Length: uint16(l4 + s.payload)})
		csumOff = udpCsumOffset
	} else {
		header.TCP(l4b).Encode(&header.TCPFields{
			SrcPort: 5000, DstPort: 6000, SeqNum: s.seq, AckNum: 77,
			DataOffset: uint8(l4), Flags: s.tcpFlags, WindowSize: 1000,
		})
		for i := header.TCPMinimumSize; i < l4; i++ {
			l4b[i] = 1 // NOP options
		}
		csumOff = tcpCsumOffset
	}
	xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(l4+s.payload))
	if s.partial {
		binary.BigEndian.PutUint16(l4b[csumOff:], xsum)
	} else {
		binary.BigEndian.PutUint16(l4b[csumOff:], ^checksum.Checksum(l4b, xsum))
	}
	return f
}

// vnet returns the virtio-net header a kernel would send with the frame as
// a GSO super-frame of segment size mss (0: plain frame with NEEDS_CSUM).
func (s frameSpec) vnet(mss int) VnetHdr {
	l4 := s.l2() + s.l3()
	h := VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: uint16(l4), HdrLen: uint16(l4 + s.l4hdr())}
	h.CsumOffset = tcpCsumOffset
	if s.udp {
		h.CsumOffset = udpCsumOffset
	}
	if mss > 0 {
		h.GSOSize = uint16(mss)
		switch {
		case s.udp:
			h.GSOType = VnetGSOUDPL4
		case s.v6:
			h.GSOType = VnetGSOTCPv6
		default:
			h.GSOType = VnetGSOTCPv4
		}
		if s.tcpFlags&header.TCPFlagCwr != 0 {
			h.GSOType |= VnetGSOECN
		}
	}
	return h
}

// checkFrame verifies every checksum of frame and returns its L4 payload
// and header fields of interest.
type parsedFrame struct {
	payload []byte
	ipID    uint16
	seq     uint32
	flags   header.TCPFlags
}

func checkFrame(t testing.TB, frame []byte) parsedFrame {
	t.Helper()
	var pf parsedFrame
	l2, ethType, ok := l2Len(frame)
	if !ok {
		t.Fatalf("frame too short: %d", len(frame))
	}
	var src, dst tcpip.Address
	var proto tcpip.TransportProtocolNumber
	var l4 []byte
	switch ethType {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(frame[l2:])
		if !ip.IsValid(len(frame) - l2) {
			t.Fatalf("invalid IPv4 header")
		}
		if int(ip.TotalLength()) != len(frame)-l2 {
			t.Fatalf("IPv4 total length %d, frame has %d", ip.TotalLength(), len(frame)-l2)
		}
		if !ip.IsChecksumValid() {
			t.Fatalf("bad IPv4 header checksum")
		}
		src, dst, proto = ip.SourceAddress(), ip.DestinationAddress(), ip.TransportProtocol()
		l4 = ip.Payload()
		pf.ipID = ip.ID()
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(frame[l2:])
		if int(ip.PayloadLength()) != len(frame)-l2-header.IPv6MinimumSize {
			t.Fatalf("IPv6 payload length %d, frame has %d", ip.PayloadLength(), len(frame)-l2-header.IPv6MinimumSize)
		}
		src, dst, proto = ip.SourceAddress(), ip.DestinationAddress(), ip.TransportProtocol()
		l4 = ip.Payload()
	default:
		t.Fatalf("ethertype %#x", ethType)
	}
	xsum := header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
	if got := checksum.Checksum(l4, xsum); got != 0xffff {
		t.Fatalf("bad L4 checksum (sum %#x)", got)
	}
	switch proto {
	case header.TCPProtocolNumber:
		tcp := header.TCP(l4)
		pf.payload, pf.seq, pf.flags = tcp.Payload(), tcp.SequenceNumber(), tcp.Flags()
	case header.UDPProtocolNumber:
		u := header.UDP(l4)
		if int(u.Length()) != len(l4) {
			t.Fatalf("UDP length %d, datagram %d", u.Length(), len(l4))
		}
		if u.Checksum() == 0 {
			t.Fatalf("UDP checksum 0")
		}
		pf.payload = u.Payload()
	}
	return pf
}

func (s frameSpec) String() string {
	return fmt.Sprintf("v6=%v udp=%v vlan=%v payload=%d", s.v6, s.udp, s.vlan, s.payload)
}
