package bridge_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Two in-process gVisor netstacks on one switch, in bridge mode, talk TCP
// through it. No lower is attached: the switch forwards between its ports.
func Example() {
	sw := bridge.New(bridge.Options{})
	defer sw.Close()

	// newStack is an ordinary gVisor stack; the switch gives it NIC 1.
	newStack := func(name string, mac vswitch.MAC, addr string) *stack.Stack {
		s := stack.New(stack.Options{
			NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
			TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		})
		cfg := vswitch.PortConfig{Name: name, Mode: vswitch.ModeBridge, MAC: mac}
		if _, err := sw.AddNetstack(cfg, s, 1, bridge.NetstackOptions{}); err != nil {
			panic(err)
		}
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
			AddressWithPrefix: tcpip.AddrFromSlice(net.ParseIP(addr).To4()).WithPrefix()}
		pa.AddressWithPrefix.PrefixLen = 24
		if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
			panic(err)
		}
		s.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})
		return s
	}
	a := newStack("a", vswitch.MAC{2, 0, 0, 0, 0, 1}, "10.0.0.1")
	b := newStack("b", vswitch.MAC{2, 0, 0, 0, 0, 2}, "10.0.0.2")
	// Stacks go before the switch: they own their NICs.
	defer a.Destroy()
	defer b.Destroy()

	// b echoes one line; a sends it.
	ln, err := gonet.ListenTCP(b, tcpip.FullAddress{NIC: 1, Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dst := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(net.ParseIP("10.0.0.2").To4()), Port: 7}
	c, err := gonet.DialContextTCP(ctx, a, dst, ipv4.ProtocolNumber)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "hello through macvsw")
	reply := make([]byte, 64)
	n, _ := c.Read(reply)
	fmt.Printf("%s", reply[:n])

	st := sw.Port("b").Stats()
	fmt.Println("port b received frames:", st.Switch.RxPackets > 0)
	// Output:
	// hello through macvsw
	// port b received frames: true
}

// Any stack.LinkEndpoint can back a port. Here gVisor's channel endpoint
// stands in for a custom one: frames injected into port a's endpoint are
// what a sends, and the switch writes what b receives to b's endpoint.
func Example_customEndpoint() {
	sw := bridge.New(bridge.Options{})
	defer sw.Close()
	epA := channel.New(16, 1500, "")
	epB := channel.New(16, 1500, "")
	macA, macB := vswitch.MAC{2, 0, 0, 0, 0, 0xa}, vswitch.MAC{2, 0, 0, 0, 0, 0xb}
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "a", Mode: vswitch.ModeBridge, MAC: macA}, epA, bridge.PortOptions{}); err != nil {
		panic(err)
	}
	if _, err := sw.AddPort(vswitch.PortConfig{Name: "b", Mode: vswitch.ModeBridge, MAC: macB}, epB, bridge.PortOptions{}); err != nil {
		panic(err)
	}

	// A 60-byte frame from a to b: Ethernet header, then padding.
	frame := make([]byte, 60)
	header.Ethernet(frame).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(macA[:]), DstAddr: tcpip.LinkAddress(macB[:]), Type: 0x88b5,
	})
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	epA.InjectInbound(0x88b5, pkt)
	pkt.DecRef()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := epB.ReadContext(ctx)
	if got == nil {
		fmt.Println("nothing arrived")
		return
	}
	v := got.ToView()
	eth := header.Ethernet(v.AsSlice())
	fmt.Printf("b got %d bytes from %s\n", v.Size(), eth.SourceAddress())
	v.Release()
	got.DecRef()
	// Output: b got 60 bytes from 02:00:00:00:00:0a
}

// A sandbox's tap and the machine's uplink: the usual daemon setup, in a
// program. NewPacket opens AF_PACKET sockets on the uplink (here a veth
// in namespace "lan"), NewTap creates eth0 inside the sandbox's namespace
// with the port's address; the Switch keeps them in step (carrier, MTU,
// filters, the tap's MAC). Needs root; TestNetnsExampleTapAndPacket runs
// it in a throwaway lab.
func Example_tapAndPacket() {
	exampleTapAndPacket("/var/run/netns/lan", "uplink", "/var/run/netns/sandbox")
}

func exampleTapAndPacket(lanNetns, uplink, sandboxNetns string) {
	sw := bridge.New(bridge.Options{})
	defer sw.Close()

	lower, err := endpoints.NewPacket(endpoints.PacketOptions{Interface: uplink, NetNS: lanNetns})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := sw.AttachLower(lower, bridge.LowerOptions{}); err != nil {
		fmt.Println(err)
		return
	}

	tap, err := endpoints.NewTap(endpoints.TapOptions{
		Name: "eth0", NetNS: sandboxNetns, Queues: 2, Addresses: []string{"10.99.0.2/24"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := vswitch.PortConfig{Name: "web", Mode: vswitch.ModeBridge, MAC: vswitch.MAC{2, 0, 0, 0, 0x99, 2}}
	p, err := sw.AddPort(cfg, tap, bridge.PortOptions{})
	if err != nil {
		tap.Close()
		fmt.Println(err)
		return
	}
	fmt.Printf("port %s: %d queues, running %v, tap MAC %s\n",
		p.Name(), p.Core().NumQueues(), p.Core().Running(), p.Endpoint().LinkAddress())
}

// TestNetnsExampleTapAndPacket runs Example_tapAndPacket's code in a
// throwaway lab (it needs root) and checks what it prints.
func TestNetnsExampleTapAndPacket(t *testing.T) {
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	lab := netlab.New("mvsex")
	t.Cleanup(func() { lab.Close() })
	lan, err := lab.AddNS("lan")
	if err != nil {
		t.Fatal(err)
	}
	host, err := lab.AddNS("host")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := lab.AddNS("sb")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Veth(lan, "uplink", host, "eth0"); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	exampleTapAndPacket(netlab.Path(lan), "uplink", netlab.Path(sb))
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	want := "port web: 2 queues, running true, tap MAC 02:00:00:00:99:02\n"
	if string(out) != want {
		t.Errorf("example printed %q, want %q", out, want)
	}
}
