package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/vishvananda/netlink"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// daemon is a running switch built from a config: the core, the AF_PACKET
// lower and one endpoint plus link per port.
//
// Shutdown order (close): port links (no more frames in or out), port
// endpoints (taps deleted), ports removed from the core (queued frames
// released), then the lower link, the lower endpoint and the core.
type daemon struct {
	log     *slog.Logger
	sw      *vswitch.Switch
	lowerEP *endpoints.Packet
	lower   *bridge.LowerLink

	// mu guards cfg and ports (control plane only).
	mu    sync.Mutex
	cfg   *config.Config
	ports map[string]*runPort
	order []string
}

// portEndpoint is what a port's OS endpoint offers besides LinkEndpoint.
type portEndpoint interface {
	stack.LinkEndpoint
	NumQueues() int
	Stats() endpoints.Stats
	Close()
}

type runPort struct {
	cfg  config.Port
	p    *vswitch.Port
	ep   portEndpoint
	link *bridge.PortLink
	kind string // "tap" or "afpacket"
	ifc  string // interface name (in its netns for taps)
}

// startDaemon builds the switch described by cfg. On error everything it
// made is torn down again.
func startDaemon(cfg *config.Config, log *slog.Logger) (_ *daemon, err error) {
	d := &daemon{log: log, cfg: cfg, ports: make(map[string]*runPort)}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	link, err := netlink.LinkByName(cfg.Lower.Interface)
	if err != nil {
		return nil, fmt.Errorf("lower %q: %w", cfg.Lower.Interface, err)
	}
	attrs := link.Attrs()
	var lowerMAC vswitch.MAC
	copy(lowerMAC[:], attrs.HardwareAddr)
	mtu := uint32(attrs.MTU)
	if cfg.Lower.MTU != 0 {
		mtu = uint32(cfg.Lower.MTU)
	}
	cutoff := cfg.Broadcast.Cutoff
	promisc := cfg.Lower.Promiscuous
	d.sw = vswitch.New(vswitch.Options{
		LowerMAC:          lowerMAC,
		LowerMTU:          mtu,
		LowerDown:         attrs.OperState != netlink.OperUp && attrs.OperState != netlink.OperUnknown,
		NoPromisc:         !promisc,
		LowerQueues:       cfg.Lower.NumQueues(),
		BroadcastQueueLen: cfg.Broadcast.QueueLen,
		BroadcastCutoff:   &cutoff,
		Logger:            log,
		LowerFilterChanged: func(f vswitch.LowerFilter) {
			if !promisc {
				d.applyLowerFilter(f)
			}
		},
	})
	d.lowerEP, err = endpoints.NewPacket(endpoints.PacketOptions{
		Interface:     cfg.Lower.Interface,
		Queues:        cfg.Lower.NumQueues(),
		NoPromiscuous: !promisc,
		OnLinkChange: func(st endpoints.LinkState) {
			d.sw.SetLowerState(st.Up())
			d.syncCarriers()
			if cfg.Lower.MTU == 0 && st.MTU != 0 {
				if err := d.sw.SetLowerMTU(st.MTU); err != nil {
					log.Warn("lower MTU", "err", err)
				}
			}
		},
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("lower: %w", err)
	}
	d.lower = bridge.AttachLower(d.sw, d.lowerEP, bridge.Options{Logger: log})
	for _, pc := range cfg.Ports {
		if err := d.addPort(pc); err != nil {
			return nil, err
		}
	}
	log.Info("switch running", "lower", cfg.Lower.Interface, "ports", len(cfg.Ports), "queues", cfg.Lower.NumQueues())
	return d, nil
}

func (d *daemon) applyLowerFilter(f vswitch.LowerFilter) {
	if d.lowerEP == nil {
		return
	}
	uc := make([][6]byte, len(f.Unicast))
	for i, m := range f.Unicast {
		uc[i] = m
	}
	mc := make([][6]byte, len(f.Groups))
	for i, m := range f.Groups {
		mc[i] = m
	}
	if err := d.lowerEP.SetUnicastFilter(uc); err != nil {
		d.log.Error("lower unicast filter", "err", err)
	}
	if err := d.lowerEP.SetMulticastFilter(mc); err != nil {
		d.log.Error("lower multicast filter", "err", err)
	}
}

// addPort opens the port's endpoint, adds the port to the core and links
// them. An afpacket port's MAC is the sandbox's (the far end of its veth),
// which the config must name.
func (d *daemon) addPort(pc config.Port) error {
	rp := &runPort{cfg: pc}
	mtu := uint32(pc.MTU)
	if mtu == 0 {
		_, mtu, _ = d.sw.LowerState()
	}
	// Queue events may come before the port exists; they are applied
	// once it does (the port starts with every queue attached).
	var queueState atomic.Pointer[func(q int, up bool)]
	onQueue := func(q int, up bool) {
		if f := queueState.Load(); f != nil {
			(*f)(q, up)
		}
	}
	mac := pc.MAC
	switch {
	case pc.Tap != nil:
		addrs := make([]string, len(pc.Tap.Addresses))
		for i, a := range pc.Tap.Addresses {
			addrs[i] = a.String()
		}
		if pc.Mode == vswitch.ModePassthru {
			// A passthru port takes the lower's MAC (spec §1.5), and so
			// does the sandbox's interface.
			mac, _, _ = d.sw.LowerState()
		}
		var hw net.HardwareAddr
		if !mac.IsZero() {
			hw = net.HardwareAddr(mac[:])
		}
		tap, err := endpoints.NewTap(endpoints.TapOptions{
			Name: pc.Tap.Ifname, NetNS: pc.Tap.Netns, Queues: pc.Queues, MAC: hw, MTU: mtu,
			Addresses: addrs, NoOffloads: !pc.Tap.Offloads, OnQueueState: onQueue, Logger: d.log,
		})
		if err != nil {
			return fmt.Errorf("port %q: %w", pc.Name, err)
		}
		rp.ep, rp.kind, rp.ifc = tap, "tap", tap.Name()
	case pc.AFPacket != nil:
		pk, err := endpoints.NewPacket(endpoints.PacketOptions{
			Interface: pc.AFPacket.Interface, Queues: pc.Queues, OnQueueState: onQueue, Logger: d.log,
		})
		if err != nil {
			return fmt.Errorf("port %q: %w", pc.Name, err)
		}
		rp.ep, rp.kind, rp.ifc = pk, "afpacket", pc.AFPacket.Interface
	default:
		return fmt.Errorf("port %q: no port kind", pc.Name)
	}
	bcq := pc.BCQueueLen
	p, err := d.sw.AddPort(vswitch.PortConfig{
		Name: pc.Name, Mode: pc.Mode, MAC: mac, MTU: uint32(pc.MTU),
		Queues: rp.ep.NumQueues(), QueueLen: pc.QueueLen,
		AllMulti: pc.AllMulticast, Groups: pc.Multicast,
		SourceMACs: pc.SourceMACs, NoDst: pc.NoDst, NoPromisc: pc.NoPromisc,
		BroadcastQueueLen: &bcq,
	})
	if err != nil {
		rp.ep.Close()
		return err
	}
	rp.p = p
	qs := bridge.QueueStateFunc(p)
	queueState.Store(&qs)
	rp.link = bridge.AttachPort(p, rp.ep, bridge.Options{Logger: d.log})
	d.syncCarrier(rp)
	d.mu.Lock()
	d.ports[pc.Name] = rp
	d.order = append(d.order, pc.Name)
	d.mu.Unlock()
	d.log.Info("port up", "port", pc.Name, "kind", rp.kind, "interface", rp.ifc, "mode", p.Mode(), "mac", p.MAC(), "queues", p.NumQueues())
	return nil
}

// carrierSetter is implemented by endpoints whose interface can show the
// port's carrier to the sandbox (taps).
type carrierSetter interface{ SetCarrier(on bool) error }

// syncCarrier shows the port's carrier (admin up and lower up) on its
// interface, as a macvtap follows its lower.
func (d *daemon) syncCarrier(rp *runPort) {
	if cs, ok := rp.ep.(carrierSetter); ok {
		if err := cs.SetCarrier(rp.p.Carrier()); err != nil {
			d.log.Warn("carrier", "port", rp.cfg.Name, "err", err)
		}
	}
}

// syncCarriers applies syncCarrier to every port.
func (d *daemon) syncCarriers() {
	d.mu.Lock()
	ports := make([]*runPort, 0, len(d.ports))
	for _, rp := range d.ports {
		ports = append(ports, rp)
	}
	d.mu.Unlock()
	for _, rp := range ports {
		d.syncCarrier(rp)
	}
}

// removePort tears one port down in order.
func (d *daemon) removePort(name string) error {
	d.mu.Lock()
	rp := d.ports[name]
	delete(d.ports, name)
	for i, n := range d.order {
		if n == name {
			d.order = append(d.order[:i:i], d.order[i+1:]...)
			break
		}
	}
	d.mu.Unlock()
	if rp == nil {
		return fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
	}
	rp.link.Close()
	rp.ep.Close()
	err := d.sw.RemovePort(rp.p)
	d.log.Info("port closed", "port", name, "kind", rp.kind, "interface", rp.ifc)
	return err
}

// reload applies a new configuration: removed ports go, changed ports are
// rebuilt, new ports come; untouched ports keep forwarding. Changes to any
// other section (lower, broadcast, control, metrics, log) need a restart:
// the whole reload is refused and nothing changes.
func (d *daemon) reload(next *config.Config) error {
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
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
		return fmt.Errorf("reload: %s changed, which needs a restart; nothing changed", strings.Join(restart, ", "))
	}
	var errs []error
	for _, name := range append(append([]string(nil), delta.Removed...), delta.Changed...) {
		errs = append(errs, d.removePort(name))
	}
	for _, name := range append(append([]string(nil), delta.Changed...), delta.Added...) {
		errs = append(errs, d.addPort(*next.Port(name)))
	}
	d.mu.Lock()
	d.cfg = next
	d.mu.Unlock()
	d.log.Info("reloaded", "added", delta.Added, "removed", delta.Removed, "changed", delta.Changed)
	return errors.Join(errs...)
}

// close tears everything down; safe on a partly built daemon.
func (d *daemon) close() {
	d.mu.Lock()
	names := append([]string(nil), d.order...)
	d.mu.Unlock()
	for i := len(names) - 1; i >= 0; i-- {
		_ = d.removePort(names[i])
	}
	if d.lower != nil {
		d.lower.Close()
	}
	if d.lowerEP != nil {
		d.lowerEP.Close()
	}
	if d.sw != nil {
		d.sw.Close()
	}
}
