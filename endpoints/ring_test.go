//go:build linux

package endpoints

import (
	"bytes"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestParsePacketRx(t *testing.T) {
	for m := PacketRxDefault; m < numPacketRx; m++ {
		got, err := ParsePacketRx(m.String())
		if err != nil || got != m {
			t.Errorf("ParsePacketRx(%q) = %v, %v; want %v", m.String(), got, err, m)
		}
	}
	if _, err := ParsePacketRx("mmap"); err == nil {
		t.Errorf("ParsePacketRx(mmap) succeeded")
	}
	if defaultPacketRx == PacketRxDefault {
		t.Errorf("defaultPacketRx must name a mechanism")
	}
}

func TestRingOptions(t *testing.T) {
	page := unix.Getpagesize()
	for _, tc := range []struct {
		in   RingOptions
		want RingOptions
		ok   bool
	}{
		{RingOptions{}, RingOptions{defaultRingBlockSize, defaultRingBlocks, defaultRingTimeout}, true},
		{RingOptions{BlockSize: page, Blocks: 1, Timeout: 5 * time.Millisecond}, RingOptions{page, 1, 5 * time.Millisecond}, true},
		{RingOptions{BlockSize: 3 * page}, RingOptions{}, false},
		{RingOptions{BlockSize: page / 2}, RingOptions{}, false},
		{RingOptions{BlockSize: 32 << 20}, RingOptions{}, false},
		{RingOptions{Blocks: -1}, RingOptions{}, false},
		{RingOptions{Blocks: 4096}, RingOptions{}, false},
		{RingOptions{Timeout: time.Microsecond}, RingOptions{}, false},
	} {
		got, err := tc.in.withDefaults()
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("%+v.withDefaults() = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// ringTestFrame is one frame to lay out in a fake ring block.
type ringTestFrame struct {
	frame   []byte // as the kernel stores it: VLAN tag stripped
	vnet    VnetHdr
	pkttype byte
	status  uint32
	tci     uint16
	tpid    uint16
	wire    int // tp_len if not len(frame)
}

// ringTestBlock lays frames out as the kernel does in a TPACKET_V3 block:
// tpacket3_hdr, sockaddr_ll, the virtio-net header right before the frame
// at tp_mac, each frame at an aligned offset.
func ringTestBlock(size, hdrSize int, frames ...ringTestFrame) []byte {
	blk := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(blk[blockStatusOff:], unix.TP_STATUS_USER)
	ne.PutUint32(blk[blockNumPktsOff:], uint32(len(frames)))
	off := 48
	ne.PutUint32(blk[blockFirstPktOff:], uint32(off))
	const mac = 96 + 16 // TPACKET_ALIGN(48 + 20 + 16) + the vnet header room, rounded
	for i, f := range frames {
		h := blk[off:]
		wire := f.wire
		if wire == 0 {
			wire = len(f.frame)
		}
		ne.PutUint32(h[tp3SnaplenOff:], uint32(len(f.frame)))
		ne.PutUint32(h[tp3LenOff:], uint32(wire))
		ne.PutUint32(h[tp3StatusOff:], f.status)
		ne.PutUint16(h[tp3MacOff:], mac)
		ne.PutUint32(h[tp3VLANTCIOff:], uint32(f.tci))
		ne.PutUint16(h[tp3VLANTPIDOf:], f.tpid)
		h[tpacket3HdrLen+sllPkttypeOff] = f.pkttype
		if hdrSize > 0 {
			f.vnet.Encode(h[mac-hdrSize : mac])
		}
		copy(h[mac:], f.frame)
		next := (mac + len(f.frame) + 15) &^ 15
		if i < len(frames)-1 {
			ne.PutUint32(h[tp3NextOff:], uint32(next))
		}
		off += next
	}
	return blk
}

// ringTestReader returns queue idx of an AF_PACKET-like engine with a
// virtio-net header, attached to d, and a ring reader for it that is fed
// blocks by hand.
func ringTestReader(d stack.NetworkDispatcher, idx int) (*fdQueue, *ringReader) {
	e := &engine{hdrSize: VnetHdrSize, newWriter: newMMsgWriter}
	e.dispatch.Store(newDispatchers(d))
	q := e.newQueue(idx, -1)
	return q, newRingReader(q).(*ringReader)
}

func vlanTagged(frame []byte, tpid, tci uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, tpid)
	out = binary.BigEndian.AppendUint16(out, tci)
	return append(out, frame[12:]...)
}

// TestRingBlock walks hand-made ring blocks: what the recvmmsg path does
// per frame must hold for ring frames too.
func TestRingBlock(t *testing.T) {
	plain := udpFrame(vethAMAC, vethBMAC, vethAIP, vethBIP, 1, 2, []byte("plain"))
	tso := frameSpec{payload: 4000, partial: true}
	tsoFrame := tso.build()
	wantGSO := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}
	for _, tc := range []struct {
		name    string
		frames  []ringTestFrame
		want    [][]byte
		wantGSO []stack.GSO
		drops   map[DropReason]uint64
	}{
		{name: "plain", frames: []ringTestFrame{{frame: plain}, {frame: plain}},
			want: [][]byte{plain, plain}},
		{name: "outgoing", frames: []ringTestFrame{{frame: plain, pkttype: unix.PACKET_OUTGOING}, {frame: plain}},
			want: [][]byte{plain}, drops: map[DropReason]uint64{DropOutgoing: 1}},
		{name: "vlan-8100", frames: []ringTestFrame{{frame: plain, status: unix.TP_STATUS_VLAN_VALID, tci: 100, tpid: 0x1234}},
			want: [][]byte{vlanTagged(plain, 0x8100, 100)}},
		{name: "vlan-tpid", frames: []ringTestFrame{{frame: plain, status: unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_VLAN_TPID_VALID, tci: 7, tpid: 0x88a8}},
			want: [][]byte{vlanTagged(plain, 0x88a8, 7)}},
		{name: "truncated", frames: []ringTestFrame{{frame: plain, wire: 70000}, {frame: plain, status: unix.TP_STATUS_COPY}, {frame: plain}},
			want: [][]byte{plain}, drops: map[DropReason]uint64{DropOversize: 2}},
		{name: "runt", frames: []ringTestFrame{{frame: plain[:10]}},
			drops: map[DropReason]uint64{DropRunt: 1}},
		{name: "gso", frames: []ringTestFrame{{frame: tsoFrame, vnet: tso.vnet(1448)}},
			want: [][]byte{tsoFrame}, wantGSO: []stack.GSO{wantGSO}},
		{name: "gso-vlan", frames: []ringTestFrame{{frame: tsoFrame, vnet: tso.vnet(1448), status: unix.TP_STATUS_VLAN_VALID, tci: 5}},
			want: [][]byte{vlanTagged(tsoFrame, 0x8100, 5)}, wantGSO: []stack.GSO{wantGSO}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			s, x := ringTestReader(rec, 1)
			defer x.release()
			x.block(ringTestBlock(64<<10, VnetHdrSize, tc.frames...))
			got := rec.snapshot()
			if len(got) != len(tc.want) {
				t.Fatalf("delivered %d frames, want %d", len(got), len(tc.want))
			}
			for i, f := range got {
				if f.queue != 1 || !bytes.Equal(f.data, tc.want[i]) {
					t.Errorf("frame %d on queue %d: % x, want % x", i, f.queue, f.data[:min(len(f.data), 20)], tc.want[i][:20])
				}
				var g stack.GSO
				if tc.wantGSO != nil {
					g = tc.wantGSO[i]
				}
				if f.gso.Type != g.Type || f.gso.MSS != g.MSS || f.gso.L3HdrLen != g.L3HdrLen ||
					f.gso.NeedsCsum != g.NeedsCsum || f.gso.CsumOffset != g.CsumOffset {
					t.Errorf("frame %d GSO %+v, want %+v", i, f.gso, g)
				}
			}
			st := s.c.snapshot(s.idx, QueueUp)
			for r := DropReason(0); r < numDropReasons; r++ {
				if st.RxDrops[r].Count != tc.drops[r] {
					t.Errorf("drops[%v] = %d, want %d", r, st.RxDrops[r].Count, tc.drops[r])
				}
			}
			if st.RxPackets != uint64(len(tc.want)) {
				t.Errorf("rx packets %d, want %d", st.RxPackets, len(tc.want))
			}
		})
	}
}

// TestRingBlockMalformed: a block whose frame chain ends early counts the
// missing frames instead of reading past the block.
func TestRingBlockMalformed(t *testing.T) {
	plain := udpFrame(vethAMAC, vethBMAC, vethAIP, vethBIP, 1, 2, []byte("plain"))
	blk := ringTestBlock(4096, VnetHdrSize, ringTestFrame{frame: plain})
	binary.NativeEndian.PutUint32(blk[blockNumPktsOff:], 3)
	var c counter
	s, x := ringTestReader(&c, 0)
	x.block(blk)
	if c.frames.Load() != 1 || s.c.rxDrops[DropMalformed].Load() != 2 {
		t.Errorf("delivered %d, malformed %d; want 1, 2", c.frames.Load(), s.c.rxDrops[DropMalformed].Load())
	}
	binary.NativeEndian.PutUint32(blk[blockFirstPktOff:], 4000)
	x.block(blk)
	if s.c.rxDrops[DropMalformed].Load() != 5 {
		t.Errorf("malformed %d, want 5", s.c.rxDrops[DropMalformed].Load())
	}
}

// TestRingBlockAllocs: the ring path allocates nothing per frame beyond
// the pooled view it copies into.
func TestRingBlockAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	plain := udpFrame(vethAMAC, vethBMAC, vethAIP, vethBIP, 1, 2, make([]byte, 1000))
	blk := ringTestBlock(64<<10, VnetHdrSize, ringTestFrame{frame: plain}, ringTestFrame{frame: plain, status: unix.TP_STATUS_VLAN_VALID, tci: 3})
	var c counter
	_, x := ringTestReader(&c, 0)
	x.block(blk) // warm the pools
	if n := testing.AllocsPerRun(100, func() { x.block(blk) }); n != 0 {
		t.Errorf("ringBlock allocates %v times per block", n)
	}
}

// TestNetnsPacketRingOversize: frames larger than a ring block arrive
// truncated and are dropped as oversize; frames that fit still arrive.
func TestNetnsPacketRingOversize(t *testing.T) {
	requireNetns(t)
	goroutineLeakCheck(t)
	_, pathA, _, pathB := vethPair(t)
	ep, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 1, Rx: PacketRxRing,
		Ring: RingOptions{BlockSize: 16 << 10, Blocks: 64}})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	rec := newRecorder()
	ep.Attach(rec)
	defer ep.Attach(nil)
	tsoStream(t, pathA, pathB, 1<<20)
	sockA := udpSocket(t, pathA, "10.88.0.1:7000")
	if _, err := sockA.WriteTo([]byte("small"), &net.UDPAddr{IP: net.IP(vethBIP[:]), Port: 7001}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 5*time.Second, func(f recFrame) bool { return bytes.HasSuffix(f.data, []byte("small")) })
	st := ep.Stats().Total()
	if st.RxDrops[DropOversize].Count == 0 {
		t.Errorf("no oversize drops; stats %+v", st)
	}
	for _, f := range rec.snapshot() {
		if len(f.data) > 16<<10 {
			t.Errorf("frame of %d bytes delivered from 16 KiB blocks", len(f.data))
		}
	}
}

// TestNetnsPacketAllMulti: SetAllMulti sets and clears IFF_ALLMULTI on the
// interface, and Close drops the membership.
func TestNetnsPacketAllMulti(t *testing.T) {
	requireNetns(t)
	_, _, nsB, pathB := vethPair(t)
	// dev->flags, which unlike the netlink ifi_flags include the
	// IFF_ALLMULTI that memberships set.
	allmulti := func() bool {
		t.Helper()
		out := strings.TrimSpace(nsRun(t, nsB, "cat", "/sys/class/net/vethb/flags"))
		flags, err := strconv.ParseUint(out, 0, 32)
		if err != nil {
			t.Fatal(err)
		}
		return flags&unix.IFF_ALLMULTI != 0
	}
	if allmulti() {
		t.Fatal("vethb starts with allmulti")
	}
	ep, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 2, NoPromiscuous: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	for i, step := range []bool{true, true, false, false, true} {
		if err := ep.SetAllMulti(step); err != nil {
			t.Fatalf("step %d: SetAllMulti(%v): %v", i, step, err)
		}
		if got := allmulti(); got != step {
			t.Errorf("step %d: after SetAllMulti(%v) IFF_ALLMULTI is %v", i, step, got)
		}
	}
	ep.Close()
	if allmulti() {
		t.Errorf("IFF_ALLMULTI still set after Close")
	}
	if err := ep.SetAllMulti(false); err != ErrClosed {
		t.Errorf("SetAllMulti after Close = %v, want ErrClosed", err)
	}
}

// TestNetnsPacketLinkDeleted: deleting the interface fails every socket
// (ENODEV) in both receive modes, and the close action runs.
func TestNetnsPacketLinkDeleted(t *testing.T) {
	requireNetns(t)
	for _, rx := range packetRxModes {
		t.Run(rx.String(), func(t *testing.T) {
			goroutineLeakCheck(t)
			nsA, _, _, pathB := vethPair(t)
			var down atomic.Int32
			ep, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 2, Rx: rx,
				OnQueueState: func(int, bool) { down.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			defer ep.Close()
			closed := make(chan struct{})
			ep.SetOnCloseAction(func() { close(closed) })
			ep.Attach(newRecorder())
			nsRun(t, nsA, "ip", "link", "del", "vetha")
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatalf("close action did not run; %d queues down, stats %+v", down.Load(), ep.Stats())
			}
			if down.Load() != 2 || ep.Stats().Total().Failures != 2 {
				t.Errorf("%d queues down, %d failures; want 2", down.Load(), ep.Stats().Total().Failures)
			}
			ep.Attach(nil)
		})
	}
}
