package vswitch

import (
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// BenchmarkForward measures the core alone: one frame in, the copies taken
// out of the receivers' queues and released, as a drainer would.
//
//	go test -run '^$' -bench Forward -benchmem ./switch
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("bridge-unicast/%d", size), func(b *testing.B) {
			s := newSwitch(b, Options{})
			a := addPort(b, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge})
			dst := addPort(b, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
			benchOne(b, size, func(pkt *stack.PacketBuffer, l *stack.PacketBufferList) {
				s.Transmit(a, pkt, 0)
				dst.Queue(0).Dequeue(l, 1)
			}, udp4(macB, macA, 1, 2, size))
		})
		b.Run(fmt.Sprintf("bridge-unicast-policed-spoofcheck/%d", size), func(b *testing.B) {
			s := newSwitch(b, Options{})
			a := addPort(b, s, PortConfig{Name: "a", MAC: macA, Mode: ModeBridge,
				Police:     &Police{PPS: MaxPolicePPS, BPS: MaxPoliceBPS, FloodPPS: 1000},
				SpoofCheck: true, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}})
			dst := addPort(b, s, PortConfig{Name: "b", MAC: macB, Mode: ModeBridge})
			benchOne(b, size, func(pkt *stack.PacketBuffer, l *stack.PacketBufferList) {
				s.Transmit(a, pkt, 0)
				dst.Queue(0).Dequeue(l, 1)
			}, udp4(macB, macA, 1, 2, size))
		})
		b.Run(fmt.Sprintf("wire-to-port/%d", size), func(b *testing.B) {
			s := newSwitch(b, Options{})
			a := addPort(b, s, PortConfig{Name: "a", MAC: macA, Queues: 4})
			benchOne(b, size, func(pkt *stack.PacketBuffer, l *stack.PacketBufferList) {
				s.Receive(pkt, 0)
				for i := 0; i < 4; i++ {
					a.Queue(i).Dequeue(l, 1)
				}
			}, udp4(macA, macE, 1, 2, size))
		})
		b.Run(fmt.Sprintf("port-to-wire/%d", size), func(b *testing.B) {
			s := newSwitch(b, Options{})
			a := addPort(b, s, PortConfig{Name: "a", MAC: macA})
			benchOne(b, size, func(pkt *stack.PacketBuffer, l *stack.PacketBufferList) {
				s.Transmit(a, pkt, 0)
				s.Lower().Queue(0).Dequeue(l, 1)
			}, udp4(macE, macA, 1, 2, size))
		})
	}
	b.Run("broadcast-64-ports/64", func(b *testing.B) {
		s := newSwitch(b, Options{})
		var ports []*Port
		for i := 0; i < 64; i++ {
			ports = append(ports, addPort(b, s, PortConfig{Name: fmt.Sprint(i), Mode: ModeBridge}))
		}
		benchOne(b, 64, func(pkt *stack.PacketBuffer, l *stack.PacketBufferList) {
			s.Receive(pkt, 0)
			s.DrainBroadcast(1)
			for _, p := range ports {
				p.Queue(0).Dequeue(l, 1)
			}
		}, ethFrame(Broadcast, macE, 0x88b5, 64))
		b.ReportMetric(float64(b.N)*64/b.Elapsed().Seconds(), "copies/s")
	})
	b.Run("4096-ports-unicast/64", func(b *testing.B) {
		s := newSwitch(b, Options{})
		var last *Port
		for i := 0; i < 4096; i++ {
			last = addPort(b, s, PortConfig{Name: fmt.Sprint(i), MAC: MAC{2, 1, 0, 0, byte(i >> 8), byte(i)}, Mode: ModeBridge})
		}
		m := last.MAC()
		benchOne(b, 64, func(pkt *stack.PacketBuffer, l *stack.PacketBufferList) {
			s.Receive(pkt, 0)
			last.Queue(0).Dequeue(l, 1)
		}, udp4(m, macE, 1, 2, 64))
	})
}

func benchOne(b *testing.B, size int, fn func(*stack.PacketBuffer, *stack.PacketBufferList), frame []byte) {
	pkt := pktOf(frame)
	defer pkt.DecRef()
	var l stack.PacketBufferList
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		fn(pkt, &l)
		l.Reset()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
