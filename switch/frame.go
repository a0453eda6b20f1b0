package vswitch

import (
	"encoding/binary"
	"hash/maphash"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Ethernet and IP constants the classifier needs (include/uapi/linux/if_ether.h,
// in.h).
const (
	ethHeaderLen  = 14
	vlanHeaderLen = 4

	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100 // ETH_P_8021Q
	etherTypeQinQ  = 0x88a8 // ETH_P_8021AD
	etherTypePause = 0x8808 // ETH_P_PAUSE: MAC control, never flooded

	ipProtoTCP      = 6
	ipProtoUDP      = 17
	ipProtoSCTP     = 132
	ipProtoUDPLite  = 136
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6Fragment    = 44
	ipv6DestOptions = 60
)

// peekLen is how much of a frame the classifier copies to the stack: enough
// for Ethernet, two VLAN tags, an IPv6 header with a few extension headers
// and the L4 ports.
const peekLen = 160

// frame is what the classifier learns about a frame at ingress. It is a small
// value kept on the caller's stack: classifying allocates nothing.
type frame struct {
	dst, src  MAC
	etherType uint16 // after any VLAN tags
	l3off     int    // offset of the L3 header in the frame
	size      int    // whole frame, link header included
	ipv4Frag  bool   // IPv4 with MF set or a non-zero fragment offset
	hash      uint32
	plug      *Plug // the producer's batch, or nil
}

// peek copies up to len(buf) leading bytes of pkt's frame into buf.
func peek(pkt *stack.PacketBuffer, buf []byte) int { return CopyFrame(pkt, 0, buf) }

// CopyFrame copies up to len(dst) bytes of pkt's frame, from offset off,
// into dst without allocating or pulling up shared chunks, and returns
// how many it copied.
func CopyFrame(pkt *stack.PacketBuffer, off int, dst []byte) int {
	vl, voff := pkt.AsViewList()
	off += voff
	n := 0
	for v := vl.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
	}
	return n
}

// classify parses the frame headers from raw bytes and computes the flow
// hash. It reports false for a frame shorter than an Ethernet header.
func (s *Switch) classify(pkt *stack.PacketBuffer, f *frame, hb *[peekLen]byte) ([]byte, bool) {
	n := peek(pkt, hb[:])
	f.size = pkt.Size()
	if n < ethHeaderLen {
		return nil, false
	}
	h := hb[:n]
	parseFrame(h, f)
	f.hash = flowHash(s.seed, h, f)
	return h, true
}

// parseFrame fills the L2/L3 fields of f from b, which holds at least an
// Ethernet header.
func parseFrame(b []byte, f *frame) {
	copy(f.dst[:], b[0:6])
	copy(f.src[:], b[6:12])
	et := binary.BigEndian.Uint16(b[12:14])
	off := ethHeaderLen
	for i := 0; i < 2 && (et == etherTypeVLAN || et == etherTypeQinQ); i++ {
		if len(b) < off+vlanHeaderLen {
			break
		}
		et = binary.BigEndian.Uint16(b[off+2 : off+4])
		off += vlanHeaderLen
	}
	f.etherType = et
	f.l3off = off
	if et == etherTypeIPv4 && len(b) >= off+20 && b[off]>>4 == 4 {
		fragField := binary.BigEndian.Uint16(b[off+6 : off+8])
		f.ipv4Frag = fragField&0x3fff != 0 // MF or offset
	}
}

// flowHash is the flow hash computed once per frame at ingress: keyed with a
// random per-switch seed, over IPv4/IPv6 addresses and, unless the packet is a
// fragment, the TCP/UDP/SCTP ports; anything else hashes its Ethernet header.
// Like the kernel's flow dissector, it never returns 0.
func flowHash(seed maphash.Seed, b []byte, f *frame) uint32 {
	var key [40]byte
	k := 0
	off := f.l3off
	switch {
	case f.etherType == etherTypeIPv4 && len(b) >= off+20 && b[off]>>4 == 4:
		ihl := int(b[off]&0xf) * 4
		proto := b[off+9]
		k += copy(key[k:], b[off+12:off+20]) // saddr, daddr
		key[k] = proto
		k++
		if !f.ipv4Frag && hasPorts(proto) && ihl >= 20 && len(b) >= off+ihl+4 {
			k += copy(key[k:], b[off+ihl:off+ihl+4])
		}
	case f.etherType == etherTypeIPv6 && len(b) >= off+40 && b[off]>>4 == 6:
		k += copy(key[k:], b[off+8:off+40]) // saddr, daddr
		proto, l4 := ipv6Transport(b, off)
		key[k] = proto
		k++
		if l4 > 0 && len(b) >= l4+4 {
			k += copy(key[k:], b[l4:l4+4])
		}
	default:
		k += copy(key[k:], b[:ethHeaderLen])
	}
	h := maphash.Bytes(seed, key[:k])
	v := uint32(h) ^ uint32(h>>32)
	if v == 0 {
		v = 1
	}
	return v
}

func hasPorts(proto uint8) bool {
	switch proto {
	case ipProtoTCP, ipProtoUDP, ipProtoSCTP, ipProtoUDPLite:
		return true
	}
	return false
}

// ipv6Transport walks the common IPv6 extension headers that fit in b and
// returns the upper-layer protocol and the offset of its ports, or 0 when the
// packet is a fragment (ports are left out, as the kernel does for any
// fragment) or the ports are not in reach.
func ipv6Transport(b []byte, off int) (uint8, int) {
	next := b[off+6]
	p := off + 40
	for i := 0; i < 4; i++ {
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOptions:
			if len(b) < p+2 {
				return next, 0
			}
			next, p = b[p], p+(int(b[p+1])+1)*8
		case ipv6Fragment:
			if len(b) < p+8 {
				return next, 0
			}
			return b[p], 0
		default:
			if hasPorts(next) {
				return next, p
			}
			return next, 0
		}
	}
	return next, 0
}

// selectQueue is the macvtap queue choice (drivers/net/tap.c tap_get_queue):
// with one queue, that queue; else the flow hash modulo the number of queues;
// with no hash, the recorded receive queue folded into range; else the first.
func selectQueue(n int, hash uint32, rxQueue int) int {
	switch {
	case n <= 1:
		return 0
	case hash != 0:
		return int(hash % uint32(n))
	case rxQueue >= 0:
		return rxQueue % n
	}
	return 0
}
