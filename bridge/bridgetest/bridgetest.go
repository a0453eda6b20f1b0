// Package bridgetest provides in-memory pieces for exercising a switch
// without the OS: an external learning switch ("the LAN") behind the
// switch's lower, with an optional reflective relay (hairpin), and gVisor
// netstacks on switch ports or on the LAN, with a TCP echo service and a
// reachability probe. The bridge tests and `macvsw demo` use it.
package bridgetest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/bridge"
	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// EchoPort is the TCP port Echo listens on.
const EchoPort = 7

// LAN is a learning switch with two kinds of ports: "up", the uplink toward
// the macvsw lower, and host ports with netstacks. With Hairpin on, frames
// from the uplink may go back out of it (reflective relay, as
// `bridge link set dev swl hairpin on` does).
//
//	macvsw lower ── up ┤ LAN ├── host stacks
type LAN struct {
	Hairpin atomic.Bool
	// Reflected counts the unicast frames the LAN sent back out of the
	// uplink they came in on (hairpin): frames between macvsw's own ports
	// that went through the LAN.
	Reflected atomic.Uint64

	sw    *vswitch.Switch
	upEP  *channel.Endpoint
	link  *bridge.LowerLink
	mu    sync.Mutex
	fdb   map[vswitch.MAC]int // -1: uplink; i: hosts[i]
	hosts []*channel.Endpoint
	stks  []*stack.Stack

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewLAN attaches a LAN as sw's lower and starts its forwarding goroutines.
func NewLAN(sw *vswitch.Switch) *LAN {
	l := &LAN{sw: sw, upEP: channel.New(4096, 65535, ""), fdb: map[vswitch.MAC]int{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.link = bridge.AttachLower(sw, l.upEP, bridge.LinkOptions{})
	l.wg.Add(1)
	go l.pumpLoop(l.upEP, -1)
	return l
}

// pumpLoop forwards what endpoint ep (port in) emits.
func (l *LAN) pumpLoop(ep *channel.Endpoint, in int) {
	defer l.wg.Done()
	for {
		pkt := ep.ReadContext(l.ctx)
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		l.forward(in, v.AsSlice())
		v.Release()
		pkt.DecRef()
	}
}

func (l *LAN) forward(in int, b []byte) {
	if len(b) < header.EthernetMinimumSize {
		return
	}
	var dst, src vswitch.MAC
	copy(dst[:], b[0:6])
	copy(src[:], b[6:12])
	l.mu.Lock()
	l.fdb[src] = in
	outs := make([]int, 0, len(l.hosts)+1)
	if at, ok := l.fdb[dst]; ok && !dst.IsGroup() {
		outs = append(outs, at)
	} else {
		outs = append(outs, -1)
		for i := range l.hosts {
			outs = append(outs, i)
		}
	}
	hosts := l.hosts
	l.mu.Unlock()
	for _, out := range outs {
		if out == in && !(out == -1 && l.Hairpin.Load()) {
			continue
		}
		ep := l.upEP
		if out >= 0 {
			ep = hosts[out]
		} else if in == -1 && !dst.IsGroup() {
			l.Reflected.Add(1)
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		ep.InjectInbound(0, pkt)
		pkt.DecRef()
	}
}

// AddHost puts a netstack with address 10.0.0.last/24 on the LAN.
func (l *LAN) AddHost(mac vswitch.MAC, last byte) (*stack.Stack, error) {
	ep := channel.New(1024, 1514, tcpip.LinkAddress(mac[:]))
	s, err := newStack(ethernet.New(ep), last)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, ep)
	l.stks = append(l.stks, s)
	i := len(l.hosts) - 1
	l.mu.Unlock()
	l.wg.Add(1)
	go l.pumpLoop(ep, i)
	return s, nil
}

// Close stops the LAN, destroys its host stacks and detaches it from the
// switch. Stacks on switch ports must be destroyed first.
func (l *LAN) Close() {
	for _, s := range l.stks {
		s.Destroy()
	}
	l.cancel()
	l.wg.Wait()
	l.link.Close()
	l.upEP.Close()
	for _, ep := range l.hosts {
		ep.Close()
	}
}

// NewPortStack creates a netstack with address 10.0.0.last/24 on port p.
// The stack owns the port endpoint: Destroy it before removing the port.
func NewPortStack(p *vswitch.Port, last byte) (*stack.Stack, error) {
	return newStack(bridge.NewNetstackPort(p, bridge.NetstackOptions{}), last)
}

func newStack(ep stack.LinkEndpoint, last byte) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	if err := s.CreateNIC(1, ep); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("create NIC: %v", err)
	}
	addr := tcpip.AddrFrom4([4]byte{10, 0, 0, last})
	pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}}
	if err := s.AddProtocolAddress(1, pa, stack.AddressProperties{}); err != nil {
		s.Destroy()
		return nil, fmt.Errorf("add address: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: 1}})
	return s, nil
}

// Addr returns 10.0.0.last port EchoPort on NIC 1.
func Addr(last byte) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{10, 0, 0, last}), Port: EchoPort}
}

// Echo serves TCP echo on 10.0.0.last:EchoPort until the returned listener
// is closed (or the stack destroyed).
func Echo(s *stack.Stack, last byte) (net.Listener, error) {
	ln, err := gonet.ListenTCP(s, Addr(last), ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln, nil
}

// Dial connects to 10.0.0.last:EchoPort.
func Dial(s *stack.Stack, last byte, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return gonet.DialContextTCP(ctx, s, Addr(last), ipv4.ProtocolNumber)
}

// Reach reports whether s can open a TCP connection to 10.0.0.last and get
// a byte echoed back within timeout.
func Reach(s *stack.Stack, last byte, timeout time.Duration) bool {
	c, err := Dial(s, last, timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{1}); err != nil {
		return false
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err == nil
}
