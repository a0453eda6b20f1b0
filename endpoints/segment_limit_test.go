//go:build linux

package endpoints

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The amplification: 20 TSO frames of 64 KiB with gso_size 1 from
// a sandbox. The kernel takes them; a port without offloads then needed
// 1.3 M segments written. The tap refuses each as gso_size_min, so none
// reaches the switch, and a frame with the same payload at MinGSOSize
// still goes through.
func TestTapRefusesTinyGSOSize(t *testing.T) {
	tap, dev := socketpairTap(t, TapOptions{})
	rec := newRecorder()
	tap.Attach(rec)
	defer tap.Attach(nil)
	tso := frameSpec{payload: 65535 - 40, tcpFlags: header.TCPFlagAck, partial: true}
	frame := tso.build()
	for i := 0; i < 20; i++ {
		if _, err := unix.Write(dev, vnetWrite(tso.vnet(1), 12, frame)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := unix.Write(dev, vnetWrite(tso.vnet(MinGSOSize), 12, frame)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.snapshot()) < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := rec.snapshot()
	st := tap.Stats().Total()
	if len(got) != 1 || got[0].gso.MSS != MinGSOSize {
		t.Fatalf("delivered %d frames, want the one at gso_size %d", len(got), MinGSOSize)
	}
	if n := st.VnetErrors[VnetGSOSizeMin].Count; n != 20 {
		t.Errorf("gso_size_min %d, want 20 (vnet_errors %v)", n, st.VnetErrors.NonZero())
	}
	if st.RxPackets != 1 {
		t.Errorf("rx_packets %d, want 1", st.RxPackets)
	}
}

// A GSO packet that software segmentation would cut into more than
// MaxGSOSegments segments (an in-process stack's small MSS, or a receiver
// MTU far below gso_size) is dropped and counted as gso_segments, with
// nothing written; one within the bound is segmented.
func TestTapSegmentLimit(t *testing.T) {
	tap, dev := socketpairTap(t, TapOptions{NoOffloads: true, MTU: 1500})
	// 6000 bytes: 750 segments at MSS 8, 69 at MinGSOSize (few enough for
	// the socketpair's buffer).
	tso := frameSpec{payload: 6000, tcpFlags: header.TCPFlagAck, partial: true}
	gso := func(mss uint16) *stack.PacketBuffer {
		p := packetOf(tso.build())
		p.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: mss, L3HdrLen: 20}
		return p
	}
	small, ok := gso(8), gso(MinGSOSize)
	n, err := tap.WriteQueue(0, listOf(small, ok))
	small.DecRef()
	ok.DecRef()
	if err != nil || n != 1 {
		t.Fatalf("WriteQueue = %d, %v; want 1 written", n, err)
	}
	st := tap.Stats().Total()
	if d := st.TxDrops[DropGSOSegments].Count; d != 1 {
		t.Errorf("gso_segments %d, want 1 (tx drops %v)", d, st.TxDrops.NonZero())
	}
	want := uint64((6000 + MinGSOSize - 1) / MinGSOSize)
	if st.TxPackets != want || st.Segmented != 1 {
		t.Errorf("tx_packets %d segmented %d, want %d and 1", st.TxPackets, st.Segmented, want)
	}
	// Exactly the segments of the second packet are on the device.
	buf := make([]byte, 2048)
	var read uint64
	for {
		if _, _, err := unix.Recvfrom(dev, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
		read++
	}
	if read != want {
		t.Errorf("read %d frames from the device, want %d", read, want)
	}
}
