package vswitch

import (
	"bytes"
	"hash/maphash"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzClassify feeds arbitrary bytes to the frame classifier and flow hash:
// no panic, a deterministic non-zero hash, a queue always in range, and the
// same hash for the same bytes however the packet is split into views.
func FuzzClassify(f *testing.F) {
	f.Add(udp4(macA, macE, 1, 2, 60), uint8(4))
	f.Add(frag4(Broadcast, 7, 8, 16, true), uint8(3))
	f.Add(ethFrame(Broadcast, macE, 0x0806, 60), uint8(1))
	v6 := ethFrame(macA, macE, etherTypeIPv6, 14+40+8)
	v6[14] = 0x60
	v6[14+6] = ipProtoTCP
	f.Add(v6, uint8(8))
	vlan := ethFrame(macA, macE, etherTypeVLAN, 80)
	vlan[16], vlan[17] = 0x08, 0x00
	f.Add(vlan, uint8(2))
	f.Add([]byte{1, 2, 3}, uint8(1))
	seed := maphash.MakeSeed()
	s := &Switch{seed: seed}
	f.Fuzz(func(t *testing.T, b []byte, nq uint8) {
		var f1, f2 frame
		var hb [peekLen]byte
		p1 := pktOf(b)
		_, ok1 := s.classify(p1, &f1, &hb)
		p1.DecRef()
		if ok1 != (len(b) >= ethHeaderLen) {
			t.Fatalf("classify ok=%v for %d bytes", ok1, len(b))
		}
		if !ok1 {
			return
		}
		// The same bytes in two views.
		cut := len(b) / 2
		p2 := pktOf(b[:cut])
		p2.Data().AppendView(viewOf(b[cut:]))
		s.classify(p2, &f2, &hb)
		p2.DecRef()
		if f1 != f2 {
			t.Fatalf("classification depends on view layout: %+v vs %+v", f1, f2)
		}
		if f1.hash == 0 {
			t.Fatal("zero flow hash")
		}
		n := int(nq)%MaxQueues + 1
		if q := selectQueue(n, f1.hash, int(nq)); q < 0 || q >= n {
			t.Fatalf("queue %d out of 0..%d", q, n-1)
		}
		if !bytes.Equal(f1.dst[:], b[0:6]) || !bytes.Equal(f1.src[:], b[6:12]) {
			t.Fatal("addresses misparsed")
		}
	})
}

// FuzzForward drives a random switch (modes, hairpin, up/down, MTUs) with
// random frames and checks the forwarding invariants:
//   - no panic; accepted == forwarded + merged + pending + dropped;
//   - a private port never receives a sibling's flood, only its own
//     reflected one;
//   - bridge-to-bridge unicast never leaves through the lower; VEPA,
//     private and source unicast always does;
//   - a flow always maps to the same queue.
func FuzzForward(f *testing.F) {
	f.Add([]byte{3, 4, 4, 2, 1, 0, 0xff, 0xff, 60, 1, 0, 1, 60, 2, 2, 0, 100})
	f.Add([]byte{2, 1, 1, 0, 1, 0xff, 0xff, 60, 0x81, 1, 0, 80})
	f.Add([]byte{4, 16, 4, 2, 1, 1, 5, 0xff, 0xff, 200, 5, 0, 3, 60, 0, 0xff, 0xff, 60})
	f.Add([]byte{1, 8, 1, 5, 5, 1, 60, 5, 0xff, 0xff, 60})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &reader{b: data}
		s := New(Options{LowerMAC: lowerMAC, LowerQueueLen: 1 << 16})
		defer s.Close()
		hairpin := r.next()&1 == 1
		nports := int(r.next())%5 + 1
		var ports []*Port
		for i := 0; i < nports; i++ {
			mode := []Mode{ModePrivate, ModeVEPA, ModeBridge, ModeSource, ModePassthru}[r.next()%5]
			cfg := PortConfig{
				Name: string(rune('a' + i)), Mode: mode, MAC: MAC{2, 0, 0, 0, 1, byte(i)},
				Queues: int(r.next())%4 + 1, QueueLen: 1 << 16, Down: r.next()%7 == 0,
				AllMulti: Bool(r.next()&1 == 1),
			}
			if mode == ModeSource {
				cfg.SourceMACs = []MAC{macE, {2, 0, 0, 0, 1, byte(r.next() % 6)}}
				cfg.NoDst = r.next()%3 == 0
			}
			if p, err := s.AddPort(cfg); err == nil {
				ports = append(ports, p)
			}
		}
		macOf := func(sel byte) MAC {
			switch {
			case sel == 0xff:
				return Broadcast
			case sel >= 0xf0:
				return MAC{0x01, 0, 0x5e, 0, 0, sel & 3}
			case sel >= 0xe0:
				return macE
			case sel >= 0xd0:
				return lowerMAC
			}
			return MAC{2, 0, 0, 0, 1, sel % 6}
		}
		for !r.done() {
			who := int(r.next())
			dst, src := macOf(r.next()), macOf(r.next())
			size := int(r.next())*8 + 14
			var sender *Port
			if who < len(ports) {
				sender = ports[who]
				if sender.Up() {
					src = sender.MAC()
				}
			}
			b := ethFrame(dst, src, 0x88b5, size)
			if r.next()&1 == 1 {
				b = udp4(dst, src, uint16(who), 99, size)
			}
			checkOneFrame(t, s, ports, sender, b, hairpin)
		}
		checkInvariant(t, s)
	})
}

// checkOneFrame sends b, reflects the lower's output back when hairpin is
// on (once: an external switch does not loop), and checks the invariants
// on what each port received.
func checkOneFrame(t *testing.T, s *Switch, ports []*Port, sender *Port, b []byte, hairpin bool) {
	var dst, src MAC
	copy(dst[:], b[0:6])
	copy(src[:], b[6:12])
	send(s, sender, b)
	wire := takeAll(s.Lower())
	if sender != nil && sender.Up() && sender.Carrier() && !dst.IsGroup() {
		v := sender.view.Load()
		owner := s.fib.Load().byMAC[dst]
		switch {
		case v.mode == ModeBridge && owner != nil && owner.mode == ModeBridge && len(wire) > 0:
			t.Fatalf("bridge unicast to bridge port %s left through the lower", owner.p.name)
		case v.mode != ModeBridge && len(wire) != 1:
			t.Fatalf("%s-mode unicast: %d frames on the wire, want 1", v.mode, len(wire))
		}
	}
	got := map[*Port][]*stack.PacketBuffer{}
	for _, p := range ports {
		got[p] = takeAll(p)
	}
	if hairpin {
		for _, w := range wire {
			s.Receive(w, 0)
			s.DrainBroadcast(1 << 20)
		}
		for _, p := range ports {
			got[p] = append(got[p], takeAll(p)...)
		}
	}
	for _, w := range wire {
		w.DecRef()
	}
	for p, pkts := range got {
		v := p.view.Load()
		for _, pkt := range pkts {
			var fr frame
			var hb [peekLen]byte
			s.classify(pkt, &fr, &hb)
			if v.mode == ModePrivate && fr.dst.IsGroup() && sender != nil && sender != p {
				if o := s.fib.Load().byMAC[fr.src]; o != nil && o.p != p {
					t.Fatalf("private port %s received sibling %s's flood", p.name, o.p.name)
				}
			}
			pkt.DecRef()
		}
	}
	// Same frame again: each port that got it must get it on the same queue.
	if !hairpin && !dst.IsGroup() {
		q1 := queuesHit(s, sender, b, ports)
		q2 := queuesHit(s, sender, b, ports)
		for p := range q1 {
			if !slices.Equal(q1[p], q2[p]) {
				t.Fatalf("flow moved queues on %s: %v then %v", p.name, q1[p], q2[p])
			}
		}
	}
}

func queuesHit(s *Switch, sender *Port, b []byte, ports []*Port) map[*Port][]int {
	send(s, sender, b)
	takeAll(s.Lower()).release()
	out := map[*Port][]int{}
	for _, p := range ports {
		out[p] = drain(p)
	}
	return out
}

type pkts []*stack.PacketBuffer

func (ps pkts) release() {
	for _, p := range ps {
		p.DecRef()
	}
}

func takeAll(e interface {
	NumQueues() int
	Queue(int) *Queue
}) pkts {
	var out pkts
	var list stack.PacketBufferList
	for i := 0; i < e.NumQueues(); i++ {
		for e.Queue(i).Dequeue(&list, 1<<20) > 0 {
			out = append(out, list.AsSlice()...)
			list = stack.PacketBufferList{}
		}
	}
	return out
}

type reader struct {
	b []byte
	i int
}

func (r *reader) next() byte {
	if r.i >= len(r.b) {
		r.i++
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *reader) done() bool { return r.i >= len(r.b) }
