//go:build linux

package endpoints

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// counter is a dispatcher that only counts frames and bytes.
type counter struct {
	frames, bytes atomic.Uint64
}

func (c *counter) DeliverQueuePacket(_ int, pkt *stack.PacketBuffer) {
	c.frames.Add(1)
	c.bytes.Add(uint64(pkt.Size()))
}
func (c *counter) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (c *counter) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

const benchBatch = 47

// benchForward writes batches of benchBatch frames of size bytes through w
// and counts what rx's dispatcher receives. It reports received packets per
// second and the drop ratio (frames not received, e.g. tx_full or kernel
// queue overflow).
func benchForward(b *testing.B, w stack.LinkWriter, rx *counter, size int, dstMAC tcpip.LinkAddress) {
	frame := udpFrame(peerMAC, dstMAC, peerIP, tapIP, 1000, 2000, make([]byte, size-42))
	var l stack.PacketBufferList
	for i := 0; i < benchBatch; i++ {
		p := packetOf(frame)
		p.Hash = uint32(i)
		l.PushBack(p)
	}
	defer l.Reset()
	start0 := rx.frames.Load()
	b.SetBytes(int64(size * benchBatch))
	b.ReportAllocs()
	sent := 0
	begin := time.Now()
	for b.Loop() {
		n, _ := w.WritePackets(l)
		sent += n
	}
	elapsed := time.Since(begin)
	deadline := time.Now().Add(time.Second)
	for rx.frames.Load()-start0 < uint64(sent) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := rx.frames.Load() - start0
	b.ReportMetric(float64(got)/elapsed.Seconds(), "rx-pps")
	total := float64(b.N * benchBatch)
	b.ReportMetric(1-float64(got)/total, "drop-ratio")
}

// BenchmarkNetnsPacket: Packet endpoint on vetha writes, Packet endpoint on
// vethb (recvmmsg, 2 fanout sockets) receives.
func BenchmarkNetnsPacket(b *testing.B) {
	requireNetns(b)
	_, pathA, _, pathB := vethPair(b)
	tx, err := NewPacket(PacketOptions{Interface: "vetha", NetNS: pathA, Queues: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	rx, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	var c counter
	rx.Attach(&c)
	defer rx.Attach(nil)
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprintf("veth/%d", size), func(b *testing.B) {
			benchForward(b, tx, &c, size, vethBMAC)
		})
	}
}

// BenchmarkNetnsTap: tap-tx writes through the Tap's queue FDs and a Packet
// endpoint on the tap netdev receives; tap-rx is the reverse (the kernel
// sends out of the tap, the Tap's readers receive).
func BenchmarkNetnsTap(b *testing.B) {
	requireNetns(b)
	ns, path := newNetns(b)
	tap, err := NewTap(TapOptions{Name: "mvtapb", NetNS: path, Queues: 2, MAC: net.HardwareAddr(tapMAC)})
	if err != nil {
		b.Fatal(err)
	}
	defer tap.Close()
	_ = ns
	pk, err := NewPacket(PacketOptions{Interface: "mvtapb", NetNS: path, Queues: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer pk.Close()
	var fromTap, fromPacket counter
	pk.Attach(&fromTap)
	defer pk.Attach(nil)
	tap.Attach(&fromPacket)
	defer tap.Attach(nil)
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprintf("tap-tx/%d", size), func(b *testing.B) {
			benchForward(b, tap, &fromTap, size, tapMAC)
		})
		b.Run(fmt.Sprintf("tap-rx/%d", size), func(b *testing.B) {
			benchForward(b, pk, &fromPacket, size, peerMAC)
		})
	}
}
