package vswitch

import (
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestSelectQueue(t *testing.T) {
	for _, tc := range []struct {
		n       int
		hash    uint32
		rxQueue int
		want    int
	}{
		{1, 12345, 3, 0},
		{4, 7, 3, 3},
		{4, 8, 1, 0},
		{4, 0, 6, 2}, // no hash: recorded rx queue folded into range
		{4, 0, -1, 0},
		{0, 5, 5, 0},
	} {
		if got := selectQueue(tc.n, tc.hash, tc.rxQueue); got != tc.want {
			t.Errorf("selectQueue(%d, %d, %d) = %d, want %d", tc.n, tc.hash, tc.rxQueue, got, tc.want)
		}
	}
}

// Spec case 45: every flow stays on one queue, and flows spread over queues.
func TestFlowsStayOnOneQueue(t *testing.T) {
	s := newSwitch(t, Options{})
	p := addPort(t, s, PortConfig{Name: "t", MAC: macA, Queues: 4})
	where := map[uint16]int{}
	for round := 0; round < 2; round++ {
		for flow := uint16(0); flow < 40; flow++ {
			send(s, nil, udp4(macA, macE, 1000+flow, 53, 100))
			got := drain(p)
			q := -1
			for i, n := range got {
				if n == 1 {
					q = i
				}
			}
			if sum(got) != 1 || q < 0 {
				t.Fatalf("flow %d: queues got %v", flow, got)
			}
			if prev, ok := where[flow]; ok && prev != q {
				t.Errorf("flow %d moved from queue %d to %d", flow, prev, q)
			}
			where[flow] = q
		}
	}
	per := make([]int, 4)
	for _, q := range where {
		per[q]++
	}
	for i, n := range per {
		if n == 0 {
			t.Errorf("queue %d got no flow of 40: %v", i, per)
		}
	}
}

// Spec case 46: a full queue drops, counts rx_errors, and keeps what fits.
func TestQueueFull(t *testing.T) {
	s := newSwitch(t, Options{})
	p := addPort(t, s, PortConfig{Name: "t", MAC: macA, QueueLen: 4})
	for i := 0; i < 10; i++ {
		send(s, nil, ethFrame(macA, macE, 0x88b5, 60))
	}
	st := p.Stats()
	if st.RxPackets != 4 || st.RxErrors != 6 || st.RxDrops.Get("queue_full") != 6 || st.Queues[0].Dropped != 6 {
		t.Errorf("rx_packets %d rx_errors %d queue_full %d q.dropped %d; want 4 6 6 6",
			st.RxPackets, st.RxErrors, st.RxDrops.Get("queue_full"), st.Queues[0].Dropped)
	}
	if n := sum(drain(p)); n != 4 {
		t.Errorf("%d frames readable, want 4", n)
	}
	checkInvariant(t, s)
}

// Spec case 47: detach and attach queues.
func TestDetachAttach(t *testing.T) {
	s := newSwitch(t, Options{})
	p := addPort(t, s, PortConfig{Name: "t", MAC: macA, Queues: 3})
	must(t, s.DetachQueue(p, 0))
	if err := s.DetachQueue(p, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("second detach = %v, want ErrInvalid", err)
	}
	for flow := uint16(0); flow < 30; flow++ {
		send(s, nil, udp4(macA, macE, flow, 9, 80))
	}
	if got := drain(p); got[0] != 0 || got[1]+got[2] != 30 {
		t.Errorf("with q0 detached: %v", got)
	}
	must(t, s.AttachQueue(p, 0))
	if err := s.AttachQueue(p, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("second attach = %v, want ErrInvalid", err)
	}
	for flow := uint16(0); flow < 30; flow++ {
		send(s, nil, udp4(macA, macE, flow, 9, 80))
	}
	if got := drain(p); got[0] == 0 {
		t.Errorf("re-attached q0 got nothing: %v", got)
	}
	for i := 0; i < 3; i++ {
		must(t, s.DetachQueue(p, i))
	}
	send(s, nil, ethFrame(macA, macE, 0x88b5, 60))
	if st := p.Stats(); st.RxDrops.Get("no_queue") != 1 {
		t.Errorf("no attached queue: drops %v", st.RxDrops)
	}
	checkInvariant(t, s)
}

// A removed port's queued frames are released and counted.
func TestRemoveReleasesQueued(t *testing.T) {
	s := newSwitch(t, Options{})
	p := addPort(t, s, PortConfig{Name: "a", MAC: macA})
	send(s, nil, ethFrame(macA, macE, 0x88b5, 60))
	must(t, s.RemovePort(p))
	if !p.Queue(0).Closed() || p.Queue(0).Len() != 0 {
		t.Error("queue not closed and emptied")
	}
	if st := p.Stats(); st.RxDrops.Get("removed") != 1 {
		t.Errorf("removed drops %v", st.RxDrops)
	}
}

// The unicast path allocates nothing per frame, in both directions.
func TestUnicastNoAlloc(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	toB := pktOf(udp4(macB, macA, 1, 2, 1500))
	fromWire := pktOf(udp4(macA, macE, 1, 2, 1500))
	toWire := pktOf(udp4(macE, macA, 1, 2, 1500))
	defer toB.DecRef()
	defer fromWire.DecRef()
	defer toWire.DecRef()
	var list stack.PacketBufferList
	for name, fn := range map[string]func(){
		"bridge to bridge": func() { s.Transmit(a, toB, -1); b.Queue(0).Dequeue(&list, 1); list.Reset() },
		"wire to port":     func() { s.Receive(fromWire, 0); a.Queue(0).Dequeue(&list, 1); list.Reset() },
		"port to wire":     func() { s.Transmit(a, toWire, 0); s.Lower().Queue(0).Dequeue(&list, 1); list.Reset() },
	} {
		fn() // warm the rings
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocations per frame, want 0", name, n)
		}
	}
}

// TestPlugBatchesWrites: frames a producer forwards under a plug reach each
// destination's writer in one batch when the plug ends, not one write per
// frame; without a plug every frame is written at once. Frames another
// producer queues meanwhile wait behind the plug's claim and go out with
// the batch, in order.
func TestPlugBatchesWrites(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	var writes []int
	var got []uint16
	b.Queue(0).SetWriter(func(l *stack.PacketBufferList) {
		writes = append(writes, l.Len())
		for _, p := range l.AsSlice() {
			var hdr [38]byte
			CopyFrame(p, 0, hdr[:])
			got = append(got, uint16(hdr[34])<<8|uint16(hdr[35])) // UDP source port
		}
	}, 64)
	defer b.Queue(0).SetWriter(nil, 0)
	sendPlugged := func(pl *Plug, sport uint16) {
		p := pktOf(udp4(macB, macA, sport, 2, 100))
		s.TransmitPlugged(a, p, 0, pl)
		p.DecRef()
	}

	for i := uint16(0); i < 3; i++ {
		sendPlugged(nil, i)
	}
	if len(writes) != 3 {
		t.Fatalf("unplugged: writes %v, want 3 of 1", writes)
	}

	writes, got = nil, nil
	var pl Plug
	pl.Begin()
	for i := uint16(10); i < 15; i++ {
		sendPlugged(&pl, i)
		if i == 12 {
			sendPlugged(nil, 99) // another producer: queues behind the claim
		}
	}
	if len(writes) != 0 {
		t.Fatalf("writes %v while plugged, want none", writes)
	}
	pl.End()
	if len(writes) != 1 || writes[0] != 6 {
		t.Errorf("plugged: writes %v, want one of 6", writes)
	}
	want := []uint16{10, 11, 12, 99, 13, 14}
	if len(got) != len(want) {
		t.Fatalf("written %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("written %v, want %v", got, want)
		}
	}
	if st := b.Stats(); st.RxPackets != 9 {
		t.Errorf("b rx_packets = %d, want 9", st.RxPackets)
	}
}

// TestPlugStaysWithItsProducer: a flood a plugged producer hands to the
// broadcast queue is delivered later by another goroutine, which must not
// use the producer's plug (only its goroutine may). Before, the drainer
// held the ports' writers in the reader's plug; under load two goroutines
// raced on it, lost a held queue, and its writer stayed claimed forever.
func TestPlugStaysWithItsProducer(t *testing.T) {
	s := newSwitch(t, Options{})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	var writes int
	b.Queue(0).SetWriter(func(l *stack.PacketBufferList) { writes += l.Len() }, 64)
	defer b.Queue(0).SetWriter(nil, 0)
	var pl Plug
	pl.Begin()
	p := pktOf(udp4(MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, macE, 1, 2, 100))
	s.ReceivePlugged(p, 0, &pl)
	p.DecRef()
	s.DrainBroadcast(1 << 20)
	if writes != 1 {
		t.Errorf("the broadcast drainer's delivery was written %d times before the producer's plug ended, want 1", writes)
	}
	pl.End()
}

// TestPlugBoundedBytes: a plug flushes once it holds plugBytes, so a
// batch of large frames is not held back whole.
func TestPlugBoundedBytes(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge})
	b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
	var writes []int
	b.Queue(0).SetWriter(func(l *stack.PacketBufferList) { writes = append(writes, l.Len()) }, 64)
	defer b.Queue(0).SetWriter(nil, 0)
	var pl Plug
	pl.Begin()
	const size = 1000
	for i := 0; i < 40; i++ {
		p := pktOf(udp4(macB, macA, uint16(i), 2, size))
		s.TransmitPlugged(a, p, 0, &pl)
		p.DecRef()
	}
	if len(writes) == 0 {
		t.Fatalf("40 frames of %d bytes held back whole; want a flush at %d bytes", size, plugBytes)
	}
	pl.End()
	total := 0
	for _, n := range writes {
		total += n
	}
	if total != 40 || writes[0] > plugBytes/size+1 {
		t.Errorf("writes %v: want 40 frames, the first batch at most %d", writes, plugBytes/size+1)
	}
}
