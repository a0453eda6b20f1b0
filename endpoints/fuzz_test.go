//go:build linux

package endpoints

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// fuzzHdrMax bounds the fuzzed head of a write in FuzzValidateVnet: room
// for the vnet header, two VLAN tags, IPv6 with extension headers and a
// TCP header with options.
const fuzzHdrMax = 256

// fuzzFiller is what follows the fuzzed head of a write.
var fuzzFiller = testPayload(0xffff)

// FuzzValidateVnet feeds guest writes to the validator and, for accepted
// ones, to the software fallbacks. A write is hdr (at most fuzzHdrMax
// bytes: the vnet header and the frame's headers, which is all the
// validator reads) followed by pad bytes of fixed filler, so frames reach
// 64 KiB while the fuzzed input stays small: Go's minimizer is quadratic in
// input length, and whole-frame inputs had it spend a minute on each new
// input. Invariants: nothing panics; a rejection is a VnetError with a
// reason; an accepted header is internally consistent and never asks for
// more than MaxGSOSegments segments; segments of an accepted TCP/UDP frame
// with plain IP headers carry valid checksums and reassemble to the
// original payload; FinishChecksum yields a sum that verifies. Seeds are
// in testdata/fuzz/FuzzValidateVnet and below.
func FuzzValidateVnet(f *testing.F) {
	seed := func(b []byte, mrg bool) {
		n := min(len(b), fuzzHdrMax)
		f.Add(b[:n], uint16(len(b)-n), mrg)
	}
	for _, s := range []frameSpec{
		{payload: 3000, tcpFlags: header.TCPFlagAck | header.TCPFlagFin, partial: true},
		{v6: true, payload: 3000, partial: true},
		{udp: true, payload: 3000, partial: true},
		{vlan: true, payload: 2000, tcpFlags: header.TCPFlagCwr, partial: true},
		{payload: 60000, tcpFlags: header.TCPFlagAck, partial: true},
	} {
		seed(vnetWrite(s.vnet(1000), 12, s.build()), true)
		seed(vnetWrite(s.vnet(0), 10, s.build()), false)
		seed(vnetWrite(s.vnet(1), 12, s.build()), true)
	}
	seed(vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 500}, 12, frameSpec{payload: 1200}.build()), true)
	seed(make([]byte, 11), true)
	// Scratch reused by every run: a worker runs one input at a time.
	write := make([]byte, 0, fuzzHdrMax+0xffff)
	scratch := make([]byte, MaxFrameSize)
	var payload []byte
	f.Fuzz(func(t *testing.T, hdr []byte, pad uint16, mrg bool) {
		if len(hdr) > fuzzHdrMax {
			return
		}
		hs := VnetHdrSize
		if mrg {
			hs = VnetHdrMrgSize
		}
		b := append(append(write[:0], hdr...), fuzzFiller[:pad]...)
		h, err := ValidateVnetWrite(b, hs)
		if err != nil {
			var ve *VnetError
			if !errors.As(err, &ve) || ve.Reason == VnetOK {
				t.Fatalf("error %v is not a VnetError with a reason", err)
			}
			return
		}
		frame := b[hs:]
		if len(frame) < header.EthernetMinimumSize {
			t.Fatalf("accepted a %d-byte frame", len(frame))
		}
		if h.NeedsCsum() && int(h.CsumStart)+int(h.CsumOffset)+2 > len(frame) {
			t.Fatalf("accepted %v for %d bytes", h, len(frame))
		}
		if h.IsGSO() && (h.GSOSize < MinGSOSize || h.GSOSize == gsoByFrags) {
			t.Fatalf("accepted gso_size %d", h.GSOSize)
		}
		if !h.IsGSO() {
			if !h.NeedsCsum() {
				return
			}
			cs, co := int(h.CsumStart), int(h.CsumOffset)
			old := binary.BigEndian.Uint16(frame[cs+co:])
			if err := FinishChecksum(frame, cs, co); err != nil {
				t.Fatalf("FinishChecksum: %v", err)
			}
			// The field holds the pseudo-header sum; the identity needs it
			// 16-bit aligned from csum_start, as TCP's and UDP's are.
			if got := checksum.Checksum(frame[cs:], old); co%2 == 0 && got != 0xffff {
				t.Fatalf("completed checksum does not verify: %#x", got)
			}
			return
		}
		check := plainIP(frame)
		payload = payload[:0]
		n, err := Segment(frame, h, 0, scratch, func(seg []byte) bool {
			if check {
				payload = append(payload, checkFrame(t, seg).payload...)
			}
			return true
		})
		if n > MaxGSOSegments {
			t.Fatalf("%d segments from one accepted frame", n)
		}
		if err != nil {
			if errors.Is(err, ErrTooManySegments) {
				t.Fatalf("an accepted frame is too many segments: %v", h)
			}
			return
		}
		if !check {
			return
		}
		l2, et, _ := l2Len(frame)
		l4, _, _ := l4Offset(frame, l2, et)
		thlen := header.UDPMinimumSize
		if h.GSOType&^VnetGSOECN != VnetGSOUDPL4 {
			thlen = int(header.TCP(frame[l4:]).DataOffset())
		}
		end := len(frame)
		if et == header.IPv4ProtocolNumber {
			end = min(end, l2+int(header.IPv4(frame[l2:]).TotalLength()))
		} else {
			end = min(end, l2+header.IPv6MinimumSize+int(header.IPv6(frame[l2:]).PayloadLength()))
		}
		if !bytes.Equal(payload, frame[l4+thlen:end]) {
			t.Fatalf("segments carry %d payload bytes, frame %d", len(payload), end-l4-thlen)
		}
	})
}

// plainIP reports whether frame's L4 header directly follows a well-formed
// IP header (no IPv6 extension headers), so checkFrame applies.
func plainIP(frame []byte) bool {
	l2, et, ok := l2Len(frame)
	if !ok {
		return false
	}
	switch et {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(frame[l2:])
		return len(frame) >= l2+header.IPv4MinimumSize && int(ip.TotalLength()) >= int(ip.HeaderLength())
	case header.IPv6ProtocolNumber:
		if len(frame) < l2+header.IPv6MinimumSize {
			return false
		}
		nh := header.IPv6(frame[l2:]).NextHeader()
		pl := int(header.IPv6(frame[l2:]).PayloadLength())
		return (nh == uint8(header.TCPProtocolNumber) || nh == uint8(header.UDPProtocolNumber)) && pl != 0
	}
	return false
}

// FuzzSegment builds well-formed super-frames from fuzzed parameters and
// checks every segment: valid IPv4 header and L4 checksums, lengths, IP IDs,
// sequence numbers, the FIN/PSH/CWR rules, MTU, and the reassembled payload.
func FuzzSegment(f *testing.F) {
	f.Add(uint16(65000), uint16(1448), uint8(0xff), uint8(0), uint16(1), uint32(0xfffffff0), uint16(1500))
	f.Add(uint16(40000), uint16(1428), uint8(0x18), uint8(1), uint16(0), uint32(1), uint16(0))
	f.Add(uint16(9000), uint16(1400), uint8(0), uint8(2), uint16(0xffff), uint32(0), uint16(1500))
	f.Add(uint16(1), uint16(1), uint8(0x01), uint8(5), uint16(3), uint32(3), uint16(0))
	f.Fuzz(func(t *testing.T, payload, mss uint16, flags, kind uint8, ipID uint16, seq uint32, mtu uint16) {
		s := frameSpec{
			v6:       kind&1 != 0,
			udp:      kind&2 != 0,
			vlan:     kind&4 != 0,
			payload:  int(payload) % 65000,
			tcpFlags: header.TCPFlags(flags),
			tcpOpts:  4 * int(kind>>4&7),
			seq:      seq,
			ipID:     ipID,
			partial:  kind&8 != 0,
		}
		if s.udp {
			s.tcpOpts, s.tcpFlags = 0, 0
		}
		if s.l3()+s.l4hdr()+s.payload > 0xffff || mss == 0 {
			return
		}
		h := s.vnet(int(mss))
		segs, err := segmentAll(t, s.build(), h, int(mtu))
		effMSS := int(mss)
		if mtu > 0 {
			room := int(mtu) - s.l3() - s.l4hdr()
			if room < effMSS && (s.udp || room <= 0) {
				if !errors.Is(err, ErrSegmentTooBig) {
					t.Fatalf("Segment = %v, want ErrSegmentTooBig", err)
				}
				return
			}
			effMSS = min(effMSS, room)
		}
		want := max(1, (s.payload+effMSS-1)/effMSS)
		if want > MaxGSOSegments {
			if !errors.Is(err, ErrTooManySegments) || len(segs) != 0 {
				t.Fatalf("Segment into %d = %d segments, %v; want ErrTooManySegments and none", want, len(segs), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Segment: %v", err)
		}
		if len(segs) != want {
			t.Fatalf("%d segments, want %d", len(segs), want)
		}
		verifySegments(t, s, segs, effMSS)
	})
}
