package bridge_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/macvsw/macvsw/bridge/bridgetest"
	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// netLab: netstacks on switch ports, the switch's lower on an in-memory LAN
// whose uplink reflects frames (hairpin) or not.
//
//	stack 10.0.0.1   stack 10.0.0.2   ...
//	     |                |
//	[          macvsw           ]
//	             | lower
//	    LAN (hairpin on/off) ── host 10.0.0.200
type netLab struct {
	t      *testing.T
	sw     *vswitch.Switch
	lan    *bridgetest.LAN
	stacks []*stack.Stack
}

func newNetLab(t *testing.T, hairpin bool) *netLab {
	n := &netLab{t: t, sw: vswitch.New(vswitch.Options{LowerMAC: vswitch.MAC{2, 0, 0, 0, 0, 0x10}})}
	n.lan = bridgetest.NewLAN(n.sw)
	n.lan.Hairpin.Store(hairpin)
	t.Cleanup(func() {
		// Stacks first (they close their NICs), then the LAN, then the
		// switch: what the leak checker needs.
		for _, s := range n.stacks {
			s.Destroy()
		}
		n.lan.Close()
		n.sw.Close()
	})
	return n
}

func (n *netLab) add(name string, mode vswitch.Mode, last byte) *stack.Stack {
	n.t.Helper()
	p, err := n.sw.AddPort(vswitch.PortConfig{Name: name, Mode: mode, MAC: vswitch.MAC{2, 0, 0, 0, 1, last}})
	if err != nil {
		n.t.Fatal(err)
	}
	s, err := bridgetest.NewPortStack(p, last)
	if err != nil {
		n.t.Fatal(err)
	}
	n.stacks = append(n.stacks, s)
	ln, err := bridgetest.Echo(s, last)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { ln.Close() })
	return s
}

// Two netstacks on bridge ports move 10 MiB of TCP through the switch, and
// the bytes come back intact.
func TestNetstackTCP(t *testing.T) {
	n := newNetLab(t, false)
	a := n.add("a", vswitch.ModeBridge, 1)
	n.add("b", vswitch.ModeBridge, 2)
	c, err := bridgetest.Dial(a, 2, 10*time.Second)
	if err != nil {
		t.Fatalf("dial through the switch: %v", err)
	}
	defer c.Close()
	want := make([]byte, 10<<20)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		errc <- err
	}()
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("10 MiB echoed through the switch differ")
	}
	// Bridge-to-bridge unicast stays local; only ARP broadcasts go out.
	if st := n.sw.LowerStats(); st.TxPackets > 4 {
		t.Errorf("%d frames went to the lower; bridge unicast must stay local", st.TxPackets)
	}
}

// A netstack on a private port reaches no sibling, even when the external
// switch reflects: its ARP broadcast only ever comes back to itself. It
// still reaches the LAN.
func TestNetstackPrivateIsolated(t *testing.T) {
	n := newNetLab(t, true)
	n.add("b", vswitch.ModeBridge, 2)
	c := n.add("c", vswitch.ModeBridge, 3)
	p := n.add("p", vswitch.ModePrivate, 9)
	host, err := n.lan.AddHost(vswitch.MAC{2, 0, 0, 0, 2, 200}, 200)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := bridgetest.Echo(host, 200)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if bridgetest.Reach(p, 2, 2*time.Second) {
		t.Error("private port reached a bridge sibling")
	}
	if !bridgetest.Reach(p, 200, 10*time.Second) {
		t.Error("private port cannot reach the LAN host")
	}
	if !bridgetest.Reach(c, 2, 10*time.Second) {
		t.Error("bridge siblings cannot talk")
	}
}

// Two VEPA ports reach each other only through a reflecting external switch.
func TestNetstackVEPAHairpin(t *testing.T) {
	for _, hairpin := range []bool{true, false} {
		t.Run(fmt.Sprintf("hairpin=%v", hairpin), func(t *testing.T) {
			n := newNetLab(t, hairpin)
			a := n.add("a", vswitch.ModeVEPA, 1)
			n.add("b", vswitch.ModeVEPA, 2)
			timeout := 10 * time.Second
			if !hairpin {
				timeout = 2 * time.Second
			}
			if got := bridgetest.Reach(a, 2, timeout); got != hairpin {
				t.Errorf("VEPA siblings reach each other = %v, want %v", got, hairpin)
			}
		})
	}
}
