package bridge_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/macvsw/macvsw/bridge"
	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// device is a port endpoint with a device of its own: it records the
// carrier, MAC and MTU the Switch sets, can refuse a MAC, and reports its
// link like a tap in a sandbox does.
type device struct {
	*channel.Endpoint

	mu      sync.Mutex
	carrier []bool
	macs    []tcpip.LinkAddress
	mtus    []uint32
	refuse  tcpip.LinkAddress // SetDeviceMAC fails for this MAC
	link    func(up bool, mtu uint32, mac tcpip.LinkAddress)
}

func newDevice() *device { return &device{Endpoint: channel.New(64, 1500, "")} }

func (d *device) SetCarrier(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.carrier = append(d.carrier, on)
	return nil
}

func (d *device) SetDeviceMAC(mac tcpip.LinkAddress) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if mac == d.refuse {
		return errors.New("device refuses that MAC")
	}
	d.macs = append(d.macs, mac)
	d.Endpoint.SetLinkAddress(mac)
	return nil
}

func (d *device) SetDeviceMTU(mtu uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mtus = append(d.mtus, mtu)
	return nil
}

func (d *device) SetLinkFunc(f func(up bool, mtu uint32, mac tcpip.LinkAddress)) {
	d.mu.Lock()
	d.link = f
	d.mu.Unlock()
	if f != nil {
		f(true, 1500, d.LinkAddress())
	}
}

// report plays the sandbox changing its interface.
func (d *device) report(up bool, mtu uint32, mac tcpip.LinkAddress) {
	d.mu.Lock()
	f := d.link
	d.mu.Unlock()
	f(up, mtu, mac)
}

func (d *device) lastCarrier() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.carrier[len(d.carrier)-1]
}

func (d *device) lastMAC() tcpip.LinkAddress {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.macs) == 0 {
		return ""
	}
	return d.macs[len(d.macs)-1]
}

func mac(last byte) vswitch.MAC { return vswitch.MAC{2, 0, 0, 0, 0, last} }

func la(m vswitch.MAC) tcpip.LinkAddress { return tcpip.LinkAddress(m[:]) }

func addDevicePort(t *testing.T, sw *bridge.Switch, name string, m vswitch.MAC) *device {
	t.Helper()
	d := newDevice()
	if _, err := sw.AddPort(vswitch.PortConfig{Name: name, Mode: vswitch.ModeBridge, MAC: m}, d, bridge.PortOptions{}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSwitchKeepsDevicesInStep: the Switch gives a device its port's MAC
// and carrier, applies updates to it all or nothing, and follows what the
// sandbox does to it.
func TestSwitchKeepsDevicesInStep(t *testing.T) {
	sw := bridge.New(bridge.Options{})
	defer sw.Close()
	a := addDevicePort(t, sw, "a", mac(0xa))
	addDevicePort(t, sw, "b", mac(0xb))
	if a.lastMAC() != la(mac(0xa)) || !a.lastCarrier() {
		t.Fatalf("new port: device MAC %v carrier %v", a.lastMAC(), a.lastCarrier())
	}

	// Admin down shows as no carrier; up again as carrier.
	if err := sw.Update("a", vswitch.PortChange{Up: vswitch.Bool(false)}); err != nil {
		t.Fatal(err)
	}
	if a.lastCarrier() {
		t.Error("port down: device still has carrier")
	}
	if err := sw.Update("a", vswitch.PortChange{Up: vswitch.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if !a.lastCarrier() {
		t.Error("port up: device has no carrier")
	}

	// A MAC and MTU change reaches the device.
	m, mtu := mac(0xc), uint32(1400)
	if err := sw.Update("a", vswitch.PortChange{MAC: &m, MTU: &mtu}); err != nil {
		t.Fatal(err)
	}
	if a.lastMAC() != tcpip.LinkAddress(m[:]) || a.mtus[len(a.mtus)-1] != 1400 {
		t.Errorf("update: device MAC %v MTUs %v", a.lastMAC(), a.mtus)
	}

	// The device refuses: the port is as it was.
	a.refuse = la(mac(0xd))
	before := sw.Port("a").Core().Config()
	m2, mtu2 := mac(0xd), uint32(1300)
	if err := sw.Update("a", vswitch.PortChange{MAC: &m2, MTU: &mtu2}); err == nil {
		t.Fatal("update the device refused: no error")
	}
	if got := sw.Port("a").Core().Config(); got.MAC != before.MAC || got.MTU != before.MTU {
		t.Errorf("refused update left the port at %v/%d, want %v/%d", got.MAC, got.MTU, before.MAC, before.MTU)
	}

	// The sandbox sets its own MAC: the port follows; a MAC b holds is
	// refused and the device gets the port's back.
	own := mac(0xe)
	a.report(true, 1400, tcpip.LinkAddress(own[:]))
	if got := sw.Port("a").Core().MAC(); got != own {
		t.Errorf("sandbox MAC change: port MAC %v, want %v", got, own)
	}
	b := mac(0xb)
	a.report(true, 1400, tcpip.LinkAddress(b[:]))
	if got := sw.Port("a").Core().MAC(); got != own || a.lastMAC() != tcpip.LinkAddress(own[:]) {
		t.Errorf("sandbox took b's MAC: port %v, device %v; want both %v", got, a.lastMAC(), own)
	}

	// The sandbox sets its interface down: the port stops passing frames,
	// as a macvlan set down, and its MAC is free.
	a.report(false, 1400, tcpip.LinkAddress(own[:]))
	if p := sw.Port("a").Core(); p.Running() || p.LinkUp() || !p.Up() {
		t.Errorf("sandbox down: running %v link %v up %v", p.Running(), p.LinkUp(), p.Up())
	}
	a.report(true, 1400, tcpip.LinkAddress(own[:]))
	deadline := time.Now().Add(time.Second)
	for !sw.Port("a").Core().Running() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !sw.Port("a").Core().Running() {
		t.Error("sandbox up again: port not running")
	}
}

// TestSwitchLowerFollowsLink: a lower that reports its link gives the
// switch its carrier and MTU, and the ports' carrier follows.
func TestSwitchLowerFollowsLink(t *testing.T) {
	sw := bridge.New(bridge.Options{})
	defer sw.Close()
	lower := newDevice()
	if err := sw.AttachLower(lower, bridge.LowerOptions{}); err != nil {
		t.Fatal(err)
	}
	a := addDevicePort(t, sw, "a", mac(0xa))
	lower.report(false, 1500, "")
	if a.lastCarrier() || sw.Port("a").Core().Running() {
		t.Error("lower down: port still has carrier")
	}
	lower.report(true, 9000, "")
	if !a.lastCarrier() {
		t.Error("lower up: port has no carrier")
	}
	if _, mtu, up := sw.Core().LowerState(); mtu != 9000 || !up {
		t.Errorf("lower state: mtu %d up %v, want 9000, up", mtu, up)
	}
	lower.report(true, 1400, "")
	if got := sw.Port("a").Core().MTU(); got != 1400 {
		t.Errorf("lower MTU 1400: port MTU %d, want clamped to 1400", got)
	}
}

// The Switch's own timer expires a datagram nobody completes: no fragment
// arrives after the first, and nobody calls ExpireFragments.
func TestSwitchExpiresFragments(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	sw := bridge.New(bridge.Options{
		Core:         vswitch.Options{Now: clock, Reassembly: vswitch.Reassembly{Timeout: 5 * time.Second}},
		FragmentTick: time.Millisecond,
	})
	defer sw.Close()
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "a"}, newDevice(), bridge.PortOptions{}); err != nil {
		t.Fatal(err)
	}
	// The first fragment of a broadcast UDP datagram from the wire.
	frame := make([]byte, 14+20+64)
	copy(frame, "\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\xee\x08\x00")
	ip := frame[14:]
	ip[0], ip[3], ip[6], ip[8], ip[9] = 0x45, 84, 0x20, 64, 17
	copy(ip[12:20], []byte{10, 0, 0, 1, 10, 0, 0, 255})
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	sw.Core().Receive(pkt, -1)
	pkt.DecRef()
	if st := sw.Core().Stats(); st.Pending != 1 {
		t.Fatalf("pending %d, want 1", st.Pending)
	}
	time.Sleep(20 * time.Millisecond) // many ticks, but the clock has not moved
	if st := sw.Core().Stats(); st.Pending != 1 {
		t.Fatalf("pending %d before the timeout, want 1", st.Pending)
	}
	mu.Lock()
	now = now.Add(5 * time.Second)
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for sw.Core().Stats().Pending != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := sw.Core().Stats(); st.Pending != 0 || st.Drops.Get("defrag_timeout") != 1 || st.DefragBytes != 0 {
		t.Errorf("after the timeout: pending %d, defrag_timeout %d, %d bytes held", st.Pending, st.Drops.Get("defrag_timeout"), st.DefragBytes)
	}
}
