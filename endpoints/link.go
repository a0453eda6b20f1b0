//go:build linux

package endpoints

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ErrClosed is returned by methods of a closed endpoint.
var ErrClosed = errors.New("endpoint closed")

// QueueDispatcher is an optional extension of stack.NetworkDispatcher. When
// the dispatcher attached to a Tap or Packet endpoint implements it, frames
// are delivered with DeliverQueuePacket and the index of the queue (tap
// queue, or AF_PACKET fanout socket) they were read from, instead of
// DeliverNetworkPacket.
//
// DeliverQueuePacket borrows pkt: its payload is the whole Ethernet frame,
// with no header consumed; pkt.GSOOptions describes a GSO super-frame or a
// partial checksum. It is called on the queue's receive goroutine, so
// calls for one queue are sequential and calls for different queues run
// concurrently.
type QueueDispatcher interface {
	DeliverQueuePacket(queue int, pkt *stack.PacketBuffer)
}

// BatchDispatcher is an optional extension of QueueDispatcher. A reader
// that takes several frames from a queue at once (io_uring, recvmmsg, a
// ring block) brackets their DeliverQueuePacket calls with BeginBatch and
// EndBatch, on the queue's receive goroutine, so the dispatcher may hold
// its own writes until the batch ends and send each destination the
// frames in one write (the kernel's xmit_more).
type BatchDispatcher interface {
	QueueDispatcher
	BeginBatch(queue int)
	EndBatch(queue int)
}

// dispatchers is what an endpoint was attached to, loaded per frame.
type dispatchers struct {
	d  stack.NetworkDispatcher
	qd QueueDispatcher
	bd BatchDispatcher
}

// beginBatch starts bracketing the delivery of frames a reader took
// together, and reports whether it did: then call endBatch after the last.
// A single frame, or a dispatcher that does not batch, is not bracketed.
func (q *fdQueue) beginBatch(frames int) bool {
	ds := q.e.dispatch.Load()
	if frames < 2 || ds == nil || ds.bd == nil {
		return false
	}
	ds.bd.BeginBatch(q.idx)
	return true
}

// endBatch ends a batch beginBatch began.
func (q *fdQueue) endBatch() {
	if ds := q.e.dispatch.Load(); ds != nil && ds.bd != nil {
		ds.bd.EndBatch(q.idx)
	}
}

// deliver hands pkt (borrowed) to the attached dispatcher.
func deliver(dp *atomic.Pointer[dispatchers], q int, frame []byte, pkt *stack.PacketBuffer) {
	ds := dp.Load()
	if ds == nil {
		return
	}
	if ds.qd != nil {
		ds.qd.DeliverQueuePacket(q, pkt)
		return
	}
	var proto tcpip.NetworkProtocolNumber
	if len(frame) >= header.EthernetMinimumSize {
		proto = tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(frame[12:]))
	}
	ds.d.DeliverNetworkPacket(proto, pkt)
}

func newDispatchers(d stack.NetworkDispatcher) *dispatchers {
	if d == nil {
		return nil
	}
	ds := &dispatchers{d: d}
	ds.qd, _ = d.(QueueDispatcher)
	ds.bd, _ = d.(BatchDispatcher)
	return ds
}

// addEthernetHeader pushes an Ethernet header built from the packet's
// egress route, as gVisor's ethernet endpoint does. The switch never calls
// it (forwarded frames carry their header); a netstack NIC on the endpoint
// does.
func addEthernetHeader(local tcpip.LinkAddress, pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = local
	}
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// parseEthernetHeader consumes the Ethernet header of a packet whose payload
// starts with it.
func parseEthernetHeader(pkt *stack.PacketBuffer) bool {
	hdr, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		return false
	}
	pkt.NetworkProtocolNumber = header.Ethernet(hdr).Type()
	return true
}

// linkAttrs is the state and the stack.LinkEndpoint methods every
// endpoint shares: the IP MTU, the MAC, the dispatcher and the close
// action, each an atomic so every method is safe for concurrent use. The
// engine embeds it.
type linkAttrs struct {
	mtu      atomic.Uint32
	mac      atomic.Pointer[tcpip.LinkAddress]
	dispatch atomic.Pointer[dispatchers]
	onClose  atomic.Pointer[func()]
	closeRan atomic.Bool // the close action runs at most once
}

// runCloseAction starts the close action on its own goroutine (RemoveNIC
// calls Attach(nil), which waits for the reader that noticed), once: when
// the last queues fail together, each of their readers sees all dead.
func (a *linkAttrs) runCloseAction() {
	if f := a.onClose.Load(); f != nil && *f != nil && a.closeRan.CompareAndSwap(false, true) {
		go (*f)()
	}
}

// MTU implements stack.LinkEndpoint.MTU: the IP MTU.
func (a *linkAttrs) MTU() uint32 { return a.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.SetMTU. It changes the endpoint's
// MTU only, not the interface's (for Packet the interface's next MTU change
// overrides it).
func (a *linkAttrs) SetMTU(mtu uint32) { a.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint.MaxHeaderLength: Ethernet.
func (*linkAttrs) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.LinkAddress: the interface MAC.
func (a *linkAttrs) LinkAddress() tcpip.LinkAddress { return *a.mac.Load() }

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (a *linkAttrs) SetLinkAddress(addr tcpip.LinkAddress) { a.mac.Store(&addr) }

// Capabilities implements stack.LinkEndpoint.Capabilities.
func (*linkAttrs) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// ARPHardwareType implements stack.LinkEndpoint.ARPHardwareType.
func (*linkAttrs) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.AddHeader.
func (a *linkAttrs) AddHeader(pkt *stack.PacketBuffer) { addEthernetHeader(a.LinkAddress(), pkt) }

// ParseHeader implements stack.LinkEndpoint.ParseHeader.
func (*linkAttrs) ParseHeader(pkt *stack.PacketBuffer) bool { return parseEthernetHeader(pkt) }

// SetOnCloseAction implements stack.LinkEndpoint.SetOnCloseAction. The
// action runs (on its own goroutine) when every queue has died.
func (a *linkAttrs) SetOnCloseAction(f func()) { a.onClose.Store(&f) }

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (a *linkAttrs) IsAttached() bool { return a.dispatch.Load() != nil }

// GSOMaxSize implements stack.GSOEndpoint.GSOMaxSize.
func (e *engine) GSOMaxSize() uint32 {
	if e.canGSO {
		return GSOMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.SupportedGSO: host GSO when
// the endpoint takes offloads through a virtio-net header.
func (e *engine) SupportedGSO() stack.SupportedGSO {
	if e.canGSO {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}
