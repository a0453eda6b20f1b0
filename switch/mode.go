package vswitch

import (
	"errors"
	"fmt"
)

// Mode is a port's forwarding mode, with the kernel's macvlan semantics
// (include/uapi/linux/if_link.h MACVLAN_MODE_*). The values are the kernel's
// bit values, so a Mode also works as a member of a mode mask.
type Mode uint32

// The five macvlan modes.
const (
	ModePrivate  Mode = 1  // MACVLAN_MODE_PRIVATE: never talks to siblings.
	ModeVEPA     Mode = 2  // MACVLAN_MODE_VEPA: everything via the external switch.
	ModeBridge   Mode = 4  // MACVLAN_MODE_BRIDGE: direct delivery to bridge siblings.
	ModePassthru Mode = 8  // MACVLAN_MODE_PASSTHRU: the only port, takes the lower's MAC.
	ModeSource   Mode = 16 // MACVLAN_MODE_SOURCE: receives by source MAC.
)

// DefaultMode is what an unset mode means: VEPA, as in the kernel and
// ip-link(8) (CNI's macvlan plugin picks bridge instead; we follow the kernel).
const DefaultMode = ModeVEPA

// ErrUnknownMode reports a mode name or value that is none of the five.
var ErrUnknownMode = errors.New("unknown macvlan mode")

// String returns the mode's ip-link(8) name.
func (m Mode) String() string {
	switch m {
	case ModePrivate:
		return "private"
	case ModeVEPA:
		return "vepa"
	case ModeBridge:
		return "bridge"
	case ModePassthru:
		return "passthru"
	case ModeSource:
		return "source"
	}
	return fmt.Sprintf("Mode(%d)", uint32(m))
}

// Valid reports whether m is one of the five modes.
func (m Mode) Valid() bool {
	switch m {
	case ModePrivate, ModeVEPA, ModeBridge, ModePassthru, ModeSource:
		return true
	}
	return false
}

// ParseMode maps an ip-link(8) mode name to a Mode. The empty string means
// DefaultMode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "":
		return DefaultMode, nil
	case "private":
		return ModePrivate, nil
	case "vepa":
		return ModeVEPA, nil
	case "bridge":
		return ModeBridge, nil
	case "passthru":
		return ModePassthru, nil
	case "source":
		return ModeSource, nil
	}
	return 0, fmt.Errorf("%w %q (want private, vepa, bridge, passthru or source)", ErrUnknownMode, s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) {
	if !m.Valid() {
		return nil, fmt.Errorf("%w %d", ErrUnknownMode, uint32(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
