package vswitch

import (
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options and PortConfig fields left at zero.
const (
	DefaultMTU             = 1500
	DefaultBroadcastQueue  = 1000 // MACVLAN_DEFAULT_BC_QUEUE_LEN
	DefaultBroadcastCutoff = 1    // the kernel's default bc_cutoff
	MinMTU                 = 68   // ETH_MIN_MTU
	MaxMTU                 = 65535
)

// Options configures a Switch. The zero value is a switch on a promiscuous,
// up lower with MTU 1500 and one queue toward the wire.
type Options struct {
	// LowerMAC is the lower NIC's address. Ports may not use it (except a
	// passthru port, which takes it over).
	LowerMAC MAC
	// LowerMTU is the lower's MTU; 0 means DefaultMTU.
	LowerMTU uint32
	// LowerDown starts the lower without carrier.
	LowerDown bool
	// NoPromisc says the lower is not promiscuous: it receives only the
	// ports' unicast and multicast addresses (spec §1.4). It changes which
	// floods go through the broadcast queue (spec §2.4).
	NoPromisc bool
	// LowerQueues is the number of queues toward the wire (default 1).
	LowerQueues int
	// LowerQueueLen bounds each of them (default DefaultQueueLen).
	LowerQueueLen int
	// BroadcastQueueLen is the lower's own request for the broadcast
	// queue's length; the queue holds the largest of it and every port's
	// request (the kernel's bc_queue_len_used). 0 leaves it to the ports.
	BroadcastQueueLen int
	// BroadcastCutoff is bc_cutoff: floods to groups with more subscribers
	// than this are queued; negative delivers every flood inline. Nil means
	// DefaultBroadcastCutoff.
	BroadcastCutoff *int
	// Now is the clock (fragment reassembly timeouts); nil means time.Now.
	Now func() time.Time
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// LowerFilterChanged, if set, is called (without switch locks held)
	// whenever the set of addresses the lower must receive changes, so an
	// AF_PACKET lower can update its memberships.
	LowerFilterChanged func(LowerFilter)
}

// LowerFilter is what the lower must receive: everything when Promisc,
// otherwise the up ports' MACs and every group any up port subscribes to
// (AllMulti: every group).
type LowerFilter struct {
	Promisc  bool
	AllMulti bool
	Unicast  []MAC
	Groups   []MAC
}

// Switch is the forwarding core: one lower and any number of ports, forwarding
// frames as the kernel's macvlan does. It owns no file descriptors and no
// goroutines. Every method is safe for concurrent use: the data path
// (Receive, Transmit, DrainBroadcast) reads an atomic snapshot of the port
// table and takes no switch lock; control-plane calls serialise on mu.
type Switch struct {
	seed  maphash.Seed
	now   func() time.Time
	log   *slog.Logger
	onFlt func(LowerFilter)
	lower *Lower
	bcq   bcastQueue
	frag  defragger

	accepted    atomic.Uint64
	forwarded   atomic.Uint64
	drops       dropCounters
	reassembled atomic.Uint64

	// fib is the data path's snapshot, rebuilt under mu on every change.
	fib atomic.Pointer[fib]

	mu        sync.Mutex
	ports     []*Port // creation order, which is flood order
	byName    map[string]*Port
	lowerMAC  MAC
	permMAC   MAC // the lower's MAC before a passthru port changed it
	lowerMTU  uint32
	lowerUp   bool
	noPromisc bool
	cutoff    int
	bcFloor   int
	lastFlt   *LowerFilter
}

// fib is an immutable snapshot of everything the data path reads.
type fib struct {
	lowerUp   bool
	lowerMTU  uint32
	allGroups bool                // the lower is promiscuous or all-multicast
	cutoff    int                 // bc_cutoff
	byMAC     map[MAC]*portView   // up ports, any mode
	up        []*portView         // up ports, flood order
	bridges   []*portView         // up bridge-mode ports
	passthru  *portView           // the passthru port, up or not
	sources   map[MAC][]*portView // remote MAC -> up source ports listing it
	groups    map[MAC]int         // group -> up ports subscribed (for bc_cutoff)
}

// Lower is the switch's uplink: frames for the wire wait in its queues
// (Queue(i)), frames from the wire enter through Switch.Receive.
type Lower struct {
	egress
	rxPackets atomic.Uint64
	rxBytes   atomic.Uint64
	rxDrops   dropCounters
	txPackets atomic.Uint64
	txBytes   atomic.Uint64
	txDrops   dropCounters
}

// LowerStats is a snapshot of the lower's counters. Rx are frames from the
// wire; Tx frames queued toward it.
type LowerStats struct {
	MAC       string            `json:"mac"`
	MTU       uint32            `json:"mtu"`
	Up        bool              `json:"up"`
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	RxDropped uint64            `json:"rx_dropped"`
	TxPackets uint64            `json:"tx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	TxDropped uint64            `json:"tx_dropped"`
	RxDrops   map[string]uint64 `json:"rx_drops"`
	TxDrops   map[string]uint64 `json:"tx_drops"`
	Queues    []QueueStats      `json:"queues"`
}

// New returns a switch with no ports.
func New(opts Options) *Switch {
	s := &Switch{
		seed:      maphash.MakeSeed(),
		now:       opts.Now,
		log:       opts.Logger,
		onFlt:     opts.LowerFilterChanged,
		lower:     &Lower{},
		byName:    make(map[string]*Port),
		lowerMAC:  opts.LowerMAC,
		permMAC:   opts.LowerMAC,
		lowerMTU:  opts.LowerMTU,
		lowerUp:   !opts.LowerDown,
		noPromisc: opts.NoPromisc,
		cutoff:    DefaultBroadcastCutoff,
		bcFloor:   max(opts.BroadcastQueueLen, 0),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.lowerMTU == 0 {
		s.lowerMTU = DefaultMTU
	}
	if opts.BroadcastCutoff != nil {
		s.cutoff = *opts.BroadcastCutoff
	}
	s.lower.init(max(opts.LowerQueues, 1), opts.LowerQueueLen)
	s.bcq.init()
	s.frag.init()
	s.mu.Lock()
	s.rebuildLocked()
	s.mu.Unlock()
	return s
}

// Lower returns the uplink, whose queues hold frames for the wire.
func (s *Switch) Lower() *Lower { return s.lower }

// PortConfig describes a new port. Zero values are the kernel's defaults.
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
	// AllMulti receives every multicast group. Otherwise the port receives
	// broadcast plus Groups.
	AllMulti bool
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
}

// AddPort creates a port and, unless cfg.Down, brings it up. On error
// nothing changes.
func (s *Switch) AddPort(cfg PortConfig) (*Port, error) {
	s.mu.Lock()
	p, err := s.addPortLocked(cfg)
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	if err == nil {
		s.log.Info("port added", "port", p.name, "mode", p.mode, "mac", p.mac, "up", p.up)
	}
	return p, err
}

func (s *Switch) addPortLocked(cfg PortConfig) (*Port, error) {
	const op = "add"
	if cfg.Name == "" {
		return nil, portErr(cfg.Name, op, ErrInvalid, "empty name")
	}
	if _, ok := s.byName[cfg.Name]; ok {
		return nil, portErr(cfg.Name, op, ErrExists, "")
	}
	mode := cfg.Mode
	if mode == 0 {
		mode = DefaultMode
	}
	if !mode.Valid() {
		return nil, portErr(cfg.Name, op, ErrUnknownMode, "%d", uint32(mode))
	}
	if s.passthruLocked() != nil {
		return nil, portErr(cfg.Name, op, ErrPassthru, "the lower has a passthru port")
	}
	if mode == ModePassthru && len(s.ports) > 0 {
		return nil, portErr(cfg.Name, op, ErrPassthru, "the lower already has %d port(s)", len(s.ports))
	}
	if mode != ModeSource && (len(cfg.SourceMACs) > 0 || cfg.NoDst) {
		return nil, portErr(cfg.Name, op, ErrNotSource, "source_macs and nodst need mode source")
	}
	if mode != ModePassthru && cfg.NoPromisc {
		return nil, portErr(cfg.Name, op, ErrInvalid, "nopromisc needs mode passthru")
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = s.lowerMTU
	}
	if mtu < MinMTU || mtu > s.lowerMTU {
		return nil, portErr(cfg.Name, op, ErrMTU, "%d not in %d..%d (the lower's MTU)", mtu, MinMTU, s.lowerMTU)
	}
	nq := cfg.Queues
	if nq == 0 {
		nq = 1
	}
	if nq < 1 || nq > MaxQueues {
		return nil, portErr(cfg.Name, op, ErrInvalid, "queues %d not in 1..%d", nq, MaxQueues)
	}
	if cfg.QueueLen < 0 {
		return nil, portErr(cfg.Name, op, ErrInvalid, "queue length %d < 0", cfg.QueueLen)
	}
	mac := cfg.MAC
	switch {
	case mode == ModePassthru:
		mac = s.lowerMAC
	case mac.IsZero():
		mac = s.randomMACLocked()
	case !mac.IsValidUnicast():
		return nil, portErr(cfg.Name, op, ErrAddrNotAvail, "%v", mac)
	}
	p := &Port{
		sw:         s,
		name:       cfg.Name,
		mode:       mode,
		mac:        mac,
		mtu:        mtu,
		nodst:      cfg.NoDst,
		nopromisc:  cfg.NoPromisc,
		allMulti:   cfg.AllMulti,
		groups:     make(map[MAC]struct{}),
		sources:    make(map[MAC]struct{}),
		bcQueueLen: DefaultBroadcastQueue,
	}
	if cfg.BroadcastQueueLen != nil {
		if *cfg.BroadcastQueueLen < 0 {
			return nil, portErr(cfg.Name, op, ErrInvalid, "bcqueuelen %d < 0", *cfg.BroadcastQueueLen)
		}
		p.bcQueueLen = *cfg.BroadcastQueueLen
	}
	for _, g := range cfg.Groups {
		if !g.IsGroup() {
			return nil, portErr(cfg.Name, op, ErrInvalid, "%v is not a group address", g)
		}
		p.groups[g] = struct{}{}
	}
	for _, m := range cfg.SourceMACs {
		if !m.IsValidUnicast() {
			return nil, portErr(cfg.Name, op, ErrAddrNotAvail, "source %v", m)
		}
		p.sources[m] = struct{}{}
	}
	if !cfg.Down {
		if err := s.checkUpLocked(p); err != nil {
			return nil, err
		}
		p.up = true
	}
	p.init(nq, cfg.QueueLen)
	s.ports = append(s.ports, p)
	s.byName[p.name] = p
	return p, nil
}

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

// macOwnerLocked returns an up port other than except that uses m.
func (s *Switch) macOwnerLocked(m MAC, except *Port) *Port {
	for _, q := range s.ports {
		if q != except && q.up && q.mac == m {
			return q
		}
	}
	return nil
}

// checkUpLocked applies macvlan_open's busy check (spec §5.1).
func (s *Switch) checkUpLocked(p *Port) error {
	if p.mode != ModePassthru && p.mac == s.lowerMAC {
		return portErr(p.name, "up", ErrAddrInUse, "%v is the lower's address", p.mac)
	}
	if q := s.macOwnerLocked(p.mac, p); q != nil {
		return portErr(p.name, "up", ErrAddrInUse, "%v is used by up port %q", p.mac, q.name)
	}
	return nil
}

func (s *Switch) passthruLocked() *Port {
	if len(s.ports) == 1 && s.ports[0].mode == ModePassthru {
		return s.ports[0]
	}
	return nil
}

// Port returns the port with that name, or nil.
func (s *Switch) Port(name string) *Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byName[name]
}

// Ports returns every port in creation order.
func (s *Switch) Ports() []*Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Port(nil), s.ports...)
}

// RemovePort deletes a port: it leaves the forwarding table at once, and
// frames still queued for it are released and counted as DropRemoved. A
// passthru port gives the lower its original MAC back.
func (s *Switch) RemovePort(p *Port) error {
	s.mu.Lock()
	if p.removed || s.byName[p.name] != p {
		s.mu.Unlock()
		return portErr(p.name, "remove", ErrNotFound, "")
	}
	p.removed = true
	p.up = false
	delete(s.byName, p.name)
	for i, q := range s.ports {
		if q == p {
			s.ports = append(s.ports[:i:i], s.ports[i+1:]...)
			break
		}
	}
	if p.mode == ModePassthru {
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

// SetUp changes a port's admin state. Bringing it up fails with
// ErrAddrInUse if its MAC is the lower's or an up sibling's.
func (s *Switch) SetUp(p *Port, up bool) error {
	return s.change(p, "set up", func() error {
		if up && !p.up {
			if err := s.checkUpLocked(p); err != nil {
				return err
			}
		}
		p.up = up
		return nil
	})
}

// SetMAC changes a port's address (macvlan_set_mac_address). A busy address is
// refused even while the port is down; on a passthru port the lower's address
// changes with it.
func (s *Switch) SetMAC(p *Port, m MAC) error {
	return s.change(p, "set mac", func() error {
		if !m.IsValidUnicast() {
			return portErr(p.name, "set mac", ErrAddrNotAvail, "%v", m)
		}
		if m == p.mac {
			return nil
		}
		if p.mode == ModePassthru {
			s.lowerMAC = m
			p.mac = m
			return nil
		}
		if m == s.lowerMAC {
			return portErr(p.name, "set mac", ErrAddrInUse, "%v is the lower's address", m)
		}
		if q := s.macOwnerLocked(m, p); q != nil {
			return portErr(p.name, "set mac", ErrAddrInUse, "%v is used by up port %q", m, q.name)
		}
		p.mac = m
		return nil
	})
}

// SetMTU changes a port's MTU: MinMTU up to the lower's.
func (s *Switch) SetMTU(p *Port, mtu uint32) error {
	return s.change(p, "set mtu", func() error {
		if mtu < MinMTU || mtu > s.lowerMTU {
			return portErr(p.name, "set mtu", ErrMTU, "%d not in %d..%d (the lower's MTU)", mtu, MinMTU, s.lowerMTU)
		}
		p.mtu = mtu
		return nil
	})
}

// SetMode changes a port's mode at once. Passthru can be neither entered nor
// left; leaving source mode flushes the source list (macvlan_changelink).
func (s *Switch) SetMode(p *Port, m Mode) error {
	return s.change(p, "set mode", func() error {
		if m == 0 {
			m = DefaultMode
		}
		if !m.Valid() {
			return portErr(p.name, "set mode", ErrUnknownMode, "%d", uint32(m))
		}
		if m != p.mode && (m == ModePassthru || p.mode == ModePassthru) {
			return portErr(p.name, "set mode", ErrPassthru, "cannot change %s to %s", p.mode, m)
		}
		if p.mode == ModeSource && m != ModeSource {
			clear(p.sources)
			p.nodst = false
		}
		p.mode = m
		return nil
	})
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

// SourceMACs changes a source-mode port's list of remote MACs.
func (s *Switch) SourceMACs(p *Port, op SourceOp, macs ...MAC) error {
	name := "macaddr " + op.String()
	return s.change(p, name, func() error {
		if p.mode != ModeSource {
			return portErr(p.name, name, ErrNotSource, "port is in %s mode", p.mode)
		}
		for _, m := range macs {
			if !m.IsValidUnicast() {
				return portErr(p.name, name, ErrAddrNotAvail, "%v", m)
			}
		}
		switch op {
		case SourceAdd:
			for _, m := range macs {
				p.sources[m] = struct{}{}
			}
		case SourceDel:
			for _, m := range macs {
				delete(p.sources, m)
			}
		case SourceFlush:
			clear(p.sources)
		case SourceSet:
			clear(p.sources)
			for _, m := range macs {
				p.sources[m] = struct{}{}
			}
		default:
			return portErr(p.name, name, ErrInvalid, "unknown operation %d", int(op))
		}
		return nil
	})
}

// SetNoDst sets the nodst flag of a source-mode port.
func (s *Switch) SetNoDst(p *Port, nodst bool) error {
	return s.change(p, "set nodst", func() error {
		if nodst && p.mode != ModeSource {
			return portErr(p.name, "set nodst", ErrNotSource, "port is in %s mode", p.mode)
		}
		p.nodst = nodst
		return nil
	})
}

// SetAllMulti switches a port's all-multicast reception.
func (s *Switch) SetAllMulti(p *Port, on bool) error {
	return s.change(p, "set allmulticast", func() error {
		p.allMulti = on
		return nil
	})
}

// JoinGroup subscribes a port to a multicast group (ip maddr add).
func (s *Switch) JoinGroup(p *Port, g MAC) error {
	return s.change(p, "join group", func() error {
		if !g.IsGroup() {
			return portErr(p.name, "join group", ErrInvalid, "%v is not a group address", g)
		}
		p.groups[g] = struct{}{}
		return nil
	})
}

// LeaveGroup unsubscribes a port from a group.
func (s *Switch) LeaveGroup(p *Port, g MAC) error {
	return s.change(p, "leave group", func() error {
		delete(p.groups, g)
		return nil
	})
}

// SetBroadcastQueueLen changes a port's bcqueuelen request.
func (s *Switch) SetBroadcastQueueLen(p *Port, n int) error {
	return s.change(p, "set bcqueuelen", func() error {
		if n < 0 {
			return portErr(p.name, "set bcqueuelen", ErrInvalid, "%d < 0", n)
		}
		p.bcQueueLen = n
		return nil
	})
}

// SetQueueLen changes the bound of every queue of a port.
func (s *Switch) SetQueueLen(p *Port, n int) error {
	return s.change(p, "set queue_len", func() error {
		if n <= 0 {
			return portErr(p.name, "set queue_len", ErrInvalid, "%d <= 0", n)
		}
		for _, q := range p.queues {
			q.setLimit(n)
		}
		return nil
	})
}

// DetachQueue takes queue i out of selection: the last attached queue moves
// into its slot (TUNSETQUEUE IFF_DETACH_QUEUE). Detaching a detached queue
// fails with ErrInvalid. With no queue attached the port drops what it is
// sent (DropNoQueue).
func (s *Switch) DetachQueue(p *Port, i int) error {
	return s.change(p, "detach queue", func() error {
		act := *p.active.Load()
		for k, a := range act {
			if a == i {
				n := append([]int(nil), act...)
				n[k] = n[len(n)-1]
				n = n[:len(n)-1]
				p.active.Store(&n)
				return nil
			}
		}
		return portErr(p.name, "detach queue", ErrInvalid, "queue %d is not attached", i)
	})
}

// AttachQueue puts queue i back into selection, at the end (IFF_ATTACH_QUEUE).
func (s *Switch) AttachQueue(p *Port, i int) error {
	return s.change(p, "attach queue", func() error {
		if i < 0 || i >= len(p.queues) {
			return portErr(p.name, "attach queue", ErrInvalid, "queue %d not in 0..%d", i, len(p.queues)-1)
		}
		act := *p.active.Load()
		for _, a := range act {
			if a == i {
				return portErr(p.name, "attach queue", ErrInvalid, "queue %d is already attached", i)
			}
		}
		n := append(append([]int(nil), act...), i)
		p.active.Store(&n)
		return nil
	})
}

// change runs fn under the switch lock for a live port, then republishes the
// forwarding table.
func (s *Switch) change(p *Port, op string, fn func() error) error {
	s.mu.Lock()
	if p.removed {
		s.mu.Unlock()
		return portErr(p.name, op, ErrNotFound, "port was removed")
	}
	err := fn()
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	if err == nil {
		s.log.Debug("port changed", "port", p.name, "op", op)
	}
	return err
}

// SetLowerState records the lower's carrier. While it is down the ports have
// no carrier and nothing is delivered anywhere (spec §3, §5.3).
func (s *Switch) SetLowerState(up bool) {
	s.mu.Lock()
	changed := s.lowerUp != up
	s.lowerUp = up
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	if changed {
		s.log.Info("lower link changed", "up", up)
	}
}

// SetLowerMTU records the lower's MTU. Ports above a lower MTU are clamped
// down; a raised lower MTU leaves ports as they are (NETDEV_CHANGEMTU).
func (s *Switch) SetLowerMTU(mtu uint32) error {
	if mtu < MinMTU || mtu > MaxMTU {
		return portErr("(lower)", "set mtu", ErrMTU, "%d not in %d..%d", mtu, MinMTU, MaxMTU)
	}
	s.mu.Lock()
	s.lowerMTU = mtu
	for _, p := range s.ports {
		if p.mtu > mtu {
			p.mtu = mtu
		}
	}
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
	return nil
}

// SetLowerMAC records the lower's MAC. Like the kernel, it does not check it
// against the ports.
func (s *Switch) SetLowerMAC(m MAC) {
	s.mu.Lock()
	s.lowerMAC = m
	s.permMAC = m
	if pt := s.passthruLocked(); pt != nil {
		pt.mac = m
	}
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
}

// SetBroadcastCutoff sets bc_cutoff for the whole port set.
func (s *Switch) SetBroadcastCutoff(n int) {
	s.mu.Lock()
	s.cutoff = n
	flt := s.rebuildLocked()
	s.mu.Unlock()
	s.notifyFilter(flt)
}

// LowerState returns the lower's MAC, MTU and carrier as the switch sees them.
func (s *Switch) LowerState() (mac MAC, mtu uint32, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lowerMAC, s.lowerMTU, s.lowerUp
}

// rebuildLocked publishes a new forwarding snapshot and port views, and
// returns the lower filter if it changed.
//
// Preconditions: s.mu is held.
func (s *Switch) rebuildLocked() *LowerFilter {
	t := &fib{
		lowerUp:  s.lowerUp,
		lowerMTU: s.lowerMTU,
		cutoff:   s.cutoff,
		byMAC:    make(map[MAC]*portView, len(s.ports)),
		sources:  make(map[MAC][]*portView),
		groups:   make(map[MAC]int),
	}
	promisc := !s.noPromisc
	flt := &LowerFilter{}
	bcLen := s.bcFloor
	for _, p := range s.ports {
		v := &portView{
			p: p, mode: p.mode, mac: p.mac, mtu: p.mtu, up: p.up,
			allMulti: p.allMulti, nodst: p.nodst,
			groups: make(map[MAC]struct{}, len(p.groups)),
		}
		for g := range p.groups {
			v.groups[g] = struct{}{}
		}
		p.view.Store(v)
		bcLen = max(bcLen, p.bcQueueLen)
		if p.mode == ModePassthru {
			t.passthru = v
			if p.nopromisc {
				promisc = false
			}
		}
		if !p.up {
			continue
		}
		t.byMAC[p.mac] = v
		t.up = append(t.up, v)
		if p.mode == ModeBridge {
			t.bridges = append(t.bridges, v)
		}
		if p.mode == ModeSource {
			for m := range p.sources {
				t.sources[m] = append(t.sources[m], v)
			}
		}
		if p.allMulti {
			t.allGroups = true
		}
		for g := range p.groups {
			t.groups[g]++
		}
		flt.Unicast = append(flt.Unicast, p.mac)
	}
	if promisc {
		t.allGroups = true
	}
	flt.Promisc = promisc
	flt.AllMulti = t.allGroups
	for g := range t.groups {
		flt.Groups = append(flt.Groups, g)
	}
	s.bcq.setCap(bcLen)
	s.fib.Store(t)
	if s.onFlt == nil || (s.lastFlt != nil && s.lastFlt.equal(flt)) {
		return nil
	}
	s.lastFlt = flt
	return flt
}

func (s *Switch) notifyFilter(f *LowerFilter) {
	if f != nil && s.onFlt != nil {
		s.onFlt(*f)
	}
}

func (f *LowerFilter) equal(o *LowerFilter) bool {
	if f.Promisc != o.Promisc || f.AllMulti != o.AllMulti ||
		len(f.Unicast) != len(o.Unicast) || len(f.Groups) != len(o.Groups) {
		return false
	}
	set := make(map[MAC]int)
	for _, m := range f.Unicast {
		set[m]++
	}
	for _, m := range f.Groups {
		set[m] += 1 << 16
	}
	for _, m := range o.Unicast {
		set[m]--
	}
	for _, m := range o.Groups {
		set[m] -= 1 << 16
	}
	for _, v := range set {
		if v != 0 {
			return false
		}
	}
	return true
}

// Stats returns the switch-wide ingress counters.
func (s *Switch) Stats() SwitchStats {
	st := SwitchStats{
		Accepted:    s.accepted.Load(),
		Forwarded:   s.forwarded.Load(),
		Reassembled: s.reassembled.Load(),
		Drops:       s.drops.snapshot(),
		Broadcast:   s.bcq.stats(),
	}
	st.Merged, st.Pending = s.frag.counts()
	return st
}

// LowerStats returns the lower's counters.
func (s *Switch) LowerStats() LowerStats {
	mac, mtu, up := s.LowerState()
	l := s.lower
	return LowerStats{
		MAC: mac.String(), MTU: mtu, Up: up,
		RxPackets: l.rxPackets.Load(),
		RxBytes:   l.rxBytes.Load(),
		RxDropped: l.rxDrops.total(),
		TxPackets: l.txPackets.Load(),
		TxBytes:   l.txBytes.Load(),
		TxDropped: l.txDrops.total(),
		RxDrops:   l.rxDrops.snapshot(),
		TxDrops:   l.txDrops.snapshot(),
		Queues:    l.queueStats(),
	}
}

// Close removes every port, releasing queued frames, and drops what waits in
// the broadcast queue, the lower's queues and reassembly. The switch must not
// be used afterwards.
func (s *Switch) Close() {
	for _, p := range s.Ports() {
		_ = s.RemovePort(p)
	}
	s.bcq.close(&s.lower.rxDrops)
	for _, q := range s.lower.queues {
		q.close(&s.lower.txDrops)
	}
	s.frag.flush(&s.drops)
}

// finish records a frame's single outcome.
func (s *Switch) finish(delivered bool, reason DropReason) {
	if delivered {
		s.forwarded.Add(1)
		return
	}
	s.drops[reason].Add(1)
}
