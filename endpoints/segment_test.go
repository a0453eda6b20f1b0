//go:build linux

package endpoints

import (
	"bytes"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// segmentAll runs Segment and returns copies of the segments.
func segmentAll(t testing.TB, frame []byte, h VnetHdr, mtu int) ([][]byte, error) {
	t.Helper()
	var segs [][]byte
	_, err := Segment(frame, h, mtu, make([]byte, MaxFrameSize), func(seg []byte) bool {
		segs = append(segs, bytes.Clone(seg))
		return true
	})
	return segs, err
}

// verifySegments checks the invariants of a segmentation of s's frame.
func verifySegments(t testing.TB, s frameSpec, segs [][]byte, mss int) {
	t.Helper()
	var got []byte
	for i, seg := range segs {
		pf := checkFrame(t, seg)
		last := i == len(segs)-1
		if !last && len(pf.payload) != mss {
			t.Fatalf("segment %d payload %d, want %d", i, len(pf.payload), mss)
		}
		if len(pf.payload) > mss {
			t.Fatalf("segment %d payload %d > mss %d", i, len(pf.payload), mss)
		}
		if !s.v6 && pf.ipID != s.ipID+uint16(i) {
			t.Errorf("segment %d IP id %d, want %d", i, pf.ipID, s.ipID+uint16(i))
		}
		if !s.udp {
			if want := s.seq + uint32(i*mss); pf.seq != want {
				t.Errorf("segment %d seq %d, want %d", i, pf.seq, want)
			}
			want := s.tcpFlags
			if i > 0 {
				want &^= header.TCPFlagCwr
			}
			if !last {
				want &^= header.TCPFlagFin | header.TCPFlagPsh
			}
			if pf.flags != want {
				t.Errorf("segment %d flags %v, want %v", i, pf.flags, want)
			}
		}
		if !bytes.Equal(seg[:12], s.build()[:12]) {
			t.Errorf("segment %d MACs changed", i)
		}
		got = append(got, pf.payload...)
	}
	if !bytes.Equal(got, testPayload(s.payload)) {
		t.Errorf("reassembled payload differs (%d bytes, want %d)", len(got), s.payload)
	}
}

func TestSegment(t *testing.T) {
	allFlags := header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin | header.TCPFlagCwr | header.TCPFlagEce
	tests := []struct {
		s    frameSpec
		mss  int
		mtu  int
		want int // segments
	}{
		{frameSpec{payload: 65000, tcpFlags: allFlags, seq: 0xfffff000, ipID: 0xfffe, partial: true}, 1448, 0, 45},
		{frameSpec{payload: 65000, tcpFlags: allFlags, seq: 1}, 1448, 1500, 45},
		{frameSpec{v6: true, payload: 40000, tcpFlags: header.TCPFlagAck | header.TCPFlagPsh, tcpOpts: 12, partial: true}, 1428, 0, 29},
		{frameSpec{vlan: true, payload: 3000, tcpFlags: header.TCPFlagAck}, 1000, 0, 3},
		{frameSpec{payload: 9000, tcpFlags: header.TCPFlagAck}, 8948, 1500, 7}, // clamped to 1460
		{frameSpec{udp: true, payload: 10000, ipID: 7, partial: true}, 1400, 0, 8},
		{frameSpec{udp: true, v6: true, payload: 2800}, 1400, 1500, 2},
		{frameSpec{payload: 1000, tcpFlags: header.TCPFlagAck | header.TCPFlagFin}, 1000, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.s.String(), func(t *testing.T) {
			segs, err := segmentAll(t, tt.s.build(), tt.s.vnet(tt.mss), tt.mtu)
			if err != nil {
				t.Fatalf("Segment: %v", err)
			}
			if len(segs) != tt.want {
				t.Fatalf("Segment made %d segments, want %d", len(segs), tt.want)
			}
			mss := tt.mss
			if tt.mtu > 0 {
				mss = min(mss, tt.mtu-tt.s.l3()-tt.s.l4hdr())
			}
			verifySegments(t, tt.s, segs, mss)
			for _, seg := range segs {
				if tt.mtu > 0 && len(seg) > tt.mtu+tt.s.l2() {
					t.Errorf("segment of %d bytes above MTU %d", len(seg), tt.mtu)
				}
			}
		})
	}
}

func TestSegmentErrors(t *testing.T) {
	tso := frameSpec{payload: 3000}
	uso := frameSpec{udp: true, payload: 3000}
	tests := []struct {
		name  string
		frame []byte
		h     VnetHdr
		mtu   int
		want  error
	}{
		{"not gso", tso.build(), tso.vnet(0), 0, ErrNotGSO},
		{"ufo", uso.build(), VnetHdr{GSOType: VnetGSOUDP, GSOSize: 1000}, 0, ErrUnsupportedGSO},
		{"tcp type on udp", uso.build(), VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 1000}, 0, ErrMalformedFrame},
		{"v6 type on v4", tso.build(), VnetHdr{GSOType: VnetGSOTCPv6, GSOSize: 1000}, 0, ErrMalformedFrame},
		{"truncated", tso.build()[:40], tso.vnet(1000), 0, ErrMalformedFrame},
		{"uso above mtu", uso.build(), uso.vnet(1400), 1000, ErrSegmentTooBig},
		{"gso_size 1", frameSpec{payload: 60000}.build(), frameSpec{payload: 60000}.vnet(1), 0, ErrTooManySegments},
		{"MTU 68 cuts a 60000-byte frame into 2143", frameSpec{payload: 60000}.build(), frameSpec{payload: 60000}.vnet(1448), 68, ErrTooManySegments},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			segs, err := segmentAll(t, tt.frame, tt.h, tt.mtu)
			if !errors.Is(err, tt.want) {
				t.Errorf("Segment = %v, want %v", err, tt.want)
			}
			if len(segs) != 0 {
				t.Errorf("Segment emitted %d segments before failing", len(segs))
			}
		})
	}
}

func TestSegmentNoAlloc(t *testing.T) {
	s := frameSpec{payload: 60000, tcpFlags: header.TCPFlagAck}
	f, h := s.build(), s.vnet(1448)
	scratch := make([]byte, MaxFrameSize)
	n := 0
	emit := func([]byte) bool { n++; return true }
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := Segment(f, h, 1500, scratch, emit); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Segment allocs = %v, want 0", allocs)
	}
}

func TestFinishChecksum(t *testing.T) {
	for _, s := range []frameSpec{
		{payload: 1000, partial: true, tcpFlags: header.TCPFlagAck},
		{v6: true, payload: 999, partial: true},
		{udp: true, payload: 333, partial: true},
		{udp: true, v6: true, vlan: true, payload: 1, partial: true},
	} {
		t.Run(s.String(), func(t *testing.T) {
			f := s.build()
			h := s.vnet(0)
			if err := FinishChecksum(f, int(h.CsumStart), int(h.CsumOffset)); err != nil {
				t.Fatal(err)
			}
			checkFrame(t, f)
			if !bytes.Equal(f, frameSpec{v6: s.v6, udp: s.udp, vlan: s.vlan, payload: s.payload, tcpFlags: s.tcpFlags}.build()) {
				t.Errorf("FinishChecksum result differs from a fully checksummed frame")
			}
		})
	}
	if err := FinishChecksum(make([]byte, 20), 10, 16); !errors.Is(err, ErrMalformedFrame) {
		t.Errorf("FinishChecksum(out of range) = %v", err)
	}
}

func TestSegmentPacket(t *testing.T) {
	s := frameSpec{payload: 5000, tcpFlags: header.TCPFlagAck, partial: true}
	f := s.build()
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
	defer pkt.DecRef()
	pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}
	pkt.Hash = 9
	out, err := SegmentPacket(pkt, 1500)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Reset()
	var segs [][]byte
	for _, p := range out.AsSlice() {
		if p.Hash != 9 {
			t.Errorf("segment hash %d, want 9", p.Hash)
		}
		v := p.ToView()
		segs = append(segs, v.ToSlice())
		v.Release()
	}
	if len(segs) != 4 {
		t.Fatalf("SegmentPacket made %d packets, want 4", len(segs))
	}
	verifySegments(t, s, segs, 1448)
}
