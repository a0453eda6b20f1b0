package vswitch

import (
	"hash/maphash"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
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
	// ports' unicast and multicast addresses (BEHAVIOUR.md §1.4). It changes which
	// floods go through the broadcast queue (BEHAVIOUR.md §2.4).
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
	// Reassembly bounds the reassembly of IPv4 fragments sent to group
	// MACs; zero fields take the kernel's defaults.
	Reassembly Reassembly
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
// goroutines, so it runs no timers: whoever owns it calls ExpireFragments
// periodically (bridge.Switch does) and drains the broadcast queue. Every method is safe for concurrent use: the data path
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
	lastFlt   *LowerFilter // last notified
	curFlt    *LowerFilter // of the current fib
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
	s.frag.init(opts.Reassembly)
	s.mu.Lock()
	s.rebuildLocked()
	s.mu.Unlock()
	return s
}

// Lower returns the uplink, whose queues hold frames for the wire.
func (s *Switch) Lower() *Lower { return s.lower }

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

// SetLowerState records the lower's carrier. While it is down the ports have
// no carrier and nothing is delivered anywhere (BEHAVIOUR.md §3, §5.3).
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
		return portErr("(lower)", "set mtu", "mtu", ErrMTU, "%d not in %d..%d", mtu, MinMTU, MaxMTU)
	}
	s.mu.Lock()
	s.lowerMTU = mtu
	for _, p := range s.ports {
		if p.st.mtu > mtu {
			p.st.mtu = mtu
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
		pt.st.mac = m
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

// LowerFilter returns what the lower must receive now (see
// Options.LowerFilterChanged).
func (s *Switch) LowerFilter() LowerFilter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.curFlt
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
		st := &p.st
		up := st.up && !p.linkDown
		v := &portView{
			p: p, mode: st.mode, mac: st.mac, mtu: st.mtu, up: up,
			adminUp: st.up, linkUp: !p.linkDown,
			allMulti: st.allMulti, nodst: st.nodst,
			groups: maps.Clone(st.groups),
			police: p.police, guard: newGuard(st),
		}
		p.view.Store(v)
		bcLen = max(bcLen, st.bcQueueLen)
		if st.mode == ModePassthru {
			t.passthru = v
			if st.nopromisc {
				promisc = false
			}
		}
		if !up {
			continue
		}
		t.byMAC[st.mac] = v
		t.up = append(t.up, v)
		if st.mode == ModeBridge {
			t.bridges = append(t.bridges, v)
		}
		if st.mode == ModeSource {
			for m := range st.sources {
				t.sources[m] = append(t.sources[m], v)
			}
		}
		if st.allMulti {
			t.allGroups = true
		}
		for g := range st.groups {
			t.groups[g]++
		}
		flt.Unicast = append(flt.Unicast, st.mac)
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
	s.curFlt = flt
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
func (s *Switch) Stats() counters.Switch {
	st := counters.Switch{
		Accepted:    s.accepted.Load(),
		Forwarded:   s.forwarded.Load(),
		Reassembled: s.reassembled.Load(),
		Drops:       s.drops.snapshot(),
		Broadcast:   s.bcq.stats(),
	}
	fc := s.frag.counts()
	st.Merged, st.Pending = fc.merged, fc.pending
	st.DefragBytes, st.DefragDatagrams = fc.mem, fc.datagrams
	return st
}

// LowerStats returns the lower's counters.
func (s *Switch) LowerStats() counters.Lower {
	mac, mtu, up := s.LowerState()
	l := s.lower
	return counters.Lower{
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
