//go:build linux

package endpoints

import (
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// counter is a dispatcher that only counts frames and bytes, and signals
// notify (if set) on each frame.
type counter struct {
	frames, bytes atomic.Uint64
	notify        chan struct{}
}

func (c *counter) DeliverQueuePacket(_ int, pkt *stack.PacketBuffer) {
	c.frames.Add(1)
	c.bytes.Add(uint64(pkt.Size()))
	if c.notify != nil {
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}
func (c *counter) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (c *counter) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}

const benchBatch = 47

// processCPU returns the CPU time (user and system) the test process has
// used so far. It includes the kernel's receive path where it ran in our
// threads (softirqs after a sendmmsg), and our writers' work.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchForward writes batches of benchBatch frames of size bytes through w
// and counts what rx's dispatcher receives; see benchFrames.
func benchForward(b *testing.B, w stack.LinkWriter, rx *counter, size int, dstMAC tcpip.LinkAddress) {
	frame := udpFrame(peerMAC, dstMAC, peerIP, tapIP, 1000, 2000, make([]byte, size-42))
	benchFrames(b, w, rx, frame, stack.GSO{})
}

// benchFrames writes batches of benchBatch copies of frame (with gso)
// through w and counts what rx's dispatcher receives. It reports received
// frames per second, the drop ratio (frames not received, e.g. tx_full
// or kernel queue overflow) and the process's CPU time per received
// frame (cpu-ns/rx, sender included).
func benchFrames(b *testing.B, w stack.LinkWriter, rx *counter, frame []byte, gso stack.GSO) {
	var l stack.PacketBufferList
	for i := 0; i < benchBatch; i++ {
		p := packetOf(frame)
		p.Hash = uint32(i)
		p.GSOOptions = gso
		l.PushBack(p)
	}
	defer l.Reset()
	start0 := rx.frames.Load()
	b.SetBytes(int64(len(frame) * benchBatch))
	b.ReportAllocs()
	sent := 0
	cpu0 := processCPU()
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
	cpu := processCPU() - cpu0
	got := rx.frames.Load() - start0
	b.ReportMetric(float64(got)/elapsed.Seconds(), "rx-pps")
	total := float64(b.N * benchBatch)
	b.ReportMetric(1-float64(got)/total, "drop-ratio")
	if got > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(got), "cpu-ns/rx")
	}
}

// benchLatency writes one frame at a time through w and waits until rx
// has received it: ns/op is the one-way delay through the kernel and the
// receiver (at a low rate, where a ring's block timeout shows).
func benchLatency(b *testing.B, w stack.LinkWriter, rx *counter, frame []byte) {
	rx.notify = make(chan struct{}, 1)
	defer func() { rx.notify = nil }()
	l := listOf(packetOf(frame))
	defer l.Reset()
	lost := 0
	for b.Loop() {
		select { // a late frame of an earlier iteration
		case <-rx.notify:
		default:
		}
		if n, _ := w.WritePackets(l); n != 1 {
			lost++
			continue
		}
		select {
		case <-rx.notify:
		case <-time.After(100 * time.Millisecond):
			lost++
		}
	}
	b.ReportMetric(float64(lost)/float64(b.N), "lost-ratio")
}

// BenchmarkNetnsPacket: a Packet endpoint on vetha writes (sendmmsg, one
// socket); a Packet endpoint on vethb receives (2 fanout sockets, one flow
// so one socket), once per receive mechanism, on fresh namespaces each:
//
//	rx=<mode>/veth/64, rx=<mode>/veth/1514: batches of UDP frames
//	rx=<mode>/veth/tso: batches of 64 KB TCP super-frames (MSS 1448) with
//	  their virtio-net header, which veth passes through unsegmented
//	rx=<mode>/latency/64: one frame at a time
//
// Compare the mechanisms with
//
//	go test -run '^$' -bench NetnsPacket -benchtime 2s -count 6 ./endpoints/ | tee rx.txt
//	benchstat -col /rx rx.txt
func BenchmarkNetnsPacket(b *testing.B) {
	requireNetns(b)
	tso := frameSpec{payload: 64000, partial: true}
	tsoFrame := tso.build()
	tsoGSO := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20, MaxSize: GSOMaxSize}
	for _, mode := range packetRxModes {
		b.Run("rx="+mode.String(), func(b *testing.B) {
			_, pathA, _, pathB := vethPair(b)
			tx, err := NewPacket(PacketOptions{Interface: "vetha", NetNS: pathA, Queues: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			rx, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 2, Rx: mode})
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
			b.Run("veth/tso", func(b *testing.B) {
				benchFrames(b, tx, &c, tsoFrame, tsoGSO)
			})
			b.Run("latency/64", func(b *testing.B) {
				benchLatency(b, tx, &c, udpFrame(peerMAC, vethBMAC, peerIP, tapIP, 1000, 2000, make([]byte, 22)))
			})
			b.StopTimer() // the deferred Close is not part of the last result
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
