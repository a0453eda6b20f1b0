package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	vswitch "github.com/macvsw/macvsw/switch"
)

// Validate checks c as a whole: required values, ranges, and the rules
// between fields and between ports (BEHAVIOUR.md §1 and §5). Parse calls
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

	c.Reassembly.validate(k)

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
	validateAllow(k, &c.Control)

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
	afpackets := map[string]int{}
	sockets := map[string]int{}
	type tapKey struct{ netns, ifname string }
	taps := map[tapKey]int{}
	for i := range c.Ports {
		p := &c.Ports[i]
		base := fmt.Sprintf("ports[%d]", i)
		at := func(f string) string { return joinPath(base, f) }
		validatePort(k, p, base)
		if t := p.Tap; t != nil && t.Netns != "" && t.Ifname != "" && badIfname(t.Ifname) == "" {
			key := tapKey{t.Netns, t.Ifname}
			if j, dup := taps[key]; dup {
				k.fail(at("tap.ifname"), ErrDuplicate, "interface %q in %s already used by port %q%s", t.Ifname, t.Netns, c.Ports[j].Name, k.line(fmt.Sprintf("ports[%d].tap.ifname", j)))
			} else {
				taps[key] = i
			}
		}
		if a := p.AFPacket; a != nil && a.Interface != "" && badIfname(a.Interface) == "" {
			key := a.Netns + "\x00" + a.Interface
			switch j, dup := afpackets[key]; {
			case a.Interface == c.Lower.Interface && a.Netns == "":
				k.fail(at("afpacket.interface"), ErrConflict, "%q is lower.interface; the lower cannot also be a port", a.Interface)
			case dup:
				k.fail(at("afpacket.interface"), ErrDuplicate, "interface %q already used by port %q%s", a.Interface, c.Ports[j].Name, k.line(fmt.Sprintf("ports[%d].afpacket.interface", j)))
			default:
				afpackets[key] = i
			}
		}
		if so := p.Socket; so != nil {
			for _, f := range []struct{ key, v string }{{"listen", so.Listen}, {"peer", so.Peer}} {
				if f.v == "" {
					continue
				}
				if j, dup := sockets[f.v]; dup {
					k.fail(at("socket."+f.key), ErrDuplicate, "path %s already used by port %q", f.v, c.Ports[j].Name)
				} else if f.v == c.Control.Socket {
					k.fail(at("socket."+f.key), ErrConflict, "%s is control.socket", f.v)
				} else {
					sockets[f.v] = i
				}
			}
		}
	}
	c.checkSwitchRules(k)
}

// checkSwitchRules applies the switch's own control-plane rules
// (vswitch.CheckPorts: the kernel's refusals, in one place) to the ports
// in file order, and locates each refusal in the file.
func (c *Config) checkSwitchRules(k *checker) {
	cfgs := make([]vswitch.PortConfig, len(c.Ports))
	for i := range c.Ports {
		cfgs[i] = c.Ports[i].SwitchConfig()
	}
	lower := vswitch.LowerInfo{MTU: uint32(max(c.Lower.MTU, 0))}
	reported := map[string]bool{}
	for _, fe := range k.errs {
		reported[fe.Field] = true
	}
	for _, e := range vswitch.CheckPorts(lower, cfgs) {
		path := fmt.Sprintf("ports[%d].%s", e.Index, e.Field)
		if e.Field == "" {
			path = fmt.Sprintf("ports[%d]", e.Index)
		}
		if reported[path] {
			continue // the file's own check already said it
		}
		reported[path] = true
		k.errs = append(k.errs, k.src.fieldError(path, c.switchRuleError(e, k)))
	}
}

// switchRuleError words a switch refusal for the file: its class, what
// the kernel would do, and where the other port is.
func (c *Config) switchRuleError(e *vswitch.PortError, k *checker) error {
	other := c.line(k, e.Other, e.Field)
	p := c.Ports[e.Index]
	switch {
	case errors.Is(e, vswitch.ErrExists):
		for j := range e.Index {
			if c.Ports[j].Name == p.Name {
				return classErrorf(ErrDuplicate, "port name %q already used by ports[%d]%s", p.Name, j, k.line(fmt.Sprintf("ports[%d].name", j)))
			}
		}
		return classErrorf(ErrDuplicate, "port name %q already used", p.Name)
	case errors.Is(e, vswitch.ErrAddrInUse) && e.Other != "":
		return classErrorf(ErrDuplicate, "MAC %s already used by port %q%s (the kernel refuses to bring the second port up: EADDRINUSE)", p.MAC, e.Other, other)
	case errors.Is(e, vswitch.ErrPassthru) && e.Other != "":
		return classErrorf(ErrConflict, "port %q%s is in passthru mode, which must be the only port (the kernel refuses its siblings)", e.Other, c.line(k, e.Other, "mode"))
	case errors.Is(e, vswitch.ErrPassthru):
		return classErrorf(ErrConflict, "a passthru port must be the only port, and there are %d (the kernel refuses passthru with siblings)", len(c.Ports))
	case errors.Is(e, vswitch.ErrNotSource):
		return classErrorf(ErrConflict, "only allowed in source mode (mode is %v)", p.Mode)
	case errors.Is(e, vswitch.ErrMTU):
		return classErrorf(ErrInvalidValue, "%d above lower.mtu %d (want %d..%d, or 0 to inherit; the kernel refuses a port MTU above its lower's)", p.MTU, c.Lower.MTU, MinMTU, c.Lower.MTU)
	case errors.Is(e, vswitch.ErrUnknownMode):
		return classErrorf(ErrInvalidValue, "%v is not a mode (want private, vepa, bridge, passthru or source)", p.Mode)
	case e.Field == "nopromisc":
		return classErrorf(ErrConflict, "only allowed in passthru mode (mode is %v)", p.Mode)
	}
	return classWrap(ErrInvalidValue, e, "%v", e.Err)
}

// line returns " (line N)" for the field of the port named name, or "".
func (c *Config) line(k *checker, name, field string) string {
	for j := range c.Ports {
		if name != "" && c.Ports[j].Name == name {
			return k.line(fmt.Sprintf("ports[%d].%s", j, field))
		}
	}
	return ""
}

// validatePort checks one port's fields on their own: names, ranges, the
// port kind, and what would be ignored. Rules between ports, and the
// switch's own rules, are checked by validatePorts.
func validatePort(k *checker, p *Port, base string) {
	at := func(f string) string { return joinPath(base, f) }
	nameOK := false
	switch {
	case p.Name == "":
		k.fail(at("name"), ErrMissing, "required: every port needs a name")
	case badPortName(p.Name) != "":
		k.fail(at("name"), ErrInvalidValue, "%s", badPortName(p.Name))
	default:
		nameOK = true
	}
	if p.Mode == vswitch.ModePassthru && !p.MAC.IsZero() {
		k.fail(at("mac"), ErrConflict, "a passthru port takes the lower's MAC; remove mac")
	}
	k.mtu(at("mtu"), p.MTU, "inherit lower.mtu")
	k.inRange(at("queues"), p.Queues, 1, MaxPortQueues, "")
	k.inRange(at("queue_len"), p.QueueLen, 1, MaxPortQueueLen, "")
	k.inRange(at("bcqueuelen"), p.BCQueueLen, 0, MaxBroadcastQueueLen, "")
	checkMACList(k, at("multicast"), p.Multicast)
	checkMACList(k, at("source_macs"), p.SourceMACs)

	kinds := 0
	for _, k := range []bool{p.Tap != nil, p.AFPacket != nil, p.Socket != nil} {
		if k {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		k.fail(base, ErrConflict, "a port is one of tap, afpacket or socket, not several")
	case kinds == 0:
		k.fail(base, ErrMissing, "no port kind: set tap, afpacket or socket")
	}
	if t := p.Tap; t != nil {
		switch {
		case t.Netns == "":
			k.fail(at("tap.netns"), ErrMissing, "required: a network namespace: NAME (in /var/run/netns, as ip netns names it) or a path, e.g. /proc/PID/ns/net")
		case !filepath.IsAbs(t.Netns) || strings.IndexByte(t.Netns, 0) >= 0:
			k.fail(at("tap.netns"), ErrInvalidValue, "%q is neither an absolute path nor a name in %s", t.Netns, NetnsDir)
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
		}
		for j, r := range t.Routes {
			path := fmt.Sprintf("%s[%d]", at("tap.routes"), j)
			switch {
			case !r.To.IsValid():
				k.fail(path+".to", ErrMissing, "required: the destination prefix (0.0.0.0/0 for a default route)")
			case r.Via.IsValid() && r.Via.Is4() != r.To.Addr().Is4():
				k.fail(path+".via", ErrInvalidValue, "gateway %v and destination %v are of different IP versions", r.Via, r.To)
			}
			if r.Metric < 0 {
				k.fail(path+".metric", ErrInvalidValue, "%d < 0", r.Metric)
			}
		}
		seen := map[netip.Prefix]int{}
		for j, a := range t.Addresses {
			path := fmt.Sprintf("%s[%d]", at("tap.addresses"), j)
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
		}
		if a.Netns != "" && (!filepath.IsAbs(a.Netns) || strings.IndexByte(a.Netns, 0) >= 0) {
			k.fail(at("afpacket.netns"), ErrInvalidValue, "%q is neither an absolute path nor a name in %s", a.Netns, NetnsDir)
		}
	}
	if so := p.Socket; so != nil {
		validateSocket(k, so, at)
	}
	validatePolice(k, &p.Police, at)
	if p.BusyPoll < 0 || p.BusyPoll > MaxBusyPoll {
		k.fail(at("busy_poll"), ErrInvalidValue, "%v is outside 0..%v", p.BusyPoll, MaxBusyPoll)
	}
	if len(p.AllowedIPs) > 0 && !p.SpoofCheck {
		k.fail(at("allowed_ips"), ErrConflict, "needs spoofcheck: true")
	}
}

// validatePolice checks a port's limits.
func validatePolice(k *checker, pol *vswitch.Police, at func(string) string) {
	for _, f := range []struct {
		key      string
		v, limit uint64
	}{
		{"pps", pol.PPS, vswitch.MaxPolicePPS}, {"flood_pps", pol.FloodPPS, vswitch.MaxPolicePPS},
		{"bps", pol.BPS, vswitch.MaxPoliceBPS}, {"burst", pol.Burst, 1 << 32},
		{"burst_bytes", pol.BurstBytes, 1 << 32}, {"flood_burst", pol.FloodBurst, 1 << 32},
	} {
		if f.v > f.limit {
			k.fail(at("police."+f.key), ErrInvalidValue, "%d above the maximum %d", f.v, f.limit)
		}
	}
	if pol.BPS > 0 && pol.BurstBytes > 0 && pol.BurstBytes < 65535+14 {
		k.fail(at("police.burst_bytes"), ErrInvalidValue, "%d cannot hold one 64 KiB frame: every large frame would be dropped", pol.BurstBytes)
	}
	if pol.BPS == 0 && pol.BurstBytes > 0 {
		k.fail(at("police.burst_bytes"), ErrConflict, "needs bps")
	}
	if pol.PPS == 0 && pol.Burst > 0 {
		k.fail(at("police.burst"), ErrConflict, "needs pps")
	}
	if pol.FloodPPS == 0 && pol.FloodBurst > 0 {
		k.fail(at("police.flood_burst"), ErrConflict, "needs flood_pps")
	}
}

// validateSocket checks a socket port's type and paths.
func validateSocket(k *checker, so *SocketPort, at func(string) string) {
	path := func(key, v string) {
		switch {
		case !filepath.IsAbs(v):
			k.fail(at("socket."+key), ErrInvalidValue, "%q is not an absolute path", v)
		case len(v) > maxSocketPath || strings.IndexByte(v, 0) >= 0:
			k.fail(at("socket."+key), ErrInvalidValue, "%q does not fit a unix socket address (at most %d bytes, no NUL)", v, maxSocketPath)
		}
	}
	switch so.Type {
	case "":
		k.fail(at("socket.type"), ErrMissing, "required: stream or dgram")
	case SocketStream:
		switch {
		case so.Listen == "" && so.Connect == "":
			k.fail(at("socket"), ErrMissing, "a stream socket needs listen (QEMU server=off connects to it) or connect (to a QEMU server=on)")
		case so.Listen != "" && so.Connect != "":
			k.fail(at("socket.connect"), ErrConflict, "a stream socket either listens or connects, not both")
		case so.Peer != "":
			k.fail(at("socket.peer"), ErrConflict, "peer is for dgram sockets")
		}
	case SocketDgram:
		switch {
		case so.Listen == "":
			k.fail(at("socket.listen"), ErrMissing, "required: the path macvsw binds (QEMU's remote)")
		case so.Peer == "":
			k.fail(at("socket.peer"), ErrMissing, "required: the path the guest binds (QEMU's local)")
		case so.Connect != "":
			k.fail(at("socket.connect"), ErrConflict, "connect is for stream sockets")
		}
	}
	for key, v := range map[string]string{"listen": so.Listen, "connect": so.Connect, "peer": so.Peer} {
		if v != "" {
			path(key, v)
		}
	}
}

// line returns " (line N)" for path's position in the file, or "".
func (k *checker) line(path string) string {
	if fe := k.src.fieldError(path, nil); fe.Line > 0 {
		return fmt.Sprintf(" (line %d)", fe.Line)
	}
	return ""
}

// checkMACList reports repeated elements.
func checkMACList(k *checker, path string, list []vswitch.MAC) {
	seen := map[vswitch.MAC]int{}
	for j, m := range list {
		if first, dup := seen[m]; dup {
			k.fail(fmt.Sprintf("%s[%d]", path, j), ErrDuplicate, "%s repeats %s[%d]", m, path[strings.LastIndexByte(path, '.')+1:], first)
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

// validateAllow checks control.allow.
func validateAllow(k *checker, c *Control) {
	a := &c.Allow
	if c.Group == "" && !a.Equal(Allow{}) {
		k.fail("control.allow", ErrConflict, "needs control.group: without it only root may connect")
	}
	for _, l := range []struct {
		key  string
		pats []string
	}{{"ports", a.Ports}, {"interfaces", a.Interfaces}} {
		for i, p := range l.pats {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				k.fail(fmt.Sprintf("control.allow.%s[%d]", l.key, i), ErrInvalidValue, "bad pattern %q (want a shell pattern, e.g. sb-*)", p)
			}
		}
	}
	for _, l := range []struct {
		key  string
		dirs []string
	}{{"netns", a.Netns}, {"socket_dirs", a.SocketDirs}} {
		for i, p := range l.dirs {
			if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
				k.fail(fmt.Sprintf("control.allow.%s[%d]", l.key, i), ErrInvalidValue, "%q is not an absolute path below /", p)
			}
		}
	}
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
