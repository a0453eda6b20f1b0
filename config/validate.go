package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	vswitch "github.com/macvsw/macvsw/switch"
)

// Validate checks c as a whole: required values, ranges, and the rules
// between fields and between ports (spec macvlan.md §1 and §5). Parse calls
// it; call it again after changing a Config in code. Errors are located in
// the file c was parsed from, when there is one. Validate does not look at
// the host; see CheckHost.
func (c *Config) Validate() error { return joinErrors(c.validate()) }

type checker struct {
	src  *source
	errs []*FieldError
}

func (k *checker) fail(path string, class error, format string, args ...any) {
	k.errs = append(k.errs, k.src.fieldError(path, classErrorf(class, format, args...)))
}

// inRange reports v outside lo..hi; hint says what the range means.
func (k *checker) inRange(path string, v, lo, hi int, hint string) {
	if v < lo || v > hi {
		k.fail(path, ErrInvalidValue, "%d out of range (want %d..%d%s)", v, lo, hi, hint)
	}
}

func (k *checker) mtu(path string, v int, what string) {
	if v != 0 && (v < MinMTU || v > MaxMTU) {
		k.fail(path, ErrInvalidValue, "%d out of range (want 0 to %s, or %d..%d)", v, what, MinMTU, MaxMTU)
	}
}

func (c *Config) validate() []*FieldError {
	k := &checker{src: c.src}

	// lower
	switch l := c.Lower; {
	case l.Interface == "":
		k.fail("lower.interface", ErrMissing, "required: the NIC the ports sit on")
	default:
		if msg := badIfname(l.Interface); msg != "" {
			k.fail("lower.interface", ErrInvalidValue, "%s", msg)
		}
	}
	k.inRange("lower.queues", c.Lower.Queues, 0, MaxLowerQueues, "; 0 means one per CPU")
	k.mtu("lower.mtu", c.Lower.MTU, "follow the interface")

	// broadcast
	k.inRange("broadcast.queue_len", c.Broadcast.QueueLen, 0, MaxBroadcastQueueLen, "")
	k.inRange("broadcast.cutoff", c.Broadcast.Cutoff, math.MinInt32, math.MaxInt32, "; negative delivers every flood inline")

	// control
	switch s := c.Control.Socket; {
	case s == "":
		k.fail("control.socket", ErrMissing, "required: path of the control socket")
	case !filepath.IsAbs(s):
		k.fail("control.socket", ErrInvalidValue, "%q is not an absolute path", s)
	case len(s) > maxSocketPath || strings.IndexByte(s, 0) >= 0:
		k.fail("control.socket", ErrInvalidValue, "%q does not fit a unix socket address (at most %d bytes, no NUL)", s, maxSocketPath)
	}
	if g := c.Control.Group; g != "" && !validGroup(g) {
		k.fail("control.group", ErrInvalidValue, "bad group name %q (want a name of [A-Za-z0-9_.-] or a numeric gid)", g)
	}

	// metrics
	if l := c.Metrics.Listen; l != "" {
		if msg := badHostPort(l); msg != "" {
			k.fail("metrics.listen", ErrInvalidValue, "%s", msg)
		}
	}

	// log
	if _, ok := parseLogFormat(string(c.Log.Format)); !ok {
		k.fail("log.format", ErrInvalidValue, "unknown log format %q (want text or json)", c.Log.Format)
	}
	if _, ok := logLevelString(c.Log.Level); !ok {
		k.fail("log.level", ErrInvalidValue, "unsupported log level %v (want debug, info, warn or error)", c.Log.Level)
	}

	c.validatePorts(k)
	return k.errs
}

func (c *Config) validatePorts(k *checker) {
	names := map[string]int{}
	macs := map[vswitch.MAC]int{}
	afpackets := map[string]int{}
	type tapKey struct{ netns, ifname string }
	taps := map[tapKey]int{}
	line := func(path string) string {
		if fe := k.src.fieldError(path, nil); fe.Line > 0 {
			return fmt.Sprintf(" (line %d)", fe.Line)
		}
		return ""
	}

	for i := range c.Ports {
		p := &c.Ports[i]
		at := func(f string) string { return fmt.Sprintf("ports[%d].%s", i, f) }

		nameOK := false
		switch {
		case p.Name == "":
			k.fail(at("name"), ErrMissing, "required: every port needs a name")
		case badPortName(p.Name) != "":
			k.fail(at("name"), ErrInvalidValue, "%s", badPortName(p.Name))
		default:
			nameOK = true
			if j, dup := names[p.Name]; dup {
				k.fail(at("name"), ErrDuplicate, "port name %q already used by ports[%d]%s", p.Name, j, line(fmt.Sprintf("ports[%d].name", j)))
			} else {
				names[p.Name] = i
			}
		}

		if !p.Mode.Valid() {
			k.fail(at("mode"), ErrInvalidValue, "%v is not a mode (want private, vepa, bridge, passthru or source)", p.Mode)
		}
		if p.Mode == vswitch.ModePassthru && len(c.Ports) > 1 {
			k.fail(at("mode"), ErrConflict, "a passthru port must be the only port, and there are %d (the kernel refuses siblings of passthru)", len(c.Ports))
		}

		switch {
		case p.Mode == vswitch.ModePassthru:
			if !p.MAC.IsZero() {
				k.fail(at("mac"), ErrConflict, "a passthru port takes the lower's MAC; remove mac")
			}
		case p.MAC.IsZero():
			k.fail(at("mac"), ErrMissing, "required: the port has no MAC address")
		case !p.MAC.IsValidUnicast():
			k.fail(at("mac"), ErrInvalidValue, "%s", errNotUnicast(p.MAC))
		default:
			if j, dup := macs[p.MAC]; dup {
				k.fail(at("mac"), ErrDuplicate, "MAC %s already used by port %q%s (the kernel refuses to bring the second port up: EADDRINUSE)", p.MAC, c.Ports[j].Name, line(fmt.Sprintf("ports[%d].mac", j)))
			} else {
				macs[p.MAC] = i
			}
		}

		k.mtu(at("mtu"), p.MTU, "inherit lower.mtu")
		if lm := c.Lower.MTU; lm > 0 && p.MTU > lm && p.MTU <= MaxMTU {
			k.fail(at("mtu"), ErrInvalidValue, "%d above lower.mtu %d (want %d..%d, or 0 to inherit; the kernel refuses a port MTU above its lower's)", p.MTU, lm, MinMTU, lm)
		}
		k.inRange(at("queues"), p.Queues, 1, MaxPortQueues, "")
		k.inRange(at("queue_len"), p.QueueLen, 1, MaxPortQueueLen, "")
		k.inRange(at("bcqueuelen"), p.BCQueueLen, 0, MaxBroadcastQueueLen, "")

		if len(p.Multicast) > 0 && p.AllMulticast {
			k.fail(at("multicast"), ErrConflict, "groups are only used with allmulticast: false")
		}
		checkMACList(k, at("multicast"), p.Multicast, func(m vswitch.MAC) string {
			if !m.IsGroup() {
				return fmt.Sprintf("%s is not a multicast address (the low bit of the first byte must be 1)", m)
			}
			return ""
		})

		if p.Mode != vswitch.ModeSource {
			if len(p.SourceMACs) > 0 {
				k.fail(at("source_macs"), ErrConflict, "only allowed in source mode (mode is %v)", p.Mode)
			}
			if p.NoDst {
				k.fail(at("nodst"), ErrConflict, "only allowed in source mode (mode is %v)", p.Mode)
			}
		}
		checkMACList(k, at("source_macs"), p.SourceMACs, func(m vswitch.MAC) string {
			if !m.IsValidUnicast() {
				return errNotUnicast(m).Error()
			}
			return ""
		})
		if p.NoPromisc && p.Mode != vswitch.ModePassthru {
			k.fail(at("nopromisc"), ErrConflict, "only allowed in passthru mode (mode is %v)", p.Mode)
		}

		switch {
		case p.Tap != nil && p.AFPacket != nil:
			k.fail(at("afpacket"), ErrConflict, "a port is either tap or afpacket, not both")
		case p.Tap == nil && p.AFPacket == nil:
			k.fail(fmt.Sprintf("ports[%d]", i), ErrMissing, "no port kind: set tap or afpacket")
		}

		if t := p.Tap; t != nil {
			switch {
			case t.Netns == "":
				k.fail(at("tap.netns"), ErrMissing, "required: path of a network namespace, e.g. /var/run/netns/NAME")
			case !filepath.IsAbs(t.Netns) || strings.IndexByte(t.Netns, 0) >= 0:
				k.fail(at("tap.netns"), ErrInvalidValue, "%q is not an absolute path", t.Netns)
			}
			switch {
			case t.Ifname == "":
				if nameOK {
					k.fail(at("tap.ifname"), ErrMissing, "required: the interface name inside the netns")
				}
			case badIfname(t.Ifname) != "":
				if nameOK || t.Ifname != p.Name {
					k.fail(at("tap.ifname"), ErrInvalidValue, "%s", badIfname(t.Ifname))
				}
			default:
				key := tapKey{t.Netns, t.Ifname}
				if j, dup := taps[key]; dup {
					k.fail(at("tap.ifname"), ErrDuplicate, "interface %q in %s already used by port %q", t.Ifname, t.Netns, c.Ports[j].Name)
				} else {
					taps[key] = i
				}
			}
			seen := map[netip.Prefix]int{}
			for j, a := range t.Addresses {
				path := fmt.Sprintf("ports[%d].tap.addresses[%d]", i, j)
				if !a.IsValid() {
					k.fail(path, ErrInvalidValue, "invalid prefix")
					continue
				}
				if first, dup := seen[a]; dup {
					k.fail(path, ErrDuplicate, "address %s repeats addresses[%d]", a, first)
					continue
				}
				seen[a] = j
			}
		}

		if a := p.AFPacket; a != nil {
			switch {
			case a.Interface == "":
				k.fail(at("afpacket.interface"), ErrMissing, "required: the interface to attach")
			case badIfname(a.Interface) != "":
				k.fail(at("afpacket.interface"), ErrInvalidValue, "%s", badIfname(a.Interface))
			case a.Interface == c.Lower.Interface:
				k.fail(at("afpacket.interface"), ErrConflict, "%q is lower.interface; the lower cannot also be a port", a.Interface)
			default:
				if j, dup := afpackets[a.Interface]; dup {
					k.fail(at("afpacket.interface"), ErrDuplicate, "interface %q already used by port %q", a.Interface, c.Ports[j].Name)
				} else {
					afpackets[a.Interface] = i
				}
			}
		}
	}
}

// checkMACList reports elements that bad rejects and repeated elements.
func checkMACList(k *checker, path string, list []vswitch.MAC, bad func(vswitch.MAC) string) {
	seen := map[vswitch.MAC]int{}
	for j, m := range list {
		epath := fmt.Sprintf("%s[%d]", path, j)
		if msg := bad(m); msg != "" {
			k.fail(epath, ErrInvalidValue, "%s", msg)
			continue
		}
		if first, dup := seen[m]; dup {
			k.fail(epath, ErrDuplicate, "%s repeats %s[%d]", m, path[strings.LastIndexByte(path, '.')+1:], first)
			continue
		}
		seen[m] = j
	}
}

// badIfname explains why s is not a Linux interface name (dev_valid_name
// in net/core/dev.c), or returns "".
func badIfname(s string) string {
	switch {
	case s == "":
		return "empty interface name"
	case len(s) > MaxIfnameLen:
		return fmt.Sprintf("interface name %q longer than %d bytes", s, MaxIfnameLen)
	case s == "." || s == "..":
		return fmt.Sprintf("bad interface name %q", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Sprintf("bad interface name %q (no '/', ':', spaces or control characters)", s)
		}
	}
	return ""
}

// badPortName explains why s is not a port name, or returns "". Port names
// are stricter than interface names so they are safe in logs, metrics
// labels and file names.
func badPortName(s string) string {
	if len(s) > MaxIfnameLen {
		return fmt.Sprintf("port name %q longer than %d bytes", s, MaxIfnameLen)
	}
	if s == "." || s == ".." {
		return fmt.Sprintf("bad port name %q", s)
	}
	for _, r := range s {
		if !isNameChar(r) {
			return fmt.Sprintf("bad port name %q (want [A-Za-z0-9_.-])", s)
		}
	}
	return ""
}

func isNameChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.' || r == '-'
}

// validGroup accepts a numeric gid or a portable group name (POSIX
// portable filename characters, not starting with '-', at most 32 bytes).
func validGroup(s string) bool {
	if len(s) > 32 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !isNameChar(r) {
			return false
		}
	}
	return true
}

// badHostPort explains why s is not host:port with a numeric port, or
// returns "". The host may be empty (all addresses), an IP or a DNS name.
func badHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q: port %q is not a number in 1..65535", s, port)
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	for _, r := range host {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.') {
			return fmt.Sprintf("%q: host %q is neither an IP address nor a DNS name", s, host)
		}
	}
	return ""
}
