package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/switch/counters"
)

// The daemon's control-plane operations behind the API. Every change goes
// to the switch, which checks the kernel's rules and applies it all or
// nothing; views and the running config are read back from it.

func (d *daemon) view(p *bridge.Port) api.Port {
	c := p.Core().Config()
	d.mu.Lock()
	rp := d.ports[p.Name()]
	d.mu.Unlock()
	var dev stateDevice
	origin, macFrom := "", ""
	if rp != nil {
		dev, origin, macFrom = rp.dev, rp.origin, rp.macFrom
	}
	v := api.Port{
		Name: c.Name, Kind: dev.Kind, Interface: dev.Ifname, Origin: origin, Owner: rp.ownerOf(),
		Mode: c.Mode.String(), MAC: c.MAC.String(), MACFrom: macFrom, MTU: c.MTU,
		Up: !c.Down, Link: p.Core().LinkUp(), Carrier: p.Core().Running(), Queues: c.Queues,
		AllMulticast: *c.AllMulti, NoDst: c.NoDst,
	}
	v.Netns = dev.Netns
	for _, m := range c.Groups {
		v.Multicast = append(v.Multicast, m.String())
	}
	for _, m := range c.SourceMACs {
		v.SourceMACs = append(v.SourceMACs, m.String())
	}
	if c.Police != nil {
		v.Police = (*api.Police)(c.Police)
	}
	v.SpoofCheck = c.SpoofCheck
	for _, a := range c.AllowedIPs {
		v.AllowedIPs = append(v.AllowedIPs, a.String())
	}
	return v
}

// portViews lists the ports; with o, only the owned ones that match it
// (an empty field matches anything).
func (d *daemon) portViews(o *api.Owner) []api.Port {
	out := []api.Port{}
	for _, p := range d.sw.Ports() {
		v := d.view(p)
		if o != nil && !ownerMatches(*o, v.Owner) {
			continue
		}
		out = append(out, v)
	}
	return out
}

func (d *daemon) port(name string) (*bridge.Port, error) {
	p := d.sw.Port(name)
	if p == nil {
		return nil, fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
	}
	return p, nil
}

func (d *daemon) portView(name string) (api.Port, error) {
	p, err := d.port(name)
	if err != nil {
		return api.Port{}, err
	}
	return d.view(p), nil
}

// addPortLive adds a port from an API request: one config entry, checked
// as the file's would be, then by the running switch. The port is kept
// across restarts until it is deleted.
//
// A port with an owner (a container runtime's container and interface) is
// idempotent: asking again for the same owner returns the port already
// made for it if the entry asks for the same, and is refused (409)
// otherwise.
func (d *daemon) addPortLive(entry []byte, owner *portOwner, check func(*config.Port) error) (string, error) {
	pc, err := config.ParsePort("request", entry)
	if err != nil {
		return "", err
	}
	if err := check(&pc); err != nil {
		return "", err
	}
	if pc.AFPacket != nil && pc.AFPacket.Netns == "" && pc.AFPacket.Interface == d.lowerName() {
		return "", badRequest("afpacket.interface: %q is the lower; the lower cannot also be a port", pc.AFPacket.Interface)
	}
	// One critical section from the owner check to the port's creation:
	// two ADDs for one owner get one port and the same answer.
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if owner != nil {
		if name, found := d.ownedBy(*owner); found {
			have, _, _ := d.portConfig(d.sw.Port(name))
			if name == pc.Name && config.SameDevice(&have, &pc) && (pc.MAC.IsZero() || pc.MAC == have.MAC) {
				return name, nil
			}
			return "", fmt.Errorf("container %s interface %s already has port %q, made differently: %w", owner.ContainerID, owner.IfName, name, errDeviceBusy)
		}
	}
	if err := d.addPort(pc, originAPI, owner, nil); err != nil {
		return "", err
	}
	return pc.Name, d.saveState()
}

// ownedBy returns the port made for owner.
func (d *daemon) ownedBy(o portOwner) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, rp := range d.ports {
		if rp.owner != nil && *rp.owner == o {
			return name, true
		}
	}
	return "", false
}

// removeOwned removes the ports of a container (of one of its interfaces
// when o.IfName is set, of one network when o.Network is) and returns
// their names; none is not an error. check refuses a name the caller may
// not touch, before anything is removed.
func (d *daemon) removeOwned(o api.Owner, check func(name string) error) ([]string, error) {
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	var names []string
	d.mu.Lock()
	for name, rp := range d.ports {
		if o.ContainerID != "" && ownerMatches(o, rp.ownerOf()) {
			names = append(names, name)
		}
	}
	d.mu.Unlock()
	for _, n := range names {
		if err := check(n); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, d.removePort(n))
	}
	if err := d.saveState(); err != nil {
		errs = append(errs, err)
	}
	return names, errors.Join(errs...)
}

// removePortLive removes a port on request.
func (d *daemon) removePortLive(name string) error {
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if err := d.removePort(name); err != nil {
		return err
	}
	return d.saveState()
}

func (rp *runPort) ownerOf() *api.Owner {
	if rp == nil || rp.owner == nil {
		return nil
	}
	o := *rp.owner // a copy: callers may keep it
	return &o
}

// patchChange parses a PATCH body into one switch change.
func patchChange(p api.PortPatch) (vswitch.PortChange, error) {
	c := vswitch.PortChange{MTU: p.MTU, Up: p.Up, AllMulti: p.AllMulticast, QueueLen: p.QueueLen,
		BroadcastQueueLen: p.BCQueueLen, NoDst: p.NoDst, SpoofCheck: p.SpoofCheck}
	if p.Police != nil {
		c.Police = (*vswitch.Police)(p.Police)
	}
	if p.AllowedIPs != nil {
		ips := []netip.Prefix{}
		for i, s := range *p.AllowedIPs {
			a, err := config.ParseAddrOrPrefix(s)
			if err != nil {
				return c, badRequest("allowed_ips[%d]: bad address %q (want 10.0.0.2 or 10.0.0.0/24)", i, s)
			}
			ips = append(ips, a)
		}
		c.AllowedIPs = &ips
	}
	if p.Mode != nil {
		m, err := vswitch.ParseMode(*p.Mode)
		if err != nil {
			return c, badRequest("mode: %v", err)
		}
		c.Mode = &m
	}
	if p.MAC != nil {
		m, err := vswitch.ParseMAC(*p.MAC)
		if err != nil {
			return c, badRequest("mac: %v", err)
		}
		c.MAC = &m
	}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]vswitch.MAC
	}{{"join", p.Join, &c.Join}, {"leave", p.Leave, &c.Leave}} {
		for i, s := range list.in {
			m, err := vswitch.ParseMAC(s)
			if err != nil {
				return c, badRequest("%s[%d]: %v", list.name, i, err)
			}
			*list.out = append(*list.out, m)
		}
	}
	return c, nil
}

// setPort applies a PATCH all or nothing: to the switch and to the
// port's device.
func (d *daemon) setPort(name string, patch api.PortPatch) error {
	c, err := patchChange(patch)
	if err != nil {
		return err
	}
	if c.SpoofCheck != nil && *c.SpoofCheck && c.AllowedIPs == nil {
		// Turning spoofcheck on without addresses: a tap port's own
		// addresses, as when the file says spoofcheck alone.
		d.ctlMu.Lock()
		rp := d.ports[name]
		var ips []netip.Prefix
		if p := d.sw.Port(name); rp != nil && p != nil && len(p.Core().Config().AllowedIPs) == 0 {
			e := rp.entry
			e.SpoofCheck, e.AllowedIPs = true, nil
			ips = e.SwitchConfig().AllowedIPs
		}
		d.ctlMu.Unlock()
		if len(ips) > 0 {
			c.AllowedIPs = &ips
		}
	}
	return d.update(name, c)
}

// sourceMACs changes a source-mode port's list.
func (d *daemon) sourceMACs(name string, op vswitch.SourceOp, macs []vswitch.MAC) error {
	return d.update(name, vswitch.PortChange{Sources: &vswitch.SourceChange{Op: op, MACs: macs}})
}

// update applies a change all or nothing and records it.
func (d *daemon) update(name string, c vswitch.PortChange) error {
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if err := d.sw.Update(name, c); err != nil {
		return err
	}
	return d.saveState()
}

// sniff attaches a sniffer to a port and returns the function that
// detaches it.
func (d *daemon) sniff(name string, s bridge.Sniffer) (func(), error) {
	p, err := d.port(name)
	if err != nil {
		return nil, err
	}
	stop, err := p.AddSniffer(s)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return stop, nil
}

// stats returns the counters, of one port only when name is set.
func (d *daemon) stats(name string) (counters.Snapshot, error) {
	st := d.sw.Stats()
	st.Lower.Interface = d.lowerName()
	if name == "" {
		return st, nil
	}
	ps := st.Port(name)
	if ps == nil {
		return st, fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
	}
	st.Ports = []counters.PortSnapshot{*ps}
	return st, nil
}
