package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/vishvananda/netlink"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// daemon is a running switch built from a config: a bridge.Switch with an
// AF_PACKET lower and one endpoint per port. The switch is the one truth
// for every port's state; the daemon remembers of each port only what the
// switch does not know, its device (portDevice), and derives its views and
// the running config from the two.
type daemon struct {
	log *slog.Logger
	sw  *bridge.Switch

	// mu guards cfg (the non-port sections of the running config) and
	// devices; it serializes the control plane (API, reload).
	mu      sync.Mutex
	cfg     *config.Config
	devices map[string]portDevice
}

// portDevice is where a port's frames go: the kind part of its config
// entry, and the interface as created.
type portDevice struct {
	tap      *config.TapPort
	afpacket *config.AFPacketPort
	ifname   string
}

func (pd portDevice) kind() string {
	if pd.tap != nil {
		return "tap"
	}
	return "afpacket"
}

// startDaemon builds the switch described by cfg. On error everything it
// made is torn down again.
func startDaemon(cfg *config.Config, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{log: log, cfg: cfg, devices: map[string]portDevice{}}
	link, err := netlink.LinkByName(cfg.Lower.Interface)
	if err != nil {
		return nil, fmt.Errorf("lower %q: %w", cfg.Lower.Interface, err)
	}
	attrs := link.Attrs()
	cutoff := cfg.Broadcast.Cutoff
	d.sw = bridge.New(bridge.Options{
		Core: vswitch.Options{
			LowerMAC:          vswitch.MAC(attrs.HardwareAddr),
			LowerMTU:          uint32(attrs.MTU),
			NoPromisc:         !cfg.Lower.Promiscuous,
			LowerQueues:       cfg.Lower.NumQueues(),
			BroadcastQueueLen: cfg.Broadcast.QueueLen,
			BroadcastCutoff:   &cutoff,
		},
		Logger: log,
	})
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	lower, err := endpoints.NewPacket(endpoints.PacketOptions{
		Interface:     cfg.Lower.Interface,
		Queues:        cfg.Lower.NumQueues(),
		NoPromiscuous: !cfg.Lower.Promiscuous,
		Logger:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("lower: %w", err)
	}
	if err := d.sw.AttachLower(lower, bridge.LowerOptions{MTU: uint32(cfg.Lower.MTU)}); err != nil {
		lower.Close()
		return nil, fmt.Errorf("lower: %w", err)
	}
	ports := cfg.Ports
	cfg.Ports = nil // derived from the switch from now on
	for _, pc := range ports {
		if err := d.addPort(pc); err != nil {
			return nil, err
		}
	}
	log.Info("switch running", "lower", cfg.Lower.Interface, "ports", len(ports), "queues", cfg.Lower.NumQueues())
	return d, nil
}

// openDevice opens the endpoint a port entry describes.
func (d *daemon) openDevice(pc config.Port) (stack.LinkEndpoint, portDevice, error) {
	switch {
	case pc.Tap != nil:
		addrs := make([]string, len(pc.Tap.Addresses))
		for i, a := range pc.Tap.Addresses {
			addrs[i] = a.String()
		}
		mac, mtu, _ := d.sw.Core().LowerState()
		if pc.Mode != vswitch.ModePassthru {
			mac = pc.MAC // zero: the switch picks one and sets it
		}
		if pc.MTU != 0 {
			mtu = uint32(pc.MTU)
		}
		var hw net.HardwareAddr
		if !mac.IsZero() {
			hw = mac[:]
		}
		tap, err := endpoints.NewTap(endpoints.TapOptions{
			Name: pc.Tap.Ifname, NetNS: pc.Tap.Netns, Queues: pc.Queues, MAC: hw, MTU: mtu,
			Addresses: addrs, NoOffloads: !pc.Tap.Offloads, Logger: d.log,
		})
		if err != nil {
			return nil, portDevice{}, err
		}
		return tap, portDevice{tap: pc.Tap, ifname: tap.Name()}, nil
	case pc.AFPacket != nil:
		pk, err := endpoints.NewPacket(endpoints.PacketOptions{
			Interface: pc.AFPacket.Interface, Queues: pc.Queues, Logger: d.log,
		})
		if err != nil {
			return nil, portDevice{}, err
		}
		return pk, portDevice{afpacket: pc.AFPacket, ifname: pc.AFPacket.Interface}, nil
	}
	return nil, portDevice{}, fmt.Errorf("no port kind: set tap or afpacket")
}

// addPort opens the port's device and adds it to the switch. An afpacket
// port's MAC is the sandbox's (the far end of its veth), which the config
// must name.
func (d *daemon) addPort(pc config.Port) error {
	if d.sw.Port(pc.Name) != nil {
		return fmt.Errorf("port %q: %w", pc.Name, vswitch.ErrExists)
	}
	ep, dev, err := d.openDevice(pc)
	if err != nil {
		return fmt.Errorf("port %q: %w", pc.Name, err)
	}
	if _, err := d.sw.AddPort(pc.SwitchConfig(), ep, bridge.PortOptions{}); err != nil {
		ep.Close()
		return err
	}
	d.mu.Lock()
	d.devices[pc.Name] = dev
	d.mu.Unlock()
	return nil
}

// removePort removes a port and closes its device (a tap it created is
// deleted).
func (d *daemon) removePort(name string) error {
	if err := d.sw.RemovePort(name); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.devices, name)
	d.mu.Unlock()
	return nil
}

// portConfig returns a running port's config entry: the switch's state and
// its device.
func (d *daemon) portConfig(p *bridge.Port) (config.Port, bool) {
	d.mu.Lock()
	dev, ok := d.devices[p.Name()]
	d.mu.Unlock()
	if !ok {
		return config.Port{}, false
	}
	pc := config.PortOf(p.Core().Config())
	pc.Tap, pc.AFPacket = dev.tap, dev.afpacket
	return pc, true
}

// runningConfig returns the config the daemon runs: the file's sections
// and, for ports, the switch's state.
func (d *daemon) runningConfig() *config.Config {
	d.mu.Lock()
	c := *d.cfg
	d.mu.Unlock()
	c.Ports = nil
	for _, p := range d.sw.Ports() {
		if pc, ok := d.portConfig(p); ok {
			c.Ports = append(c.Ports, pc)
		}
	}
	return &c
}

// reload applies a new configuration: removed ports go, ports whose device
// changed are rebuilt, ports whose switch settings changed are updated in
// place (the sandbox keeps its interface, addresses and routes), new ports
// come; untouched ports keep forwarding. Changes to any other section
// (lower, broadcast, control, metrics, log) need a restart: the whole
// reload is refused and nothing changes. What could not be applied is
// reported and, as it is not in the running config, tried again at the
// next reload.
func (d *daemon) reload(next *config.Config) (reloadReport, error) {
	cur := d.runningConfig()
	var rep reloadReport
	next.InheritMACs(cur)
	delta := config.Diff(cur, next)
	var restart []string
	for _, c := range []struct {
		name    string
		changed bool
	}{{"lower", delta.Lower}, {"broadcast", delta.Broadcast}, {"control", delta.Control}, {"metrics", delta.Metrics}, {"log", delta.Log}} {
		if c.changed {
			restart = append(restart, c.name)
		}
	}
	if len(restart) > 0 {
		return rep, fmt.Errorf("reload: %s changed, which needs a restart; nothing changed", strings.Join(restart, ", "))
	}
	var errs []error
	fail := func(name string, err error) {
		rep.Failed = append(rep.Failed, name)
		errs = append(errs, err)
	}
	for _, name := range delta.Removed {
		if err := d.removePort(name); err != nil {
			fail(name, err)
			continue
		}
		rep.Removed = append(rep.Removed, name)
	}
	for _, name := range delta.Changed {
		want := *next.Port(name)
		have := *cur.Port(name)
		if sameDevice(have, want) {
			c := portChange(have, want)
			if reflect.ValueOf(c).IsZero() {
				continue // the file says what the switch already does
			}
			if err := d.sw.Update(name, c); err != nil {
				fail(name, err)
				continue
			}
			rep.Changed = append(rep.Changed, name)
			continue
		}
		if err := d.removePort(name); err != nil {
			fail(name, err)
			continue
		}
		if err := d.addPort(want); err != nil {
			fail(name, err)
			continue
		}
		rep.Rebuilt = append(rep.Rebuilt, name)
	}
	for _, name := range delta.Added {
		if err := d.addPort(*next.Port(name)); err != nil {
			fail(name, err)
			continue
		}
		rep.Added = append(rep.Added, name)
	}
	d.log.Info("reloaded", "added", rep.Added, "removed", rep.Removed, "changed", rep.Changed, "rebuilt", rep.Rebuilt, "failed", rep.Failed)
	return rep, errors.Join(errs...)
}

// reloadReport says what a reload did.
type reloadReport struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"` // updated in place
	Rebuilt []string `json:"rebuilt"` // device re-created
	Failed  []string `json:"failed"`
}

// sameDevice reports whether two entries of one port describe the same
// device, so that the port can be changed in place.
func sameDevice(a, b config.Port) bool {
	switch {
	case a.Queues != b.Queues:
		return false
	case (a.Tap == nil) != (b.Tap == nil) || (a.AFPacket == nil) != (b.AFPacket == nil):
		return false
	case a.Tap != nil:
		return a.Tap.Netns == b.Tap.Netns && a.Tap.Ifname == b.Tap.Ifname &&
			a.Tap.Offloads == b.Tap.Offloads && slices.Equal(a.Tap.Addresses, b.Tap.Addresses)
	case a.AFPacket != nil:
		return *a.AFPacket == *b.AFPacket
	}
	return true
}

// portChange is the switch change that turns port entry have into want.
func portChange(have, want config.Port) vswitch.PortChange {
	h, w := have.SwitchConfig(), want.SwitchConfig()
	var c vswitch.PortChange
	if w.Mode != h.Mode {
		c.Mode = &w.Mode
	}
	if !w.MAC.IsZero() && w.MAC != h.MAC {
		c.MAC = &w.MAC
	}
	if w.MTU != 0 && w.MTU != h.MTU {
		c.MTU = &w.MTU
	}
	if *w.AllMulti != *h.AllMulti {
		c.AllMulti = w.AllMulti
	}
	for _, g := range w.Groups {
		if !slices.Contains(h.Groups, g) {
			c.Join = append(c.Join, g)
		}
	}
	for _, g := range h.Groups {
		if !slices.Contains(w.Groups, g) {
			c.Leave = append(c.Leave, g)
		}
	}
	if !slices.Equal(w.SourceMACs, h.SourceMACs) || w.NoDst != h.NoDst {
		c.Sources = &vswitch.SourceChange{Op: vswitch.SourceSet, MACs: w.SourceMACs}
		c.NoDst = &w.NoDst
	}
	if w.QueueLen != h.QueueLen {
		c.QueueLen = &w.QueueLen
	}
	if *w.BroadcastQueueLen != *h.BroadcastQueueLen {
		c.BroadcastQueueLen = w.BroadcastQueueLen
	}
	return c
}

// close tears everything down: ports newest first (their devices closed),
// the lower, the core.
func (d *daemon) close() {
	if d.sw != nil {
		d.sw.Close()
	}
}
