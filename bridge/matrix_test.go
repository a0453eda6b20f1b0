package bridge

import (
	"encoding/binary"
	"fmt"
	"testing"

	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// port shorthands for the matrix
type pspec struct {
	name string
	cfg  vswitch.PortConfig
}

func P(n string, m vswitch.MAC) pspec  { return ps(n, vswitch.ModePrivate, m) }
func V(n string, m vswitch.MAC) pspec  { return ps(n, vswitch.ModeVEPA, m) }
func Br(n string, m vswitch.MAC) pspec { return ps(n, vswitch.ModeBridge, m) }
func S(n string, m vswitch.MAC, src ...vswitch.MAC) pspec {
	p := ps(n, vswitch.ModeSource, m)
	p.cfg.SourceMACs = src
	return p
}
func ps(n string, mode vswitch.Mode, m vswitch.MAC) pspec {
	return pspec{name: n, cfg: vswitch.PortConfig{Mode: mode, MAC: m}}
}

var bcast = vswitch.Broadcast

type step struct {
	from  string
	frame func(label string) []byte
	want  string // "who:count ..." among the ports and EXT (the wire)
}

type matrixCase struct {
	name    string
	ports   []pspec
	hairpin bool
	opts    vswitch.Options
	setup   func(*lab)
	steps   []step
}

func frameTo(dst, src vswitch.MAC) func(string) []byte {
	return func(label string) []byte { return testFrame(dst, src, etherTypeTest, label, 60) }
}

func sized(dst, src vswitch.MAC, n int) func(string) []byte {
	return func(label string) []byte { return testFrame(dst, src, etherTypeTest, label, n) }
}

func intp(v int) *int { return &v }

// matrix is BEHAVIOUR.md §8.2, cases 1-43: who receives each frame. The lower's own
// stack ("Lstack") is not observed: a userspace switch cannot hide frames
// from it (BEHAVIOUR.md §8.3).
var matrix = []matrixCase{
	{name: "01 br bcast H-", ports: []pspec{Br("A", macA), Br("B", macB), V("C", macC)},
		steps: []step{{"A", frameTo(bcast, macA), "B:1 EXT:1"}}},
	{name: "02 br bcast H+", hairpin: true, ports: []pspec{Br("A", macA), Br("B", macB), V("C", macC)},
		steps: []step{{"A", frameTo(bcast, macA), "B:1 C:1 EXT:1"}}},
	{name: "03 vepa bcast H-", ports: []pspec{V("A", macA), V("B", macB), Br("C", macC)},
		steps: []step{{"A", frameTo(bcast, macA), "EXT:1"}}},
	{name: "04 vepa bcast H+", hairpin: true, ports: []pspec{V("A", macA), V("B", macB), Br("C", macC)},
		steps: []step{{"A", frameTo(bcast, macA), "B:1 C:1 EXT:1"}}},
	{name: "05 private bcast H+ echo", hairpin: true, ports: []pspec{P("A", macA), V("B", macB), Br("C", macC)},
		steps: []step{{"A", frameTo(bcast, macA), "A:1 EXT:1"}}},
	{name: "06 private bcast H-", ports: []pspec{P("A", macA), V("B", macB), Br("C", macC)},
		steps: []step{{"A", frameTo(bcast, macA), "EXT:1"}}},
	{name: "07 vepa to private H+", hairpin: true, ports: []pspec{V("A", macA), P("B", macB)},
		steps: []step{{"A", frameTo(bcast, macA), "EXT:1"}}},
	{name: "08 bridge to private H-", ports: []pspec{Br("A", macA), P("B", macB)},
		steps: []step{{"A", frameTo(bcast, macA), "EXT:1"}}},
	{name: "08 bridge to private H+", hairpin: true, ports: []pspec{Br("A", macA), P("B", macB)},
		steps: []step{{"A", frameTo(bcast, macA), "EXT:1"}}},
	{name: "09 all-hosts group", ports: []pspec{Br("A", macA), Br("B", macB)},
		steps: []step{{"A", frameTo(mustMAC(allHosts), macA), "B:1 EXT:1"}}},
	{name: "10 unsubscribed group then joined", ports: []pspec{Br("A", macA), Br("B", macB)},
		steps: []step{
			{"A", frameTo(mustMAC("01:00:5e:01:02:03"), macA), "EXT:1"},
			{"join", nil, ""},
			{"A", frameTo(mustMAC("01:00:5e:01:02:03"), macA), "B:1 EXT:1"},
		}},
	{name: "11 allmulticast", ports: []pspec{Br("A", macA), Br("B", macB)},
		setup: func(l *lab) { must(l.t, l.sw.SetAllMulti(l.ports["B"].p, true)) },
		steps: []step{{"A", frameTo(mustMAC("01:00:5e:7f:00:09"), macA), "B:1 EXT:1"}}},
	{name: "12 bridge unicast H-", ports: []pspec{Br("A", macA), Br("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), "B:1"}}},
	{name: "12 bridge unicast H+", hairpin: true, ports: []pspec{Br("A", macA), Br("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), "B:1"}}},
	{name: "13 bridge to vepa H-", ports: []pspec{Br("A", macA), V("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), ""}}},
	{name: "13 bridge to vepa H+", hairpin: true, ports: []pspec{Br("A", macA), V("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), "B:1"}}},
	{name: "14 vepa to bridge H-", ports: []pspec{V("A", macA), Br("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), ""}}},
	{name: "14 vepa to bridge H+", hairpin: true, ports: []pspec{V("A", macA), Br("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), "B:1"}}},
	{name: "15 private unicast H-", ports: []pspec{P("A", macA), P("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), ""}}},
	{name: "15 private unicast H+", hairpin: true, ports: []pspec{P("A", macA), P("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), "B:1"}}},
	{name: "16 vepa unicast H-", ports: []pspec{V("A", macA), V("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), ""}}},
	{name: "16 vepa unicast H+", hairpin: true, ports: []pspec{V("A", macA), V("B", macB)},
		steps: []step{{"A", frameTo(macB, macA), "B:1"}}},
	{name: "17 bridge to down bridge H-", ports: []pspec{Br("A", macA), Br("B", macB)},
		setup: func(l *lab) { must(l.t, l.sw.SetUp(l.ports["B"].p, false)) },
		steps: []step{{"A", frameTo(macB, macA), ""}}},
	{name: "17 bridge to down bridge H+", hairpin: true, ports: []pspec{Br("A", macA), Br("B", macB)},
		setup: func(l *lab) { must(l.t, l.sw.SetUp(l.ports["B"].p, false)) },
		steps: []step{{"A", frameTo(macB, macA), ""}}},
	{name: "18 port to lower MAC H-", ports: []pspec{Br("A", macA)},
		steps: []step{{"A", frameTo(macL, macA), ""}}},
	{name: "18 port to lower MAC H+", hairpin: true, ports: []pspec{Br("A", macA)},
		steps: []step{{"A", frameTo(macL, macA), ""}}},
	{name: "19 lower stack to port H-", ports: []pspec{V("A", macA)},
		steps: []step{{"LSTACK", frameTo(macA, macL), ""}}},
	{name: "19 lower stack to port H+", hairpin: true, ports: []pspec{V("A", macA)},
		steps: []step{{"LSTACK", frameTo(macA, macL), "A:1"}}},
	{name: "20 external bcast", ports: []pspec{P("A", macA), V("B", macB), Br("C", macC), S("S", macS, macF)},
		steps: []step{{"EXT", frameTo(bcast, macE), "A:1 B:1 C:1"}}},
	{name: "20 external bcast passthru", ports: []pspec{ps("Pt", vswitch.ModePassthru, vswitch.MAC{})},
		steps: []step{{"EXT", frameTo(bcast, macE), "Pt:1"}}},
	{name: "21 external unicast", ports: []pspec{V("A", macA), V("B", macB)},
		steps: []step{{"EXT", frameTo(macA, macE), "A:1"}}},
	{name: "22 external unknown unicast", ports: []pspec{V("A", macA), Br("B", macB)},
		steps: []step{{"EXT", frameTo(macU, macE), ""}}},
	{name: "23 forged src vepa", ports: []pspec{V("A", macA), V("B", macB), Br("C", macC)},
		steps: []step{{"EXT", frameTo(bcast, macA), "B:1 C:1"}}},
	{name: "24 forged src bridge", ports: []pspec{Br("A", macA), Br("B", macB), V("C", macC)},
		steps: []step{{"EXT", frameTo(bcast, macA), "C:1"}}},
	{name: "25 forged src private", ports: []pspec{P("A", macA), V("B", macB)},
		steps: []step{{"EXT", frameTo(bcast, macA), "A:1"}}},
	{name: "26 unicast with src of a port", ports: []pspec{P("A", macA), P("B", macB)},
		steps: []step{{"EXT", frameTo(macB, macA), "B:1"}}},
	{name: "27 unsubscribed group from wire", ports: []pspec{V("A", macA), Br("B", macB)},
		steps: []step{{"EXT", frameTo(mustMAC("01:00:5e:44:55:66"), macE), ""}}},
	{name: "30 pause not flooded", ports: []pspec{V("A", macA), Br("B", macB)},
		steps: []step{{"EXT", func(label string) []byte { return testFrame(bcast, macE, 0x8808, label, 60) }, ""}}},
	{name: "32 bridge flood above receiver MTU", ports: []pspec{Br("A", macA), {"B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB, MTU: 1400}}},
		steps: []step{
			{"A", sized(bcast, macA, 1514), "EXT:1"},
			{"A", sized(macB, macA, 1514), "B:1"},
			{"EXT", sized(bcast, macE, 1514), "A:1 B:1"},
			{"EXT", sized(macB, macE, 1514), "B:1"},
		}},
	{name: "33 lower down", ports: []pspec{Br("A", macA), Br("B", macB)},
		setup: func(l *lab) { l.sw.SetLowerState(false) },
		steps: []step{
			{"A", frameTo(bcast, macA), ""},
			{"A", frameTo(macB, macA), ""},
			{"EXT", frameTo(bcast, macE), ""},
		}},
	{name: "34 source copy of unicast", ports: []pspec{S("S", macS, macE), Br("A", macA)},
		steps: []step{{"EXT", frameTo(macA, macE), "A:1 S:1"}}},
	{name: "35 source copy of bcast", ports: []pspec{S("S", macS, macE), Br("A", macA)},
		steps: []step{{"EXT", frameTo(bcast, macE), "A:1 S:1"}}},
	{name: "36 source port own MAC from unlisted", ports: []pspec{S("S", macS, macE)},
		steps: []step{{"EXT", frameTo(macS, macF), ""}}},
	{name: "37 nodst", ports: []pspec{{"S", vswitch.PortConfig{Mode: vswitch.ModeSource, MAC: macS, SourceMACs: []vswitch.MAC{macE}, NoDst: true}}, Br("A", macA)},
		steps: []step{
			{"EXT", frameTo(macA, macE), "S:1"},
			{"EXT", frameTo(bcast, macE), "S:1"},
		}},
	{name: "38 port bcast not to source port", ports: []pspec{S("S", macS, macE), Br("A", macA)},
		steps: []step{{"A", frameTo(bcast, macA), "EXT:1"}}},
	{name: "39 bcast from source port's MAC", ports: []pspec{S("S", macS, macE)},
		steps: []step{{"EXT", frameTo(bcast, macS), "S:1"}}},
	{name: "40 passthru takes every unicast", ports: []pspec{ps("Pt", vswitch.ModePassthru, vswitch.MAC{})},
		steps: []step{{"EXT", frameTo(macU, macE), "Pt:1"}}},
	{name: "41 bcqueuelen 0", ports: []pspec{
		{"A", vswitch.PortConfig{Mode: vswitch.ModeVEPA, MAC: macA, BroadcastQueueLen: intp(0)}},
		{"B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB, BroadcastQueueLen: intp(0)}}},
		steps: []step{{"EXT", frameTo(bcast, macE), ""}}},
	{name: "42 bcqueuelen 0 cutoff -1", opts: vswitch.Options{BroadcastCutoff: intp(-1)}, ports: []pspec{
		{"A", vswitch.PortConfig{Mode: vswitch.ModeVEPA, MAC: macA, BroadcastQueueLen: intp(0)}},
		{"B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB, BroadcastQueueLen: intp(0)}}},
		steps: []step{{"EXT", frameTo(bcast, macE), "A:1 B:1"}}},
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMatrix(t *testing.T) {
	for _, tc := range matrix {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.opts)
			l.hairpin = tc.hairpin
			for _, p := range tc.ports {
				l.add(p.name, p.cfg)
			}
			if tc.setup != nil {
				tc.setup(l)
			}
			for i, st := range tc.steps {
				if st.from == "join" {
					must(t, l.sw.JoinGroup(l.ports["B"].p, mustMAC("01:00:5e:01:02:03")))
					continue
				}
				label := fmt.Sprintf("<%s/%d>", tc.name, i)
				l.send(st.from, st.frame(label))
				if got := counts(l.observed(label)); got != st.want {
					t.Errorf("step %d: %s sends: got {%s}, want {%s}", i, st.from, got, st.want)
				}
			}
			l.checkInvariant()
		})
	}
}

// Case 32's counters: the oversize bridge flood is an rx_error on B.
func TestMatrixMTUCounters(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	l.add("A", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macA})
	b := l.add("B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB, MTU: 1400})
	l.send("A", testFrame(bcast, macA, etherTypeTest, "x", 1514))
	if st := b.p.Stats(); st.RxErrors != 1 || st.RxDrops.Get("mtu") != 1 {
		t.Errorf("B rx_errors %d, mtu drops %d; want 1, 1", st.RxErrors, st.RxDrops.Get("mtu"))
	}
}

// Case 40: a passthru port takes the lower's MAC; setting its MAC sets the
// lower's, and removing it restores the original.
func TestMatrixPassthruMAC(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	pt := l.add("Pt", vswitch.PortConfig{Mode: vswitch.ModePassthru})
	if pt.p.MAC() != macL {
		t.Fatalf("passthru MAC %v, want the lower's %v", pt.p.MAC(), macL)
	}
	must(t, l.sw.SetMAC(pt.p, macU))
	if m, _, _ := l.sw.LowerState(); m != macU {
		t.Errorf("lower MAC %v after passthru SetMAC, want %v", m, macU)
	}
	l.ports["Pt"].link.Close()
	must(t, l.sw.RemovePort(pt.p))
	delete(l.ports, "Pt")
	l.order = nil
	pt.ep.Close()
	if m, _, _ := l.sw.LowerState(); m != macL {
		t.Errorf("lower MAC %v after removing passthru, want %v", m, macL)
	}
}

// Case 41: a full (zero-length) broadcast queue is counted on the lower.
func TestMatrixBroadcastQueueDrop(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	l.add("A", vswitch.PortConfig{Mode: vswitch.ModeVEPA, MAC: macA, BroadcastQueueLen: intp(0)})
	l.send("EXT", testFrame(bcast, macE, etherTypeTest, "x", 60))
	if st := l.sw.LowerStats(); st.RxDropped != 1 || st.RxDrops.Get("broadcast_queue_full") != 1 {
		t.Errorf("lower rx_dropped %d (%v), want 1 broadcast_queue_full", st.RxDropped, st.RxDrops)
	}
}

// Case 43: counters, including the kernel's +14 quirk for bridge floods.
func TestMatrixCounters(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	a := l.add("A", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macA})
	b := l.add("B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB})
	l.send("A", testFrame(bcast, macA, etherTypeTest, "x", 60))
	st := b.p.Stats()
	if st.RxBytes != 74 || st.Multicast != 1 || st.RxPackets != 1 {
		t.Errorf("B after bridge flood: rx_bytes %d multicast %d rx_packets %d; want 74 1 1", st.RxBytes, st.Multicast, st.RxPackets)
	}
	l.send("EXT", testFrame(bcast, macE, etherTypeTest, "y", 60))
	st = b.p.Stats()
	if st.RxBytes != 74+60 || st.Multicast != 2 {
		t.Errorf("B after wire bcast: rx_bytes %d multicast %d; want 134 2", st.RxBytes, st.Multicast)
	}
	if st := a.p.Stats(); st.TxBytes != 60 || st.TxPackets != 1 {
		t.Errorf("A tx_bytes %d tx_packets %d; want 60 1", st.TxBytes, st.TxPackets)
	}
	l.observed("")
}

// ipv4UDP builds an IPv4/UDP frame with valid checksums.
func ipv4UDP(dst, src vswitch.MAC, id uint16, payload []byte) []byte {
	udpLen := 8 + len(payload)
	b := make([]byte, 14+20+udpLen)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+udpLen))
	binary.BigEndian.PutUint16(ip[4:6], id)
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:16], []byte{10, 0, 0, 238})
	copy(ip[16:20], []byte{10, 0, 0, 255})
	binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip, 0))
	udp := b[34:]
	binary.BigEndian.PutUint16(udp[0:2], 4000)
	binary.BigEndian.PutUint16(udp[2:4], 5000)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	copy(udp[8:], payload)
	return b
}

// fragment splits an IPv4 frame at the given payload offset (multiple of 8).
func fragment(frame []byte, at int) [][]byte {
	hdr := frame[:34]
	data := frame[34:]
	var out [][]byte
	for off := 0; off < len(data); off += at {
		end := min(off+at, len(data))
		f := append(append([]byte(nil), hdr...), data[off:end]...)
		ip := f[14:34]
		binary.BigEndian.PutUint16(ip[2:4], uint16(20+end-off))
		ff := uint16(off / 8)
		if end < len(data) {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(ip[6:8], ff)
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip, 0))
		out = append(out, f)
	}
	return out
}

// Case 28 (reassembled broadcast fragments) and 29 (unicast fragments pass).
func TestMatrixFragments(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	l.add("A", vswitch.PortConfig{Mode: vswitch.ModeVEPA, MAC: macA})
	l.add("B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB})
	payload := make([]byte, 2800)
	copy(payload, "<frag28>")
	whole := ipv4UDP(bcast, macE, 77, payload) // 2808 bytes of UDP: a 2842-byte frame
	for _, f := range fragment(whole, 1480) {
		l.send("EXT", f)
	}
	obs := l.observed("<frag28>")
	if counts(obs) != "A:1 B:1" {
		t.Fatalf("case 28: got {%s}, want {A:1 B:1}", counts(obs))
	}
	for n, fs := range obs {
		if len(fs[0]) != 2842 {
			t.Errorf("case 28: %s got a %d-byte frame, want 2842", n, len(fs[0]))
		}
		ip := fs[0][14:34]
		if checksum.Checksum(ip, 0) != 0xffff || binary.BigEndian.Uint16(ip[2:4]) != 2828 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
			t.Errorf("case 28: %s: bad reassembled IPv4 header % x", n, ip)
		}
		if string(fs[0][42:]) != string(payload) {
			t.Errorf("case 28: %s: payload differs", n)
		}
	}
	copy(payload, "<frag29>")
	for _, f := range fragment(ipv4UDP(macA, macE, 78, payload), 1480) {
		l.send("EXT", f)
	}
	if got := counts(l.observed("")); got != "A:2" {
		// The second fragment has no label: count all A's frames.
		t.Errorf("case 29: got {%s}, want {A:2}", got)
	}
	l.checkInvariant()
	if st := l.sw.Stats(); st.Reassembled != 1 || st.Merged != 2 {
		t.Errorf("reassembled %d merged %d, want 1 and 2", st.Reassembled, st.Merged)
	}
}

// Case 31: a VLAN-tagged frame reaches its port with the tag inline.
func TestMatrixVLAN(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	l.add("A", vswitch.PortConfig{Mode: vswitch.ModeVEPA, MAC: macA})
	f := testFrame(macA, macE, 0x8100, "", 64)
	binary.BigEndian.PutUint16(f[14:16], 100)
	binary.BigEndian.PutUint16(f[16:18], etherTypeTest)
	copy(f[18:], "<vlan31>")
	l.send("EXT", f)
	obs := l.observed("<vlan31>")
	if counts(obs) != "A:1" || binary.BigEndian.Uint16(obs["A"][0][12:14]) != 0x8100 {
		t.Errorf("case 31: got {%s}, want A:1 with the tag inline", counts(obs))
	}
}

func TestSniffer(t *testing.T) {
	l := newLab(t, vswitch.Options{})
	a := l.add("A", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macA})
	l.add("B", vswitch.PortConfig{Mode: vswitch.ModeBridge, MAC: macB})
	var seen []string
	stopSniff := a.link.AddSniffer(func(toPort bool, pkt *stack.PacketBuffer) {
		seen = append(seen, fmt.Sprintf("%v/%d", toPort, pkt.Size()))
	})
	l.send("A", testFrame(macB, macA, etherTypeTest, "s1", 60))
	l.send("B", testFrame(macA, macB, etherTypeTest, "s2", 70))
	stopSniff()
	l.send("B", testFrame(macA, macB, etherTypeTest, "s3", 80))
	l.observed("")
	if got := fmt.Sprint(seen); got != "[false/60 true/70]" {
		t.Errorf("sniffer saw %s, want [false/60 true/70]", got)
	}
}
