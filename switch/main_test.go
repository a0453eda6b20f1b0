package vswitch

import (
	"encoding/binary"
	"os"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/refs"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestMain enables gVisor's leak checker before any packet exists and checks
// that every test released every packet it made.
func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	code := m.Run()
	refs.DoLeakCheck()
	os.Exit(code)
}

var (
	lowerMAC = MAC{2, 0, 0, 0, 0, 0x10}
	macA     = MAC{2, 0, 0, 0, 0, 0x0a}
	macB     = MAC{2, 0, 0, 0, 0, 0x0b}
	macC     = MAC{2, 0, 0, 0, 0, 0x0c}
	macE     = MAC{2, 0, 0, 0, 0, 0xee}
)

func newSwitch(t testing.TB, opts Options) *Switch {
	t.Helper()
	if opts.LowerMAC.IsZero() {
		opts.LowerMAC = lowerMAC
	}
	s := New(opts)
	t.Cleanup(s.Close)
	return s
}

func addPort(t testing.TB, s *Switch, cfg PortConfig) *Port {
	t.Helper()
	p, err := s.AddPort(cfg)
	if err != nil {
		t.Fatalf("AddPort(%+v): %v", cfg, err)
	}
	return p
}

func pktOf(b []byte) *stack.PacketBuffer {
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
}

// ethFrame builds a frame of size bytes (at least 60).
func ethFrame(dst, src MAC, etherType uint16, size int) []byte {
	b := make([]byte, max(size, 60))
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
	return b
}

// udp4 builds an IPv4/UDP frame between 10.0.0.1 and 10.0.0.2 with the
// given ports.
func udp4(dst, src MAC, sport, dport uint16, size int) []byte {
	b := ethFrame(dst, src, etherTypeIPv4, max(size, 14+20+8))
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(b)-14))
	ip[8], ip[9] = 64, ipProtoUDP
	copy(ip[12:20], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[20:22], sport)
	binary.BigEndian.PutUint16(ip[22:24], dport)
	binary.BigEndian.PutUint16(ip[24:26], uint16(len(b)-34))
	return b
}

// send hands b to the switch as sent by p (nil: received from the wire,
// and the broadcast queue drained).
func send(s *Switch, p *Port, b []byte) {
	pkt := pktOf(b)
	if p == nil {
		s.Receive(pkt, -1)
		s.DrainBroadcast(1 << 20)
	} else {
		s.Transmit(p, pkt, -1)
	}
	pkt.DecRef()
}

// drain empties every queue of e and returns how many frames each held.
func drain(e interface {
	NumQueues() int
	Queue(int) *Queue
}) []int {
	out := make([]int, e.NumQueues())
	var list stack.PacketBufferList
	for i := range out {
		for e.Queue(i).Dequeue(&list, 1<<20) > 0 {
			out[i] += list.Len()
			list.Reset()
		}
	}
	return out
}

func sum(v []int) int {
	t := 0
	for _, x := range v {
		t += x
	}
	return t
}

func checkInvariant(t testing.TB, s *Switch) {
	t.Helper()
	st := s.Stats()
	d := st.Drops.Total()
	if st.Forwarded+st.Merged+st.Pending+d != st.Accepted {
		t.Errorf("accepted %d != forwarded %d + merged %d + pending %d + dropped %d", st.Accepted, st.Forwarded, st.Merged, st.Pending, d)
	}
}

func viewOf(b []byte) *buffer.View { return buffer.NewViewWithData(b) }
