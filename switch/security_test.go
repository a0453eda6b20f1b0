package vswitch

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"net/netip"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	var b bucket
	b.init(1000, 10) // 1 unit per ms, 10 in a burst
	const ms = int64(time.Millisecond)
	now := 5 * ms
	for i := range 10 {
		if !b.take(now, 1) {
			t.Fatalf("unit %d of the burst refused", i)
		}
	}
	if b.take(now, 1) {
		t.Fatal("11th unit at the same instant conforms")
	}
	if !b.take(now+ms, 1) {
		t.Fatal("a unit 1 ms later (one refilled) refused")
	}
	if b.take(now+ms, 1) {
		t.Fatal("second unit 1 ms later conforms")
	}
	// A long idle period refills to the burst, not beyond.
	now += time.Hour.Nanoseconds()
	n := 0
	for b.take(now, 1) {
		n++
	}
	if n != 10 {
		t.Errorf("after an hour idle, %d units conform at once, want the burst of 10", n)
	}
	// A refused take charges nothing.
	var c bucket
	c.init(1000, 4)
	if c.take(0, 100) {
		t.Fatal("100 units conform in a bucket of 4")
	}
	if !c.take(0, 1) {
		t.Error("a refused take of 100 units charged the bucket")
	}
	var off bucket
	if !off.take(0, 1<<40) {
		t.Error("a bucket with rate 0 refuses")
	}
}

func TestPolice(t *testing.T) {
	const n = 200
	cases := []struct {
		name       string
		police     Police
		bcast      bool
		size       int
		wantMin    int
		wantMax    int
		wantReason DropReason
	}{
		// Rates low enough that nothing refills while the test runs
		// (even under the race detector): exactly the burst passes.
		{"pps", Police{PPS: 2, Burst: 20}, false, 100, 20, 21, DropPoliced},
		{"bps", Police{BPS: 8 * 1000, BurstBytes: 100_000}, false, 1000, 100, 101, DropPoliced},
		{"storm", Police{FloodPPS: 1, FloodBurst: 5}, true, 100, 5, 6, DropStorm},
		{"storm spares unicast", Police{FloodPPS: 1, FloodBurst: 5}, false, 100, n, n, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSwitch(t, Options{})
			pol := c.police
			a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge, Police: &pol})
			b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
			dst := macB
			if c.bcast {
				dst = Broadcast
			}
			for i := range n {
				send(s, a, udp4(dst, macA, uint16(i), 2, c.size))
			}
			got := sum(drain(b))
			if got < c.wantMin || got > c.wantMax {
				t.Errorf("%d of %d frames passed, want %d..%d", got, n, c.wantMin, c.wantMax)
			}
			st := a.Stats()
			if c.wantReason != 0 {
				if d := st.TxDrops[c.wantReason].Count; int(d) != n-got {
					t.Errorf("%s drops = %d, want %d", c.wantReason, d, n-got)
				}
			} else if st.TxDropped != 0 {
				t.Errorf("drops %v, want none", st.TxDrops.NonZero())
			}
			drain(s.Lower())
			checkInvariant(t, s)
		})
	}
}

func TestPoliceDefaults(t *testing.T) {
	for _, c := range []struct{ in, want Police }{
		{Police{PPS: 1000}, Police{PPS: 1000, Burst: 50}},
		{Police{PPS: 10}, Police{PPS: 10, Burst: minBurst}},
		{Police{BPS: 1e9}, Police{BPS: 1e9, BurstBytes: 1e9 / 8 / 20}},
		{Police{BPS: 1e6}, Police{BPS: 1e6, BurstBytes: minBurstB}},
		{Police{FloodPPS: 100, FloodBurst: 3}, Police{FloodPPS: 100, FloodBurst: 3}},
		{Police{FloodPPS: 100}, Police{FloodPPS: 100, FloodBurst: minFlood}},
	} {
		if got := c.in.withDefaults(); got != c.want {
			t.Errorf("%+v.withDefaults() = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestPoliceUpdate(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge, Police: &Police{PPS: 1, Burst: 2}})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	burst := func() int {
		for range 10 {
			send(s, a, udp4(macB, macA, 1, 2, 60))
		}
		return sum(drain(b))
	}
	if got := burst(); got != 2 {
		t.Fatalf("%d passed, want the burst of 2", got)
	}
	// Another setting changes: the bucket keeps its state (still empty).
	must(t, s.SetQueueLen(a, 500))
	if got := burst(); got != 0 {
		t.Errorf("after an unrelated change, %d passed: the policer was reset", got)
	}
	// New limits: a new bucket.
	must(t, s.Update(a, PortChange{Police: &Police{PPS: 1, Burst: 5}}))
	if got := burst(); got != 5 {
		t.Errorf("after new limits, %d passed, want 5", got)
	}
	if cfg := a.Config(); cfg.Police == nil || cfg.Police.Burst != 5 {
		t.Errorf("Config().Police = %+v", cfg.Police)
	}
	// A zero Police removes the limits.
	must(t, s.Update(a, PortChange{Police: &Police{}}))
	if got := burst(); got != 10 {
		t.Errorf("without limits, %d of 10 passed", got)
	}
	if cfg := a.Config(); cfg.Police != nil {
		t.Errorf("Config().Police = %+v, want nil", cfg.Police)
	}
	err := s.Update(a, PortChange{Police: &Police{BPS: 1_000_000, BurstBytes: 1000}})
	var pe *PortError
	if !errors.As(err, &pe) || pe.Field != "police.burst_bytes" {
		t.Errorf("a burst smaller than a 64 KiB frame: %v", err)
	}
	if _, err := s.AddPort(PortConfig{Name: "c", Police: &Police{PPS: MaxPolicePPS + 1}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("pps above the maximum: %v", err)
	}
}

// Frame builders for the anti-spoofing cases.

func ipv4From(src MAC, ip [4]byte, proto uint8, dport uint16) []byte {
	b := udp4(macB, src, 1000, dport, 64)
	copy(b[14+12:], ip[:])
	b[14+9] = proto
	return b
}

func arpFrame(ethSrc, sha MAC, spa [4]byte) []byte {
	b := ethFrame(Broadcast, ethSrc, etherTypeARP, 60)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], etherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 2) // reply
	copy(a[8:], sha[:])
	copy(a[14:], spa[:])
	return b
}

// ipv6Frame builds an IPv6 packet from src with next header proto and
// payload.
func ipv6Frame(ethSrc MAC, src netip.Addr, proto uint8, payload []byte) []byte {
	b := ethFrame(MAC{0x33, 0x33, 0, 0, 0, 1}, ethSrc, etherTypeIPv6, 14+40+len(payload))
	ip := b[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	ip[6], ip[7] = proto, 255
	s16 := src.As16()
	copy(ip[8:], s16[:])
	copy(ip[24:], []byte{0xff, 2, 15: 1})
	copy(ip[40:], payload)
	return b
}

// neighAdvert is an ICMPv6 NA for target with a target link-layer option.
func neighAdvert(target netip.Addr, ll MAC) []byte {
	p := make([]byte, 32)
	p[0] = ndNeighAdvert
	t16 := target.As16()
	copy(p[8:], t16[:])
	p[24], p[25] = ndOptTargetLL, 1
	copy(p[26:], ll[:])
	return p
}

func TestSpoofCheck(t *testing.T) {
	ip4 := func(s string) [4]byte { return netip.MustParseAddr(s).As4() }
	ip6 := netip.MustParseAddr
	ll := linkLocal(macA)
	vlan := func(b []byte) []byte {
		out := make([]byte, len(b)+4)
		copy(out, b[:12])
		binary.BigEndian.PutUint16(out[12:], etherTypeVLAN)
		binary.BigEndian.PutUint16(out[14:], 7)
		copy(out[16:], b[12:])
		return out
	}
	cases := []struct {
		name  string
		frame []byte
		want  DropReason // 0: delivered
	}{
		{"own MAC and IPv4", ipv4From(macA, ip4("10.0.0.1"), ipProtoUDP, 80), 0},
		{"sibling's MAC", ipv4From(macB, ip4("10.0.0.1"), ipProtoUDP, 80), DropSpoofMAC},
		{"sibling's IPv4", ipv4From(macA, ip4("10.0.0.2"), ipProtoUDP, 80), DropSpoofIP},
		{"IPv4 in an allowed prefix", ipv4From(macA, ip4("10.9.0.7"), ipProtoUDP, 80), 0},
		{"DHCP discover from 0.0.0.0", ipv4From(macA, ip4("0.0.0.0"), ipProtoUDP, 67), 0},
		{"0.0.0.0 to another port", ipv4From(macA, ip4("0.0.0.0"), ipProtoUDP, 80), DropSpoofIP},
		{"sibling's IPv4 in a VLAN", vlan(ipv4From(macA, ip4("10.0.0.2"), ipProtoUDP, 80)), DropSpoofIP},
		{"truncated IPv4", ethFrame(macB, macA, etherTypeIPv4, 30), DropSpoofIP},
		{"ARP reply as itself", arpFrame(macA, macA, ip4("10.0.0.1")), 0},
		{"ARP reply for a sibling's IPv4", arpFrame(macA, macA, ip4("10.0.0.2")), DropSpoofIP},
		{"ARP with a sibling's hardware address", arpFrame(macA, macB, ip4("10.0.0.1")), DropSpoofMAC},
		{"ARP probe", arpFrame(macA, macA, ip4("0.0.0.0")), 0},
		{"IPv6 own address", ipv6Frame(macA, ip6("fd00::1"), ipProtoUDP, make([]byte, 8)), 0},
		{"IPv6 sibling's address", ipv6Frame(macA, ip6("fd00::2"), ipProtoUDP, make([]byte, 8)), DropSpoofIP},
		{"IPv6 own link-local", ipv6Frame(macA, ll, ipProtoUDP, make([]byte, 8)), 0},
		{"IPv6 sibling's link-local", ipv6Frame(macA, linkLocal(macB), ipProtoUDP, make([]byte, 8)), DropSpoofIP},
		{"DAD from ::", ipv6Frame(macA, ip6("::"), ipProtoICMPv6, make([]byte, 24)), 0},
		{"UDP from ::", ipv6Frame(macA, ip6("::"), ipProtoUDP, make([]byte, 8)), DropSpoofIP},
		{"NA for itself", ipv6Frame(macA, ll, ipProtoICMPv6, neighAdvert(ip6("fd00::1"), macA)), 0},
		{"NA for a sibling's address", ipv6Frame(macA, ll, ipProtoICMPv6, neighAdvert(ip6("fd00::2"), macA)), DropSpoofIP},
		{"NA with a sibling's link-layer address", ipv6Frame(macA, ll, ipProtoICMPv6, neighAdvert(ip6("fd00::1"), macB)), DropSpoofMAC},
		{"LLDP", ethFrame(MAC{0x01, 0x80, 0xc2, 0, 0, 0x0e}, macA, 0x88cc, 60), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSwitch(t, Options{})
			a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge, SpoofCheck: true,
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("fd00::1/128")}})
			b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
			send(s, a, c.frame)
			got := sum(drain(b)) + sum(drain(s.Lower()))
			st := a.Stats()
			if c.want == 0 {
				if got == 0 || st.TxDropped != 0 {
					t.Errorf("dropped (%v), want delivered", st.TxDrops.NonZero())
				}
			} else if got != 0 || st.TxDrops[c.want].Count != 1 {
				t.Errorf("delivered %d, drops %v; want one %s drop", got, st.TxDrops.NonZero(), c.want)
			}
			checkInvariant(t, s)
		})
	}
}

func TestSpoofCheckMACOnly(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge, SpoofCheck: true})
	src := addPort(t, s, PortConfig{Name: "s", MAC: macC, Mode: ModeSource, SpoofCheck: true, SourceMACs: []MAC{macE}})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	send(s, a, ipv4From(macA, [4]byte{192, 168, 1, 1}, ipProtoUDP, 80)) // any address
	send(s, a, ipv4From(macC, [4]byte{10, 0, 0, 1}, ipProtoUDP, 80))    // another MAC
	if got := sum(drain(b)); got != 1 {
		t.Errorf("%d frames reached b, want 1", got)
	}
	// A source-mode port may send as one of its source MACs.
	send(s, src, udp4(macE, macE, 1, 2, 64))
	send(s, src, udp4(macE, macB, 1, 2, 64))
	drain(b)
	if st := src.Stats(); st.TxPackets != 1 || st.TxDrops[DropSpoofMAC].Count != 1 {
		t.Errorf("source port: tx %d, drops %v", st.TxPackets, st.TxDrops.NonZero())
	}
	drain(s.Lower())
	// Turning it off takes effect at once; allowed_ips needs it on.
	must(t, s.Update(a, PortChange{SpoofCheck: Bool(false)}))
	send(s, a, ipv4From(macC, [4]byte{10, 0, 0, 1}, ipProtoUDP, 80))
	if got := sum(drain(b)); got != 1 {
		t.Errorf("spoofcheck off: %d frames reached b", got)
	}
	ips := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}
	if err := s.Update(a, PortChange{AllowedIPs: &ips}); !errors.Is(err, ErrInvalid) {
		t.Errorf("allowed_ips without spoofcheck: %v", err)
	}
	must(t, s.Update(a, PortChange{SpoofCheck: Bool(true), AllowedIPs: &ips}))
	if cfg := a.Config(); !cfg.SpoofCheck || len(cfg.AllowedIPs) != 1 {
		t.Errorf("Config() = %+v", cfg)
	}
	checkInvariant(t, s)
}

// FuzzSpoofCheck: the anti-spoofing parser never panics, reads nothing
// beyond the frame, and decides the same for a frame in one view or two.
func FuzzSpoofCheck(f *testing.F) {
	f.Add(ipv4From(macA, [4]byte{10, 0, 0, 1}, ipProtoUDP, 80))
	f.Add(arpFrame(macA, macA, [4]byte{10, 0, 0, 2}))
	f.Add(ipv6Frame(macA, netip.MustParseAddr("fd00::1"), ipProtoICMPv6, neighAdvert(netip.MustParseAddr("fd00::2"), macB)))
	f.Add(ipv6Frame(macA, netip.MustParseAddr("::"), ipv6HopByHop, []byte{ipProtoICMPv6, 0, 0, 0, 0, 0, 0, 0, 143}))
	st := portState{mode: ModeBridge, mac: macA, spoofCheck: true,
		allowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::1/128")}}
	g := newGuard(&st)
	s := &Switch{seed: maphash.MakeSeed()}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < ethHeaderLen {
			return
		}
		copy(b[6:12], macA[:]) // get past the MAC check most of the time
		var f1, f2 frame
		var hb1, hb2 [peekLen]byte
		p1 := pktOf(b)
		h1, _ := s.classify(p1, &f1, &hb1)
		r1 := g.check(h1, &f1)
		p1.DecRef()
		cut := len(b) / 2
		p2 := pktOf(b[:cut])
		p2.Data().AppendView(viewOf(b[cut:]))
		h2, _ := s.classify(p2, &f2, &hb2)
		r2 := g.check(h2, &f2)
		p2.DecRef()
		if r1 != r2 {
			t.Fatalf("one view: %v, two views: %v", r1, r2)
		}
	})
}

func TestThrottle(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge, Police: &Police{FloodPPS: 1, FloodBurst: 2}})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	for i := range 2 + throttleStrikes - 1 {
		send(s, a, udp4(Broadcast, macA, 1, 2, 60))
		if w := a.Throttle(); w != 0 {
			t.Fatalf("after %d floods (%d dropped), Throttle = %v, want 0", i+1, max(0, i-1), w)
		}
	}
	send(s, a, udp4(Broadcast, macA, 1, 2, 60))
	if w := a.Throttle(); w <= 0 || w > maxThrottle {
		t.Fatalf("after %d drops in a row, Throttle = %v, want (0, %v]", throttleStrikes, w, maxThrottle)
	}
	// Unicast still passes and ends the run of drops.
	send(s, a, udp4(macB, macA, 1, 2, 60))
	if w := a.Throttle(); w != 0 {
		t.Errorf("after a frame passed, Throttle = %v", w)
	}
	if got := sum(drain(b)); got != 3 {
		t.Errorf("%d frames reached b, want the burst of 2 floods and the unicast", got)
	}
	if w := b.Throttle(); w != 0 {
		t.Errorf("a port without limits: Throttle = %v", w)
	}
	checkInvariant(t, s)
}
