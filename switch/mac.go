package vswitch

import (
	"errors"
	"fmt"
)

// MAC is an Ethernet address. It is a comparable value type, so it keys maps
// without allocation; String is for logs and APIs only.
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ErrBadMAC reports a string that is not a 48-bit MAC address.
var ErrBadMAC = errors.New("bad MAC address")

// ParseMAC parses "02:00:00:00:00:01" (also with '-' separators).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return m, fmt.Errorf("%w: %q", ErrBadMAC, s)
	}
	for i := 0; i < 6; i++ {
		hi, ok1 := unhex(s[3*i])
		lo, ok2 := unhex(s[3*i+1])
		if !ok1 || !ok2 {
			return MAC{}, fmt.Errorf("%w: %q", ErrBadMAC, s)
		}
		if i < 5 && s[3*i+2] != ':' && s[3*i+2] != '-' {
			return MAC{}, fmt.Errorf("%w: %q", ErrBadMAC, s)
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// String formats the address as lower-case colon-separated hex.
func (m MAC) String() string {
	const hexdig = "0123456789abcdef"
	var b [17]byte
	for i, v := range m {
		if i > 0 {
			b[3*i-1] = ':'
		}
		b[3*i] = hexdig[v>>4]
		b[3*i+1] = hexdig[v&0xf]
	}
	return string(b[:])
}

// IsGroup reports whether the address is multicast or broadcast (I/G bit).
func (m MAC) IsGroup() bool { return m[0]&1 != 0 }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == Broadcast }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsValidUnicast reports whether m may name a port or a source-mode remote:
// neither a group address nor all zeros (the kernel's is_valid_ether_addr).
func (m MAC) IsValidUnicast() bool { return !m.IsGroup() && !m.IsZero() }
