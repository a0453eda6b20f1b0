package main

import (
	"fmt"
	"slices"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/config"
	vswitch "github.com/macvsw/macvsw/switch"
)

// The daemon's control-plane operations behind the API. Every change goes
// to the switch first (which enforces the kernel's rules), then to the
// running config, so GET /v1/config and a later SIGHUP diff see it.

// PortView is a port as the API and CLI show it.
type PortView struct {
	Name         string   `json:"name"`
	Kind         string   `json:"kind"`
	Interface    string   `json:"interface"`
	Netns        string   `json:"netns,omitempty"`
	Mode         string   `json:"mode"`
	MAC          string   `json:"mac"`
	MTU          uint32   `json:"mtu"`
	Up           bool     `json:"up"`
	Carrier      bool     `json:"carrier"`
	Queues       int      `json:"queues"`
	AllMulticast bool     `json:"allmulticast"`
	SourceMACs   []string `json:"source_macs,omitempty"`
	NoDst        bool     `json:"nodst,omitempty"`
}

func (d *daemon) viewLocked(rp *runPort) PortView {
	v := PortView{
		Name: rp.cfg.Name, Kind: rp.kind, Interface: rp.ifc,
		Mode: rp.p.Mode().String(), MAC: rp.p.MAC().String(), MTU: rp.p.MTU(),
		Up: rp.p.Up(), Carrier: rp.p.Carrier(), Queues: rp.p.NumQueues(),
		AllMulticast: rp.cfg.AllMulticast, NoDst: rp.cfg.NoDst,
	}
	if rp.cfg.Tap != nil {
		v.Netns = rp.cfg.Tap.Netns
	}
	for _, m := range rp.cfg.SourceMACs {
		v.SourceMACs = append(v.SourceMACs, m.String())
	}
	return v
}

func (d *daemon) portViews() []PortView {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []PortView{}
	for _, n := range d.order {
		out = append(out, d.viewLocked(d.ports[n]))
	}
	return out
}

func (d *daemon) portView(name string) (PortView, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rp := d.ports[name]
	if rp == nil {
		return PortView{}, fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
	}
	return d.viewLocked(rp), nil
}

// parsePort validates one port entry (JSON is YAML) with the config
// loader, against the running lower, so an API request gets the same
// checks and messages as the file.
func (d *daemon) parsePort(entry []byte) (config.Port, error) {
	d.mu.Lock()
	lower := d.cfg.Lower.Interface
	d.mu.Unlock()
	doc := fmt.Sprintf("lower: {interface: %q}\nports:\n  - %s\n", lower, entry)
	c, err := config.Parse("request", []byte(doc))
	if err != nil {
		return config.Port{}, err
	}
	if err := c.CheckHost(); err != nil {
		return config.Port{}, err
	}
	return c.Ports[0], nil
}

// addPortLive adds a port at runtime and records it in the running config.
func (d *daemon) addPortLive(pc config.Port) error {
	d.mu.Lock()
	_, exists := d.ports[pc.Name]
	d.mu.Unlock()
	if exists {
		return fmt.Errorf("port %q: %w", pc.Name, vswitch.ErrExists)
	}
	if err := d.addPort(pc); err != nil {
		return err
	}
	d.mu.Lock()
	d.cfg.Ports = append(d.cfg.Ports, pc)
	d.mu.Unlock()
	return nil
}

func (d *daemon) deletePort(name string) error {
	if err := d.removePort(name); err != nil {
		return err
	}
	d.mu.Lock()
	d.cfg.Ports = slices.DeleteFunc(d.cfg.Ports, func(p config.Port) bool { return p.Name == name })
	d.mu.Unlock()
	return nil
}

// lookup returns a running port.
func (d *daemon) lookup(name string) (*runPort, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rp := d.ports[name]
	if rp == nil {
		return nil, fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
	}
	return rp, nil
}

// updateConfig applies fn to the running config's entry for name.
func (d *daemon) updateConfig(name string, fn func(p *config.Port)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.cfg.Port(name); p != nil {
		fn(p)
	}
	if rp := d.ports[name]; rp != nil {
		fn(&rp.cfg)
	}
}

func (d *daemon) setPort(name string, patch portPatch) error {
	rp, err := d.lookup(name)
	if err != nil {
		return err
	}
	if patch.Mode != nil {
		m, err := vswitch.ParseMode(*patch.Mode)
		if err != nil {
			return badRequest("mode: %v", err)
		}
		if err := d.sw.SetMode(rp.p, m); err != nil {
			return err
		}
		d.updateConfig(name, func(p *config.Port) {
			p.Mode = m
			if m != vswitch.ModeSource {
				p.SourceMACs, p.NoDst = nil, false
			}
		})
	}
	if patch.MTU != nil {
		if err := d.sw.SetMTU(rp.p, *patch.MTU); err != nil {
			return err
		}
		d.updateConfig(name, func(p *config.Port) { p.MTU = int(*patch.MTU) })
	}
	if patch.MAC != nil {
		m, err := vswitch.ParseMAC(*patch.MAC)
		if err != nil {
			return badRequest("mac: %v", err)
		}
		if err := d.sw.SetMAC(rp.p, m); err != nil {
			return err
		}
		d.updateConfig(name, func(p *config.Port) { p.MAC = m })
	}
	if patch.AllMulticast != nil {
		if err := d.sw.SetAllMulti(rp.p, *patch.AllMulticast); err != nil {
			return err
		}
		d.updateConfig(name, func(p *config.Port) { p.AllMulticast = *patch.AllMulticast })
	}
	for _, g := range patch.Join {
		m, err := vswitch.ParseMAC(g)
		if err != nil {
			return badRequest("join: %v", err)
		}
		if err := d.sw.JoinGroup(rp.p, m); err != nil {
			return err
		}
		d.updateConfig(name, func(p *config.Port) {
			if !slices.Contains(p.Multicast, m) {
				p.Multicast = append(p.Multicast, m)
			}
		})
	}
	for _, g := range patch.Leave {
		m, err := vswitch.ParseMAC(g)
		if err != nil {
			return badRequest("leave: %v", err)
		}
		if err := d.sw.LeaveGroup(rp.p, m); err != nil {
			return err
		}
		d.updateConfig(name, func(p *config.Port) {
			p.Multicast = slices.DeleteFunc(p.Multicast, func(x vswitch.MAC) bool { return x == m })
		})
	}
	if patch.Up != nil {
		if err := d.sw.SetUp(rp.p, *patch.Up); err != nil {
			return err
		}
		d.syncCarrier(rp)
	}
	return nil
}

func (d *daemon) sourceMACs(name string, op vswitch.SourceOp, macs []vswitch.MAC) error {
	rp, err := d.lookup(name)
	if err != nil {
		return err
	}
	if err := d.sw.SourceMACs(rp.p, op, macs...); err != nil {
		return err
	}
	d.updateConfig(name, func(p *config.Port) {
		switch op {
		case vswitch.SourceAdd:
			for _, m := range macs {
				if !slices.Contains(p.SourceMACs, m) {
					p.SourceMACs = append(p.SourceMACs, m)
				}
			}
		case vswitch.SourceDel:
			p.SourceMACs = slices.DeleteFunc(p.SourceMACs, func(m vswitch.MAC) bool { return slices.Contains(macs, m) })
		case vswitch.SourceFlush:
			p.SourceMACs = nil
		case vswitch.SourceSet:
			p.SourceMACs = slices.Clone(macs)
		}
	})
	return nil
}

// sniff attaches a sniffer to a port and returns the function that
// detaches it.
func (d *daemon) sniff(name string, s bridge.Sniffer) (func(), error) {
	rp, err := d.lookup(name)
	if err != nil {
		return nil, err
	}
	rp.link.SetSniffer(s)
	return func() { rp.link.SetSniffer(nil) }, nil
}

// Stats is what GET /v1/stats returns.
type Stats struct {
	Switch vswitch.SwitchStats   `json:"switch"`
	Lower  vswitch.LowerStats    `json:"lower"`
	Ports  map[string]PortStatsV `json:"ports"`
}

// PortStatsV is one port's counters: the switch's view, the link's and the
// endpoint's (per queue, every drop reason).
type PortStatsV struct {
	Port     PortView          `json:"port"`
	Switch   vswitch.PortStats `json:"switch"`
	Link     bridge.LinkStats  `json:"link"`
	Endpoint []map[string]any  `json:"endpoint_queues"`
}

// stats returns the counters, of one port when name is set.
func (d *daemon) stats(name string) Stats {
	st := Stats{Switch: d.sw.Stats(), Lower: d.sw.LowerStats(), Ports: map[string]PortStatsV{}}
	d.mu.Lock()
	defer d.mu.Unlock()
	for n, rp := range d.ports {
		if name != "" && n != name {
			continue
		}
		st.Ports[n] = PortStatsV{Port: d.viewLocked(rp), Switch: rp.p.Stats(), Link: rp.link.Stats(), Endpoint: endpointStats(rp.ep.Stats())}
	}
	return st
}

func (d *daemon) runningConfig() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Marshal()
}
