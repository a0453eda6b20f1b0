//go:build linux

package endpoints

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
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

// dispatchers is what an endpoint was attached to, loaded per frame.
type dispatchers struct {
	d  stack.NetworkDispatcher
	qd QueueDispatcher
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

// rxBufSizes shapes receive buffers: the first view holds any frame's L2-L4
// headers, so that validation reads them without copying; the sum covers
// MaxFrameSize plus a virtio-net header, with one spare byte so that a
// full-buffer read reveals truncation. The views come from gVisor's chunk
// pools.
var rxBufSizes = []int{256, 256, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768}

// rxBuffer is a reader's reusable set of pooled views and the iovecs that
// point at them (the shape of fdbased's iovecBuffer). The first iovec
// receives the virtio-net header, which is parsed and not kept.
type rxBuffer struct {
	sizes   []int
	views   []*buffer.View
	iovs    []unix.Iovec
	vnet    []byte
	vlanGap int // bytes left free at offset 12 of the first view (AF_PACKET VLAN re-insertion)
}

// newRxBuffer sizes the buffer for frames of up to maxFrame bytes.
func newRxBuffer(hdrSize, maxFrame, vlanGap int) *rxBuffer {
	b := &rxBuffer{vlanGap: vlanGap}
	total := 0
	for _, s := range rxBufSizes {
		b.sizes = append(b.sizes, s)
		total += s
		if total > maxFrame+vlanGap {
			break
		}
	}
	b.views = make([]*buffer.View, len(b.sizes))
	b.vnet = make([]byte, max(hdrSize, 1))[:hdrSize]
	n := len(b.sizes)
	if hdrSize > 0 {
		n++
	}
	if vlanGap > 0 {
		n++
	}
	b.iovs = make([]unix.Iovec, 0, n)
	return b
}

// capacity is the largest frame a read can return without truncation.
func (b *rxBuffer) capacity() int {
	c := -b.vlanGap
	for _, s := range b.sizes {
		c += s
	}
	return c
}

// iovecs allocates views consumed by the previous pull and returns the
// iovecs for the next read.
func (b *rxBuffer) iovecs() []unix.Iovec {
	b.iovs = b.iovs[:0]
	if len(b.vnet) > 0 {
		b.iovs = append(b.iovs, unix.Iovec{Base: &b.vnet[0]})
		b.iovs[len(b.iovs)-1].SetLen(len(b.vnet))
	}
	if b.vlanGap > 0 && b.views[0] != nil && b.views[0].Size() != b.sizes[0] {
		// fillGap trimmed it for a frame that was then dropped.
		b.views[0].Release()
		b.views[0] = nil
	}
	for i := range b.views {
		if b.views[i] == nil {
			b.views[i] = buffer.NewViewSize(b.sizes[i])
		}
		s := b.views[i].AsSlice()
		if i == 0 && b.vlanGap > 0 {
			b.iovs = append(b.iovs, unix.Iovec{Base: &s[0]})
			b.iovs[len(b.iovs)-1].SetLen(12)
			s = s[12+b.vlanGap:]
		}
		b.iovs = append(b.iovs, unix.Iovec{Base: &s[0]})
		b.iovs[len(b.iovs)-1].SetLen(len(s))
	}
	return b.iovs
}

// head returns the start of the frame in the first view, valid until pull
// (at most the first view's size).
func (b *rxBuffer) head(frameLen int) []byte {
	s := b.views[0].AsSlice()
	return s[:min(len(s), frameLen)]
}

// fillGap finishes the frame of an AF_PACKET read with a VLAN gap: it puts
// the tag (TPID, TCI) in the gap, or, with no tag, closes the gap by moving
// the MAC addresses up. It returns the frame length. n is the frame bytes
// the read returned (without the virtio-net header).
func (b *rxBuffer) fillGap(n int, tagged bool, tpid, tci uint16) int {
	if b.vlanGap == 0 {
		return n
	}
	v := b.views[0].AsSlice()
	if tagged && n >= 12 {
		binary.BigEndian.PutUint16(v[12:], tpid)
		binary.BigEndian.PutUint16(v[14:], tci)
		return n + b.vlanGap
	}
	copy(v[b.vlanGap:12+b.vlanGap], v[:12])
	b.views[0].TrimFront(b.vlanGap)
	return n
}

// pull detaches the views holding frameLen bytes of frame and returns them
// as a buffer the caller owns (usually moved into a PacketBuffer).
func (b *rxBuffer) pull(frameLen int) buffer.Buffer {
	var out buffer.Buffer
	rem := frameLen
	for i := range b.views {
		if rem <= 0 {
			break
		}
		v := b.views[i]
		n := min(v.Size(), rem)
		v.CapLength(n)
		out.Append(v)
		b.views[i] = nil
		rem -= n
	}
	return out
}

func (b *rxBuffer) release() {
	for i, v := range b.views {
		if v != nil {
			v.Release()
			b.views[i] = nil
		}
	}
}

// txAction is how a frame goes out.
type txAction uint8

const (
	txDirect   txAction = iota // as is, with the virtio-net header if any
	txSegment                  // software GSO
	txChecksum                 // software checksum completion
	txDrop
)

// planTx decides how to send a frame of frameLen bytes whose start is head,
// carrying gso, to a receiver with IP MTU mtu that takes GSO super-frames
// (canGSO) and partial checksums (canCsum) through a virtio-net header.
func planTx(gso stack.GSO, head []byte, frameLen int, mtu int, canGSO, canCsum bool) (VnetHdr, txAction, DropReason) {
	l2, _, ok := l2Len(head)
	if !ok {
		return VnetHdr{}, txDrop, DropRunt
	}
	h := VnetFromGSO(gso, head, frameLen)
	switch {
	case h.IsGSO():
		// Segments the receiver's GSO would produce must fit its MTU too.
		if canGSO && int(h.HdrLen)-l2+int(h.GSOSize) <= mtu {
			return h, txDirect, 0
		}
		return h, txSegment, 0
	case frameLen > mtu+l2 && !canGSO:
		// A receiver that negotiated GSO takes frames above its MTU (the
		// kernel does not check the MTU on receive either: spec §5.2, a
		// reassembled datagram, case 28); one that did not must not see
		// them.
		return h, txDrop, DropOversize
	case h.NeedsCsum() && !canCsum:
		return h, txChecksum, 0
	}
	return h, txDirect, 0
}

// linkAttrs is the state and the stack.LinkEndpoint methods Tap and Packet
// share: the IP MTU, the MAC, the dispatcher and the close action, each an
// atomic so every method is safe for concurrent use. Both embed it.
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
