package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/vishvananda/netlink"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// daemon is a running switch built from a config: a bridge.Switch with an
// AF_PACKET lower and one endpoint per port. The switch is the one truth
// for every port's state; the daemon remembers of each port only what the
// switch does not know (its device, who added it) and derives its views
// and the running config from the two.
//
// Lifecycle: ports and their taps outlive the daemon. Taps it creates are
// persistent and recorded in its state directory (state.go); a start
// re-attaches to them, SIGTERM leaves them in place with no carrier, and
// only deleting a port (API, reload) or a cleanup removes them. The daemon
// never takes over an interface it did not create (unless the port says
// adopt) and never deletes one it did not create.
type daemon struct {
	log    *slog.Logger
	opt    daemonOptions
	sw     *bridge.Switch
	state  *stateDir
	events *eventLog

	// mu guards cfg (the non-port sections of the running config) and
	// ports; ctlMu serializes the control plane (API, reload, shutdown),
	// which may take mu.
	ctlMu sync.Mutex
	mu    sync.Mutex
	cfg   *config.Config
	ports map[string]*runPort

	// reloadFile reloads the config file the daemon runs (set by `run`;
	// POST /v1/reload calls it).
	reloadFile func() (api.ReloadReport, error)
}

// errDeviceBusy is a port request for a device another port uses (409).
var errDeviceBusy = errors.New("device in use")

// errPortExists is a port request for a name in use (409).
var errPortExists = vswitch.ErrExists

// runPort is what the daemon knows of a port besides the switch.
type runPort struct {
	origin string
	entry  config.Port // the entry the port was made from: its kind part counts
	owner  *portOwner
	dev    stateDevice
	ep     stack.LinkEndpoint
	// macFrom says where the port's MAC came from when its entry gave
	// none and the daemon chose it (an afpacket port's sender).
	macFrom string
}

// startDaemon builds the switch described by cfg: locks its state
// directory, attaches the lower, and brings up the file's ports and the
// ones added through the API before a restart, re-attaching to the taps it
// created. On error everything it made is torn down again (taps it
// re-attached to stay).
// daemonOptions are the daemon's settings from the command line, not the
// config file.
type daemonOptions struct {
	syscallIO bool // taps without io_uring (run --syscall-io)
}

func startDaemon(cfg *config.Config, log *slog.Logger, opt daemonOptions) (_ *daemon, err error) {
	state, err := openStateDir(stateDirOf(cfg), cfg.Lower.Interface)
	if err != nil {
		return nil, err
	}
	d := &daemon{log: log, cfg: cfg, opt: opt, state: state, ports: map[string]*runPort{}, events: newEventLog(log)}
	defer func() {
		if err != nil {
			d.shutdown(false)
		}
	}()
	saved, err := state.load()
	if err != nil {
		return nil, err
	}
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
			Reassembly:        cfg.Reassembly.Switch(),
		},
		Logger:  log,
		OnEvent: d.onEvent,
	})
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
	if err := d.restore(cfg.Ports, saved); err != nil {
		return nil, err
	}
	cfg.Ports = nil // derived from the switch from now on
	log.Debug("ports up", "lower", cfg.Lower.Interface, "ports", len(d.sw.Ports()), "queues", cfg.Lower.NumQueues(), "state", state.dir)
	return d, nil
}

func stateDirOf(cfg *config.Config) string {
	i := strings.LastIndexByte(cfg.Control.Socket, '/')
	if i <= 0 {
		return "/"
	}
	return cfg.Control.Socket[:i]
}

// restore brings up the file's ports, then the API's from the state;
// state records no port claims any more are deleted (their taps were
// created by macvsw). A file port that fails stops the start; an API
// port that fails is dropped with a logged reason.
func (d *daemon) restore(file []config.Port, saved stateFile) error {
	recs := map[string]statePort{}
	for _, sp := range saved.Ports {
		recs[sp.Name] = sp
	}
	used := map[string]bool{}
	for _, pc := range file {
		rec, ok := recs[pc.Name]
		if ok && rec.Origin != originFile {
			d.log.Error("port in the config file replaces the one added through the API", "port", pc.Name)
			d.forget(rec)
			ok = false
		}
		used[pc.Name] = true
		if err := d.addPort(pc, originFile, nil, recPtr(rec, ok)); err != nil {
			return err
		}
	}
	for _, sp := range saved.Ports {
		if used[sp.Name] {
			continue
		}
		if sp.Origin == originFile {
			d.log.Info("port no longer in the config file; removing its device", "port", sp.Name)
			d.forget(sp)
			continue
		}
		if sp.Device.Kind == "handoff" {
			d.log.Info("a hand-off port does not outlive the daemon (its socket is gone); dropped", "port", sp.Name)
			d.events.add(bridge.Event{Port: sp.Name, Type: "restore_failed", Detail: "hand-off socket gone with the daemon"})
			continue
		}
		pc, err := config.ParsePort("state", []byte(sp.Entry))
		if err == nil {
			err = d.addPort(pc, sp.Origin, sp.Owner, &sp)
		}
		if err != nil {
			d.log.Error("cannot restore a port added through the API; dropped", "port", sp.Name, "err", err)
			d.events.add(bridge.Event{Port: sp.Name, Type: "restore_failed", Detail: err.Error()})
			d.forget(sp)
		}
	}
	return d.saveState()
}

func recPtr(sp statePort, ok bool) *statePort {
	if !ok {
		return nil
	}
	return &sp
}

// forget deletes what the state says macvsw created for a port that no
// longer exists.
func (d *daemon) forget(sp statePort) {
	if err := destroyRecorded(sp.Device); err != nil {
		d.log.Warn("removing a recorded device", "port", sp.Name, "err", err)
	}
}

// openDevice opens the endpoint a port entry describes. rec, when set, is
// what the state recorded for the port: a tap macvsw created there is
// attached to again, as it is.
func (d *daemon) openDevice(pc config.Port, rec *statePort) (stack.LinkEndpoint, stateDevice, error) {
	switch {
	case pc.Tap != nil:
		return d.openTap(pc, rec)
	case pc.AFPacket != nil:
		a := pc.AFPacket
		id, err := endpoints.LookupNetNS(a.Netns)
		if err != nil {
			return nil, stateDevice{}, fmt.Errorf("afpacket.netns: %w", err)
		}
		if other := d.deviceUser("afpacket", id, a.Interface); other != "" {
			return nil, stateDevice{}, fmt.Errorf("interface %q in %s: %w: port %q uses it", a.Interface, nsName(a.Netns), errDeviceBusy, other)
		}
		pk, err := endpoints.NewPacket(endpoints.PacketOptions{
			Interface: a.Interface, NetNS: a.Netns, Queues: pc.Queues, Logger: d.log,
		})
		if err != nil {
			return nil, stateDevice{}, err
		}
		return pk, stateDevice{Kind: "afpacket", Netns: a.Netns, NetnsID: id, Ifname: a.Interface}, nil
	case pc.Socket != nil:
		return d.openSocket(pc)
	}
	return nil, stateDevice{}, fmt.Errorf("no port kind: set tap, afpacket or socket")
}

func nsName(path string) string {
	if path == "" {
		return "the daemon's netns"
	}
	return path
}

// openTap attaches to the tap the state says macvsw created for this port
// or creates one, persistent; an interface of that name that macvsw did
// not create is refused unless the port says adopt.
func (d *daemon) openTap(pc config.Port, rec *statePort) (stack.LinkEndpoint, stateDevice, error) {
	t := pc.Tap
	id, err := endpoints.LookupNetNS(t.Netns)
	if err != nil {
		return nil, stateDevice{}, fmt.Errorf("tap.netns: %w", err)
	}
	if other := d.deviceUser("tap", id, t.Ifname); other != "" {
		return nil, stateDevice{}, fmt.Errorf("interface %q in %s: %w: port %q uses it", t.Ifname, t.Netns, errDeviceBusy, other)
	}
	mac, mtu, _ := d.sw.Core().LowerState()
	if pc.Mode != vswitch.ModePassthru {
		mac = pc.MAC // zero: the switch picks one and sets it
	}
	if pc.MTU != 0 {
		mtu = uint32(pc.MTU)
	}
	opts := endpoints.TapOptions{
		Name: t.Ifname, NetNS: t.Netns, Queues: pc.Queues, MTU: mtu, NoOffloads: !t.Offloads,
		Persist: true, LoUp: t.LoUp, Logger: d.log, SyscallIO: d.opt.syscallIO,
	}
	if !mac.IsZero() {
		opts.MAC = net.HardwareAddr(mac[:])
	}
	for _, a := range t.Addresses {
		opts.Addresses = append(opts.Addresses, a.String())
	}
	for _, r := range t.Routes {
		opts.Routes = append(opts.Routes, endpoints.Route{Dst: r.To, Gateway: r.Via, Metric: r.Metric})
	}
	dev := stateDevice{Kind: "tap", Netns: t.Netns, NetnsID: id, Ifname: t.Ifname}
	if rec != nil && rec.Device.Kind == "tap" && rec.Device.NetnsID == id && rec.Device.Ifname == t.Ifname {
		// Ours from before a restart: attach, leave its addresses and
		// routes (and whatever the sandbox did) alone.
		ao := opts
		ao.Attach, ao.IfIndex = true, rec.Device.Ifindex
		if tap, err := endpoints.NewTap(ao); err == nil {
			dev.Ifindex, dev.Created = tap.IfIndex(), rec.Device.Created
			d.log.Info("re-attached to the port's tap", "port", pc.Name, "tap", t.Ifname, "netns", t.Netns, "ifindex", tap.IfIndex())
			return tap, dev, nil
		} else {
			d.log.Info("the port's tap is gone; creating it again", "port", pc.Name, "err", err)
		}
	}
	tap, err := endpoints.NewTap(opts)
	switch {
	case errors.Is(err, endpoints.ErrInterfaceExists) && t.Adopt:
		ao := opts
		ao.Attach = true
		tap, err = endpoints.NewTap(ao)
		if err != nil {
			return nil, stateDevice{}, err
		}
		dev.Ifindex = tap.IfIndex()
		d.log.Info("adopted an existing tap", "port", pc.Name, "tap", t.Ifname, "netns", t.Netns)
		return tap, dev, nil
	case errors.Is(err, endpoints.ErrInterfaceExists):
		return nil, stateDevice{}, fmt.Errorf("%w (set tap.adopt to take it over)", err)
	case err != nil:
		return nil, stateDevice{}, err
	}
	dev.Ifindex, dev.Created = tap.IfIndex(), true
	return tap, dev, nil
}

// deviceUser names the running port that uses interface ifname of kind
// in namespace id, or "".
func (d *daemon) deviceUser(kind string, id endpoints.NetNSID, ifname string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, rp := range d.ports {
		if rp.dev.Kind == kind && rp.dev.NetnsID == id && rp.dev.Ifname == ifname {
			return name
		}
	}
	return ""
}

// addPort opens the port's device and adds it to the switch.
func (d *daemon) addPort(pc config.Port, origin string, owner *portOwner, rec *statePort) error {
	if d.sw.Port(pc.Name) != nil {
		return fmt.Errorf("port %q: %w", pc.Name, errPortExists)
	}
	// An AF_PACKET port delivers unicast by the MAC of what sends on its
	// interface: without one it takes the sender's, never a random one
	// that would pass no unicast at all.
	macFrom := ""
	if a := pc.AFPacket; a != nil && pc.MAC.IsZero() && pc.Mode != vswitch.ModePassthru {
		mac, how, err := endpoints.SenderMAC(a.Netns, a.Interface)
		if err != nil {
			return fmt.Errorf("port %q: afpacket: %w", pc.Name, err)
		}
		copy(pc.MAC[:], mac)
		macFrom = how
		d.log.Info("afpacket port without a mac takes "+how, "port", pc.Name, "mac", pc.MAC.String())
	}
	ep, dev, err := d.openDevice(pc, rec)
	if err != nil {
		return fmt.Errorf("port %q: %w", pc.Name, err)
	}
	if err := d.addEndpoint(pc, origin, owner, ep, dev); err != nil {
		closeDevice(ep, dev, rec == nil)
		return err
	}
	d.mu.Lock()
	d.ports[pc.Name].macFrom = macFrom
	d.mu.Unlock()
	return nil
}

// addEndpoint adds a port on an open endpoint; on error the caller still
// owns ep.
func (d *daemon) addEndpoint(pc config.Port, origin string, owner *portOwner, ep stack.LinkEndpoint, dev stateDevice) error {
	setBusyPoll(ep, pc.BusyPoll)
	if _, err := d.sw.AddPort(pc.SwitchConfig(), ep, bridge.PortOptions{}); err != nil {
		return err
	}
	d.mu.Lock()
	d.ports[pc.Name] = &runPort{origin: origin, entry: pc, owner: owner, dev: dev, ep: ep}
	d.mu.Unlock()
	return nil
}

// closeDevice closes an endpoint; with destroy, a tap macvsw created is
// deleted too.
func closeDevice(ep stack.LinkEndpoint, dev stateDevice, destroy bool) {
	if tap, ok := ep.(*endpoints.Tap); ok && destroy && dev.Created {
		tap.Destroy()
		return
	}
	ep.Close()
}

// removePort removes a port and its device (a tap it created is deleted,
// an adopted one only closed).
func (d *daemon) removePort(name string) error {
	d.mu.Lock()
	rp := d.ports[name]
	d.mu.Unlock()
	if rp == nil {
		return fmt.Errorf("port %q: %w", name, vswitch.ErrNotFound)
	}
	ep, err := d.sw.DetachPort(name)
	if err != nil {
		return err
	}
	closeDevice(ep, rp.dev, true)
	d.mu.Lock()
	delete(d.ports, name)
	d.mu.Unlock()
	return nil
}

// busyPoller is an endpoint whose readers can busy poll (every OS
// endpoint of package endpoints).
type busyPoller interface{ SetBusyPoll(time.Duration) }

// setBusyPoll applies a port's busy_poll to its endpoint, if it polls.
func setBusyPoll(ep stack.LinkEndpoint, d time.Duration) bool {
	bp, ok := ep.(busyPoller)
	if ok {
		bp.SetBusyPoll(d)
	}
	return ok
}

// portConfig returns a running port's config entry: the switch's state and
// its device.
func (d *daemon) portConfig(p *bridge.Port) (config.Port, *runPort, bool) {
	d.mu.Lock()
	rp, ok := d.ports[p.Name()]
	d.mu.Unlock()
	if !ok {
		return config.Port{}, nil, false
	}
	pc := config.PortOf(p.Core().Config())
	pc.Tap, pc.AFPacket, pc.Socket = rp.entry.Tap, rp.entry.AFPacket, rp.entry.Socket
	pc.BusyPoll = rp.entry.BusyPoll
	return pc, rp, true
}

// runningConfig returns the config the daemon runs: the file's sections
// and, for ports, the switch's state.
func (d *daemon) runningConfig() *config.Config {
	d.mu.Lock()
	c := *d.cfg
	d.mu.Unlock()
	c.Ports = nil
	for _, p := range d.sw.Ports() {
		// A hand-off port has no entry a file could hold: its socket
		// was made for its caller.
		if pc, rp, ok := d.portConfig(p); ok && rp.dev.Kind != "handoff" {
			c.Ports = append(c.Ports, pc)
		}
	}
	return &c
}

// saveState records every running port.
func (d *daemon) saveState() error {
	var st stateFile
	for _, p := range d.sw.Ports() {
		pc, rp, ok := d.portConfig(p)
		if !ok {
			continue
		}
		sp := statePort{Name: pc.Name, Origin: rp.origin, Owner: rp.owner, Device: rp.dev}
		if rp.origin != originFile {
			b, err := config.MarshalPort(pc)
			if err != nil {
				return err
			}
			sp.Entry = string(b)
		}
		st.Ports = append(st.Ports, sp)
	}
	if err := d.state.save(st); err != nil {
		d.log.Error("saving the state", "err", err)
		return err
	}
	return nil
}

// lowerName returns the lower's interface name (a reload cannot change it).
func (d *daemon) lowerName() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Lower.Interface
}

// allowList returns control.allow as it is now (a reload may change it).
func (d *daemon) allowList() config.Allow {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Control.Allow
}

// reload applies a new configuration to the ports that came from the
// file: removed ports go, ports whose device changed are rebuilt, ports
// whose switch settings changed are updated in place (the sandbox keeps
// its interface, addresses and routes), new ports come; untouched ports,
// and ports added through the API, keep forwarding. Changes to any other
// section (lower, broadcast, control, metrics, log) need a restart: the
// whole reload is refused and nothing changes. What could not be applied
// is reported and, as it is not in the running config, tried again at the
// next reload.
func (d *daemon) reload(next *config.Config) (reloadReport, error) {
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	cur := d.runningConfig()
	var rep reloadReport
	next.InheritMACs(cur)
	d.mu.Lock()
	var fileNames []string
	for name, rp := range d.ports {
		if rp.origin != originFile {
			if next.Port(name) != nil {
				d.mu.Unlock()
				return rep, &apiError{http.StatusConflict, fmt.Errorf("reload: port %q was added through the API; delete it first: nothing changed", name)}
			}
			continue
		}
		fileNames = append(fileNames, name)
	}
	d.mu.Unlock()
	fileCur := *cur
	fileCur.Ports = slices.DeleteFunc(slices.Clone(cur.Ports), func(p config.Port) bool { return !slices.Contains(fileNames, p.Name) })
	delta := config.Diff(&fileCur, next)
	var restart []string
	for _, c := range []struct {
		name    string
		changed bool
	}{{"lower", delta.Lower}, {"broadcast", delta.Broadcast}, {"reassembly", delta.Reassembly}, {"control", delta.Control}, {"metrics", delta.Metrics}, {"log", delta.Log}} {
		if c.changed {
			restart = append(restart, c.name)
		}
	}
	if len(restart) > 0 {
		return rep, &apiError{http.StatusConflict, fmt.Errorf("reload: %s changed, which needs a restart; nothing changed", strings.Join(restart, ", "))}
	}
	if delta.Allow {
		d.mu.Lock()
		d.cfg.Control.Allow = next.Control.Allow
		d.mu.Unlock()
		rep.Allow = true
	}
	var errs []error
	fail := func(name string, err error) {
		rep.Failed = append(rep.Failed, name)
		if rep.Errors == nil {
			rep.Errors = map[string]string{}
		}
		rep.Errors[name] = err.Error()
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
		want, have := *next.Port(name), *fileCur.Port(name)
		if config.SameDevice(&have, &want) {
			c := portChange(have, want)
			polled := have.BusyPoll != want.BusyPoll && d.setPortBusyPoll(name, want.BusyPoll)
			if reflect.ValueOf(c).IsZero() {
				if polled {
					rep.Changed = append(rep.Changed, name)
				}
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
		if err := d.addPort(want, originFile, nil, nil); err != nil {
			fail(name, err)
			continue
		}
		rep.Rebuilt = append(rep.Rebuilt, name)
	}
	for _, name := range delta.Added {
		if err := d.addPort(*next.Port(name), originFile, nil, nil); err != nil {
			fail(name, err)
			continue
		}
		rep.Added = append(rep.Added, name)
	}
	d.saveState()
	d.log.Info("reloaded", "added", rep.Added, "removed", rep.Removed, "changed", rep.Changed, "rebuilt", rep.Rebuilt, "failed", rep.Failed)
	d.events.add(bridge.Event{Type: "reload", Detail: rep.String()})
	return rep, errors.Join(errs...)
}

// setPortBusyPoll changes a running port's busy_poll in place.
func (d *daemon) setPortBusyPoll(name string, bp time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	rp, ok := d.ports[name]
	if !ok || !setBusyPoll(rp.ep, bp) {
		return false
	}
	rp.entry.BusyPoll = bp
	return true
}

// reloadReport says what a reload did.
type reloadReport = api.ReloadReport

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
	if want.Police != have.Police {
		c.Police = &want.Police
	}
	if w.SpoofCheck != h.SpoofCheck {
		c.SpoofCheck = &w.SpoofCheck
	}
	if !slices.Equal(w.AllowedIPs, h.AllowedIPs) {
		c.AllowedIPs = &w.AllowedIPs
	}
	return c
}

// shutdown stops the daemon. Without cleanup (SIGTERM) every port's
// device stays: a tap keeps its interface, addresses and routes with no
// carrier, and the state says how to find it again. With cleanup (`run
// --cleanup`, `macvsw down`) every port is removed, its tap deleted, and
// the state cleared. Safe on a partly built daemon.
func (d *daemon) shutdown(cleanup bool) {
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if d.sw != nil {
		ports := d.sw.Ports()
		for i := len(ports) - 1; i >= 0; i-- {
			name := ports[i].Name()
			if cleanup {
				if err := d.removePort(name); err != nil {
					d.log.Warn("remove port", "port", name, "err", err)
				}
				continue
			}
			ep, err := d.sw.DetachPort(name)
			if err != nil {
				continue
			}
			if cs, ok := ep.(bridge.CarrierSetter); ok {
				_ = cs.SetCarrier(false)
			}
			ep.Close()
		}
		d.sw.Close()
	}
	if d.state != nil {
		if cleanup {
			d.state.remove()
		}
		d.state.close()
	}
}

// onEvent records the switch's events; a port whose link went down because
// its namespace went away says so.
func (d *daemon) onEvent(e bridge.Event) {
	if e.Type == bridge.EventLinkDown {
		d.mu.Lock()
		rp := d.ports[e.Port]
		d.mu.Unlock()
		if rp != nil {
			if tap, ok := rp.ep.(*endpoints.Tap); ok && tap.NetNSGone() {
				e.Detail = fmt.Sprintf("its network namespace %s is gone", rp.dev.Netns)
			}
		}
	}
	d.events.add(e)
}
