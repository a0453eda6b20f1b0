package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// netLab is a switch whose lower is a channel endpoint served by a goroutine
// that either reflects every frame back (an external switch with hairpin on)
// or swallows it, with netstacks on ports.
//
//	stack 10.0.0.1   stack 10.0.0.2   ...
//	     |                |
//	[          macvsw           ]
//	             | lower
//	  reflector (hairpin on/off)
type netLab struct {
	t       *testing.T
	sw      *vswitch.Switch
	lowerEP *channel.Endpoint
	lower   *LowerLink
	stacks  []*stack.Stack
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newNetLab(t *testing.T, reflect bool) *netLab {
	n := &netLab{t: t, sw: vswitch.New(vswitch.Options{LowerMAC: macL}), lowerEP: channel.New(1024, 1514, "")}
	n.lower = AttachLower(n.sw, n.lowerEP, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			pkt := n.lowerEP.ReadContext(ctx)
			if pkt == nil {
				return
			}
			if reflect {
				in := newPkt(bytesOf(pkt))
				n.lowerEP.InjectInbound(0, in)
				in.DecRef()
			}
			pkt.DecRef()
		}
	}()
	t.Cleanup(n.close)
	return n
}

// close tears down in the order the leak checker needs: stacks (which close
// their NICs), the reflector, the lower link, the switch, the endpoint.
func (n *netLab) close() {
	for _, s := range n.stacks {
		s.Destroy()
	}
	n.cancel()
	n.wg.Wait()
	n.lower.Close()
	n.sw.Close()
	n.lowerEP.Close()
}

func (n *netLab) addStack(name string, mode vswitch.Mode, last byte) *stack.Stack {
	n.t.Helper()
	p, err := n.sw.AddPort(vswitch.PortConfig{Name: name, Mode: mode, MAC: mac(last)})
	if err != nil {
		n.t.Fatal(err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	n.stacks = append(n.stacks, s)
	if err := s.CreateNIC(1, NewNetstackPort(p, NetstackOptions{})); err != nil {
		n.t.Fatalf("CreateNIC: %v", err)
	}
	addr := tcpip.AddrFrom4([4]byte{10, 0, 0, last})
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr.WithPrefix()}, stack.AddressProperties{}); err != nil {
		n.t.Fatalf("AddProtocolAddress: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	return s
}

func fullAddr(last byte, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{10, 0, 0, last}), Port: port}
}

// serveEcho accepts one connection and echoes it.
func serveEcho(t *testing.T, s *stack.Stack, last byte) *gonet.TCPListener {
	ln, err := gonet.ListenTCP(s, fullAddr(last, 7), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	return ln
}

func dial(s *stack.Stack, last byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gonet.DialContextTCP(ctx, s, fullAddr(last, 7), ipv4.ProtocolNumber)
}

// Two netstacks on bridge ports move 10 MiB of TCP through the switch, and
// the bytes come back intact.
func TestNetstackTCP(t *testing.T) {
	n := newNetLab(t, false)
	a := n.addStack("a", vswitch.ModeBridge, 1)
	b := n.addStack("b", vswitch.ModeBridge, 2)
	serveEcho(t, b, 2)
	c, err := dial(a, 2, 10*time.Second)
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
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("10 MiB echoed through the switch differ")
	}
	// Bridge-to-bridge traffic never touched the wire, apart from ARP.
	if st := n.sw.LowerStats(); st.TxPackets > 4 {
		t.Errorf("%d frames went to the lower; bridge unicast must stay local", st.TxPackets)
	}
}

// A netstack on a private port reaches no sibling, even when the external
// switch reflects: its ARP broadcast only ever comes back to itself.
func TestNetstackPrivateIsolated(t *testing.T) {
	n := newNetLab(t, true)
	b := n.addStack("b", vswitch.ModeBridge, 2)
	c := n.addStack("c", vswitch.ModeBridge, 3)
	p := n.addStack("p", vswitch.ModePrivate, 9)
	serveEcho(t, b, 2)
	if conn, err := dial(p, 2, 2*time.Second); err == nil {
		conn.Close()
		t.Fatal("private port reached a bridge sibling")
	}
	// The siblings still reach each other.
	if conn, err := dial(c, 2, 10*time.Second); err != nil {
		t.Fatalf("bridge siblings cannot talk: %v", err)
	} else {
		conn.Close()
	}
}

// Two VEPA ports reach each other only through a reflecting external switch.
func TestNetstackVEPAHairpin(t *testing.T) {
	for _, reflect := range []bool{true, false} {
		t.Run(fmt.Sprintf("reflect=%v", reflect), func(t *testing.T) {
			n := newNetLab(t, reflect)
			a := n.addStack("a", vswitch.ModeVEPA, 1)
			b := n.addStack("b", vswitch.ModeVEPA, 2)
			serveEcho(t, b, 2)
			timeout := 10 * time.Second
			if !reflect {
				timeout = 2 * time.Second
			}
			conn, err := dial(a, 2, timeout)
			if err == nil {
				conn.Close()
			}
			if reached := err == nil; reached != reflect {
				t.Errorf("VEPA siblings reached each other = %v (err %v), want %v", reached, err, reflect)
			}
		})
	}
}
