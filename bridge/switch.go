package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/switch/counters"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DefaultFragmentTick is how often a Switch expires IPv4 datagrams whose
// reassembly timed out, unless the timeout (Core.Reassembly.Timeout) is
// shorter than two ticks: then it ticks twice per timeout.
const DefaultFragmentTick = time.Second

// Options configures a Switch. The zero value is a switch on a
// promiscuous lower with the kernel's defaults.
type Options struct {
	// Core configures the forwarding core. LowerMAC, LowerMTU and
	// LowerDown are taken from the lower endpoint when it reports them
	// (LinkNotifier, or its LinkAddress and MTU); LowerFilterChanged, if
	// set, is called after the Switch applied the filter to the lower.
	Core vswitch.Options
	// Link configures every link between the core and an endpoint.
	Link LinkOptions
	// FragmentTick is how often reassembly timeouts are enforced; 0 means
	// DefaultFragmentTick, or half the reassembly timeout if that is
	// shorter. The core runs no timers: this is the one that expires
	// datagrams nobody completes, whatever the embedder does.
	FragmentTick time.Duration
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// OnEvent, if set, hears every state change the Switch sees or makes
	// (see Event). It runs on the goroutine that noticed, must not block
	// and must not call back into the Switch.
	OnEvent func(Event)
}

// Event is a state change: of the lower, of a port's device, of a port.
type Event struct {
	Time   time.Time `json:"time"`
	Port   string    `json:"port,omitempty"` // "" for the lower
	Type   string    `json:"type"`           // see the Event* constants
	Detail string    `json:"detail,omitempty"`
}

// Event types.
const (
	EventLowerUp       = "lower_up"
	EventLowerDown     = "lower_down"
	EventLinkUp        = "link_up"        // the port's device is there and up again
	EventLinkDown      = "link_down"      // the port's device is gone or set down
	EventDeviceChange  = "device_change"  // the port took a MAC or MTU set on its device
	EventDeviceRefused = "device_refused" // a MAC or MTU set on the device was refused and undone
	EventPortAdded     = "port_added"
	EventPortRemoved   = "port_removed"
)

func (s *Switch) event(port, typ, format string, args ...any) {
	if s.opts.OnEvent == nil {
		return
	}
	s.opts.OnEvent(Event{Time: time.Now(), Port: port, Type: typ, Detail: fmt.Sprintf(format, args...)})
}

// Switch runs a whole macvsw switch inside a program: the forwarding core
// (package vswitch), a lower, and ports backed by any stack.LinkEndpoint
// (a tap, an AF_PACKET socket, a VM's socket, an in-process gVisor
// netstack, your own). It owns everything that keeps them in step, so an
// embedder writes no glue:
//
//   - links: the goroutines that move frames between the core's queues and
//     the endpoints (AttachLower, AttachPort);
//   - pumps: the broadcast queue's drainer and reassembly's timer;
//   - the lower's state: carrier, MTU and MAC followed from the endpoint
//     (LinkNotifier), and its filters kept equal to what the ports need
//     (Filterer);
//   - each port's state: queue deaths (QueueNotifier), its device's link,
//     MAC and MTU in both directions (LinkNotifier, DeviceConfigurer), and
//     the carrier the device shows (CarrierSetter).
//
// The core is the one truth for a port's state (vswitch.Port.Config);
// Update changes it all or nothing and applies it to the device.
//
// A Switch takes ownership of the endpoints given to it and closes them
// when their port is removed or the switch is closed. Methods are safe
// for concurrent use.
type Switch struct {
	core *vswitch.Switch
	log  *slog.Logger
	opts Options

	// mu guards the lower and the port table (control plane only). Lock
	// order: mu, then a port's mu; neither is held while calling into an
	// endpoint that may call back (link and queue callbacks).
	mu     sync.Mutex
	lower  *lowerAttachment
	ports  map[string]*Port
	order  []*Port
	closed bool

	// filterMu serializes applying the lower filter.
	filterMu sync.Mutex

	stop chan struct{}
	wg   sync.WaitGroup
}

type lowerAttachment struct {
	ep   stack.LinkEndpoint
	link *LowerLink
	mtu  uint32 // fixed MTU, or 0 to follow the endpoint
}

// ErrSwitchClosed is returned by methods of a closed Switch.
var ErrSwitchClosed = errors.New("switch closed")

// New starts a switch with no lower and no ports.
func New(opts Options) *Switch {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FragmentTick <= 0 {
		opts.FragmentTick = min(DefaultFragmentTick, opts.Core.Reassembly.WithDefaults().Timeout/2)
	}
	opts.Link.Logger = opts.Logger
	s := &Switch{log: opts.Logger, opts: opts, ports: map[string]*Port{}, stop: make(chan struct{})}
	core := opts.Core
	if core.Logger == nil {
		core.Logger = opts.Logger
	}
	user := core.LowerFilterChanged
	core.LowerFilterChanged = func(f vswitch.LowerFilter) {
		s.applyFilter(f)
		if user != nil {
			user(f)
		}
	}
	s.core = vswitch.New(core)
	s.wg.Add(1)
	go s.fragmentLoop()
	return s
}

// Core returns the forwarding core, for what the Switch does not wrap
// (queue detach and attach, source lists, statistics of one port).
func (s *Switch) Core() *vswitch.Switch { return s.core }

// fragmentLoop enforces reassembly timeouts even when no fragment arrives.
func (s *Switch) fragmentLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.FragmentTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.core.ExpireFragments()
		case <-s.stop:
			return
		}
	}
}

// LowerOptions configures AttachLower.
type LowerOptions struct {
	// MTU fixes the lower's MTU as the switch sees it; 0 follows the
	// endpoint's MTU and its changes.
	MTU uint32
}

// AttachLower makes ep the switch's uplink: frames it receives are the
// wire's, frames for the wire are written to it. If ep reports its link
// (LinkNotifier) the lower's carrier, MTU and MAC follow it, and every
// port's carrier with them; if the core's lower is not promiscuous and ep
// filters (Filterer), its memberships follow the ports. The Switch owns ep
// from here on.
func (s *Switch) AttachLower(ep stack.LinkEndpoint, opts LowerOptions) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrSwitchClosed
	}
	if s.lower != nil {
		s.mu.Unlock()
		return errors.New("bridge: the switch already has a lower")
	}
	la := &lowerAttachment{ep: ep, mtu: opts.MTU}
	s.lower = la
	s.mu.Unlock()

	if mac := ep.LinkAddress(); len(mac) == 6 {
		s.core.SetLowerMAC(vswitch.MAC([]byte(mac)))
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = ep.MTU()
	}
	if mtu != 0 {
		if err := s.core.SetLowerMTU(mtu); err != nil {
			return err
		}
	}
	s.applyFilter(s.core.LowerFilter())
	la.link = AttachLower(s.core, ep, s.opts.Link)
	if ln, ok := ep.(LinkNotifier); ok {
		ln.SetLinkFunc(s.lowerLinkChanged)
	}
	return nil
}

// lowerLinkChanged follows the lower's device: carrier, MTU (unless fixed)
// and MAC; every port's carrier follows.
func (s *Switch) lowerLinkChanged(up bool, mtu uint32, mac tcpip.LinkAddress) {
	s.mu.Lock()
	la := s.lower
	s.mu.Unlock()
	if la == nil {
		return
	}
	if _, _, was := s.core.LowerState(); was != up {
		if up {
			s.event("", EventLowerUp, "mtu %d", mtu)
		} else {
			s.event("", EventLowerDown, "")
		}
	}
	s.core.SetLowerState(up)
	if la.mtu == 0 && mtu != 0 {
		if err := s.core.SetLowerMTU(mtu); err != nil {
			s.log.Warn("lower MTU", "mtu", mtu, "err", err)
		}
	}
	if len(mac) == 6 {
		if m := vswitch.MAC([]byte(mac)); m != s.lowerMAC() {
			s.core.SetLowerMAC(m)
		}
	}
	s.syncCarriers()
}

func (s *Switch) lowerMAC() vswitch.MAC {
	m, _, _ := s.core.LowerState()
	return m
}

// applyFilter keeps a filtering lower's memberships equal to f.
func (s *Switch) applyFilter(f vswitch.LowerFilter) {
	s.mu.Lock()
	la := s.lower
	s.mu.Unlock()
	if la == nil || f.Promisc {
		return
	}
	flt, ok := la.ep.(Filterer)
	if !ok {
		return
	}
	s.filterMu.Lock()
	defer s.filterMu.Unlock()
	uc := make([][6]byte, len(f.Unicast))
	for i, m := range f.Unicast {
		uc[i] = m
	}
	mc := make([][6]byte, len(f.Groups))
	for i, m := range f.Groups {
		mc[i] = m
	}
	if err := flt.SetUnicastFilter(uc); err != nil {
		s.log.Error("lower unicast filter", "err", err)
	}
	if err := flt.SetMulticastFilter(mc); err != nil {
		s.log.Error("lower multicast filter", "err", err)
	}
	if err := flt.SetAllMulti(f.AllMulti); err != nil {
		s.log.Error("lower all-multicast", "err", err)
	}
}

// Port returns the named port, or nil.
func (s *Switch) Port(name string) *Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports[name]
}

// Ports returns every port in creation order.
func (s *Switch) Ports() []*Port {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

// syncCarriers shows every port's carrier on its device.
func (s *Switch) syncCarriers() {
	for _, p := range s.Ports() {
		p.syncCarrier()
	}
}

// Stats returns every counter: the core's, the lower's and each port's,
// with what their links and endpoints counted.
func (s *Switch) Stats() counters.Snapshot {
	snap := counters.Snapshot{Switch: s.core.Stats()}
	snap.Lower.Switch = s.core.LowerStats()
	s.mu.Lock()
	la := s.lower
	ports := slices.Clone(s.order)
	s.mu.Unlock()
	if la != nil {
		snap.Lower.Link = la.link.Stats()
		if sr, ok := la.ep.(StatsReporter); ok {
			snap.Lower.Endpoint = sr.Stats()
		}
	}
	snap.Ports = make([]counters.PortSnapshot, len(ports))
	for i, p := range ports {
		snap.Ports[i] = p.Stats()
	}
	return snap
}

// Close removes every port (newest first, closing their endpoints), then
// the lower, stops the pumps and closes the core. Idempotent.
func (s *Switch) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	ports := slices.Clone(s.order)
	la := s.lower
	s.mu.Unlock()
	for i := len(ports) - 1; i >= 0; i-- {
		_ = s.removePort(ports[i], true)
	}
	if la != nil {
		la.link.Close()
		la.ep.Close()
	}
	close(s.stop)
	s.wg.Wait()
	s.core.Close()
}

// errNoPort is the error for a name the switch does not have.
func errNoPort(name string) error {
	return fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
}
