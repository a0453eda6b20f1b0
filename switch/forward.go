package vswitch

import "gvisor.dev/gvisor/pkg/tcpip/stack"

// Receive forwards a frame that arrived on the lower from the wire
// (macvlan_handle_frame). rxQueue is the lower queue it was read from, or -1.
// Receive borrows pkt: every destination that keeps it takes its own
// reference. It does not block; floods that go through the broadcast queue
// wait there for DrainBroadcast.
func (s *Switch) Receive(pkt *stack.PacketBuffer, rxQueue int) {
	s.ReceivePlugged(pkt, rxQueue, nil)
}

// ReceivePlugged is Receive for one frame of a batch that the caller
// brackets with pl's Begin and End: writes to the ports are held until
// then. A nil pl is Receive.
func (s *Switch) ReceivePlugged(pkt *stack.PacketBuffer, rxQueue int, pl *Plug) {
	s.accepted.Add(1)
	l := s.lower
	l.rxPackets.Add(1)
	l.rxBytes.Add(uint64(pkt.Size()))
	t := s.fib.Load()
	if !t.lowerUp {
		l.rxDrops[DropLowerDown].Add(1)
		s.finish(false, DropLowerDown)
		return
	}
	var f frame
	var hb [peekLen]byte
	h, ok := s.classify(pkt, &f, &hb)
	f.plug = pl
	if !ok {
		l.rxDrops[DropMalformed].Add(1)
		s.finish(false, DropMalformed)
		return
	}
	if f.ipv4Frag && f.dst.IsGroup() {
		// BEHAVIOUR.md §2.2.1: ports see one reassembled datagram.
		s.defragment(pkt, h, &f, rxQueue)
		return
	}
	s.finish(s.receive(t, pkt, &f, rxQueue))
}

// receive runs the RX rules for a frame from the lower, or a bridge port's
// unicast to a bridge sibling, which the kernel injects into the lower's
// receive path. It reports whether any destination was given the frame, or
// why none was.
func (s *Switch) receive(t *fib, pkt *stack.PacketBuffer, f *frame, rxQueue int) (bool, DropReason) {
	copies, consumed := forwardSource(t, pkt, f, rxQueue)
	if consumed {
		return true, 0
	}
	var ok bool
	var why DropReason
	if f.dst.IsGroup() {
		ok, why = s.receiveGroup(t, pkt, f, rxQueue)
	} else {
		ok, why = receiveUnicast(t, pkt, f, rxQueue)
	}
	return ok || copies, why
}

// forwardSource gives a copy to every up source-mode port whose list holds the
// frame's source MAC (macvlan_forward_source). consumed is true when one of
// them has nodst: then nothing else gets the frame.
func forwardSource(t *fib, pkt *stack.PacketBuffer, f *frame, rxQueue int) (copies, consumed bool) {
	if len(t.sources) == 0 {
		return false, false
	}
	for _, v := range t.sources[f.src] {
		deliver(v, pkt, f, rxQueue, deliverUnicast)
		copies = true
		consumed = consumed || v.nodst
	}
	return copies, consumed
}

// receiveUnicast delivers to the port that owns the destination MAC, or to the
// passthru port whatever the destination.
func receiveUnicast(t *fib, pkt *stack.PacketBuffer, f *frame, rxQueue int) (bool, DropReason) {
	if v := t.passthru; v != nil {
		if !v.up {
			return false, DropPortDown
		}
		deliver(v, pkt, f, rxQueue, deliverUnicast)
		return true, 0
	}
	v := t.byMAC[f.dst]
	if v == nil || v.mode == ModeSource {
		// The kernel passes it to the lower's own stack.
		return false, DropNoPort
	}
	deliver(v, pkt, f, rxQueue, deliverUnicast)
	return true, 0
}

// receiveGroup handles a broadcast or multicast from the wire.
func (s *Switch) receiveGroup(t *fib, pkt *stack.PacketBuffer, f *frame, rxQueue int) (bool, DropReason) {
	src := t.byMAC[f.src]
	if src != nil && src.mode != ModeVEPA && src.mode != ModeBridge {
		// A private, passthru or source port's own flood came back: it
		// alone gets it (BEHAVIOUR.md §2.2.3).
		deliver(src, pkt, f, rxQueue, deliverUnicast)
		return true, 0
	}
	if f.etherType == etherTypePause {
		return false, DropPause
	}
	var srcPort *Port
	srcMode := Mode(0)
	if src != nil {
		srcPort, srcMode = src.p, src.mode
	}
	count := t.groups[f.dst]
	inMC := t.allGroups || f.dst.IsBroadcast() || count > 0
	inBC := t.cutoff >= 0 && (t.allGroups || f.dst.IsBroadcast() || count > t.cutoff)
	switch {
	case inBC:
		if !s.bcq.push(pkt, f, srcPort, srcMode, rxQueue) {
			s.lower.rxDrops[DropBroadcastQueue].Add(1)
			return false, DropBroadcastQueue
		}
		return true, 0
	case inMC:
		if flood(t, pkt, f, srcPort, srcMode, rxQueue) {
			return true, 0
		}
	}
	return false, DropNoMember
}

// floodMask is the set of modes that may receive a flood whose source MAC is
// a local port in mode src (0: an external source), per macvlan_multicast_rx.
func floodMask(src Mode) Mode {
	switch src {
	case 0:
		return ModePrivate | ModeVEPA | ModeBridge | ModePassthru
	case ModeVEPA:
		return ModeVEPA | ModeBridge
	default: // bridge: its siblings were served directly on transmit
		return ModeVEPA
	}
}

// flood delivers a wire flood to every up port the source's mode and the
// port's multicast filter allow, except the source itself.
func flood(t *fib, pkt *stack.PacketBuffer, f *frame, src *Port, srcMode Mode, rxQueue int) bool {
	mask := floodMask(srcMode)
	any := false
	for _, v := range t.up {
		if v.p == src || v.mode&mask == 0 || !v.accepts(f.dst) {
			continue
		}
		deliver(v, pkt, f, rxQueue, deliverFlood)
		any = true
	}
	return any
}

// Transmit forwards a frame that port p sent (macvlan_queue_xmit). rxQueue
// is the port queue it was read from, or -1. Transmit borrows pkt.
func (s *Switch) Transmit(p *Port, pkt *stack.PacketBuffer, rxQueue int) {
	s.TransmitPlugged(p, pkt, rxQueue, nil)
}

// TransmitPlugged is Transmit for one frame of a batch that the caller
// brackets with pl's Begin and End: writes to the destinations are held
// until then. A nil pl is Transmit.
func (s *Switch) TransmitPlugged(p *Port, pkt *stack.PacketBuffer, rxQueue int, pl *Plug) {
	s.accepted.Add(1)
	v := p.view.Load()
	t := s.fib.Load()
	var f frame
	var hb [peekLen]byte
	h, ok := s.classify(pkt, &f, &hb)
	f.plug = pl
	switch {
	case !v.up || v.removed:
		p.ctr.txDrops[DropPortDown].Add(1)
		s.finish(false, DropPortDown)
		return
	case !t.lowerUp:
		p.ctr.txDrops[DropLowerDown].Add(1)
		s.finish(false, DropLowerDown)
		return
	case !ok:
		p.ctr.txDrops[DropMalformed].Add(1)
		s.finish(false, DropMalformed)
		return
	}
	if v.guard != nil {
		if r := v.guard.check(h, &f); r != 0 {
			p.ctr.txDrops[r].Add(1)
			s.finish(false, r)
			return
		}
	}
	if v.police != nil {
		if ok, r := v.police.allow(f.size, f.dst.IsGroup()); !ok {
			p.ctr.txDrops[r].Add(1)
			s.finish(false, r)
			return
		}
	}
	p.ctr.txPackets.Add(1)
	p.ctr.txBytes.Add(uint64(f.size))
	if v.mode == ModeBridge {
		if f.dst.IsGroup() {
			if f.etherType != etherTypePause {
				floodBridge(t, pkt, &f, p, rxQueue)
			}
		} else if dst := t.byMAC[f.dst]; dst != nil && dst.mode == ModeBridge {
			// dev_forward_skb(lowerdev): checks the lower's MTU, then
			// the lower's receive path delivers it.
			if f.size > frameLimit(t.lowerMTU) && !isGSO(pkt) {
				s.finish(false, DropMTU)
				return
			}
			s.finish(s.receive(t, pkt, &f, rxQueue))
			return
		}
	}
	s.toWire(pkt, &f, rxQueue)
	s.finish(true, 0)
}

// floodBridge delivers a bridge port's flood directly to its up bridge
// siblings (macvlan_broadcast with MACVLAN_MODE_BRIDGE), checking each
// receiver's MTU as __dev_forward_skb does.
func floodBridge(t *fib, pkt *stack.PacketBuffer, f *frame, src *Port, rxQueue int) {
	for _, v := range t.bridges {
		if v.p == src || !v.accepts(f.dst) {
			continue
		}
		if f.size > frameLimit(v.mtu) && !isGSO(pkt) {
			v.p.ctr.rxErrors.Add(1)
			v.p.ctr.rxDrops[DropMTU].Add(1)
			continue
		}
		deliver(v, pkt, f, rxQueue, deliverDirect)
	}
}

// toWire queues the frame toward the lower.
func (s *Switch) toWire(pkt *stack.PacketBuffer, f *frame, rxQueue int) {
	l := s.lower
	q := l.pick(f.hash, rxQueue)
	if q == nil {
		l.txDrops[DropNoQueue].Add(1)
		return
	}
	ok, closed := q.push(pkt, f.plug)
	switch {
	case closed:
		l.txDrops[DropRemoved].Add(1)
	case !ok:
		l.txDrops[DropQueueFull].Add(1)
	default:
		l.txPackets.Add(1)
		l.txBytes.Add(uint64(f.size))
	}
}

// frameLimit is the largest frame a device with this MTU takes
// (is_skb_forwardable: MTU + link header + one VLAN tag).
func frameLimit(mtu uint32) int {
	return int(mtu) + ethHeaderLen + vlanHeaderLen
}

func isGSO(pkt *stack.PacketBuffer) bool {
	return pkt.GSOOptions.Type != stack.GSONone
}
