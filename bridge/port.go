package bridge

import (
	"fmt"
	"slices"
	"sync"

	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/switch/counters"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Port is a port of a running Switch: the core's port, its endpoint and
// the link between them.
type Port struct {
	sw   *Switch
	core *vswitch.Port
	ep   stack.LinkEndpoint
	link *PortLink // nil for a netstack port, which drains its own queues
	// remove tears the endpoint side down (close, or RemoveNIC).
	remove func()

	// mu serializes changes that touch the device (Update, link events),
	// so the port and its device move together.
	mu sync.Mutex
}

// PortOptions configures AddPort.
type PortOptions struct {
	// Link overrides the Switch's link options for this port.
	Link *LinkOptions
}

// AddPort adds a port described by cfg, backed by ep, and starts moving
// frames. When cfg.Queues is 0 and ep has several queues (MultiQueue), the
// port gets as many. The device's MAC and MTU are set to the port's when
// ep can (DeviceConfigurer: a tap created with another MAC, or a port
// whose MAC the core chose); its queue deaths, its link and its carrier
// are kept in step from then on. On success the Switch owns ep; on error
// it is left to the caller, untouched but for its MAC and MTU.
func (s *Switch) AddPort(cfg vswitch.PortConfig, ep stack.LinkEndpoint, opts PortOptions) (*Port, error) {
	if cfg.Queues == 0 {
		if mq, ok := ep.(MultiQueue); ok {
			cfg.Queues = mq.NumQueues()
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSwitchClosed
	}
	s.mu.Unlock()
	cp, err := s.core.AddPort(cfg)
	if err != nil {
		return nil, err
	}
	p := &Port{sw: s, core: cp, ep: ep, remove: ep.Close}
	if err := p.configureDevice(cp.Config(), vswitch.PortConfig{}); err != nil {
		_ = s.core.RemovePort(cp)
		return nil, fmt.Errorf("port %q: %w", cfg.Name, err)
	}
	if qn, ok := ep.(QueueNotifier); ok {
		qn.SetQueueStateFunc(QueueStateFunc(cp))
	}
	lo := s.opts.Link
	if opts.Link != nil {
		lo = *opts.Link
		lo.Logger = s.log
	}
	p.link = AttachPort(cp, ep, lo)
	if err := s.register(p); err != nil {
		p.link.Close()
		_ = s.core.RemovePort(cp)
		return nil, err
	}
	if ln, ok := ep.(LinkNotifier); ok {
		ln.SetLinkFunc(p.linkChanged)
	}
	p.syncCarrier()
	s.log.Info("port up", "port", cp.Name(), "mode", cp.Mode(), "mac", cp.MAC(), "queues", cp.NumQueues())
	s.event(cp.Name(), EventPortAdded, "mode %s mac %s queues %d", cp.Mode(), cp.MAC(), cp.NumQueues())
	return p, nil
}

// AddNetstack adds a port described by cfg and gives the gVisor stack st
// a NIC with id nic on it (bridge.NetstackPort). Removing the port removes
// the NIC.
func (s *Switch) AddNetstack(cfg vswitch.PortConfig, st *stack.Stack, nic tcpip.NICID, opts NetstackOptions) (*Port, error) {
	cp, err := s.core.AddPort(cfg)
	if err != nil {
		return nil, err
	}
	ep := NewNetstackPort(cp, opts)
	if terr := st.CreateNIC(nic, ep); terr != nil {
		ep.Close()
		_ = s.core.RemovePort(cp)
		return nil, fmt.Errorf("port %q: create NIC %d: %s", cfg.Name, nic, terr)
	}
	p := &Port{sw: s, core: cp, ep: ep, remove: func() { _ = st.RemoveNIC(nic) }}
	if err := s.register(p); err != nil {
		p.remove()
		_ = s.core.RemovePort(cp)
		return nil, err
	}
	return p, nil
}

func (s *Switch) register(p *Port) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSwitchClosed
	}
	s.ports[p.core.Name()] = p
	s.order = append(s.order, p)
	return nil
}

// RemovePort removes the named port: no more frames to or from its
// endpoint, the endpoint closed (a tap created for it is deleted), then
// the port removed from the core (frames still queued for it released).
func (s *Switch) RemovePort(name string) error {
	s.mu.Lock()
	p := s.ports[name]
	s.mu.Unlock()
	if p == nil {
		return errNoPort(name)
	}
	return s.removePort(p, true)
}

// DetachPort removes the named port like RemovePort but gives its endpoint
// back to the caller instead of closing it: a daemon that stops but wants
// the sandbox's device kept uses it.
func (s *Switch) DetachPort(name string) (stack.LinkEndpoint, error) {
	s.mu.Lock()
	p := s.ports[name]
	s.mu.Unlock()
	if p == nil {
		return nil, errNoPort(name)
	}
	return p.ep, s.removePort(p, false)
}

func (s *Switch) removePort(p *Port, closeEP bool) error {
	s.mu.Lock()
	if s.ports[p.core.Name()] != p {
		s.mu.Unlock()
		return errNoPort(p.core.Name())
	}
	delete(s.ports, p.core.Name())
	s.order = slices.DeleteFunc(s.order, func(q *Port) bool { return q == p })
	s.mu.Unlock()
	if ln, ok := p.ep.(LinkNotifier); ok {
		ln.SetLinkFunc(nil)
	}
	if qn, ok := p.ep.(QueueNotifier); ok {
		qn.SetQueueStateFunc(nil)
	}
	if p.link != nil {
		p.link.Close()
	}
	if closeEP {
		p.remove()
	}
	err := s.core.RemovePort(p.core)
	s.log.Info("port removed", "port", p.core.Name())
	s.event(p.core.Name(), EventPortRemoved, "")
	return err
}

// Update applies c to the named port all or nothing: the core checks every
// rule first (a refused change changes nothing), then the port's MAC and
// MTU are applied to its device; if the device refuses, the port goes
// back to what it was. A passthru port's MAC is the lower's too.
func (s *Switch) Update(name string, c vswitch.PortChange) error {
	p := s.Port(name)
	if p == nil {
		return errNoPort(name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.core.Config()
	if err := s.core.Update(p.core, c); err != nil {
		return err
	}
	if err := p.configureDevice(p.core.Config(), old); err != nil {
		if rerr := s.core.Update(p.core, vswitch.PortChange{MAC: &old.MAC, MTU: &old.MTU}); rerr != nil {
			s.log.Error("port update: cannot undo", "port", name, "err", rerr)
		}
		_ = p.configureDevice(old, p.core.Config())
		return fmt.Errorf("port %q: %w", name, err)
	}
	p.syncCarrierLocked()
	return nil
}

// configureDevice applies the port's MAC and MTU (cur) to its device and,
// for a passthru port, the MAC to the lower, where they differ from was.
func (p *Port) configureDevice(cur, was vswitch.PortConfig) error {
	if dc, ok := p.ep.(DeviceConfigurer); ok {
		if cur.MAC != was.MAC && tcpip.LinkAddress(cur.MAC[:]) != p.ep.LinkAddress() {
			if err := dc.SetDeviceMAC(tcpip.LinkAddress(cur.MAC[:])); err != nil {
				return err
			}
		}
		if cur.MTU != was.MTU && cur.MTU != p.ep.MTU() {
			if err := dc.SetDeviceMTU(cur.MTU); err != nil {
				return err
			}
		}
	}
	if cur.Mode == vswitch.ModePassthru && cur.MAC != was.MAC && !was.MAC.IsZero() {
		p.sw.mu.Lock()
		la := p.sw.lower
		p.sw.mu.Unlock()
		if la != nil {
			if ms, ok := la.ep.(interface {
				SetInterfaceMAC(tcpip.LinkAddress) error
			}); ok {
				if err := ms.SetInterfaceMAC(tcpip.LinkAddress(cur.MAC[:])); err != nil {
					return fmt.Errorf("lower: %w", err)
				}
			}
		}
	}
	return nil
}

// linkChanged follows the port's device. Its link decides whether the
// port passes frames; a MAC or MTU set on the device itself (from inside
// the sandbox) becomes the port's, unless the rules refuse it, in which
// case the device gets the port's back.
func (p *Port) linkChanged(up bool, mtu uint32, mac tcpip.LinkAddress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, name := p.sw, p.core.Name()
	if _, ok := p.ep.(DeviceConfigurer); ok && up {
		cur := p.core.Config()
		var c vswitch.PortChange
		if len(mac) == 6 && vswitch.MAC([]byte(mac)) != cur.MAC && cur.Mode != vswitch.ModePassthru {
			m := vswitch.MAC([]byte(mac))
			c.MAC = &m
		}
		if mtu != 0 && mtu != cur.MTU {
			c.MTU = &mtu
		}
		if c.MAC != nil || c.MTU != nil {
			if err := s.core.Update(p.core, c); err != nil {
				s.log.Warn("device change refused; restoring the port's", "port", name, "mac", mac, "mtu", mtu, "err", err)
				s.event(name, EventDeviceRefused, "%v", err)
				_ = p.configureDevice(cur, vswitch.PortConfig{})
			} else {
				s.log.Info("port follows its device", "port", name, "mac", p.core.MAC(), "mtu", p.core.MTU())
				s.event(name, EventDeviceChange, "mac %s mtu %d", p.core.MAC(), p.core.MTU())
			}
		}
	}
	was := p.core.LinkUp()
	if err := s.core.SetLinkUp(p.core, up); err != nil {
		s.log.Warn("port link up refused", "port", name, "err", err)
		s.event(name, EventDeviceRefused, "link up: %v", err)
	} else if was != up {
		if up {
			s.event(name, EventLinkUp, "")
		} else {
			s.event(name, EventLinkDown, "")
		}
	}
	p.syncCarrierLocked()
}

func (p *Port) syncCarrier() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncCarrierLocked()
}

// syncCarrierLocked shows the port's carrier on its device.
//
// Preconditions: p.mu is held.
func (p *Port) syncCarrierLocked() {
	cs, ok := p.ep.(CarrierSetter)
	if !ok {
		return
	}
	if err := cs.SetCarrier(p.core.Carrier()); err != nil {
		// A closing or vanished device: its state no longer matters.
		p.sw.log.Debug("carrier", "port", p.core.Name(), "err", err)
	}
}

// Name returns the port's name.
func (p *Port) Name() string { return p.core.Name() }

// Core returns the core's port: its state (Config, Up, Carrier, Running)
// and counters.
func (p *Port) Core() *vswitch.Port { return p.core }

// Endpoint returns the port's endpoint.
func (p *Port) Endpoint() stack.LinkEndpoint { return p.ep }

// AddSniffer starts copying the port's frames to f, next to any other
// sniffer, and returns the function that stops it. Netstack ports have no
// link to sniff and report an error.
func (p *Port) AddSniffer(f Sniffer) (remove func(), err error) {
	if p.link == nil {
		return nil, fmt.Errorf("port %q: capture is not supported on a netstack port", p.Name())
	}
	return p.link.AddSniffer(f), nil
}

// Stats returns the port's counters: the core's, its link's and its
// endpoint's.
func (p *Port) Stats() counters.PortSnapshot {
	ps := counters.PortSnapshot{
		Name: p.core.Name(), Up: p.core.Up(), Carrier: p.core.Running(),
		Switch: p.core.Stats(),
	}
	if p.link != nil {
		ps.Link = p.link.Stats()
	}
	if sr, ok := p.ep.(StatsReporter); ok {
		ps.Endpoint = sr.Stats()
	}
	return ps
}
