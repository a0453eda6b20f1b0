package vswitch

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Anti-spoofing (port security). Kernel macvlan forwards whatever source a
// port sends with; a port with SpoofCheck on may only send as itself, as
// libvirt's clean-traffic filter and OVN's port security enforce
// (BEHAVIOUR.md §9):
//   - the Ethernet source is the port's MAC (a source-mode port: or one of
//     its source MACs);
//   - with AllowedIPs: the IPv4 or IPv6 source, an ARP sender and an IPv6
//     Neighbor Advertisement's target are allowed addresses; ARP's sender
//     hardware address and ND's link-layer options are the port's MAC.
//
// Allowed without a listed address, so that a host can configure itself:
// IPv4 0.0.0.0 to UDP port 67 (DHCP), an ARP probe (sender 0.0.0.0), IPv6
// :: for ICMPv6 (duplicate address detection, MLD reports) and the
// port's own EUI-64 link-local address.

// guard is a port's compiled anti-spoofing rules, rebuilt with its view.
type guard struct {
	macs []MAC          // allowed Ethernet sources
	ips  []netip.Prefix // nil: addresses are not checked
	ll   netip.Addr     // the port MAC's EUI-64 link-local address
}

func newGuard(st *portState) *guard {
	if !st.spoofCheck {
		return nil
	}
	g := &guard{macs: []MAC{st.mac}, ips: st.allowedIPs}
	if st.mode == ModeSource {
		g.macs = append(g.macs, sortedMACs(st.sources)...)
	}
	g.ll = linkLocal(st.mac)
	return g
}

// linkLocal is fe80::/64 with the modified EUI-64 interface identifier of m.
func linkLocal(m MAC) netip.Addr {
	a := [16]byte{0: 0xfe, 1: 0x80}
	a[8], a[9], a[10] = m[0]^2, m[1], m[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = m[3], m[4], m[5]
	return netip.AddrFrom16(a)
}

const (
	etherTypeARP   = 0x0806
	ipProtoICMPv6  = 58
	ndNeighSolicit = 135
	ndNeighAdvert  = 136
	ndRouterSolic  = 133
	ndOptSrcLL     = 1
	ndOptTargetLL  = 2
	dhcpServerPort = 67
)

// check returns 0 if the frame may enter the switch, else the reason. b
// is the frame's first bytes (classify's copy, up to peekLen).
func (g *guard) check(b []byte, f *frame) DropReason {
	if !slices.Contains(g.macs, f.src) {
		return DropSpoofMAC
	}
	if g.ips == nil {
		return 0
	}
	off := f.l3off
	switch f.etherType {
	case etherTypeIPv4:
		if len(b) < off+20 || b[off]>>4 != 4 {
			return DropSpoofIP
		}
		src := netip.AddrFrom4([4]byte(b[off+12 : off+16]))
		if g.allowed(src) {
			return 0
		}
		// DHCP: 0.0.0.0 to a server's port, before the host has an
		// address.
		ihl := int(b[off]&0xf) * 4
		if src.IsUnspecified() && b[off+9] == ipProtoUDP && !f.ipv4Frag && len(b) >= off+ihl+4 &&
			binary.BigEndian.Uint16(b[off+ihl+2:]) == dhcpServerPort {
			return 0
		}
		return DropSpoofIP
	case etherTypeARP:
		// Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4.
		if len(b) < off+28 || binary.BigEndian.Uint16(b[off:]) != 1 ||
			binary.BigEndian.Uint16(b[off+2:]) != etherTypeIPv4 || b[off+4] != 6 || b[off+5] != 4 {
			return DropSpoofIP
		}
		if !slices.Contains(g.macs, MAC(b[off+8:off+14])) {
			return DropSpoofMAC
		}
		spa := netip.AddrFrom4([4]byte(b[off+14 : off+18]))
		if spa.IsUnspecified() || g.allowed(spa) {
			return 0
		}
		return DropSpoofIP
	case etherTypeIPv6:
		if len(b) < off+40 || b[off]>>4 != 6 {
			return DropSpoofIP
		}
		src := netip.AddrFrom16([16]byte(b[off+8 : off+24]))
		proto, l4 := ipv6Upper(b, off)
		icmp := proto == ipProtoICMPv6 && l4 > 0
		if !g.allowed(src) && !(src.IsUnspecified() && proto == ipProtoICMPv6) {
			return DropSpoofIP
		}
		if !icmp || len(b) < l4+4 {
			return 0
		}
		return g.checkND(b, l4)
	}
	return 0
}

// allowed reports whether a is one of the port's addresses.
func (g *guard) allowed(a netip.Addr) bool {
	if a == g.ll {
		return true
	}
	for _, p := range g.ips {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkND checks an ICMPv6 neighbor discovery message at b[l4:]: a
// Neighbor Advertisement's target must be allowed, and the link-layer
// address options of NS, NA and RS must be the port's.
func (g *guard) checkND(b []byte, l4 int) DropReason {
	var opts int
	switch b[l4] {
	case ndNeighAdvert:
		if len(b) < l4+24 {
			return DropSpoofIP
		}
		if !g.allowed(netip.AddrFrom16([16]byte(b[l4+8 : l4+24]))) {
			return DropSpoofIP
		}
		opts = l4 + 24
	case ndNeighSolicit:
		opts = l4 + 24
	case ndRouterSolic:
		opts = l4 + 8
	default:
		return 0
	}
	for opts+8 <= len(b) {
		typ, n := b[opts], int(b[opts+1])*8
		if n == 0 {
			return DropSpoofIP // a zero-length option is invalid (RFC 4861 §4.6)
		}
		if (typ == ndOptSrcLL || typ == ndOptTargetLL) && n >= 8 && !slices.Contains(g.macs, MAC(b[opts+2:opts+8])) {
			return DropSpoofMAC
		}
		opts += n
	}
	return 0
}

// ipv6Upper walks the IPv6 extension headers in b and returns the upper
// protocol and its offset, or 0 when it is out of reach or the packet is a
// non-first fragment.
func ipv6Upper(b []byte, off int) (uint8, int) {
	next := b[off+6]
	p := off + 40
	for range 8 {
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOptions:
			if len(b) < p+2 {
				return next, 0
			}
			next, p = b[p], p+(int(b[p+1])+1)*8
		case ipv6Fragment:
			if len(b) < p+8 || binary.BigEndian.Uint16(b[p+2:])&^7 != 0 {
				return next, 0
			}
			next, p = b[p], p+8
		default:
			if p > len(b) {
				return next, 0
			}
			return next, p
		}
	}
	return next, 0
}
