package config

import (
	"errors"
	"fmt"
	"io/fs"
)

// Host answers CheckHost's questions about the machine. cmd/macvsw gives
// one that asks netlink in the right namespace (package endpoints); tests
// give a fake. Errors wrapping fs.ErrNotExist mean "absent".
type Host interface {
	// NetNS checks that path names a network namespace (not a FIFO, a
	// regular file, another kind of namespace), without blocking.
	NetNS(path string) error
	// Interface checks that an interface of that name exists in the
	// namespace at netns ("" is the daemon's).
	Interface(netns, name string) error
}

// CheckHost checks what the file names on this host: every namespace path
// is a network namespace, and lower.interface and every afpacket
// interface exist in their namespaces. Parse never looks at the host, so a
// config can be checked on another machine; `macvsw config check` calls
// both. Errors are [*FieldError]s of class ErrMissing (wrapping
// fs.ErrNotExist) or ErrInvalidValue.
func (c *Config) CheckHost(h Host) error {
	var errs []*FieldError
	check := func(path, what string, err error) {
		switch {
		case err == nil:
			return
		case errors.Is(err, fs.ErrNotExist):
			err = classWrap(ErrMissing, err, "%s does not exist (%v)", what, err)
		default:
			err = classWrap(ErrInvalidValue, err, "%s: %v", what, err)
		}
		errs = append(errs, c.src.fieldError(path, err))
	}
	if c.Lower.Interface != "" {
		check("lower.interface", fmt.Sprintf("interface %s", c.Lower.Interface), h.Interface("", c.Lower.Interface))
	}
	for i, p := range c.Ports {
		if p.Tap != nil && p.Tap.Netns != "" {
			check(fmt.Sprintf("ports[%d].tap.netns", i), "network namespace "+p.Tap.Netns, h.NetNS(p.Tap.Netns))
		}
		if a := p.AFPacket; a != nil && a.Interface != "" {
			if a.Netns != "" {
				if err := h.NetNS(a.Netns); err != nil {
					check(fmt.Sprintf("ports[%d].afpacket.netns", i), "network namespace "+a.Netns, err)
					continue
				}
			}
			check(fmt.Sprintf("ports[%d].afpacket.interface", i), fmt.Sprintf("interface %s", a.Interface), h.Interface(a.Netns, a.Interface))
		}
	}
	return joinErrors(errs)
}
