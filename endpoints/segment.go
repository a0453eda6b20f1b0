//go:build linux

package endpoints

import (
	"encoding/binary"
	"errors"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Errors of the software offload fallbacks.
var (
	// ErrNotGSO: Segment was given a frame whose header has no GSO type.
	ErrNotGSO = errors.New("frame is not a GSO super-frame")
	// ErrUnsupportedGSO: UFO (VIRTIO_NET_HDR_GSO_UDP), which would need IP
	// fragmentation, is not implemented.
	ErrUnsupportedGSO = errors.New("unsupported GSO type")
	// ErrMalformedFrame: the L2-L4 headers do not match the virtio-net
	// header, or are truncated.
	ErrMalformedFrame = errors.New("malformed frame")
	// ErrSegmentTooBig: a USO segment (whose size the sender fixed) does not
	// fit the MTU.
	ErrSegmentTooBig = errors.New("segment exceeds MTU")
	// ErrTooManySegments: the frame would be cut into more than
	// MaxGSOSegments segments.
	ErrTooManySegments = errors.New("too many segments")
)

// MaxFrameSize is the largest frame the endpoints read or build: a 64 KiB
// IP packet behind an Ethernet header with two VLAN tags.
const MaxFrameSize = 0xffff + header.EthernetMinimumSize + 8

// Segment performs in software what a NIC does with a TSO or USO
// super-frame: it cuts frame (a whole Ethernet frame) into frames carrying
// at most h.GSOSize bytes of L4 payload each, and calls emit with each one
// in order. emit borrows seg only for the duration of the call; returning
// false stops early. It returns the number of segments emitted.
//
// Every segment gets complete, correct checksums whatever the super-frame
// held (partial or none): the IPv4 header checksum, and the TCP or UDP
// checksum over a pseudo-header with the segment's own length. IPv4
// segments get consecutive IP IDs starting at the super-frame's; IPv6
// payload lengths are rewritten. TCP segments get consecutive sequence
// numbers; FIN and PSH stay only on the last segment and CWR only on the
// first (the ECN rule of TSO_ECN). USO segments are complete datagrams.
//
// mtu, if positive, is the receiver's IP MTU: TCP segments are made smaller
// than gso_size if needed to fit it; USO segments, whose boundaries are the
// sender's datagrams, fail with ErrSegmentTooBig instead.
//
// A frame that would need more than MaxGSOSegments segments fails with
// ErrTooManySegments before any is emitted.
//
// scratch is where segments are built; pass one of at least MaxFrameSize
// bytes to avoid an allocation.
func Segment(frame []byte, h VnetHdr, mtu int, scratch []byte, emit func(seg []byte) bool) (int, error) {
	gso := h.GSOType &^ VnetGSOECN
	var wantProto uint8
	switch gso {
	case VnetGSONone:
		return 0, ErrNotGSO
	case VnetGSOTCPv4, VnetGSOTCPv6:
		wantProto = uint8(header.TCPProtocolNumber)
	case VnetGSOUDPL4:
		wantProto = uint8(header.UDPProtocolNumber)
	default:
		return 0, ErrUnsupportedGSO
	}
	if h.GSOSize == 0 {
		return 0, ErrMalformedFrame
	}
	l2, ethType, ok := l2Len(frame)
	if !ok {
		return 0, ErrMalformedFrame
	}
	l4, proto, ok := l4Offset(frame, l2, ethType)
	if !ok || proto != wantProto ||
		(gso == VnetGSOTCPv4 && ethType != header.IPv4ProtocolNumber) ||
		(gso == VnetGSOTCPv6 && ethType != header.IPv6ProtocolNumber) {
		return 0, ErrMalformedFrame
	}
	isV4 := ethType == header.IPv4ProtocolNumber
	if isV4 && int(header.IPv4(frame[l2:]).TotalLength()) < len(frame)-l2 {
		// Trailing bytes beyond the IP packet (Ethernet padding) are not
		// payload. Trim them.
		frame = frame[:l2+int(header.IPv4(frame[l2:]).TotalLength())]
	}
	if !isV4 {
		if pl := int(binary.BigEndian.Uint16(frame[l2+4:])); pl != 0 && l2+header.IPv6MinimumSize+pl < len(frame) {
			frame = frame[:l2+header.IPv6MinimumSize+pl]
		}
	}
	thlen := header.UDPMinimumSize
	if wantProto == uint8(header.TCPProtocolNumber) {
		if len(frame) < l4+header.TCPMinimumSize {
			return 0, ErrMalformedFrame
		}
		thlen = int(header.TCP(frame[l4:]).DataOffset())
		if thlen < header.TCPMinimumSize {
			return 0, ErrMalformedFrame
		}
	}
	hdrs := l4 + thlen
	if len(frame) < hdrs {
		return 0, ErrMalformedFrame
	}
	mss := int(h.GSOSize)
	if mtu > 0 {
		if room := mtu - (hdrs - l2); room < mss {
			if wantProto == uint8(header.UDPProtocolNumber) || room <= 0 {
				return 0, ErrSegmentTooBig
			}
			mss = room
		}
	}
	if len(scratch) < hdrs+mss {
		// Only when the caller did not give enough scratch.
		scratch = make([]byte, hdrs+mss)
	}
	payload := frame[hdrs:]
	nseg := (len(payload) + mss - 1) / mss
	if nseg == 0 {
		nseg = 1
	}
	if nseg > MaxGSOSegments {
		return 0, ErrTooManySegments
	}
	var (
		ipID     uint16
		seq      uint32
		tcpFlags header.TCPFlags
	)
	if isV4 {
		ipID = header.IPv4(frame[l2:]).ID()
	}
	if wantProto == uint8(header.TCPProtocolNumber) {
		t := header.TCP(frame[l4:])
		seq, tcpFlags = t.SequenceNumber(), t.Flags()
	}
	src, dst := ipAddrs(frame[l2:], isV4)
	for i := 0; i < nseg; i++ {
		chunk := payload[min(i*mss, len(payload)):min((i+1)*mss, len(payload))]
		seg := scratch[:hdrs+len(chunk)]
		copy(seg, frame[:hdrs])
		copy(seg[hdrs:], chunk)
		if isV4 {
			ip := header.IPv4(seg[l2:])
			ip.SetTotalLength(uint16(len(seg) - l2))
			ip.SetID(ipID + uint16(i))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		} else {
			binary.BigEndian.PutUint16(seg[l2+4:], uint16(len(seg)-l2-header.IPv6MinimumSize))
		}
		l4len := len(seg) - l4
		if wantProto == uint8(header.TCPProtocolNumber) {
			t := header.TCP(seg[l4:])
			t.SetSequenceNumber(seq + uint32(i*mss))
			f := tcpFlags
			if i > 0 {
				f &^= header.TCPFlagCwr
			}
			if i < nseg-1 {
				f &^= header.TCPFlagFin | header.TCPFlagPsh
			}
			t.SetFlags(uint8(f))
			t.SetChecksum(0)
			xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(l4len))
			t.SetChecksum(^checksum.Checksum(seg[l4:], xsum))
		} else {
			u := header.UDP(seg[l4:])
			u.SetLength(uint16(l4len))
			u.SetChecksum(0)
			xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(l4len))
			c := ^checksum.Checksum(seg[l4:], xsum)
			if c == 0 {
				c = 0xffff // RFC 768: zero means "no checksum"
			}
			u.SetChecksum(c)
		}
		if !emit(seg) {
			return i + 1, nil
		}
	}
	return nseg, nil
}

// ipAddrs returns the source and destination of the IP header at ip.
func ipAddrs(ip []byte, isV4 bool) (src, dst tcpip.Address) {
	if isV4 {
		h := header.IPv4(ip)
		return tcpip.AddrFrom4Slice(h.SourceAddressSlice()), tcpip.AddrFrom4Slice(h.DestinationAddressSlice())
	}
	h := header.IPv6(ip)
	return tcpip.AddrFrom16Slice(h.SourceAddressSlice()), tcpip.AddrFrom16Slice(h.DestinationAddressSlice())
}

// FinishChecksum completes the partial checksum of a NEEDS_CSUM frame in
// place, as a NIC does for CHECKSUM_PARTIAL: the one's complement sum of
// frame[csumStart:] (whose checksum field holds the pseudo-header sum) is
// complemented and stored at csumStart+csumOffset. A result of zero is
// stored as 0xFFFF, which is equivalent for TCP and required for UDP.
func FinishChecksum(frame []byte, csumStart, csumOffset int) error {
	if csumStart < 0 || csumOffset < 0 || csumStart+csumOffset+2 > len(frame) {
		return ErrMalformedFrame
	}
	c := ^checksum.Checksum(frame[csumStart:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[csumStart+csumOffset:], c)
	return nil
}

// copyPacket copies the whole frame of pkt into dst, which must be at least
// pkt.Size() bytes, and returns the copied prefix of dst.
func copyPacket(dst []byte, pkt *stack.PacketBuffer) []byte {
	views, off := pkt.AsViewList()
	n := 0
	for v := views.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
	}
	return dst[:n]
}

// peekPacket copies up to len(dst) bytes of the start of pkt's frame into
// dst without allocating, for header inspection.
func peekPacket(dst []byte, pkt *stack.PacketBuffer) []byte { return copyPacket(dst, pkt) }

// SegmentPacket applies the software offload fallbacks to an outbound
// packet, for a receiver that takes neither GSO nor partial checksums: a
// GSO packet (pkt.GSOOptions TCP type, MSS below its payload) is cut into
// segments that fit mtu (an IP MTU; 0 means no limit beyond MSS), and a
// NEEDS_CSUM packet gets its checksum completed. It borrows pkt and returns
// new packets that the caller owns (Reset the list when done). A packet that
// needs neither is returned as a single copy-on-write clone.
func SegmentPacket(pkt *stack.PacketBuffer, mtu int) (stack.PacketBufferList, error) {
	var out stack.PacketBufferList
	var head [256]byte
	frameLen := pkt.Size()
	h := VnetFromGSO(pkt.GSOOptions, peekPacket(head[:], pkt), frameLen)
	if !h.NeedsCsum() && !h.IsGSO() {
		c := pkt.Clone()
		c.GSOOptions = stack.GSO{}
		out.PushBack(c)
		return out, nil
	}
	flat := make([]byte, frameLen) // Slow path: one flat copy to rewrite.
	copyPacket(flat, pkt)
	if !h.IsGSO() {
		if err := FinishChecksum(flat, int(h.CsumStart), int(h.CsumOffset)); err != nil {
			return out, err
		}
		out.PushBack(newFramePacket(flat, pkt.Hash))
		return out, nil
	}
	scratch := make([]byte, MaxFrameSize)
	_, err := Segment(flat, h, mtu, scratch, func(seg []byte) bool {
		out.PushBack(newFramePacket(seg, pkt.Hash))
		return true
	})
	if err != nil {
		out.Reset()
	}
	return out, err
}

// newFramePacket makes an inbound-style packet holding a copy of frame.
func newFramePacket(frame []byte, hash uint32) *stack.PacketBuffer {
	p := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	p.Hash = hash
	return p
}
