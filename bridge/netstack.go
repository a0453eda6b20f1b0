package bridge

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DefaultNetstackTxQueue bounds the frames a netstack port has sent but the
// switch has not taken yet.
const DefaultNetstackTxQueue = 1000

// NetstackPort is a stack.LinkEndpoint that puts an in-process gVisor
// netstack on a switch port:
//
//	s.CreateNIC(1, bridge.NewNetstackPort(port, bridge.NetstackOptions{}))
//
// Transmit: WritePackets takes a reference to each frame and queues it; one
// goroutine hands them to Switch.Transmit. Netstack replies to ARP and ICMP
// synchronously inside a delivery, so forwarding inline could recurse
// through two stacks; the queue breaks that. Receive: one goroutine per port
// queue builds a fresh inbound packet over the shared bytes (no copy),
// consumes the Ethernet header and calls the NIC's dispatcher.
//
// Goroutines start at the first Attach and stop at Close.
type NetstackPort struct {
	port *vswitch.Port
	sw   *vswitch.Switch
	opts NetstackOptions

	// dispatcher is the NIC, nil when detached. Deliveries load it without
	// a lock: the stack calls Attach(nil) with Stack.mu held, and a
	// delivery may be waiting for Stack.mu (IPv4 HandlePacket takes it), so
	// Attach(nil) must not wait for deliveries. A late delivery reaches a
	// NIC that is already disabled and is counted there; Close, which the
	// stack calls after releasing Stack.mu, stops the delivery goroutines
	// and waits for them.
	dispatcher atomic.Pointer[dispatcherBox]

	addrMu sync.Mutex
	addr   tcpip.LinkAddress

	tx     chan *stack.PacketBuffer
	stop   chan struct{}
	wg     sync.WaitGroup
	start  sync.Once
	closed sync.Once

	txFull   atomic.Uint64 // frames refused: tx queue full
	rxOther  atomic.Uint64 // unicast for another MAC, not given to netstack
	rxNoDisp atomic.Uint64 // arrived while detached
}

// NetstackOptions configures a NetstackPort.
type NetstackOptions struct {
	// TxQueueLen bounds the transmit queue (default DefaultNetstackTxQueue).
	TxQueueLen int
	// Batch is the most frames taken from a switch queue at once.
	Batch int
}

var _ stack.LinkEndpoint = (*NetstackPort)(nil)

// NewNetstackPort returns the endpoint for port p. Pass it to
// stack.CreateNIC; the stack then owns its lifetime (RemoveNIC or
// Stack.Destroy closes it).
func NewNetstackPort(p *vswitch.Port, opts NetstackOptions) *NetstackPort {
	if opts.TxQueueLen <= 0 {
		opts.TxQueueLen = DefaultNetstackTxQueue
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	mac := p.MAC()
	return &NetstackPort{
		port: p,
		sw:   p.Switch(),
		opts: opts,
		addr: tcpip.LinkAddress(mac[:]),
		tx:   make(chan *stack.PacketBuffer, opts.TxQueueLen),
		stop: make(chan struct{}),
	}
}

// NetstackStats counts frames a netstack port did not pass on.
type NetstackStats struct {
	TxQueueFull uint64 `json:"tx_queue_full"`
	RxOtherHost uint64 `json:"rx_otherhost"`
	RxDetached  uint64 `json:"rx_detached"`
}

// Stats returns the port's own drop counters.
func (e *NetstackPort) Stats() NetstackStats {
	return NetstackStats{TxQueueFull: e.txFull.Load(), RxOtherHost: e.rxOther.Load(), RxDetached: e.rxNoDisp.Load()}
}

// MTU implements stack.LinkEndpoint: the port's MTU, an IP MTU.
func (e *NetstackPort) MTU() uint32 { return e.port.MTU() }

// SetMTU implements stack.LinkEndpoint. The switch owns the port's MTU, so
// this asks the switch; a refused value is ignored (the stack cannot be told).
func (e *NetstackPort) SetMTU(mtu uint32) { _ = e.sw.SetMTU(e.port, mtu) }

// MaxHeaderLength implements stack.LinkEndpoint.
func (*NetstackPort) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *NetstackPort) LinkAddress() tcpip.LinkAddress {
	e.addrMu.Lock()
	defer e.addrMu.Unlock()
	return e.addr
}

// SetLinkAddress implements stack.LinkEndpoint; it changes the port's MAC
// if the switch allows it.
func (e *NetstackPort) SetLinkAddress(addr tcpip.LinkAddress) {
	if len(addr) != 6 {
		return
	}
	var m vswitch.MAC
	copy(m[:], addr)
	if e.sw.SetMAC(e.port, m) == nil {
		e.addrMu.Lock()
		e.addr = addr
		e.addrMu.Unlock()
	}
}

// Capabilities implements stack.LinkEndpoint.
func (*NetstackPort) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

type dispatcherBox struct{ d stack.NetworkDispatcher }

// Attach implements stack.LinkEndpoint.
func (e *NetstackPort) Attach(d stack.NetworkDispatcher) {
	if d == nil {
		e.dispatcher.Store(nil)
		return
	}
	e.dispatcher.Store(&dispatcherBox{d})
	e.start.Do(e.startLoops)
}

// IsAttached implements stack.LinkEndpoint.
func (e *NetstackPort) IsAttached() bool { return e.dispatcher.Load() != nil }

// Wait implements stack.LinkEndpoint: it returns once Close has stopped the
// goroutines.
func (e *NetstackPort) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*NetstackPort) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (e *NetstackPort) AddHeader(pkt *stack.PacketBuffer) {
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.LinkAddress()
	}
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: src, DstAddr: pkt.EgressRoute.RemoteLinkAddress, Type: pkt.NetworkProtocolNumber})
}

// ParseHeader implements stack.LinkEndpoint.
func (*NetstackPort) ParseHeader(pkt *stack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// SetOnCloseAction implements stack.LinkEndpoint.
// The port has no device that can die under it, so the action is never
// needed.
func (*NetstackPort) SetOnCloseAction(func()) {}

// WritePackets implements stack.LinkWriter. It queues a reference to each
// frame and returns at once; when the queue is full the rest are refused
// and counted.
func (e *NetstackPort) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		select {
		case e.tx <- pkt.IncRef():
			n++
		default:
			pkt.DecRef()
			e.txFull.Add(uint64(pkts.Len() - n))
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			return n, nil
		}
	}
	return n, nil
}

// Close implements stack.LinkEndpoint: it stops the goroutines and releases
// queued frames. Idempotent.
func (e *NetstackPort) Close() {
	e.closed.Do(func() {
		close(e.stop)
		e.wg.Wait()
		for {
			select {
			case pkt := <-e.tx:
				pkt.DecRef()
				e.txFull.Add(1)
			default:
				return
			}
		}
	})
}

func (e *NetstackPort) startLoops() {
	e.wg.Add(1)
	go e.txLoop()
	for i := 0; i < e.port.NumQueues(); i++ {
		e.wg.Add(1)
		go e.rxLoop(e.port.Queue(i))
	}
}

// txLoop hands netstack's frames to the switch.
func (e *NetstackPort) txLoop() {
	defer e.wg.Done()
	for {
		select {
		case pkt := <-e.tx:
			e.sw.Transmit(e.port, pkt, -1)
			pkt.DecRef()
		case <-e.stop:
			return
		}
	}
}

// rxLoop delivers the frames the switch queued for this port.
func (e *NetstackPort) rxLoop(q *vswitch.Queue) {
	defer e.wg.Done()
	var list stack.PacketBufferList
	for {
		for q.Dequeue(&list, e.opts.Batch) > 0 {
			for _, pkt := range list.AsSlice() {
				e.deliver(pkt)
			}
			list.Reset()
		}
		if q.Closed() {
			return
		}
		select {
		case <-q.Ready():
		case <-e.stop:
			return
		}
	}
}

// deliver gives netstack a fresh inbound packet sharing pkt's bytes: a clone
// would carry header offsets netstack must consume itself.
func (e *NetstackPort) deliver(pkt *stack.PacketBuffer) {
	in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: pkt.ToBuffer()})
	defer in.DecRef()
	hdr, ok := in.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return // the switch never queues runts
	}

	var dst vswitch.MAC
	copy(dst[:], hdr[:6])
	mine := e.port.MAC()
	switch {
	case dst.IsBroadcast():
		in.PktType = tcpip.PacketBroadcast
	case dst.IsGroup():
		in.PktType = tcpip.PacketMulticast
	case dst == mine || e.port.Mode() == vswitch.ModePassthru:
		in.PktType = tcpip.PacketHost
	default:
		// A source-mode copy of someone else's unicast: a NIC would
		// filter it.
		e.rxOther.Add(1)
		return
	}
	proto := tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(hdr[12:14]))
	in.NetworkProtocolNumber = proto
	b := e.dispatcher.Load()
	if b == nil {
		e.rxNoDisp.Add(1)
		return
	}
	b.d.DeliverNetworkPacket(proto, in)
}
