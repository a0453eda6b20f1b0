//go:build linux

package endpoints

import (
	"encoding/binary"
	"errors"
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Sizes of the virtio-net header (include/uapi/linux/virtio_net.h).
const (
	// VnetHdrSize is struct virtio_net_hdr: flags, gso_type, hdr_len,
	// gso_size, csum_start, csum_offset.
	VnetHdrSize = 10
	// VnetHdrMrgSize is struct virtio_net_hdr_mrg_rxbuf: the above plus
	// num_buffers. It is what QEMU and vhost use, so taps we open are set to
	// it (TUNSETVNETHDRSZ); num_buffers is zero in both directions.
	VnetHdrMrgSize = 12
)

// Flags of the virtio-net header.
const (
	VnetFlagNeedsCsum = 0x1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	VnetFlagDataValid = 0x2 // VIRTIO_NET_HDR_F_DATA_VALID
)

// GSO types of the virtio-net header.
const (
	VnetGSONone  = 0x00 // VIRTIO_NET_HDR_GSO_NONE
	VnetGSOTCPv4 = 0x01 // VIRTIO_NET_HDR_GSO_TCPV4
	VnetGSOUDP   = 0x03 // VIRTIO_NET_HDR_GSO_UDP (UFO, IP fragmentation)
	VnetGSOTCPv6 = 0x04 // VIRTIO_NET_HDR_GSO_TCPV6
	VnetGSOUDPL4 = 0x05 // VIRTIO_NET_HDR_GSO_UDP_L4 (USO)
	VnetGSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN, OR-ed into a TCP type
)

// Offsets of the checksum field from the start of the L4 header.
const (
	tcpCsumOffset = 16 // offsetof(struct tcphdr, check)
	udpCsumOffset = 6  // offsetof(struct udphdr, check)
)

// udpMaxSegments is the kernel's UDP_MAX_SEGMENTS: a USO frame may carry at
// most this many gso_size payloads (include/linux/udp.h).
const udpMaxSegments = 128

// gsoByFrags is the kernel's GSO_BY_FRAGS marker (0xFFFF), never a valid
// gso_size from userspace.
const gsoByFrags = 0xffff

// Bounds on what one GSO frame may cost, beyond the kernel's own checks
// (BEHAVIOUR.md §7.4 item 10, §9 item 22). The kernel takes any gso_size
// from 1 up, so a 64 KiB TSO frame with gso_size 1 from a sandbox is
// 65,000 segments for whoever has to cut it: 20 such frames made the
// switch write 1.3 M segments to a port without offloads.
const (
	// MinGSOSize is the smallest gso_size a frame that is still GSO after
	// the kernel's checks may carry: TCP_MIN_MSS (88, include/net/tcp.h),
	// the smallest MSS Linux accepts for a connection. It bounds a frame
	// to MaxGSOSegments segments, about one per 88 bytes received: cutting
	// a super-frame costs no more segments than the sender could have
	// sent as minimum-size frames in the first place.
	MinGSOSize = 88
	// MaxGSOSegments is the most segments one frame is cut into: a 64 KiB
	// payload at MinGSOSize. Software segmentation (Segment) refuses more,
	// which can still happen when the receiver's MTU makes segments
	// smaller than gso_size, or a GSO packet comes from an in-process
	// stack with a smaller MSS.
	MaxGSOSegments = (GSOMaxSize - 1 + MinGSOSize - 1) / MinGSOSize
)

// VnetHdr is a virtio-net header in host form. Fields are the legacy
// "virtio16" values, which are little endian on every host this package
// builds for (tap with TUNSETVNETLE unset is native order, and gVisor
// supports only little-endian hosts). gVisor's header.VirtioNetHeader
// getters read big endian in the pinned version, so we do not use them.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// ParseVnetHdr decodes the first VnetHdrSize bytes of b. It reports false if
// b is shorter than that. num_buffers (bytes 10-11 of the 12-byte form) is
// ignored, as the kernel ignores it on write.
func ParseVnetHdr(b []byte) (VnetHdr, bool) {
	if len(b) < VnetHdrSize {
		return VnetHdr{}, false
	}
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}, true
}

// Encode writes h into b, which must be at least VnetHdrSize long. Bytes of b
// past VnetHdrSize (num_buffers of the 12-byte form, or any larger header
// size a tap was configured with) are zeroed.
func (h VnetHdr) Encode(b []byte) {
	_ = b[VnetHdrSize-1]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	clear(b[VnetHdrSize:])
}

// NeedsCsum reports whether the frame carries a partial checksum.
func (h VnetHdr) NeedsCsum() bool { return h.Flags&VnetFlagNeedsCsum != 0 }

// shifted returns h for the same frame with n bytes inserted before its
// network header (a VLAN tag put back): the offsets move, the rest stays.
func (h VnetHdr) shifted(n uint16) VnetHdr {
	if h.NeedsCsum() {
		h.CsumStart += n
	}
	if h.HdrLen != 0 {
		h.HdrLen += n
	}
	return h
}

// IsGSO reports whether the frame is a segmentation-offload super-frame.
func (h VnetHdr) IsGSO() bool { return h.GSOType&^VnetGSOECN != VnetGSONone }

// String formats h for logs and test failures.
func (h VnetHdr) String() string {
	return fmt.Sprintf("vnet{flags:%#x gso:%#x hdr_len:%d gso_size:%d csum:%d+%d}",
		h.Flags, h.GSOType, h.HdrLen, h.GSOSize, h.CsumStart, h.CsumOffset)
}

// VnetReason names why a virtio-net header was rejected. The values mirror
// the kernel's write validation (macvtap tap_get_user and
// virtio_net_hdr_to_skb; BEHAVIOUR.md §7.4 items 1-7), so each can be counted
// separately, plus macvsw's own bound on segments (item 10).
type VnetReason uint8

// Rejection reasons, in the order the kernel checks them.
const (
	// VnetOK is not a rejection; it exists so the zero value means "none".
	VnetOK VnetReason = iota
	// VnetShortWrite: the write is shorter than the vnet header (item 1).
	VnetShortWrite
	// VnetHdrLenTooBig: hdr_len exceeds the frame (item 2).
	VnetHdrLenTooBig
	// VnetRunt: the frame is shorter than an Ethernet header (item 3).
	VnetRunt
	// VnetBadGSOType: unknown gso_type (item 4).
	VnetBadGSOType
	// VnetBadGSOSize: gso_size 0 with a GSO type, or 0xFFFF (item 4).
	VnetBadGSOSize
	// VnetCsumRange: NEEDS_CSUM start/offset outside the frame, or start
	// inside the minimum IP header (items 2 and 5).
	VnetCsumRange
	// VnetGSOProto: GSO without NEEDS_CSUM whose L3/L4 protocol does not
	// match the GSO type (item 6).
	VnetGSOProto
	// VnetUSO: UDP_L4 without NEEDS_CSUM, csum_offset != 6, too many
	// segments; or TCP GSO with NEEDS_CSUM and csum_offset != 16 (item 7).
	VnetUSO
	// VnetGSOSizeMin: a frame still GSO after the kernel's checks (its
	// payload above gso_size) with gso_size below MinGSOSize. The kernel
	// takes it; macvsw refuses to amplify it (item 10).
	VnetGSOSizeMin

	numVnetReasons
)

// NumVnetReasons is the number of VnetReason values, for arrays of counters.
const NumVnetReasons = int(numVnetReasons)

var vnetReasonNames = [numVnetReasons]string{
	VnetOK:           "ok",
	VnetShortWrite:   "short_write",
	VnetHdrLenTooBig: "hdr_len",
	VnetRunt:         "runt",
	VnetBadGSOType:   "gso_type",
	VnetBadGSOSize:   "gso_size",
	VnetCsumRange:    "csum_range",
	VnetGSOProto:     "gso_proto",
	VnetUSO:          "uso",
	VnetGSOSizeMin:   "gso_size_min",
}

// String returns the counter name of r, such as "gso_type".
func (r VnetReason) String() string {
	if r < numVnetReasons {
		return vnetReasonNames[r]
	}
	return fmt.Sprintf("VnetReason(%d)", uint8(r))
}

// ParseVnetReason is the inverse of VnetReason.String.
func ParseVnetReason(s string) (VnetReason, error) {
	for i, n := range vnetReasonNames {
		if n == s {
			return VnetReason(i), nil
		}
	}
	return 0, fmt.Errorf("unknown vnet reason %q", s)
}

// ErrVnetHdr is matched (errors.Is) by every *VnetError.
var ErrVnetHdr = errors.New("invalid virtio-net header")

// VnetError is a rejected virtio-net header. Use errors.As to get the Reason.
type VnetError struct {
	Reason VnetReason
}

func (e *VnetError) Error() string { return "invalid virtio-net header: " + e.Reason.String() }

// Unwrap returns ErrVnetHdr.
func (e *VnetError) Unwrap() error { return ErrVnetHdr }

// vnetErrors holds one preallocated error per reason so that rejecting a
// frame does not allocate.
var vnetErrors = func() (a [numVnetReasons]*VnetError) {
	for i := range a {
		a[i] = &VnetError{Reason: VnetReason(i)}
	}
	return a
}()

func (r VnetReason) err() error {
	if r == VnetOK {
		return nil
	}
	return vnetErrors[r]
}

// ValidateVnetWrite checks a write of hdrSize bytes of virtio-net header
// followed by an Ethernet frame, as a tap would receive it from a guest, and
// returns the parsed header. It reproduces the kernel's checks; on success
// the returned header is normalized: a GSO frame whose payload fits in one
// segment becomes a plain frame (gso_type and gso_size cleared), and
// DATA_VALID is dropped. Errors are *VnetError.
func ValidateVnetWrite(b []byte, hdrSize int) (VnetHdr, error) {
	if hdrSize < VnetHdrSize {
		hdrSize = VnetHdrSize
	}
	if len(b) < hdrSize {
		return VnetHdr{}, VnetShortWrite.err()
	}
	h, _ := ParseVnetHdr(b)
	frame := b[hdrSize:]
	return h.Check(frame, len(frame))
}

// Check validates h for a frame of frameLen bytes whose first len(head)
// bytes are head (head may be the whole frame, or a prefix holding at least
// its L2-L4 headers). See ValidateVnetWrite for the result.
func (h VnetHdr) Check(head []byte, frameLen int) (VnetHdr, error) {
	h, r := h.check(head, frameLen)
	return h, r.err()
}

// check is Check without the error interface, for the receive loops.
func (h VnetHdr) check(head []byte, frameLen int) (VnetHdr, VnetReason) {
	if len(head) > frameLen {
		head = head[:frameLen]
	}
	// Item 2: hdr_len, as the guest gave it, must fit in the frame; with
	// NEEDS_CSUM the checksum field must too (the kernel raises hdr_len to
	// cover it before comparing).
	if int(h.HdrLen) > frameLen {
		return h, VnetHdrLenTooBig
	}
	if h.NeedsCsum() && int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
		return h, VnetCsumRange
	}
	// Item 3.
	if frameLen < header.EthernetMinimumSize {
		return h, VnetRunt
	}
	h.Flags &^= VnetFlagDataValid
	gso := h.GSOType &^ VnetGSOECN
	if h.GSOType == VnetGSONone {
		if h.NeedsCsum() && int(h.CsumStart) < header.IPv4MinimumSize {
			return h, VnetCsumRange
		}
		h.GSOSize = 0
		return h, VnetOK
	}
	// Item 4. thlen is the minimum L4 header the kernel insists on.
	var ipProto uint8
	var thlen int
	switch gso {
	case VnetGSOTCPv4, VnetGSOTCPv6:
		ipProto, thlen = uint8(header.TCPProtocolNumber), header.TCPMinimumSize
	case VnetGSOUDP, VnetGSOUDPL4:
		ipProto, thlen = uint8(header.UDPProtocolNumber), header.UDPMinimumSize
	default:
		return h, VnetBadGSOType
	}
	if h.GSOSize == 0 || h.GSOSize == gsoByFrags {
		return h, VnetBadGSOSize
	}
	var l4off int
	if h.NeedsCsum() {
		// Item 5.
		start, off := int(h.CsumStart), int(h.CsumOffset)
		if start+max(thlen, off+2) > frameLen {
			return h, VnetCsumRange
		}
		minNH := header.IPv4MinimumSize
		if gso == VnetGSOTCPv6 {
			minNH = header.IPv6MinimumSize
		}
		if start < minNH {
			return h, VnetCsumRange
		}
		l4off = start
	} else {
		// Item 6: find the L4 protocol the way the flow dissector does.
		l3, ethType, ok := l3Offset(head)
		if !ok {
			return h, VnetGSOProto
		}
		switch {
		case gso == VnetGSOTCPv4 && ethType != header.IPv4ProtocolNumber,
			gso == VnetGSOTCPv6 && ethType != header.IPv6ProtocolNumber:
			return h, VnetGSOProto
		}
		off, proto, ok := l4Offset(head, l3, ethType)
		if !ok || proto != ipProto || off+thlen > frameLen {
			return h, VnetGSOProto
		}
		l4off = off
	}
	// Item 7.
	payloadOff := l4off + thlen
	switch gso {
	case VnetGSOUDPL4:
		if !h.NeedsCsum() || h.CsumOffset != udpCsumOffset ||
			frameLen-payloadOff > int(h.GSOSize)*udpMaxSegments ||
			h.GSOType&VnetGSOECN != 0 {
			return h, VnetUSO
		}
	case VnetGSOTCPv4, VnetGSOTCPv6:
		if h.NeedsCsum() && h.CsumOffset != tcpCsumOffset {
			return h, VnetUSO
		}
	case VnetGSOUDP:
		// UFO counts the UDP header as payload.
		payloadOff -= thlen
	}
	// Item 8: too small to be GSO.
	if frameLen-payloadOff <= int(h.GSOSize) {
		h.GSOType, h.GSOSize = VnetGSONone, 0
		return h, VnetOK
	}
	// Item 10, ours: no more than MaxGSOSegments segments.
	if h.GSOSize < MinGSOSize {
		return h, VnetGSOSizeMin
	}
	return h, VnetOK
}

// vlanTPIDs are the EtherTypes of an 802.1Q / 802.1ad tag.
func isVLAN(t uint16) bool { return t == 0x8100 || t == 0x88a8 }

// l2Len returns the length of the Ethernet header of frame including up to
// two VLAN tags, and the EtherType after them.
func l2Len(frame []byte) (int, tcpip.NetworkProtocolNumber, bool) {
	if len(frame) < header.EthernetMinimumSize {
		return 0, 0, false
	}
	off := 12
	t := binary.BigEndian.Uint16(frame[off:])
	for i := 0; i < 2 && isVLAN(t); i++ {
		off += 4
		if len(frame) < off+2 {
			return 0, 0, false
		}
		t = binary.BigEndian.Uint16(frame[off:])
	}
	return off + 2, tcpip.NetworkProtocolNumber(t), true
}

// l3Offset is l2Len for callers that want the L3 start.
func l3Offset(frame []byte) (int, tcpip.NetworkProtocolNumber, bool) { return l2Len(frame) }

// l4Offset walks the IP header at frame[l3:] and returns the offset of the L4
// header and its protocol. IPv6 extension headers that the kernel's flow
// dissector skips are skipped; a non-first fragment has no L4 header.
func l4Offset(frame []byte, l3 int, ethType tcpip.NetworkProtocolNumber) (int, uint8, bool) {
	switch ethType {
	case header.IPv4ProtocolNumber:
		if len(frame) < l3+header.IPv4MinimumSize {
			return 0, 0, false
		}
		ip := header.IPv4(frame[l3:])
		if ip[0]>>4 != 4 {
			return 0, 0, false
		}
		ihl := int(ip.HeaderLength())
		if ihl < header.IPv4MinimumSize || ip.FragmentOffset() != 0 {
			return 0, 0, false
		}
		return l3 + ihl, ip.Protocol(), true
	case header.IPv6ProtocolNumber:
		if len(frame) < l3+header.IPv6MinimumSize || frame[l3]>>4 != 6 {
			return 0, 0, false
		}
		next := frame[l3+6]
		off := l3 + header.IPv6MinimumSize
		for i := 0; i < 8; i++ {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(frame) < off+8 {
					return 0, 0, false
				}
				next, off = frame[off], off+8*(int(frame[off+1])+1)
			case 44: // fragment
				if len(frame) < off+8 {
					return 0, 0, false
				}
				if binary.BigEndian.Uint16(frame[off+2:])&0xfff8 != 0 {
					return 0, 0, false
				}
				next, off = frame[off], off+8
			default:
				return off, next, true
			}
		}
		return 0, 0, false
	}
	return 0, 0, false
}

// GSO converts h into gVisor's GSO options for a frame whose link header
// (Ethernet plus any VLAN tags) is l2len bytes: L3HdrLen is the distance
// from the end of the link header to csum_start. USO and UFO have no gVisor
// type; for them Type is GSONone and ok is false (see doc.go for how
// endpoints handle them). A header without NEEDS_CSUM and without GSO gives
// the zero GSO.
func (h VnetHdr) GSO(l2len int) (g stack.GSO, ok bool) {
	if h.NeedsCsum() {
		g.NeedsCsum = true
		g.CsumOffset = h.CsumOffset
		if int(h.CsumStart) > l2len {
			g.L3HdrLen = h.CsumStart - uint16(l2len)
		}
	}
	switch h.GSOType &^ VnetGSOECN {
	case VnetGSONone:
		return g, true
	case VnetGSOTCPv4:
		g.Type = stack.GSOTCPv4
	case VnetGSOTCPv6:
		g.Type = stack.GSOTCPv6
	default:
		return g, false
	}
	g.MSS = h.GSOSize
	g.MaxSize = GSOMaxSize
	return g, true
}

// GSOMaxSize is the largest GSO frame the endpoints accept or emit: the
// 16-bit IP total length limit.
const GSOMaxSize = 1 << 16

// VnetFromGSO builds the virtio-net header for an outbound frame carrying
// gVisor GSO options g. frame must hold at least the frame's L2-L4 headers
// and frameLen is the whole frame's length; the link header length (VLAN
// tags included) and the TCP header length are read from it. A GSO frame
// whose payload fits in one MSS is sent as a plain frame, as gVisor's
// fdbased does. ECN is set for a TCP super-frame whose CWR flag is set, so
// that the receiver's segmentation clears CWR after the first segment.
func VnetFromGSO(g stack.GSO, frame []byte, frameLen int) VnetHdr {
	var h VnetHdr
	if !g.NeedsCsum && (g.Type == stack.GSONone || g.Type == stack.GSOGvisor) {
		return h
	}
	l2, _, ok := l2Len(frame)
	if !ok {
		return h
	}
	l4 := l2 + int(g.L3HdrLen)
	if g.NeedsCsum {
		h.Flags = VnetFlagNeedsCsum
		h.CsumStart = uint16(l4)
		h.CsumOffset = g.CsumOffset
		h.HdrLen = uint16(min(l4+int(g.CsumOffset)+2, frameLen))
	}
	if g.Type != stack.GSOTCPv4 && g.Type != stack.GSOTCPv6 {
		return h
	}
	thlen := header.TCPMinimumSize
	if len(frame) >= l4+header.TCPMinimumSize {
		tcp := header.TCP(frame[l4:])
		if d := int(tcp.DataOffset()); d >= header.TCPMinimumSize {
			thlen = d
		}
		if tcp.Flags()&header.TCPFlagCwr != 0 {
			h.GSOType |= VnetGSOECN
		}
	}
	h.HdrLen = uint16(min(l4+thlen, frameLen))
	if frameLen-(l4+thlen) <= int(g.MSS) || g.MSS == 0 {
		h.GSOType = VnetGSONone
		return h
	}
	if g.Type == stack.GSOTCPv4 {
		h.GSOType |= VnetGSOTCPv4
	} else {
		h.GSOType |= VnetGSOTCPv6
	}
	h.GSOSize = g.MSS
	return h
}
