package conformance

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/endpoints"
	"github.com/macvsw/macvsw/tests/netlab"
	"golang.org/x/sys/unix"
)

// vnetVector is one write to a tap queue: a 12-byte virtio-net header and
// a frame (switch/BEHAVIOUR.md §7.4, cases 50-52 and the rules around them).
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

var vnetVectors = []vnetVector{
	{"50 short write (11 bytes)", func() []byte { return make([]byte, 11) }},
	{"50 13-byte frame", func() []byte { return cat(vnetHdr(0, 0, 0, 0, 0, 0), make([]byte, 13)) }},
	{"50 14-byte frame", func() []byte {
		return cat(vnetHdr(0, 0, 0, 0, 0, 0), frame(macOf("A"), macOf("E"), etherTypeTest, "", 14)[:14])
	}},
	{"plain 60-byte frame", func() []byte {
		return cat(vnetHdr(0, 0, 0, 0, 0, 0), frame(macOf("A"), macOf("E"), etherTypeTest, "x", 60))
	}},
	{"51 hdr_len 200 on 58 bytes", func() []byte { return cat(vnetHdr(0, 0, 200, 0, 0, 0), make([]byte, 58)) }},
	{"51 csum 34/60 out of range", func() []byte { return cat(vnetHdr(1, 0, 0, 0, 34, 60), l4Frame(false, 17, 10)) }},
	{"51 csum 34/6 on UDP", func() []byte { return cat(vnetHdr(1, 0, 0, 0, 34, 6), l4Frame(false, 17, 10)) }},
	{"csum_start 10", func() []byte { return cat(vnetHdr(1, 0, 0, 0, 10, 6), l4Frame(false, 17, 10)) }},
	{"52 TCPV4 gso_size 0", func() []byte { return cat(vnetHdr(1, 1, 54, 0, 34, 16), l4Frame(false, 6, 3000)) }},
	{"52 gso_type 2", func() []byte { return cat(vnetHdr(1, 2, 54, 1448, 34, 16), l4Frame(false, 6, 3000)) }},
	{"52 UDP_L4 without NEEDS_CSUM", func() []byte { return cat(vnetHdr(0, 5, 42, 1000, 0, 0), l4Frame(false, 17, 3000)) }},
	{"TSO4 valid", func() []byte { return cat(vnetHdr(1, 1, 54, 1448, 34, 16), l4Frame(false, 6, 6000)) }},
	{"TSO6 valid", func() []byte { return cat(vnetHdr(1, 4, 74, 1428, 54, 16), l4Frame(true, 6, 6000)) }},
	{"TSO4 on IPv6, no NEEDS_CSUM", func() []byte { return cat(vnetHdr(0, 1, 74, 1428, 0, 0), l4Frame(true, 6, 6000)) }},
	{"TSO4 csum_offset 6", func() []byte { return cat(vnetHdr(1, 1, 54, 1448, 34, 6), l4Frame(false, 6, 6000)) }},
	{"TSO payload below gso_size", func() []byte { return cat(vnetHdr(1, 1, 54, 1448, 34, 16), l4Frame(false, 6, 100)) }},
	{"TSO6 csum_start 34", func() []byte { return cat(vnetHdr(1, 4, 74, 1428, 34, 16), l4Frame(true, 6, 6000)) }},
	{"USO valid", func() []byte { return cat(vnetHdr(1, 5, 42, 1000, 34, 6), l4Frame(false, 17, 3000)) }},
	{"USO csum_offset 16", func() []byte { return cat(vnetHdr(1, 5, 42, 1000, 34, 16), l4Frame(false, 17, 3000)) }},
	{"gso_size 0xffff", func() []byte { return cat(vnetHdr(1, 1, 54, 0xffff, 34, 16), l4Frame(false, 6, 6000)) }},
}

// TestVnetWriteValidation writes each vector to a live kernel macvtap queue
// (vnet_hdr_sz 12) and feeds the same bytes, as a guest's write, to a
// macvsw tap endpoint (through a socketpair standing in for the device).
// The outcome must be the same: the frame goes on, or it is dropped and
// counted (the macvtap's tx_dropped, which also counts frames whose write
// succeeded but which the kernel dropped afterwards; our vnet_errors and
// runt drops).
func TestVnetWriteValidation(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	lab := netlab.New("mvsv")
	t.Cleanup(func() { lab.Close() })
	ns, err := lab.AddNS("tap")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.IPs(ns, "link add d0 type veth peer name d1", "link set d0 up", "link set d1 up",
		"link add link d0 name mvt0 type macvtap mode bridge", "link set mvt0 up"); err != nil {
		t.Fatal(err)
	}
	out, err := lab.Exec(ns, "cat", "/sys/class/net/mvt0/ifindex")
	if err != nil {
		t.Fatal(err)
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
		t.Skipf("open %s: %v", dev, err)
	}
	defer unix.Close(fd)
	sz := 12
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, sz); err != nil {
		t.Fatal(err)
	}

	// Our side: an endpoint over one end of a socketpair.
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[1])
	mac, _ := net.ParseMAC(netlab.SandboxMAC(0))
	ep, err := endpoints.AdoptTap([]int{sp[0]}, endpoints.TapOptions{MAC: mac, MTU: 1500, VnetHdrSize: sz})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	rec := &recorder{}
	ep.Attach(rec)
	defer ep.Attach(nil)

	txDropped := func() uint64 {
		v, _ := lab.LinkStat(ns, "mvt0", "tx_dropped")
		return v
	}
	kernelDrops0 := txDropped()
	var table strings.Builder
	fmt.Fprintf(&table, "%-32s %-8s %-8s %s\n", "write", "macvtap", "macvsw", "verdict (frame passed on)")
	refused := 0
	for _, v := range vnetVectors {
		b := v.bytes()
		d0 := txDropped()
		_, kerr := unix.Write(fd, b)
		kernelOK := kerr == nil && txDropped() == d0
		if !kernelOK {
			refused++
		}
		before := rec.count()
		if _, err := unix.Write(sp[1], b); err != nil {
			t.Fatalf("%s: socketpair write: %v", v.name, err)
		}
		oursOK := waitDelivery(rec, before)
		_, verr := endpoints.ValidateVnetWrite(b, sz)
		verdict := "same"
		if kernelOK != oursOK {
			verdict = "DIFFERS"
			t.Errorf("%s: macvtap passed it on=%v (write: %v), macvsw=%v (validator: %v)", v.name, kernelOK, kerr, oursOK, verr)
		}
		fmt.Fprintf(&table, "%-32s %-8v %-8v %s\n", v.name, kernelOK, oursOK, verdict)
	}
	t.Logf("virtio-net header write validation, macvtap vs macvsw:\n%s", table.String())
	if got := txDropped() - kernelDrops0; got != uint64(refused) {
		t.Errorf("macvtap tx_dropped +%d for %d refused writes", got, refused)
	}
	var ours uint64
	for _, q := range ep.Stats().Queues {
		for _, n := range q.VnetErrors {
			ours += n
		}
		ours += q.RxDrops[endpoints.DropRunt]
	}
	if ours != uint64(refused) {
		t.Errorf("macvsw counted %d rejections for %d refused writes", ours, refused)
	}
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
