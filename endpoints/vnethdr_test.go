//go:build linux

package endpoints

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func TestVnetHdrRoundTrip(t *testing.T) {
	h := VnetHdr{Flags: 1, GSOType: 0x81, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	for _, size := range []int{VnetHdrSize, VnetHdrMrgSize} {
		b := bytes.Repeat([]byte{0xee}, size)
		h.Encode(b)
		want := []byte{1, 0x81, 54, 0, 0xa8, 0x05, 34, 0, 16, 0}
		if !bytes.Equal(b[:10], want) {
			t.Errorf("Encode(%d) = % x, want % x", size, b[:10], want)
		}
		if size == VnetHdrMrgSize && (b[10] != 0 || b[11] != 0) {
			t.Errorf("num_buffers = % x, want 0", b[10:])
		}
		got, ok := ParseVnetHdr(b)
		if !ok || got != h {
			t.Errorf("ParseVnetHdr(Encode(h)) = %v, %v; want %v", got, ok, h)
		}
	}
	if _, ok := ParseVnetHdr(make([]byte, 9)); ok {
		t.Errorf("ParseVnetHdr(9 bytes) ok")
	}
}

func TestReasonStrings(t *testing.T) {
	for r := VnetOK; r < numVnetReasons; r++ {
		got, err := ParseVnetReason(r.String())
		if err != nil || got != r {
			t.Errorf("ParseVnetReason(%q) = %v, %v", r.String(), got, err)
		}
	}
	for r := DropReason(0); r < numDropReasons; r++ {
		got, err := ParseDropReason(r.String())
		if err != nil || got != r {
			t.Errorf("ParseDropReason(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := ParseVnetReason("nope"); err == nil {
		t.Errorf("ParseVnetReason(nope) succeeded")
	}
}

// write returns hdr (hdrSize bytes) followed by frame.
func vnetWrite(h VnetHdr, hdrSize int, frame []byte) []byte {
	b := make([]byte, hdrSize+len(frame))
	h.Encode(b[:hdrSize])
	copy(b[hdrSize:], frame)
	return b
}

func TestValidateVnetWrite(t *testing.T) {
	udp := frameSpec{udp: true, payload: 16}.build() // 58 bytes, as in BEHAVIOUR.md §8.2 case 51
	if len(udp) != 58 {
		t.Fatalf("udp frame is %d bytes, want 58", len(udp))
	}
	tso4 := frameSpec{payload: 4000}
	tso6 := frameSpec{v6: true, payload: 4000}
	uso := frameSpec{udp: true, payload: 4000}
	tso4Frame, tso6Frame, usoFrame := tso4.build(), tso6.build(), uso.build()
	noCsum := func(h VnetHdr) VnetHdr { h.Flags = 0; h.CsumStart, h.CsumOffset = 0, 0; return h }

	tests := []struct {
		name    string
		b       []byte
		want    VnetReason
		wantGSO uint8 // expected normalized gso_type on success
	}{
		// BEHAVIOUR.md §8.2 case 50 (vnet_hdr_sz 12).
		{"case50/11 bytes", make([]byte, 11), VnetShortWrite, 0},
		{"case50/hdr+13", vnetWrite(VnetHdr{}, 12, make([]byte, 13)), VnetRunt, 0},
		{"case50/hdr+14", vnetWrite(VnetHdr{}, 12, make([]byte, 14)), VnetOK, 0},
		// Case 51.
		{"case51/hdr_len 200", vnetWrite(VnetHdr{HdrLen: 200}, 12, udp), VnetHdrLenTooBig, 0},
		{"case51/csum 34+60", vnetWrite(VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: 60}, 12, udp), VnetCsumRange, 0},
		{"case51/csum 34+6 udp", vnetWrite(VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: 6}, 12, udp), VnetOK, 0},
		// Case 52.
		{"case52/tcpv4 gso_size 0", vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4}, 12, tso4Frame), VnetBadGSOSize, 0},
		{"case52/gso_type 2", vnetWrite(VnetHdr{GSOType: 2, GSOSize: 1000}, 12, tso4Frame), VnetBadGSOType, 0},
		{"case52/uso without csum", vnetWrite(noCsum(uso.vnet(1000)), 12, usoFrame), VnetUSO, 0},
		// Other item 4-8 cases.
		{"gso_size 0xffff", vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 0xffff}, 12, tso4Frame), VnetBadGSOSize, 0},
		{"ecn alone", vnetWrite(VnetHdr{GSOType: VnetGSOECN, GSOSize: 1000}, 12, tso4Frame), VnetBadGSOType, 0},
		{"csum_start 19", vnetWrite(VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: 19, CsumOffset: 6}, 12, udp), VnetCsumRange, 0},
		{"tcpv6 csum_start 34", vnetWrite(VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: VnetGSOTCPv6, GSOSize: 1000, CsumStart: 34, CsumOffset: 16}, 12, tso6Frame), VnetCsumRange, 0},
		{"tcpv4 no csum on ipv6", vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 1000}, 12, tso6Frame), VnetGSOProto, 0},
		{"tcpv4 no csum on udp", vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 1000}, 12, usoFrame), VnetGSOProto, 0},
		{"tcpv4 no csum ok", vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 1000}, 12, tso4Frame), VnetOK, VnetGSOTCPv4},
		{"uso csum_offset 16", vnetWrite(VnetHdr{Flags: 1, GSOType: VnetGSOUDPL4, GSOSize: 1000, CsumStart: 34, CsumOffset: 16}, 12, usoFrame), VnetUSO, 0},
		{"uso too many segments", vnetWrite(uso.vnet(30), 12, usoFrame), VnetUSO, 0},
		{"uso ecn", vnetWrite(VnetHdr{Flags: 1, GSOType: VnetGSOUDPL4 | VnetGSOECN, GSOSize: 1000, CsumStart: 34, CsumOffset: 6}, 12, usoFrame), VnetUSO, 0},
		{"uso ok", vnetWrite(uso.vnet(1000), 12, usoFrame), VnetOK, VnetGSOUDPL4},
		{"tso csum_offset 6", vnetWrite(VnetHdr{Flags: 1, GSOType: VnetGSOTCPv4, GSOSize: 1000, CsumStart: 34, CsumOffset: 6}, 12, tso4Frame), VnetUSO, 0},
		{"tso4 ok", vnetWrite(tso4.vnet(1448), 12, tso4Frame), VnetOK, VnetGSOTCPv4},
		{"tso6 ok 10-byte", vnetWrite(tso6.vnet(1440), 10, tso6Frame), VnetOK, VnetGSOTCPv6},
		{"gso payload fits", vnetWrite(tso4.vnet(4000), 12, tso4Frame), VnetOK, VnetGSONone},
		{"csum start past frame", vnetWrite(VnetHdr{Flags: 1, CsumStart: 60, CsumOffset: 0}, 12, udp), VnetCsumRange, 0},
		// Item 10: MinGSOSize, once the frame is still GSO.
		{"tso gso_size 1", vnetWrite(tso4.vnet(1), 12, tso4Frame), VnetGSOSizeMin, 0},
		{"tso gso_size 87", vnetWrite(tso4.vnet(MinGSOSize-1), 12, tso4Frame), VnetGSOSizeMin, 0},
		{"tso gso_size 88", vnetWrite(tso4.vnet(MinGSOSize), 12, tso4Frame), VnetOK, VnetGSOTCPv4},
		{"tso6 gso_size 8", vnetWrite(tso6.vnet(8), 12, tso6Frame), VnetGSOSizeMin, 0},
		{"uso gso_size 40", vnetWrite(uso.vnet(40), 12, usoFrame), VnetGSOSizeMin, 0},
		{"tso gso_size 1, one byte: not GSO", vnetWrite(frameSpec{payload: 1}.vnet(1), 12, frameSpec{payload: 1}.build()), VnetOK, VnetGSONone},
		{"largest frame at gso_size 88", vnetWrite(frameSpec{payload: 65535 - 40}.vnet(MinGSOSize), 12, frameSpec{payload: 65535 - 40}.build()), VnetOK, VnetGSOTCPv4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := 12
			if tt.name == "tso6 ok 10-byte" {
				size = 10
			}
			h, err := ValidateVnetWrite(tt.b, size)
			if tt.want == VnetOK {
				if err != nil {
					t.Fatalf("ValidateVnetWrite = %v, want ok", err)
				}
				if h.GSOType&^VnetGSOECN != tt.wantGSO {
					t.Errorf("normalized gso_type = %#x, want %#x", h.GSOType, tt.wantGSO)
				}
				return
			}
			var ve *VnetError
			if !errors.As(err, &ve) || ve.Reason != tt.want {
				t.Fatalf("ValidateVnetWrite = %v, want reason %v", err, tt.want)
			}
			if !errors.Is(err, ErrVnetHdr) {
				t.Errorf("errors.Is(%v, ErrVnetHdr) = false", err)
			}
		})
	}
}

func TestVnetGSOConversion(t *testing.T) {
	for _, s := range []frameSpec{
		{payload: 5000},
		{v6: true, payload: 5000, tcpOpts: 12},
		{vlan: true, payload: 5000},
		{payload: 5000, tcpFlags: header.TCPFlagCwr | header.TCPFlagAck},
	} {
		t.Run(s.String(), func(t *testing.T) {
			f := s.build()
			h := s.vnet(1400)
			g, ok := h.GSO(s.l2())
			if !ok {
				t.Fatalf("GSO() not ok")
			}
			wantType := stack.GSOTCPv4
			if s.v6 {
				wantType = stack.GSOTCPv6
			}
			want := stack.GSO{Type: wantType, NeedsCsum: true, CsumOffset: 16, MSS: 1400, L3HdrLen: uint16(s.l3()), MaxSize: GSOMaxSize}
			if diff := cmp.Diff(want, g); diff != "" {
				t.Errorf("GSO() mismatch (-want +got):\n%s", diff)
			}
			back := VnetFromGSO(g, f, len(f))
			if back != h {
				t.Errorf("VnetFromGSO(GSO(h)) = %v, want %v", back, h)
			}
		})
	}
	// USO has no gVisor type.
	if _, ok := (frameSpec{udp: true}).vnet(1000).GSO(14); ok {
		t.Errorf("USO GSO() ok, want false")
	}
	// A small GSO packet goes out as a plain NEEDS_CSUM frame.
	s := frameSpec{payload: 100}
	f := s.build()
	h := VnetFromGSO(stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1400, L3HdrLen: 20}, f, len(f))
	if h.IsGSO() || !h.NeedsCsum() || h.CsumStart != 34 {
		t.Errorf("VnetFromGSO(small) = %v", h)
	}
}

func TestValidateNoAlloc(t *testing.T) {
	s := frameSpec{payload: 4000}
	b := vnetWrite(s.vnet(1448), 12, s.build())
	bad := vnetWrite(VnetHdr{GSOType: 2, GSOSize: 1}, 12, s.build())
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ValidateVnetWrite(b, 12); err != nil {
			t.Fatal(err)
		}
		if _, err := ValidateVnetWrite(bad, 12); err == nil {
			t.Fatal("bad header accepted")
		}
	})
	if allocs != 0 {
		t.Errorf("ValidateVnetWrite allocs = %v, want 0", allocs)
	}
}
