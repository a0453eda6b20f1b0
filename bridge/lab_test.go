package bridge

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"

	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The lab reproduces the harness of BEHAVIOUR.md §8.1 in memory:
//
//	   A   B   C   S   (switch ports: channel endpoints)
//	   |   |   |   |
//	 [     macvsw     ]
//	         | lower (channel endpoint)
//	        swl
//	 [ external learning switch, hairpin on swl optional ]
//	        swe
//	         |
//	        EXT (observer "EXT" = the wire)
//
// Everything runs synchronously (Manual links), so a case's result is exact:
// settle pumps queues, the broadcast queue and the external switch until
// nothing moves.

var (
	macL = mac(0x10)
	macA = mac(0x0a)
	macB = mac(0x0b)
	macC = mac(0x0c)
	macS = mac(0x0d)
	macE = mac(0xee)
	macF = mac(0xef)
	macU = mac(0x99) // nobody's
)

const allHosts = "01:00:5e:00:00:01"

func mac(last byte) vswitch.MAC { return vswitch.MAC{2, 0, 0, 0, 0, last} }

func mustMAC(s string) vswitch.MAC {
	m, err := vswitch.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

type labPort struct {
	p    *vswitch.Port
	ep   *channel.Endpoint
	link *PortLink
}

type lab struct {
	t       testing.TB
	sw      *vswitch.Switch
	lowerEP *channel.Endpoint
	lower   *LowerLink
	ports   map[string]*labPort
	order   []string
	hairpin bool
	fdb     map[vswitch.MAC]string // external switch: MAC -> "swl" or "swe"
	wire    [][]byte               // frames the external switch sent toward EXT
}

func newLab(t testing.TB, opts vswitch.Options) *lab {
	t.Helper()
	if opts.LowerMAC.IsZero() {
		opts.LowerMAC = macL
	}
	l := &lab{
		t:       t,
		sw:      vswitch.New(opts),
		lowerEP: channel.New(4096, 9000, ""),
		ports:   make(map[string]*labPort),
		fdb:     map[vswitch.MAC]string{macL: "swl", macE: "swe", macF: "swe"},
	}
	l.lower = AttachLower(l.sw, l.lowerEP, LinkOptions{Manual: true})
	t.Cleanup(l.close)
	return l
}

func (l *lab) close() {
	for _, n := range l.order {
		l.ports[n].link.Close()
		l.ports[n].ep.Close()
	}
	l.lower.Close()
	l.sw.Close()
	l.lowerEP.Close()
}

// add creates a port with the kernel's defaults for a port with an IPv4
// in_device: subscribed to the all-hosts group.
func (l *lab) add(name string, cfg vswitch.PortConfig) *labPort {
	l.t.Helper()
	cfg.Name = name
	if cfg.AllMulti == nil {
		// The matrix is the kernel's: exact group filters, each port in
		// the all-hosts group as an up IPv4 interface is.
		cfg.AllMulti = vswitch.Bool(false)
	}
	if cfg.Groups == nil {
		cfg.Groups = []vswitch.MAC{mustMAC(allHosts)}
	}
	p, err := l.sw.AddPort(cfg)
	if err != nil {
		l.t.Fatalf("AddPort(%s): %v", name, err)
	}
	ep := channel.New(4096, 9000, "")
	lp := &labPort{p: p, ep: ep, link: AttachPort(p, ep, LinkOptions{Manual: true})}
	l.ports[name] = lp
	l.order = append(l.order, name)
	// The external switch has seen every port's MAC on swl.
	l.fdb[p.MAC()] = "swl"
	return lp
}

func newPkt(b []byte) *stack.PacketBuffer {
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
}

// send injects frame b as sent by from: a port name, "EXT" (a host behind
// the external switch) or "LSTACK" (the lower's own stack, which transmits
// through the lower's driver, past the switch).
func (l *lab) send(from string, b []byte) {
	l.t.Helper()
	switch from {
	case "EXT":
		l.external("swe", b)
	case "LSTACK":
		l.external("swl", b)
	default:
		lp := l.ports[from]
		if lp == nil {
			l.t.Fatalf("no port %q", from)
		}
		pkt := newPkt(b)
		lp.ep.InjectInbound(0, pkt)
		pkt.DecRef()
	}
	l.settle()
}

// external is the learning switch: a frame entering on port in is learned
// and forwarded; with hairpin, frames may leave through swl again.
func (l *lab) external(in string, b []byte) {
	var dst, src vswitch.MAC
	copy(dst[:], b[0:6])
	copy(src[:], b[6:12])
	l.fdb[src] = in
	outs := []string{"swl", "swe"}
	if !dst.IsGroup() {
		if at, ok := l.fdb[dst]; ok {
			outs = []string{at}
		}
	}
	for _, out := range outs {
		if out == in && !(out == "swl" && l.hairpin) {
			continue
		}
		if out == "swe" {
			l.wire = append(l.wire, append([]byte(nil), b...))
			continue
		}
		pkt := newPkt(b)
		l.lowerEP.InjectInbound(0, pkt)
		pkt.DecRef()
	}
}

func (l *lab) settle() {
	for moved := true; moved; {
		moved = false
		for _, n := range l.order {
			if l.ports[n].link.Pump() > 0 {
				moved = true
			}
		}
		if l.sw.DrainBroadcast(1<<20) > 0 {
			moved = true
		}
		if l.lower.Pump() > 0 {
			moved = true
		}
		for {
			pkt := l.lowerEP.Read()
			if pkt == nil {
				break
			}
			moved = true
			b := bytesOf(pkt)
			pkt.DecRef()
			l.external("swl", b)
		}
	}
}

func bytesOf(pkt *stack.PacketBuffer) []byte {
	v := pkt.ToView()
	defer v.Release()
	return append([]byte(nil), v.AsSlice()...)
}

// observed drains what every observer received and returns, per observer,
// the frames that carry label.
func (l *lab) observed(label string) map[string][][]byte {
	got := make(map[string][][]byte)
	for _, n := range l.order {
		for {
			pkt := l.ports[n].ep.Read()
			if pkt == nil {
				break
			}
			b := bytesOf(pkt)
			pkt.DecRef()
			if strings.Contains(string(b), label) {
				got[n] = append(got[n], b)
			}
		}
	}
	for _, b := range l.wire {
		if strings.Contains(string(b), label) {
			got["EXT"] = append(got["EXT"], b)
		}
	}
	l.wire = nil
	return got
}

// counts reduces observations to "who saw it how often".
func counts(obs map[string][][]byte) string {
	var parts []string
	for n, fs := range obs {
		parts = append(parts, fmt.Sprintf("%s:%d", n, len(fs)))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// checkInvariant asserts that every accepted frame was forwarded or counted.
func (l *lab) checkInvariant() {
	l.t.Helper()
	st := l.sw.Stats()
	drops := st.Drops.Total()
	if got := st.Forwarded + st.Merged + st.Pending + drops; got != st.Accepted {
		l.t.Errorf("accepted %d != forwarded %d + merged %d + pending %d + dropped %d (%v)",
			st.Accepted, st.Forwarded, st.Merged, st.Pending, drops, st.Drops)
	}
}

const etherTypeTest = 0x88b5 // IEEE local experimental

// testFrame builds an Ethernet frame of the given length (at least 60) whose
// payload carries label.
func testFrame(dst, src vswitch.MAC, etherType uint16, label string, size int) []byte {
	size = max(size, 60)
	b := make([]byte, size)
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
	copy(b[14:], label)
	return b
}

var _ = tcpip.LinkAddress("")
