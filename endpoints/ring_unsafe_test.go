//go:build linux

package endpoints

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestRingLayout checks the ring offsets against x/sys/unix's structs.
func TestRingLayout(t *testing.T) {
	var bd unix.TpacketBlockDesc
	var h1 unix.TpacketHdrV1
	var h3 unix.Tpacket3Hdr
	hdr := int(unsafe.Offsetof(bd.Hdr))
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"block_status", blockStatusOff, hdr + int(unsafe.Offsetof(h1.Block_status))},
		{"num_pkts", blockNumPktsOff, hdr + int(unsafe.Offsetof(h1.Num_pkts))},
		{"offset_to_first_pkt", blockFirstPktOff, hdr + int(unsafe.Offsetof(h1.Offset_to_first_pkt))},
		{"tp_next_offset", tp3NextOff, int(unsafe.Offsetof(h3.Next_offset))},
		{"tp_snaplen", tp3SnaplenOff, int(unsafe.Offsetof(h3.Snaplen))},
		{"tp_len", tp3LenOff, int(unsafe.Offsetof(h3.Len))},
		{"tp_status", tp3StatusOff, int(unsafe.Offsetof(h3.Status))},
		{"tp_mac", tp3MacOff, int(unsafe.Offsetof(h3.Mac))},
		{"tp_vlan_tci", tp3VLANTCIOff, int(unsafe.Offsetof(h3.Hv1)) + int(unsafe.Offsetof(h3.Hv1.Vlan_tci))},
		{"tp_vlan_tpid", tp3VLANTPIDOf, int(unsafe.Offsetof(h3.Hv1)) + int(unsafe.Offsetof(h3.Hv1.Vlan_tpid))},
		{"TPACKET_ALIGN(sizeof(tpacket3_hdr))", tpacket3HdrLen, (unix.SizeofTpacket3Hdr + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.name, c.got, c.want)
		}
	}
}
