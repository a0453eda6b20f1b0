// Command macvsw-fdbased shows how a gVisor-like runtime puts a sandbox's
// in-process network stack on a macvsw switch without privileges: it asks
// the daemon for a port whose frames go through a socket pair
// (api.Client.AddPortFD, SOCK_SEQPACKET), hands the FD it gets to gVisor's
// fdbased link endpoint as the NIC of a netstack, and talks TCP through
// the switch. It needs only access to the control socket: no netlink, no
// tap, no capability.
//
//	macvsw-fdbased --socket /run/macvsw/macvsw.sock --name gv0 --mac 02:00:00:00:0a:01 \
//	    --address 10.0.0.50/24 --dial 10.0.0.11:7 --message hello
//
// It prints what the peer echoed and deletes its port on exit. The
// daemon's port is an ordinary bridge-mode port: its siblings (tap
// sandboxes, the LAN) see the netstack as one more host.
//
// Note for runtimes: fdbased (in the gVisor version macvsw pins) stops
// reading when a unicast frame for another MAC arrives; a macvsw port
// only delivers unicast for its own MAC (in modes other than passthru and
// source), so fdbased is safe on it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "macvsw-fdbased:", err)
		os.Exit(1)
	}
}

func run() error {
	socket := flag.String("socket", api.DefaultSocket, "the macvsw daemon's control socket")
	name := flag.String("name", "gv0", "name of the port to create")
	mac := flag.String("mac", "02:00:00:00:0a:01", "the netstack NIC's MAC (the port's)")
	addr := flag.String("address", "10.0.0.50/24", "the netstack's IPv4 address/prefix")
	dial := flag.String("dial", "", "host:port to connect to and send --message to (required)")
	msg := flag.String("message", "hello from a gVisor netstack on macvsw", "what to send")
	timeout := flag.Duration("timeout", 20*time.Second, "how long the whole exchange may take")
	flag.Parse()
	if *dial == "" {
		flag.Usage()
		return fmt.Errorf("--dial is required")
	}
	hw, err := net.ParseMAC(*mac)
	if err != nil {
		return err
	}
	pfx, err := netip.ParsePrefix(*addr)
	if err != nil || !pfx.Addr().Is4() {
		return fmt.Errorf("--address %q: want an IPv4 prefix", *addr)
	}
	dst, err := netip.ParseAddrPort(*dial)
	if err != nil {
		return fmt.Errorf("--dial %q: %w", *dial, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	// 1. A port whose frames come and go through a socket handed to us.
	c := api.NewClient(*socket)
	port, f, err := c.AddPortFD(ctx, map[string]any{"name": *name, "mode": "bridge", "mac": hw.String()}, api.HandoffSeqpacket)
	if err != nil {
		return fmt.Errorf("add port: %w", err)
	}
	defer c.DeletePort(context.Background(), port.Name)
	defer f.Close()

	// 2. A gVisor netstack whose NIC is that socket, through fdbased.
	ep, err := fdbased.New(&fdbased.Options{
		FDs:            []int{int(f.Fd())},
		MTU:            port.MTU,
		EthernetHeader: true,
		Address:        tcpip.LinkAddress(hw),
	})
	if err != nil {
		return fmt.Errorf("fdbased: %w", err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	defer s.Destroy()
	if terr := s.CreateNIC(1, ep); terr != nil {
		return fmt.Errorf("create NIC: %s", terr)
	}
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
		Address: tcpip.AddrFrom4(pfx.Addr().As4()), PrefixLen: pfx.Bits()}}
	if terr := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); terr != nil {
		return fmt.Errorf("add address: %s", terr)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: pa.AddressWithPrefix.Subnet(), NIC: 1}})

	// 3. TCP through the switch.
	conn, err := gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(dst.Addr().As4()), Port: dst.Port()}, ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("dial %s: %w", dst, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, *msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	reply := make([]byte, len(*msg))
	if _, err := io.ReadFull(conn, reply); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	fmt.Printf("port %s (%s): sent %q to %s, got %q back\n", port.Name, port.MAC, *msg, dst, reply)
	return nil
}
