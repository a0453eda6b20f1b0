//go:build linux

package endpoints

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The tap's device in the sandbox's namespace: creating or finding it,
// configuring it, and following it.

// ErrInterfaceExists is returned by NewTap, without Attach, when an
// interface of the requested name already exists in the namespace:
// macvsw never takes over a device it did not create.
var ErrInterfaceExists = errors.New("interface exists")

var errNoLiveQueue = errors.New("no live queue")

// Route is a route NewTap adds through the tap it creates.
type Route struct {
	Dst     netip.Prefix // destination; 0.0.0.0/0 or ::/0 for a default route
	Gateway netip.Addr   // next hop; zero for an on-link route
	Metric  int
}

// nsPollInterval is how often a followed tap checks that its namespace
// still exists.
const nsPollInterval = time.Second

// checkTapName applies NewTap's rule about an existing interface of the
// requested name, and returns the index of the one to attach to.
func checkTapName(ns *netNS, opts TapOptions) (int, error) {
	if opts.Name == "" {
		if opts.Attach {
			return 0, fmt.Errorf("tap: attach needs a name")
		}
		return 0, nil
	}
	h, err := ns.handle()
	if err != nil {
		return 0, fmt.Errorf("tap %q: %w", opts.Name, err)
	}
	defer h.Close()
	l, err := h.LinkByName(opts.Name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf) && opts.Attach:
		return 0, fmt.Errorf("tap %q in %s: nothing to attach to: %w", opts.Name, ns, err)
	case errors.As(err, &nf):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("tap %q in %s: %w", opts.Name, ns, err)
	case !opts.Attach:
		return 0, fmt.Errorf("tap %q in %s: %w (macvsw creates its taps and never takes over another device)", opts.Name, ns, ErrInterfaceExists)
	case l.Type() != "tuntap":
		return 0, fmt.Errorf("tap %q in %s: is a %s device, not a tap", opts.Name, ns, l.Type())
	case opts.IfIndex != 0 && l.Attrs().Index != opts.IfIndex:
		return 0, fmt.Errorf("tap %q in %s: ifindex %d, not %d: another interface took its name", opts.Name, ns, l.Attrs().Index, opts.IfIndex)
	}
	return l.Attrs().Index, nil
}

// createLink finishes a tap NewTap created: persistence, MAC, MTU,
// addresses, routes and link up (like `ip link set dev NAME address MAC mtu
// MTU up; ip addr add CIDR dev NAME; ip route add ...`).
func (t *Tap) createLink(opts TapOptions) error {
	name := t.Name()
	if opts.Persist {
		if err := unix.IoctlSetInt(t.queueList()[0].fd, unix.TUNSETPERSIST, 1); err != nil {
			return fmt.Errorf("tap %q: TUNSETPERSIST: %w", name, err)
		}
	}
	h, err := t.ns.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find tap %q: %w", name, err)
	}
	t.ifindex = link.Attrs().Index
	if len(opts.MAC) != 0 {
		if err := h.LinkSetHardwareAddr(link, opts.MAC); err != nil {
			return fmt.Errorf("set tap %q address %s: %w", name, opts.MAC, err)
		}
	}
	if opts.MTU != 0 {
		if err := h.LinkSetMTU(link, int(opts.MTU)); err != nil {
			return fmt.Errorf("set tap %q mtu %d: %w", name, opts.MTU, err)
		}
	}
	for _, cidr := range opts.Addresses {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			return fmt.Errorf("tap %q address %q: %w", name, cidr, err)
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %s to tap %q: %w", cidr, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set tap %q up: %w", name, err)
	}
	if opts.LoUp {
		if lo, err := h.LinkByName("lo"); err == nil {
			if err := h.LinkSetUp(lo); err != nil {
				return fmt.Errorf("set lo up in %s: %w", t.ns, err)
			}
		}
	}
	for _, r := range opts.Routes {
		nr := &netlink.Route{LinkIndex: t.ifindex, Dst: prefixNet(r.Dst), Priority: r.Metric}
		if r.Gateway.IsValid() {
			nr.Gw = net.IP(r.Gateway.AsSlice())
		}
		if err := h.RouteAdd(nr); err != nil {
			return fmt.Errorf("add route %v via %v to tap %q: %w", r.Dst, r.Gateway, name, err)
		}
	}
	return t.readLink()
}

func prefixNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// readLink takes the interface's index, MTU and MAC as they are.
func (t *Tap) readLink() error {
	h, err := t.ns.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := t.ns.link(h, t.Name(), t.ifindex)
	if err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	a := link.Attrs()
	t.ifindex = a.Index
	t.mtu.Store(uint32(a.MTU))
	mac := tcpip.LinkAddress(a.HardwareAddr)
	t.mac.Store(&mac)
	return nil
}

func (t *Tap) deleteLink() error {
	h, err := t.ns.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := t.ns.link(h, t.Name(), t.ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil // gone with its FDs
		}
		return err
	}
	return h.LinkDel(link)
}

// IfIndex returns the index of the tap's interface in its namespace (0 for
// an adopted FD set).
func (t *Tap) IfIndex() int { return t.ifindex }

// NetNS returns the ID of the namespace the tap lives in.
func (t *Tap) NetNS() NetNSID {
	if t.ns == nil {
		return NetNSID{}
	}
	if t.ns.fd < 0 {
		id, _ := CurrentNetNS()
		return id
	}
	return t.ns.id
}

// SetDeviceMAC sets the tap interface's MAC in its namespace (`ip -n NS
// link set NAME address MAC`), so the sandbox's interface has its port's
// address. It implements bridge.DeviceConfigurer.
func (t *Tap) SetDeviceMAC(mac tcpip.LinkAddress) error {
	if t.ns == nil {
		t.mac.Store(&mac)
		return nil // an adopted FD: its device is someone else's
	}
	if err := t.ns.setLinkAttrs(t.Name(), t.ifindex, net.HardwareAddr(mac), 0); err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	t.mac.Store(&mac)
	return nil
}

// SetDeviceMTU sets the tap interface's MTU in its namespace. It
// implements bridge.DeviceConfigurer.
func (t *Tap) SetDeviceMTU(mtu uint32) error {
	if t.ns == nil {
		t.mtu.Store(mtu)
		return nil
	}
	if err := t.ns.setLinkAttrs(t.Name(), t.ifindex, nil, mtu); err != nil {
		return fmt.Errorf("tap: %w", err)
	}
	t.mtu.Store(mtu)
	return nil
}

// tapDevice follows the sandbox's side of a tap: its interface (the link
// watcher) and whether its namespace still exists (a poll of the path).
type tapDevice struct {
	nsGone atomic.Bool

	mu    sync.Mutex // guards f, watch, and orders calls of f
	f     func(up bool, mtu uint32, mac tcpip.LinkAddress)
	watch *linkWatcher
	quit  chan struct{}
	wg    sync.WaitGroup
}

// SetLinkFunc installs f (nil removes it): it is called at once with the
// state of the tap's interface, then whenever the sandbox changes it. Up
// means the interface exists and is admin up (`ip link set eth0 up` inside
// the sandbox; the carrier is the switch's to set). When the namespace
// goes away (deleted, its process gone, its name taken by a new one) f
// hears down and the endpoint lets go of the namespace: it closes its
// queue FDs, so the namespace and the tap in it can be freed. It
// implements bridge.LinkNotifier.
func (t *Tap) SetLinkFunc(f func(up bool, mtu uint32, mac tcpip.LinkAddress)) {
	d := &t.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	d.f = f
	if f == nil || t.ns == nil {
		return
	}
	if d.watch == nil && d.quit == nil && !t.closed.Load() {
		w, err := watchLink(t.ns, t.Name(), t.log, 0, t.devChanged)
		if err != nil {
			t.log.Warn("tap: cannot follow the sandbox's interface", "tap", t.Name(), "err", err)
		} else {
			d.watch = w
		}
		d.quit = make(chan struct{})
		d.wg.Add(1)
		go t.netnsLoop(d.quit)
	}
	st := LinkState{}
	if d.watch != nil {
		st = d.watch.State()
	}
	f(st.Exists && st.AdminUp && !d.nsGone.Load(), st.MTU, tcpip.LinkAddress(st.MAC))
}

// devChanged passes a change of the sandbox's interface on.
func (t *Tap) devChanged(_, st LinkState) {
	d := &t.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f != nil {
		d.f(st.Exists && st.AdminUp && !d.nsGone.Load(), st.MTU, tcpip.LinkAddress(st.MAC))
	}
}

// netnsLoop checks that the tap's namespace still exists, until quit.
func (t *Tap) netnsLoop(quit chan struct{}) {
	defer t.dev.wg.Done()
	tick := time.NewTicker(nsPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-quit:
			return
		case <-tick.C:
		}
		if t.ns.stillThere() {
			continue
		}
		t.dev.nsGone.Store(true)
		t.log.Warn("tap: its network namespace is gone; port down", "tap", t.Name(), "netns", t.ns.path, "id", t.ns.id)
		d := &t.dev
		d.mu.Lock()
		if d.f != nil {
			d.f(false, t.mtu.Load(), t.LinkAddress())
		}
		d.mu.Unlock()
		// Let go of the namespace: our FDs would keep it alive.
		if t.closeQueues() {
			t.ns.close()
		}
		return
	}
}

// stop ends the following; no call of the link func runs after it.
func (d *tapDevice) stop() {
	d.mu.Lock()
	w, quit := d.watch, d.quit
	d.watch, d.f = nil, nil
	d.mu.Unlock()
	if w != nil {
		w.Close()
	}
	if quit != nil {
		select {
		case <-quit:
		default:
			close(quit)
		}
		d.wg.Wait()
	}
}

// NetNSGone reports whether the tap's namespace went away.
func (t *Tap) NetNSGone() bool { return t.dev.nsGone.Load() }

// Stats is the engine's counters and the tap device's tx_dropped
// (DeviceDrops), read from the kernel at each call.
func (t *Tap) Stats() counters.Endpoint {
	s := t.engine.Stats()
	s.DeviceDrops = t.deviceTxDropped()
	return s
}

// deviceTxDropped returns the tap netdev's tx_dropped, or 0 when the tap
// has no known interface (adopted FDs) or netlink cannot say. It finds the
// device by ifindex alone: the sandbox may have renamed it.
func (t *Tap) deviceTxDropped() uint64 {
	if t.ifindex == 0 || t.dev.nsGone.Load() {
		return 0
	}
	h, err := t.ns.handle()
	if err != nil {
		return 0
	}
	defer h.Close()
	l, err := h.LinkByIndex(t.ifindex)
	if err != nil || l.Type() != "tuntap" || l.Attrs().Statistics == nil {
		return 0
	}
	return l.Attrs().Statistics.TxDropped
}
