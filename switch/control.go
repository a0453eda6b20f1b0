package vswitch

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// The control plane: every rule of the kernel's macvlan about what a port
// may be, checked in one place (checkState) for AddPort, Update and
// CheckPorts alike (BEHAVIOUR.md §1.3, §1.5, §1.6, §5.1, §5.2).

// PortConfig describes a port: what AddPort creates, and what Port.Config
// returns. Zero values are the defaults.
type PortConfig struct {
	Name string
	Mode Mode   // 0 means DefaultMode (VEPA)
	MAC  MAC    // zero means random, locally administered; ignored for passthru
	MTU  uint32 // 0 means the lower's MTU
	// Down creates the port admin-down (the kernel creates ports down and
	// `ip link set up` brings them up; here up is the default).
	Down bool
	// Queues is the number of queues, 1..MaxQueues (0 means 1).
	Queues int
	// QueueLen bounds each queue (0 means DefaultQueueLen).
	QueueLen int
	// AllMulti receives every multicast group; nil means true, because a
	// switch cannot see which groups the stack behind a tap or a socket
	// joins (BEHAVIOUR.md §9). With false the port receives broadcast and
	// Groups, as the kernel's filter does.
	AllMulti *bool
	Groups   []MAC
	// SourceMACs, NoDst: source mode only.
	SourceMACs []MAC
	NoDst      bool
	// NoPromisc: passthru only; the lower is then not made promiscuous.
	NoPromisc bool
	// BroadcastQueueLen is this port's request for the broadcast queue's
	// length (bcqueuelen); the switch uses the largest request. Nil means
	// DefaultBroadcastQueue.
	BroadcastQueueLen *int
	// Police limits what the port sends into the switch; nil or zero is
	// no limit.
	Police *Police
	// SpoofCheck drops frames the port sends with a source MAC that is
	// not its own and, with AllowedIPs, with a source address (IPv4,
	// IPv6, ARP, ND) outside AllowedIPs (BEHAVIOUR.md §9).
	SpoofCheck bool
	AllowedIPs []netip.Prefix
}

// Bool returns a pointer to b, for the optional fields of PortConfig and
// PortChange.
func Bool(b bool) *bool { return &b }

// Int returns a pointer to n.
func Int(n int) *int { return &n }

// PortChange is a set of changes to one port that Update applies all or
// nothing. Nil and empty fields leave the port as it is. Changes apply in
// field order, so a change of mode to source and a source list can come
// in one request.
type PortChange struct {
	Mode     *Mode
	MAC      *MAC
	MTU      *uint32
	AllMulti *bool
	Join     []MAC // groups to subscribe (ip maddr add)
	Leave    []MAC // groups to unsubscribe
	// Sources changes a source-mode port's list (ip link set … macaddr).
	Sources           *SourceChange
	NoDst             *bool
	QueueLen          *int
	BroadcastQueueLen *int
	// Police replaces the port's limits (a zero Police removes them).
	Police     *Police
	SpoofCheck *bool
	AllowedIPs *[]netip.Prefix
	// Up is applied last: bringing a port up checks its (new) MAC.
	Up *bool
}

// SourceChange is one source-list operation.
type SourceChange struct {
	Op   SourceOp
	MACs []MAC
}

// SourceOp is a source-list operation (IFLA_MACVLAN_MACADDR_MODE).
type SourceOp int

// Source-list operations.
const (
	SourceAdd   SourceOp = iota // MACVLAN_MACADDR_ADD: adding a listed MAC is a no-op
	SourceDel                   // MACVLAN_MACADDR_DEL: deleting a missing MAC succeeds
	SourceFlush                 // MACVLAN_MACADDR_FLUSH
	SourceSet                   // MACVLAN_MACADDR_SET: flush, then add
)

// String returns the ip-link(8) keyword.
func (o SourceOp) String() string {
	switch o {
	case SourceAdd:
		return "add"
	case SourceDel:
		return "del"
	case SourceFlush:
		return "flush"
	case SourceSet:
		return "set"
	}
	return "unknown"
}

// ParseSourceOp maps an ip-link(8) keyword to a SourceOp.
func ParseSourceOp(s string) (SourceOp, error) {
	for o := SourceAdd; o <= SourceSet; o++ {
		if o.String() == s {
			return o, nil
		}
	}
	return 0, fmt.Errorf("%w: source operation %q (want add, del, flush or set)", ErrInvalid, s)
}

// portState is a port's control-plane state: what Config reports and what
// Update replaces whole.
type portState struct {
	mode       Mode
	mac        MAC
	mtu        uint32
	up         bool
	nodst      bool
	nopromisc  bool
	allMulti   bool
	groups     map[MAC]struct{}
	sources    map[MAC]struct{}
	bcQueueLen int
	queueLen   int
	police     Police
	spoofCheck bool
	allowedIPs []netip.Prefix // never written in place: replaced whole
}

func (st portState) clone() portState {
	st.groups = maps.Clone(st.groups)
	st.sources = maps.Clone(st.sources)
	return st
}

// sortedMACs returns the set's members in order (for stable output).
func sortedMACs(set map[MAC]struct{}) []MAC {
	out := slices.Collect(maps.Keys(set))
	slices.SortFunc(out, func(a, b MAC) int { return slices.Compare(a[:], b[:]) })
	return out
}

// Config returns the port's current configuration: AddPort with it (on a
// switch in the same state) makes the same port.
func (p *Port) Config() PortConfig {
	s := p.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	st := p.st
	cfg := PortConfig{
		Name: p.name, Mode: st.mode, MAC: st.mac, MTU: st.mtu, Down: !st.up,
		Queues: len(p.queues), QueueLen: st.queueLen, AllMulti: Bool(st.allMulti),
		NoDst: st.nodst, NoPromisc: st.nopromisc, BroadcastQueueLen: Int(st.bcQueueLen),
		SpoofCheck: st.spoofCheck, AllowedIPs: slices.Clone(st.allowedIPs),
	}
	if !st.police.IsZero() {
		pol := st.police
		cfg.Police = &pol
	}
	if len(st.groups) > 0 {
		cfg.Groups = sortedMACs(st.groups)
	}
	if len(st.sources) > 0 {
		cfg.SourceMACs = sortedMACs(st.sources)
	}
	return cfg
}

// AddPort creates a port and, unless cfg.Down, brings it up. On error
// nothing changes; the error is a *PortError.
func (s *Switch) AddPort(cfg PortConfig) (*Port, error) {
	s.mu.Lock()
	p, err := s.addPortLocked(cfg)
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	if err == nil {
		s.log.Info("port added", "port", p.name, "mode", p.st.mode, "mac", p.st.mac, "up", p.st.up)
	}
	return p, err
}

func (s *Switch) addPortLocked(cfg PortConfig) (*Port, error) {
	const op = "add"
	if cfg.Name == "" {
		return nil, portErr(cfg.Name, op, "name", ErrInvalid, "empty name")
	}
	if _, ok := s.byName[cfg.Name]; ok {
		return nil, portErr(cfg.Name, op, "name", ErrExists, "")
	}
	mode := cfg.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	if !mode.Valid() {
		return nil, portErr(cfg.Name, op, "mode", ErrUnknownMode, "%d", uint32(mode))
	}
	if pt := s.passthruLocked(); pt != nil {
		e := portErr(cfg.Name, op, "mode", ErrPassthru, "the lower has passthru port %q, which must be the only port", pt.name)
		e.(*PortError).Other = pt.name
		return nil, e
	}
	if mode == ModePassthru && len(s.ports) > 0 {
		return nil, portErr(cfg.Name, op, "mode", ErrPassthru, "the lower already has %d port(s); a passthru port must be the only one", len(s.ports))
	}
	nq := cfg.Queues
	if nq == 0 {
		nq = 1
	}
	if nq < 1 || nq > MaxQueues {
		return nil, portErr(cfg.Name, op, "queues", ErrInvalid, "%d not in 1..%d", nq, MaxQueues)
	}
	st := portState{
		mode: mode, mac: cfg.MAC, mtu: cfg.MTU, up: !cfg.Down,
		nodst: cfg.NoDst, nopromisc: cfg.NoPromisc, allMulti: cfg.AllMulti == nil || *cfg.AllMulti,
		groups: make(map[MAC]struct{}), sources: make(map[MAC]struct{}),
		bcQueueLen: DefaultBroadcastQueue, queueLen: cfg.QueueLen,
		spoofCheck: cfg.SpoofCheck, allowedIPs: slices.Clone(cfg.AllowedIPs),
	}
	if cfg.Police != nil {
		st.police = *cfg.Police
	}
	if st.mtu == 0 {
		st.mtu = s.lowerMTU
	}
	if st.queueLen == 0 {
		st.queueLen = DefaultQueueLen
	}
	if cfg.BroadcastQueueLen != nil {
		st.bcQueueLen = *cfg.BroadcastQueueLen
	}
	switch {
	case mode == ModePassthru:
		st.mac = s.lowerMAC
	case st.mac.IsZero():
		st.mac = s.randomMACLocked()
	}
	for _, g := range cfg.Groups {
		st.groups[g] = struct{}{}
	}
	for _, m := range cfg.SourceMACs {
		st.sources[m] = struct{}{}
	}
	p := &Port{sw: s, name: cfg.Name}
	if err := s.checkStateLocked(p, st, op); err != nil {
		return nil, err
	}
	p.st = st
	p.police = newPolicer(st.police)
	p.init(nq, st.queueLen)
	s.ports = append(s.ports, p)
	s.byName[p.name] = p
	return p, nil
}

// checkStateLocked applies every per-port rule to st, the state port p
// would have: the kernel's refusals (macvlan_validate, macvlan_changelink,
// macvlan_open's busy check) and the switch's own bounds.
//
// Preconditions: s.mu is held.
func (s *Switch) checkStateLocked(p *Port, st portState, op string) error {
	name := p.name
	if !st.mode.Valid() {
		return portErr(name, op, "mode", ErrUnknownMode, "%d", uint32(st.mode))
	}
	if st.mode != ModePassthru && !st.mac.IsValidUnicast() {
		return portErr(name, op, "mac", ErrAddrNotAvail, "%v", st.mac)
	}
	if st.mtu < MinMTU || st.mtu > s.lowerMTU {
		return portErr(name, op, "mtu", ErrMTU, "%d not in %d..%d (the lower's MTU)", st.mtu, MinMTU, s.lowerMTU)
	}
	if st.queueLen < 1 {
		return portErr(name, op, "queue_len", ErrInvalid, "%d < 1", st.queueLen)
	}
	if st.bcQueueLen < 0 {
		return portErr(name, op, "bcqueuelen", ErrInvalid, "%d < 0", st.bcQueueLen)
	}
	for g := range st.groups {
		if !g.IsGroup() {
			return portErr(name, op, "multicast", ErrInvalid, "%v is not a group address", g)
		}
	}
	if st.mode != ModeSource {
		if len(st.sources) > 0 {
			return portErr(name, op, "source_macs", ErrNotSource, "port is in %s mode", st.mode)
		}
		if st.nodst {
			return portErr(name, op, "nodst", ErrNotSource, "port is in %s mode", st.mode)
		}
	}
	for m := range st.sources {
		if !m.IsValidUnicast() {
			return portErr(name, op, "source_macs", ErrAddrNotAvail, "source %v", m)
		}
	}
	if field, err := st.police.check(); err != nil {
		return portErr(name, op, field, ErrInvalid, "%v", err)
	}
	if len(st.allowedIPs) > 0 && !st.spoofCheck {
		return portErr(name, op, "allowed_ips", ErrInvalid, "allowed_ips needs spoofcheck on")
	}
	for _, a := range st.allowedIPs {
		if !a.IsValid() {
			return portErr(name, op, "allowed_ips", ErrInvalid, "invalid prefix %v", a)
		}
	}
	if st.nopromisc && st.mode != ModePassthru {
		return portErr(name, op, "nopromisc", ErrInvalid, "nopromisc needs mode passthru (port is in %s mode)", st.mode)
	}
	if st.up && st.mode != ModePassthru {
		// macvlan_open: the address must not be the lower's or an up
		// sibling's (BEHAVIOUR.md §5.1).
		if err := s.macBusyLocked(p, op, st.mac, true); err != nil {
			return err
		}
	}
	return nil
}

// macBusyLocked refuses m for port p when an up sibling uses it, or (with
// lower) when it is the lower's: ErrAddrInUse, naming the other port.
//
// Preconditions: s.mu is held.
func (s *Switch) macBusyLocked(p *Port, op string, m MAC, lower bool) error {
	if lower && m == s.lowerMAC {
		return portErr(p.name, op, "mac", ErrAddrInUse, "%v is the lower's address", m)
	}
	if q := s.macOwnerLocked(m, p); q != nil {
		e := portErr(p.name, op, "mac", ErrAddrInUse, "%v is used by up port %q", m, q.name)
		e.(*PortError).Other = q.name
		return e
	}
	return nil
}

// Update applies c to port p all or nothing: every change is checked
// against the port's other settings and its siblings, and either all take
// effect at once or none does and the error (a *PortError) says which
// rule refused which field.
func (s *Switch) Update(p *Port, c PortChange) error {
	s.mu.Lock()
	if p.removed {
		s.mu.Unlock()
		return portErr(p.name, "update", "", ErrNotFound, "port was removed")
	}
	st, op, err := s.applyLocked(p, c)
	if err == nil {
		if st.mode == ModePassthru && st.mac != p.st.mac {
			// Setting a passthru port's MAC sets the lower's
			// (BEHAVIOUR.md §1.5).
			s.lowerMAC = st.mac
		}
		if st.queueLen != p.st.queueLen {
			for _, q := range p.queues {
				q.setLimit(st.queueLen)
			}
		}
		if st.police != p.st.police {
			p.police = newPolicer(st.police)
		}
		p.st = st
	}
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	if err == nil {
		s.log.Debug("port changed", "port", p.name, "op", op)
	}
	return err
}

// setField applies one optional field of a PortChange: when v is set, *dst
// takes its value and *op names the operation (the last field set names
// the change in errors). It reports whether v was set.
func setField[T any](op *string, name string, v *T, dst *T) bool {
	if v == nil {
		return false
	}
	*op, *dst = name, *v
	return true
}

// applyLocked returns p's state with c applied, or the first refusal.
//
// Preconditions: s.mu is held.
func (s *Switch) applyLocked(p *Port, c PortChange) (portState, string, error) {
	st := p.st.clone()
	op := "update"
	if c.Mode != nil {
		op = "set mode"
		m := *c.Mode
		if m == 0 {
			m = DefaultMode
		}
		if !m.Valid() {
			return st, op, portErr(p.name, op, "mode", ErrUnknownMode, "%d", uint32(m))
		}
		if m != st.mode && (m == ModePassthru || st.mode == ModePassthru) {
			return st, op, portErr(p.name, op, "mode", ErrPassthru, "cannot change %s to %s", st.mode, m)
		}
		if st.mode == ModeSource && m != ModeSource {
			// Leaving source mode flushes the list (macvlan_changelink).
			clear(st.sources)
			st.nodst = false
		}
		st.mode = m
	}
	if c.MAC != nil {
		op = "set mac"
		m := *c.MAC
		if !m.IsValidUnicast() {
			return st, op, portErr(p.name, op, "mac", ErrAddrNotAvail, "%v", m)
		}
		if m != st.mac && st.mode != ModePassthru {
			// A busy address is refused even while the port is down
			// (macvlan_set_mac_address).
			if err := s.macBusyLocked(p, op, m, true); err != nil {
				return st, op, err
			}
		}
		st.mac = m
	}
	setField(&op, "set mtu", c.MTU, &st.mtu)
	setField(&op, "set allmulticast", c.AllMulti, &st.allMulti)
	for _, g := range c.Join {
		op = "join group"
		st.groups[g] = struct{}{}
	}
	for _, g := range c.Leave {
		op = "leave group"
		delete(st.groups, g)
	}
	if sc := c.Sources; sc != nil {
		op = "macaddr " + sc.Op.String()
		if st.mode != ModeSource {
			return st, op, portErr(p.name, op, "source_macs", ErrNotSource, "port is in %s mode", st.mode)
		}
		for _, m := range sc.MACs {
			if !m.IsValidUnicast() {
				return st, op, portErr(p.name, op, "source_macs", ErrAddrNotAvail, "%v", m)
			}
		}
		switch sc.Op {
		case SourceAdd:
			for _, m := range sc.MACs {
				st.sources[m] = struct{}{}
			}
		case SourceDel:
			for _, m := range sc.MACs {
				delete(st.sources, m)
			}
		case SourceFlush:
			clear(st.sources)
		case SourceSet:
			clear(st.sources)
			for _, m := range sc.MACs {
				st.sources[m] = struct{}{}
			}
		default:
			return st, op, portErr(p.name, op, "source_macs", ErrInvalid, "unknown operation %d", int(sc.Op))
		}
	}
	setField(&op, "set nodst", c.NoDst, &st.nodst)
	setField(&op, "set queue_len", c.QueueLen, &st.queueLen)
	setField(&op, "set bcqueuelen", c.BroadcastQueueLen, &st.bcQueueLen)
	setField(&op, "set police", c.Police, &st.police)
	setField(&op, "set spoofcheck", c.SpoofCheck, &st.spoofCheck)
	if setField(&op, "set allowed_ips", c.AllowedIPs, &st.allowedIPs) {
		st.allowedIPs = slices.Clone(st.allowedIPs) // not the caller's
	}
	setField(&op, "set up", c.Up, &st.up)
	// The busy check of bringing a port up applies to a port that goes up,
	// or changes its MAC while up; an up port that stays up with its MAC
	// keeps it even if the rules would now refuse it (as the kernel).
	check := st
	if p.st.up && st.up && st.mac == p.st.mac {
		check.up = false
	}
	if err := s.checkStateLocked(p, check, op); err != nil {
		return st, op, err
	}
	return st, op, nil
}

// The setters below are single-field Updates.

// SetUp changes a port's admin state. Bringing it up fails with
// ErrAddrInUse if its MAC is the lower's or an up sibling's.
func (s *Switch) SetUp(p *Port, up bool) error { return s.Update(p, PortChange{Up: &up}) }

// SetMAC changes a port's address (macvlan_set_mac_address). A busy address is
// refused even while the port is down; on a passthru port the lower's address
// changes with it.
func (s *Switch) SetMAC(p *Port, m MAC) error { return s.Update(p, PortChange{MAC: &m}) }

// SetMTU changes a port's MTU: MinMTU up to the lower's.
func (s *Switch) SetMTU(p *Port, mtu uint32) error { return s.Update(p, PortChange{MTU: &mtu}) }

// SetMode changes a port's mode at once. Passthru can be neither entered nor
// left; leaving source mode flushes the source list (macvlan_changelink).
func (s *Switch) SetMode(p *Port, m Mode) error { return s.Update(p, PortChange{Mode: &m}) }

// SourceMACs changes a source-mode port's list of remote MACs.
func (s *Switch) SourceMACs(p *Port, op SourceOp, macs ...MAC) error {
	return s.Update(p, PortChange{Sources: &SourceChange{Op: op, MACs: macs}})
}

// SetNoDst sets the nodst flag of a source-mode port.
func (s *Switch) SetNoDst(p *Port, nodst bool) error { return s.Update(p, PortChange{NoDst: &nodst}) }

// SetAllMulti switches a port's all-multicast reception.
func (s *Switch) SetAllMulti(p *Port, on bool) error { return s.Update(p, PortChange{AllMulti: &on}) }

// JoinGroup subscribes a port to a multicast group (ip maddr add).
func (s *Switch) JoinGroup(p *Port, g MAC) error { return s.Update(p, PortChange{Join: []MAC{g}}) }

// LeaveGroup unsubscribes a port from a group.
func (s *Switch) LeaveGroup(p *Port, g MAC) error { return s.Update(p, PortChange{Leave: []MAC{g}}) }

// SetBroadcastQueueLen changes a port's bcqueuelen request.
func (s *Switch) SetBroadcastQueueLen(p *Port, n int) error {
	return s.Update(p, PortChange{BroadcastQueueLen: &n})
}

// SetQueueLen changes the bound of every queue of a port.
func (s *Switch) SetQueueLen(p *Port, n int) error { return s.Update(p, PortChange{QueueLen: &n}) }

// randomMACLocked draws a locally administered unicast MAC not in use
// (eth_hw_addr_random).
func (s *Switch) randomMACLocked() MAC {
	for {
		var m MAC
		v := rand.Uint64()
		for i := range m {
			m[i] = byte(v >> (8 * i))
		}
		m[0] = m[0]&^1 | 2
		if m != s.lowerMAC && s.macOwnerLocked(m, nil) == nil {
			return m
		}
	}
}

// macOwnerLocked returns an up port other than except that uses m: admin
// up with its device up, as only up macvlans are in the kernel's hash.
func (s *Switch) macOwnerLocked(m MAC, except *Port) *Port {
	for _, q := range s.ports {
		if q != except && q.st.up && !q.linkDown && q.st.mac == m {
			return q
		}
	}
	return nil
}

// SetLinkUp records the state of the port's device, as its endpoint
// reports it: up means there and up on its side (a tap the sandbox has not
// set down, an AF_PACKET interface with carrier, a connected VM). A port
// whose device is down is down for forwarding, as a macvlan set down is:
// out of the MAC table, its address free for siblings. Bringing the link
// up fails with ErrAddrInUse, leaving it down, when an up sibling took the
// port's MAC meanwhile (the kernel refuses `ip link set up` then).
func (s *Switch) SetLinkUp(p *Port, up bool) error {
	s.mu.Lock()
	if p.removed {
		s.mu.Unlock()
		return portErr(p.name, "link", "", ErrNotFound, "port was removed")
	}
	if up && p.linkDown && p.st.up && p.st.mode != ModePassthru {
		if err := s.macBusyLocked(p, "link up", p.st.mac, false); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	changed := p.linkDown == up
	p.linkDown = !up
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	if changed {
		s.log.Info("port link changed", "port", p.name, "up", up)
	}
	return nil
}

func (s *Switch) passthruLocked() *Port {
	if len(s.ports) == 1 && s.ports[0].st.mode == ModePassthru {
		return s.ports[0]
	}
	return nil
}

// RemovePort deletes a port: it leaves the forwarding table at once, and
// frames still queued for it are released and counted as DropRemoved. A
// passthru port gives the lower its original MAC back.
func (s *Switch) RemovePort(p *Port) error {
	s.mu.Lock()
	if p.removed || s.byName[p.name] != p {
		s.mu.Unlock()
		return portErr(p.name, "remove", "", ErrNotFound, "")
	}
	p.removed = true
	p.st.up = false
	delete(s.byName, p.name)
	s.ports = slices.DeleteFunc(s.ports, func(q *Port) bool { return q == p })
	if p.st.mode == ModePassthru {
		s.lowerMAC = s.permMAC
	}
	flt := s.rebuildLocked()
	s.mu.Unlock()
	for _, q := range p.queues {
		q.close(&p.ctr.rxDrops)
	}
	s.notifyFilter(flt)
	s.log.Info("port removed", "port", p.name)
	return nil
}

// DetachQueue takes queue i out of selection: the last attached queue moves
// into its slot (TUNSETQUEUE IFF_DETACH_QUEUE). Detaching a detached queue
// fails with ErrInvalid. With no queue attached the port drops what it is
// sent (DropNoQueue).
func (s *Switch) DetachQueue(p *Port, i int) error {
	return s.queueOp(p, "detach queue", func() error {
		act := *p.active.Load()
		k := slices.Index(act, i)
		if k < 0 {
			return portErr(p.name, "detach queue", "queues", ErrInvalid, "queue %d is not attached", i)
		}
		n := slices.Clone(act)
		n[k] = n[len(n)-1]
		n = n[:len(n)-1]
		p.active.Store(&n)
		return nil
	})
}

// AttachQueue puts queue i back into selection, at the end (IFF_ATTACH_QUEUE).
func (s *Switch) AttachQueue(p *Port, i int) error {
	return s.queueOp(p, "attach queue", func() error {
		if i < 0 || i >= len(p.queues) {
			return portErr(p.name, "attach queue", "queues", ErrInvalid, "queue %d not in 0..%d", i, len(p.queues)-1)
		}
		act := *p.active.Load()
		if slices.Contains(act, i) {
			return portErr(p.name, "attach queue", "queues", ErrInvalid, "queue %d is already attached", i)
		}
		n := append(slices.Clone(act), i)
		p.active.Store(&n)
		return nil
	})
}

func (s *Switch) queueOp(p *Port, op string, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.removed {
		return portErr(p.name, op, "", ErrNotFound, "port was removed")
	}
	return fn()
}

// LowerInfo describes a lower for CheckPorts.
type LowerInfo struct {
	MAC MAC
	MTU uint32 // 0 means MaxMTU: not known yet
}

// CheckPorts applies the control-plane rules to a set of ports that would
// be added in order to a switch on this lower, without building one, and
// returns every refusal (nil if none), in order. Each *PortError names the
// port, its index in ports, the field at fault and, for a conflict, the
// other port. After a refusal the port is checked again with the faulty
// field at its default, so one port's several faults are all reported,
// and what is left of it stays for the ports after it to conflict with.
func CheckPorts(lower LowerInfo, ports []PortConfig) []*PortError {
	mtu := lower.MTU
	if mtu == 0 {
		mtu = MaxMTU
	}
	s := New(Options{LowerMAC: lower.MAC, LowerMTU: mtu})
	defer s.Close()
	var errs []*PortError
	for i, cfg := range ports {
		for range 16 {
			s.mu.Lock()
			_, err := s.addPortLocked(cfg)
			s.mu.Unlock()
			if err == nil {
				break
			}
			pe := err.(*PortError)
			pe.Index = i
			pe.Port = ports[i].Name
			errs = append(errs, pe)
			if errors.Is(pe, ErrPassthru) || !relax(&cfg, pe.Field, i) {
				break
			}
		}
	}
	return errs
}

// relax resets cfg's field to its default, so that the rest of the port
// can be checked; false when nothing can be relaxed.
func relax(cfg *PortConfig, field string, i int) bool {
	switch field {
	case "name":
		cfg.Name = fmt.Sprintf("%s\x00%d", cfg.Name, i) // unique, never a real name
	case "mode":
		cfg.Mode = 0
	case "mac":
		cfg.MAC = MAC{}
	case "mtu":
		cfg.MTU = 0
	case "queues":
		cfg.Queues = 0
	case "queue_len":
		cfg.QueueLen = 0
	case "bcqueuelen":
		cfg.BroadcastQueueLen = nil
	case "multicast":
		cfg.Groups = nil
	case "source_macs":
		cfg.SourceMACs = nil
	case "nodst":
		cfg.NoDst = false
	case "nopromisc":
		cfg.NoPromisc = false
	case "police.pps", "police.bps", "police.burst", "police.burst_bytes", "police.flood_pps", "police.flood_burst":
		cfg.Police = nil
	case "allowed_ips":
		cfg.AllowedIPs = nil
	default:
		return false
	}
	return true
}
