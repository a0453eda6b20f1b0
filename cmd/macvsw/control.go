package main

import (
	"fmt"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/config"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/switch/counters"
)

// The daemon's control-plane operations behind the API. Every change goes
// to the switch, which checks the kernel's rules and applies it all or
// nothing; views and the running config are read back from it.

// PortView is a port as the API and CLI show it.
type PortView struct {
	Name         string     `json:"name"`
	Kind         string     `json:"kind"`
	Interface    string     `json:"interface"`
	Netns        string     `json:"netns,omitempty"`
	Origin       string     `json:"origin"` // file or api
	Owner        *portOwner `json:"owner,omitempty"`
	Mode         string     `json:"mode"`
	MAC          string     `json:"mac"`
	MTU          uint32     `json:"mtu"`
	Up           bool       `json:"up"`      // admin state
	Link         bool       `json:"link"`    // its device is there and up
	Carrier      bool       `json:"carrier"` // passes frames: up, link, the lower up
	Queues       int        `json:"queues"`
	AllMulticast bool       `json:"allmulticast"`
	Multicast    []string   `json:"multicast,omitempty"`
	SourceMACs   []string   `json:"source_macs,omitempty"`
	NoDst        bool       `json:"nodst,omitempty"`
}

func (d *daemon) view(p *bridge.Port) PortView {
	c := p.Core().Config()
	d.mu.Lock()
	rp := d.ports[p.Name()]
	d.mu.Unlock()
	var dev stateDevice
	origin := ""
	if rp != nil {
		dev, origin = rp.dev, rp.origin
	}
	v := PortView{
		Name: c.Name, Kind: dev.Kind, Interface: dev.Ifname, Origin: origin, Owner: rp.ownerOf(),
		Mode: c.Mode.String(), MAC: c.MAC.String(), MTU: c.MTU,
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
	return v
}

func (d *daemon) portViews() []PortView {
	out := []PortView{}
	for _, p := range d.sw.Ports() {
		out = append(out, d.view(p))
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

func (d *daemon) portView(name string) (PortView, error) {
	p, err := d.port(name)
	if err != nil {
		return PortView{}, err
	}
	return d.view(p), nil
}

// addPortLive adds a port from an API request: one config entry, checked
// as the file's would be, then by the running switch. The port is kept
// across restarts until it is deleted.
func (d *daemon) addPortLive(entry []byte) (string, error) {
	pc, err := config.ParsePort("request", entry)
	if err != nil {
		return "", err
	}
	if pc.AFPacket != nil && pc.AFPacket.Netns == "" && pc.AFPacket.Interface == d.runningConfig().Lower.Interface {
		return "", badRequest("afpacket.interface: %q is the lower; the lower cannot also be a port", pc.AFPacket.Interface)
	}
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if err := d.addPort(pc, originAPI, nil, nil); err != nil {
		return "", err
	}
	return pc.Name, d.saveState()
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

func (rp *runPort) ownerOf() *portOwner {
	if rp == nil {
		return nil
	}
	return rp.owner
}

// portPatch is the body of PATCH /v1/ports/{name}.
type portPatch struct {
	Mode         *string  `json:"mode"`
	MTU          *uint32  `json:"mtu"`
	Up           *bool    `json:"up"`
	MAC          *string  `json:"mac"`
	AllMulticast *bool    `json:"allmulticast"`
	Join         []string `json:"join"`  // multicast groups to subscribe (ip maddr add)
	Leave        []string `json:"leave"` // groups to unsubscribe
	QueueLen     *int     `json:"queue_len"`
	BCQueueLen   *int     `json:"bcqueuelen"`
	NoDst        *bool    `json:"nodst"`
}

// change parses the patch into one switch change.
func (p portPatch) change() (vswitch.PortChange, error) {
	c := vswitch.PortChange{MTU: p.MTU, Up: p.Up, AllMulti: p.AllMulticast, QueueLen: p.QueueLen,
		BroadcastQueueLen: p.BCQueueLen, NoDst: p.NoDst}
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
func (d *daemon) setPort(name string, patch portPatch) error {
	c, err := patch.change()
	if err != nil {
		return err
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
	if err := p.SetSniffer(s); err != nil {
		return nil, badRequest("%v", err)
	}
	return func() { _ = p.SetSniffer(nil) }, nil
}

// stats returns the counters, of one port only when name is set.
func (d *daemon) stats(name string) (counters.Snapshot, error) {
	st := d.sw.Stats()
	st.Lower.Interface = d.runningConfig().Lower.Interface
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
