package vswitch

import (
	"errors"
	"fmt"
)

// Sentinel errors for the control-plane rules of the kernel's macvlan
// (drivers/net/macvlan.c). Each names the errno the kernel returns.
var (
	// ErrAddrInUse: the MAC is the lower's or an up sibling's (EADDRINUSE).
	ErrAddrInUse = errors.New("MAC address in use")
	// ErrAddrNotAvail: the MAC is a group or zero address (EADDRNOTAVAIL).
	ErrAddrNotAvail = errors.New("MAC address not a valid unicast address")
	// ErrMTU: the MTU is out of range or above the lower's (EINVAL).
	ErrMTU = errors.New("MTU out of range")
	// ErrPassthru: passthru is exclusive on a lower, and no port may change
	// into or out of it (EINVAL).
	ErrPassthru = errors.New("passthru mode is exclusive")
	// ErrNotSource: a source-MAC operation on a port not in source mode
	// (EINVAL).
	ErrNotSource = errors.New("operation needs source mode")
	// ErrExists: a port with that name already exists (EEXIST).
	ErrExists = errors.New("port already exists")
	// ErrNotFound: no such port (ENODEV).
	ErrNotFound = errors.New("no such port")
	// ErrInvalid: any other invalid argument (EINVAL).
	ErrInvalid = errors.New("invalid argument")
	// ErrClosed: the port was removed or the switch closed.
	ErrClosed = errors.New("port removed")
)

// PortError is a control-plane refusal. It names the port, the operation,
// the field at fault and, through Err, the rule that was broken; test it
// with errors.Is against the sentinels above.
type PortError struct {
	Port  string // port name
	Op    string // "add", "set up", "set mac", "set mtu", "set mode", ...
	Field string // the PortConfig field at fault, in config-file words: "mac", "mtu", "mode", "source_macs", ...
	Other string // the other port of a conflict (the MAC's owner, the passthru port), if any
	Index int    // the port's index in CheckPorts' argument (0 elsewhere)
	Err   error
}

func (e *PortError) Error() string {
	return fmt.Sprintf("port %q: %s: %v", e.Port, e.Op, e.Err)
}

// Unwrap returns the rule that was broken.
func (e *PortError) Unwrap() error { return e.Err }

func portErr(name, op, field string, err error, format string, args ...any) error {
	if format != "" {
		err = fmt.Errorf("%w: "+format, append([]any{err}, args...)...)
	}
	return &PortError{Port: name, Op: op, Field: field, Err: err}
}
