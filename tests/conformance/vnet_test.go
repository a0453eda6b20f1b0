package conformance

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/endpoints"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
	"golang.org/x/sys/unix"
)

// vnetVector is one write to a tap queue: a 12-byte virtio-net header and
// a frame (switch/BEHAVIOUR.md §7.4, cases 50-52 of §8.2 and the rules
// around them).
type vnetVector struct {
	name  string
	bytes func() []byte
}

func vnetHdr(flags, gsoType uint8, hdrLen, gsoSize, csumStart, csumOffset uint16) []byte {
	h := make([]byte, 12)
	h[0], h[1] = flags, gsoType
	binary.LittleEndian.PutUint16(h[2:], hdrLen)
	binary.LittleEndian.PutUint16(h[4:], gsoSize)
	binary.LittleEndian.PutUint16(h[6:], csumStart)
	binary.LittleEndian.PutUint16(h[8:], csumOffset)
	return h
}

// l4Frame builds an Ethernet + IPv4 (or IPv6) + TCP/UDP frame with n bytes
// of payload; checksums are left for the offload to fill.
func l4Frame(v6 bool, proto uint8, n int) []byte {
	ipLen, et := 20, uint16(0x0800)
	if v6 {
		ipLen, et = 40, 0x86dd
	}
	l4Len := 20
	if proto == 17 {
		l4Len = 8
	}
	f := make([]byte, 14+ipLen+l4Len+n)
	copy(f[0:6], macOf("A"))
	copy(f[6:12], macOf("E"))
	binary.BigEndian.PutUint16(f[12:], et)
	ip := f[14:]
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4Len+n))
		ip[6], ip[7] = proto, 64
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+l4Len+n))
		ip[8], ip[9] = 64, proto
		copy(ip[12:], []byte{10, 77, 0, 100, 10, 77, 0, 1})
		binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:20]))
	}
	l4 := f[14+ipLen:]
	binary.BigEndian.PutUint16(l4[0:], 4000)
	binary.BigEndian.PutUint16(l4[2:], 5000)
	if proto == 6 {
		l4[12] = 5 << 4
		l4[13] = 0x10
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(8+n))
	}
	return f
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// vnetVectors are numbered by the case of switch/BEHAVIOUR.md §8.2 whose
// rule of §7.4 they exercise: 50 lengths, 51 header length and checksum
// offsets, 52 GSO; the vectors of the cases themselves come first.
var vnetVectors = []vnetVector{
	{"50_short_write_11_bytes", func() []byte { return make([]byte, 11) }},
	{"50_13_byte_frame", func() []byte { return cat(vnetHdr(0, 0, 0, 0, 0, 0), make([]byte, 13)) }},
	{"50_14_byte_frame", func() []byte {
		return cat(vnetHdr(0, 0, 0, 0, 0, 0), frame(macOf("A"), macOf("E"), etherTypeTest, "", 14)[:14])
	}},
	{"50_plain_60_byte_frame", func() []byte {
		return cat(vnetHdr(0, 0, 0, 0, 0, 0), frame(macOf("A"), macOf("E"), etherTypeTest, "x", 60))
	}},
	{"51_hdr_len_200_on_58_bytes", func() []byte { return cat(vnetHdr(0, 0, 200, 0, 0, 0), make([]byte, 58)) }},
	{"51_csum_34_60_out_of_range", func() []byte { return cat(vnetHdr(1, 0, 0, 0, 34, 60), l4Frame(false, 17, 10)) }},
	{"51_csum_34_6_on_udp", func() []byte { return cat(vnetHdr(1, 0, 0, 0, 34, 6), l4Frame(false, 17, 10)) }},
	{"51_csum_start_10", func() []byte { return cat(vnetHdr(1, 0, 0, 0, 10, 6), l4Frame(false, 17, 10)) }},
	{"52_tcpv4_gso_size_0", func() []byte { return cat(vnetHdr(1, 1, 54, 0, 34, 16), l4Frame(false, 6, 3000)) }},
	{"52_gso_type_2", func() []byte { return cat(vnetHdr(1, 2, 54, 1448, 34, 16), l4Frame(false, 6, 3000)) }},
	{"52_udp_l4_without_needs_csum", func() []byte { return cat(vnetHdr(0, 5, 42, 1000, 0, 0), l4Frame(false, 17, 3000)) }},
	{"52_tso4_valid", func() []byte { return cat(vnetHdr(1, 1, 54, 1448, 34, 16), l4Frame(false, 6, 6000)) }},
	{"52_tso6_valid", func() []byte { return cat(vnetHdr(1, 4, 74, 1428, 54, 16), l4Frame(true, 6, 6000)) }},
	{"52_tso4_on_ipv6_without_needs_csum", func() []byte { return cat(vnetHdr(0, 1, 74, 1428, 0, 0), l4Frame(true, 6, 6000)) }},
	{"52_tso4_csum_offset_6", func() []byte { return cat(vnetHdr(1, 1, 54, 1448, 34, 6), l4Frame(false, 6, 6000)) }},
	{"52_tso_payload_below_gso_size", func() []byte { return cat(vnetHdr(1, 1, 54, 1448, 34, 16), l4Frame(false, 6, 100)) }},
	{"52_tso6_csum_start_34", func() []byte { return cat(vnetHdr(1, 4, 74, 1428, 34, 16), l4Frame(true, 6, 6000)) }},
	{"52_uso_valid", func() []byte { return cat(vnetHdr(1, 5, 42, 1000, 34, 6), l4Frame(false, 17, 3000)) }},
	{"52_uso_csum_offset_16", func() []byte { return cat(vnetHdr(1, 5, 42, 1000, 34, 16), l4Frame(false, 17, 3000)) }},
	{"52_gso_size_0xffff", func() []byte { return cat(vnetHdr(1, 1, 54, 0xffff, 34, 16), l4Frame(false, 6, 6000)) }},
}

// vnetHdrSize is the virtio-net header both sides are set up with.
const vnetHdrSize = 12

// TestVnetWriteValidation writes each vector, as its own subtest, to a
// fresh live kernel macvtap queue (vnet_hdr_sz 12) and feeds the same
// bytes, as a guest's write, to a fresh macvsw tap endpoint (through a
// socketpair standing in for the device). The outcome must be the same:
// the frame goes on, or it is dropped; and a dropped frame must be counted
// once on each side (the macvtap's tx_dropped, which also counts frames
// whose write succeeded but which the kernel dropped afterwards; our
// vnet_errors and runt drops).
func TestVnetWriteValidation(t *testing.T) {
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	sum := newSummary("write", "macvtap", "macvsw", "verdict (frame passed on)")
	t.Cleanup(func() {
		t.Logf("virtio-net header write validation, macvtap vs macvsw:\n%s", sum)
		t.Log(sum.tally("writes"))
	})
	for i, v := range vnetVectors {
		t.Run(v.name, func(t *testing.T) {
			b := v.bytes()
			kernelOK, kerr, err := macvtapWrite(t, b)
			if err != nil {
				sum.add(i, v.name, "-", "-", verdictHarness+": macvtap, "+stepOf(err))
				t.Fatalf("macvtap: %v", err)
			}
			oursOK, err := endpointWrite(t, b)
			if err != nil {
				sum.add(i, v.name, "-", "-", verdictHarness+": macvsw, "+stepOf(err))
				t.Fatalf("macvsw: %v", err)
			}
			verdict := verdictSame
			if kernelOK != oursOK {
				verdict = verdictDiffers
				_, verr := endpoints.ValidateVnetWrite(b, vnetHdrSize)
				t.Errorf("macvtap passed it on=%v (write: %v), macvsw=%v (validator: %v)", kernelOK, kerr, oursOK, verr)
			}
			sum.add(i, v.name, fmt.Sprint(kernelOK), fmt.Sprint(oursOK), verdict)
		})
	}
}

// macvtapWrite writes b to the queue of a macvtap made for it and reports
// whether the frame went on (the write succeeded and tx_dropped did not
// move) and the write's error. A refused frame must add exactly 1 to
// tx_dropped. The error is a harness error.
func macvtapWrite(t *testing.T, b []byte) (ok bool, werr, err error) {
	lab := netlab.New("mvsv")
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("tear down the macvtap lab: %v", err)
		}
	})
	ns, err := lab.AddNS("tap")
	if err != nil {
		return false, nil, step("create the namespace", err)
	}
	if err := lab.IPs(ns, "link add d0 type veth peer name d1", "link set d0 up", "link set d1 up",
		// A fresh namespace numbers its links from 1, and /dev/tapIFINDEX
		// is global: the previous case's macvtap (index 4 too), whose
		// namespace the kernel tears down asynchronously, would take the
		// node with it. A unique index gives each case its own node.
		fmt.Sprintf("link add link d0 name mvt0 index %d type macvtap mode bridge", 1000+rand.IntN(1<<20)), "link set mvt0 up"); err != nil {
		return false, nil, step("create the macvtap", err)
	}
	out, err := lab.Exec(ns, "cat", "/sys/class/net/mvt0/ifindex")
	if err != nil {
		return false, nil, step("read the macvtap's ifindex", err)
	}
	dev := "/dev/tap" + strings.TrimSpace(out)
	var fd int
	for i := 0; ; i++ { // devtmpfs creates the node asynchronously
		if fd, err = unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		testenv.Skip(t, "open %s (the macvtap character device): %v", dev, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrSize); err != nil {
		return false, nil, step("TUNSETVNETHDRSZ", err)
	}
	txDropped := func() (uint64, error) { return lab.LinkStat(ns, "mvt0", "tx_dropped") }
	d0, err := txDropped()
	if err != nil {
		return false, nil, step("read tx_dropped before", err)
	}
	_, werr = unix.Write(fd, b)
	d1, err := txDropped()
	if err != nil {
		return false, werr, step("read tx_dropped after", err)
	}
	ok = werr == nil && d1 == d0
	if !ok && d1-d0 != 1 {
		t.Errorf("macvtap tx_dropped +%d for a refused write (write: %v)", d1-d0, werr)
	}
	return ok, werr, nil
}

// endpointWrite feeds b, as a guest's write, to a macvsw tap endpoint over
// a socketpair and reports whether the endpoint passed a frame on. A
// refused frame must be counted exactly once (vnet errors and runt drops).
// The error is a harness error.
func endpointWrite(t *testing.T, b []byte) (bool, error) {
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, step("socketpair", err)
	}
	defer unix.Close(sp[1])
	mac, _ := net.ParseMAC(netlab.SandboxMAC(0))
	ep, err := endpoints.AdoptTap([]int{sp[0]}, endpoints.TapOptions{MAC: mac, MTU: 1500, VnetHdrSize: vnetHdrSize})
	if err != nil {
		unix.Close(sp[0])
		return false, step("adopt the socketpair as a tap endpoint", err)
	}
	defer ep.Close()
	rec := &recorder{}
	ep.Attach(rec)
	defer ep.Attach(nil)
	if _, err := unix.Write(sp[1], b); err != nil {
		return false, step("socketpair write", err)
	}
	ok := waitDelivery(rec, 0)
	var counted uint64
	for _, q := range ep.Stats().Queues {
		counted += q.VnetErrors.Total() + q.RxDrops[endpoints.DropRunt].Count
	}
	want := uint64(0)
	if !ok {
		want = 1
	}
	if counted != want {
		t.Errorf("macvsw counted %d rejections; the frame was passed on=%v", counted, ok)
	}
	return ok, nil
}

func waitDelivery(r *recorder, before int) bool {
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if r.count() > before {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}
