//go:build linux

package endpoints

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Topology of the tap tests:
//
//	netns mvswep<pid>-N                  test process
//	 kernel stack 10.77.0.1/24           endpoint (Tap) "peer" 02:00:00:00:77:02
//	   mvtap0 02:00:00:00:77:01 ── tap FDs ──► recorder (QueueDispatcher)
var (
	tapMAC  = tcpip.LinkAddress("\x02\x00\x00\x00\x77\x01")
	peerMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x77\x02")
	tapIP   = [4]byte{10, 77, 0, 1}
	peerIP  = [4]byte{10, 77, 0, 2}
)

func newTestTap(t *testing.T, queues int, opts TapOptions) (*Tap, string, string) {
	t.Helper()
	ns, path := newNetns(t)
	opts.Name, opts.NetNS, opts.Queues = "mvtap0", path, queues
	opts.MAC = net.HardwareAddr(tapMAC)
	opts.MTU = 1400
	opts.Addresses = []string{"10.77.0.1/24"}
	tap, err := NewTap(opts)
	if err != nil {
		t.Fatalf("NewTap: %v", err)
	}
	t.Cleanup(tap.Close)
	return tap, ns, path
}

func TestNetnsTap(t *testing.T) {
	requireNetns(t)
	goroutineLeakCheck(t)
	tap, ns, path := newTestTap(t, 1, TapOptions{})
	link := nsRun(t, ns, "ip", "-o", "link", "show", "mvtap0")
	for _, want := range []string{"mtu 1400", "02:00:00:00:77:01", "UP"} {
		if !strings.Contains(link, want) {
			t.Errorf("ip link show = %q, missing %q", link, want)
		}
	}
	if addr := nsRun(t, ns, "ip", "-o", "-4", "addr", "show", "mvtap0"); !strings.Contains(addr, "10.77.0.1/24") {
		t.Errorf("ip addr show = %q, missing 10.77.0.1/24", addr)
	}
	if tap.MTU() != 1400 || tap.LinkAddress() != tapMAC || tap.NumQueues() != 1 || tap.SupportedGSO() != stack.HostGSOSupported {
		t.Errorf("MTU %d, MAC %v, queues %d, GSO %v", tap.MTU(), tap.LinkAddress(), tap.NumQueues(), tap.SupportedGSO())
	}
	rec := newRecorder()
	tap.Attach(rec)

	// Endpoint → kernel: an ARP request; the kernel's reply comes back.
	writeFrames(t, tap, 0, arpRequest(peerMAC, peerIP, tapIP))
	rec.wait(t, 5*time.Second, func(f recFrame) bool {
		return len(f.data) >= 42 && bytes.Equal(f.data[:6], []byte(peerMAC)) &&
			header.Ethernet(f.data).Type() == header.ARPProtocolNumber && header.ARP(f.data[14:]).Op() == header.ARPReply
	})

	// Endpoint → kernel socket: UDP.
	sock := udpSocket(t, path, "10.77.0.1:9999")
	writeFrames(t, tap, 0, udpFrame(peerMAC, tapMAC, peerIP, tapIP, 4444, 9999, []byte("to-kernel")))
	sock.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, _, err := sock.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to-kernel" {
		t.Fatalf("kernel socket read = %q, %v", buf[:n], err)
	}

	// Kernel socket → endpoint, whole frame, no header consumed.
	if _, err := sock.WriteTo([]byte("from-kernel"), &net.UDPAddr{IP: net.IP(peerIP[:]), Port: 4444}); err != nil {
		t.Fatal(err)
	}
	f := rec.wait(t, 5*time.Second, func(f recFrame) bool {
		return len(f.data) > 42 && bytes.HasSuffix(f.data, []byte("from-kernel"))
	})
	if !bytes.Equal(f.data[:12], []byte(peerMAC+tapMAC)) || f.queue != 0 {
		t.Errorf("frame header % x on queue %d", f.data[:14], f.queue)
	}
	if f.gso.NeedsCsum {
		if err := FinishChecksum(f.data, 14+int(f.gso.L3HdrLen), int(f.gso.CsumOffset)); err != nil {
			t.Fatal(err)
		}
	}
	checkFrame(t, f.data)

	st := tap.Stats().Total()
	if st.RxPackets < 2 || st.TxPackets != 2 || st.TxBytes == 0 {
		t.Errorf("stats %+v", st)
	}
	tap.Attach(nil)
	if tap.IsAttached() {
		t.Errorf("IsAttached after Attach(nil)")
	}
	tap.Close()
	tap.Close() // idempotent
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "show", "mvtap0").CombinedOutput(); err == nil {
		t.Errorf("tap still exists after Close: %s", out)
	}
	if _, err := tap.AttachFD(-1); err != ErrClosed {
		t.Errorf("AttachFD after Close = %v, want ErrClosed", err)
	}
}

// flowBurst sends one datagram per source port from the namespace's kernel
// to the peer and waits until all arrived or timeout; it returns the queue
// each flow (source port) was read from.
func flowBurst(t *testing.T, rec *recorder, sock *net.UDPConn, path string, flows int, tag string) map[int]int {
	t.Helper()
	rec.reset()
	socks := make([]*net.UDPConn, flows)
	for i := range socks {
		socks[i] = udpSocket(t, path, "10.77.0.1:0")
	}
	for _, s := range socks {
		if _, err := s.WriteTo([]byte(tag), &net.UDPAddr{IP: net.IP(peerIP[:]), Port: 5555}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	got := map[int]int{}
	for time.Now().Before(deadline) {
		got = map[int]int{}
		for _, f := range rec.snapshot() {
			if len(f.data) > 42 && bytes.HasSuffix(f.data, []byte(tag)) {
				got[int(binary.BigEndian.Uint16(f.data[34:]))] = f.queue
			}
		}
		if len(got) == flows {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range socks {
		s.Close()
	}
	return got
}

func TestNetnsTapMultiQueue(t *testing.T) {
	requireNetns(t)
	goroutineLeakCheck(t)
	var mu sync.Mutex
	events := map[int][]bool{}
	tap, ns, path := newTestTap(t, 4, TapOptions{OnQueueState: func(q int, up bool) {
		mu.Lock()
		events[q] = append(events[q], up)
		mu.Unlock()
	}})
	nsRun(t, ns, "ip", "neigh", "add", "10.77.0.2", "lladdr", "02:00:00:00:77:02", "dev", "mvtap0", "nud", "permanent")
	rec := newRecorder()
	tap.Attach(rec)
	defer tap.Attach(nil)
	const flows = 40

	got := flowBurst(t, rec, nil, path, flows, "round1")
	if len(got) != flows {
		t.Fatalf("round 1: %d of %d flows arrived", len(got), flows)
	}
	used := map[int]bool{}
	for _, q := range got {
		used[q] = true
	}
	if len(used) < 2 {
		t.Errorf("40 flows used queues %v, want several", used)
	}

	// Detach queue 0: the kernel stops using it.
	if err := tap.DetachQueue(0); err != nil {
		t.Fatal(err)
	}
	if err := tap.DetachQueue(0); err == nil {
		t.Errorf("second DetachQueue(0) succeeded")
	}
	got = flowBurst(t, rec, nil, path, flows, "round2")
	if len(got) != flows {
		t.Fatalf("detached: %d of %d flows arrived", len(got), flows)
	}
	for port, q := range got {
		if q == 0 {
			t.Errorf("flow %d read from detached queue 0", port)
		}
	}
	if s := tap.Stats().Queues[0].State; s != QueueDetached.String() {
		t.Errorf("queue 0 state %v", s)
	}
	// A detached queue still writes.
	writeFrames(t, tap, 0, udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 9, []byte("x")))
	if err := tap.AttachQueue(0); err != nil {
		t.Fatal(err)
	}

	// Queue 1's FD goes away (replaced by /dev/null under the endpoint,
	// which keeps owning the FD number): only that queue dies.
	devnull, err := unix.Open("/dev/null", unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	q1 := tap.queueList()[1]
	if err := unix.Dup3(devnull, q1.fd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(devnull)
	deadline := time.Now().Add(5 * time.Second)
	for tap.Stats().Queues[1].State != QueueDead.String() && time.Now().Before(deadline) {
		flowBurst(t, rec, nil, path, 8, "wake")
	}
	if st := tap.Stats().Queues[1]; st.State != QueueDead.String() || st.Failures != 1 {
		t.Fatalf("queue 1 after losing its FD: %v, failures %d", st.State, st.Failures)
	}
	got = flowBurst(t, rec, nil, path, flows, "round3")
	if len(got) != flows {
		t.Fatalf("after queue 1 died: %d of %d flows arrived", len(got), flows)
	}
	// Hash 1 maps to the dead queue: the write goes to a live one.
	writeFrames(t, tap, 1, udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 9, []byte("y")))

	// A new queue FD takes the dead slot and the port is whole again.
	fds, _, err := OpenTapQueues(path, "mvtap0", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := tap.AttachFD(fds[0])
	if err != nil || idx != 1 {
		t.Fatalf("AttachFD = %d, %v; want 1", idx, err)
	}
	if s := tap.Stats().Queues[1].State; s != QueueUp.String() {
		t.Errorf("queue 1 state after AttachFD: %v", s)
	}
	got = flowBurst(t, rec, nil, path, flows, "round4")
	if len(got) != flows {
		t.Fatalf("after AttachFD: %d of %d flows arrived", len(got), flows)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{false, true}; !equalBools(events[0], want) {
		t.Errorf("queue 0 events %v, want %v", events[0], want)
	}
	if want := []bool{false, true}; !equalBools(events[1], want) {
		t.Errorf("queue 1 events %v, want %v", events[1], want)
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// socketpairTap adopts one end of a SOCK_SEQPACKET socketpair as a tap FD;
// the test holds the other end as the "device" side.
func socketpairTap(t *testing.T, opts TapOptions) (*Tap, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tap, err := AdoptTap(fds[:1], opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tap.Close()
		unix.Close(fds[1])
	})
	return tap, fds[1]
}

// TestTapSocketpair drives a Tap from the "device" side of a socketpair:
// bad virtio-net headers (BEHAVIOUR.md §7.4, §8.2 cases 50-52) are counted per
// reason and dropped without stopping the reader, GSO metadata is passed up,
// USO is segmented, and the TX side builds vnet headers or falls back to
// software. Needs no privileges.
func TestTapSocketpair(t *testing.T) {
	goroutineLeakCheck(t)
	var mu sync.Mutex
	var down []int
	tap, dev := socketpairTap(t, TapOptions{OnQueueState: func(q int, up bool) {
		mu.Lock()
		if !up {
			down = append(down, q)
		}
		mu.Unlock()
	}})
	rec := newRecorder()
	tap.Attach(rec)

	udp := frameSpec{udp: true, payload: 16}.build()
	tso := frameSpec{payload: 5000, tcpFlags: header.TCPFlagAck, partial: true}
	uso := frameSpec{udp: true, payload: 3000, partial: true}
	noCsum := uso.vnet(1000)
	noCsum.Flags = 0
	writes := []struct {
		b    []byte
		want VnetReason
	}{
		{make([]byte, 11), VnetShortWrite},
		{vnetWrite(VnetHdr{}, 12, make([]byte, 13)), VnetRunt},
		{vnetWrite(VnetHdr{HdrLen: 200}, 12, udp), VnetHdrLenTooBig},
		{vnetWrite(VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: 60}, 12, udp), VnetCsumRange},
		{vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4}, 12, tso.build()), VnetBadGSOSize},
		{vnetWrite(VnetHdr{GSOType: 2, GSOSize: 100}, 12, tso.build()), VnetBadGSOType},
		{vnetWrite(noCsum, 12, uso.build()), VnetUSO},
		{vnetWrite(VnetHdr{GSOType: VnetGSOTCPv4, GSOSize: 100}, 12, frameSpec{v6: true, payload: 500}.build()), VnetGSOProto},
		{vnetWrite(VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: 6}, 12, udp), VnetOK},
		{vnetWrite(tso.vnet(1448), 12, tso.build()), VnetOK},
		{vnetWrite(uso.vnet(1000), 12, uso.build()), VnetOK},
	}
	for _, w := range writes {
		if _, err := unix.Write(dev, w.b); err != nil {
			t.Fatal(err)
		}
	}
	// 1 plain + 1 TSO + 3 USO segments.
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.snapshot()) < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	frames := rec.snapshot()
	if len(frames) != 5 {
		t.Fatalf("delivered %d frames, want 5", len(frames))
	}
	st := tap.Stats().Total()
	for _, w := range writes {
		if w.want != VnetOK && st.VnetErrors[w.want].Count != 1 {
			t.Errorf("vnet %v count %d, want 1", w.want, st.VnetErrors[w.want].Count)
		}
	}
	if g := frames[0].gso; !g.NeedsCsum || g.Type != stack.GSONone || g.L3HdrLen != 20 || g.CsumOffset != 6 {
		t.Errorf("plain NEEDS_CSUM frame GSO %+v", g)
	}
	want := stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20, MaxSize: GSOMaxSize}
	if frames[1].gso != want || !bytes.Equal(frames[1].data, tso.build()) {
		t.Errorf("TSO frame GSO %+v (want %+v), %d bytes", frames[1].gso, want, len(frames[1].data))
	}
	for _, f := range frames[2:] {
		checkFrame(t, f.data)
	}
	if st.Segmented != 1 || st.RxPackets != 5 {
		t.Errorf("segmented %d rx %d", st.Segmented, st.RxPackets)
	}

	// TX: a GSO packet goes out with its vnet header, views unchanged.
	p := packetOf(tso.build())
	p.GSOOptions = want
	n, err := tap.WritePackets(listOf(p))
	p.DecRef()
	if n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	buf := make([]byte, 70000)
	rn, rerr := unix.Read(dev, buf)
	if rerr != nil {
		t.Fatal(rerr)
	}
	h, _ := ParseVnetHdr(buf)
	if h != tso.vnet(1448) || !bytes.Equal(buf[12:rn], tso.build()) {
		t.Errorf("written vnet %v (want %v), frame %d bytes", h, tso.vnet(1448), rn-12)
	}

	// A full device never blocks the writer: drops are counted as tx_full.
	big := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, make([]byte, 1000))
	for i := 0; i < 1000 && tap.Stats().Total().TxDrops[DropTxFull].Count == 0; i++ {
		p := packetOf(big)
		tap.WritePackets(listOf(p))
		p.DecRef()
	}
	if tap.Stats().Total().TxDrops[DropTxFull].Count == 0 {
		t.Errorf("no tx_full drop after filling the socket")
	}
	// A plain frame above the MTU is not refused as oversize: this
	// receiver negotiated GSO (TestPlanTxOversize covers one that did not).
	p = packetOf(frameSpec{payload: 2000, tcpFlags: header.TCPFlagAck}.build())
	tap.WritePackets(listOf(p))
	p.DecRef()
	if tap.Stats().Total().TxDrops[DropOversize].Count != 0 {
		t.Errorf("oversize drops %d toward a GSO receiver", tap.Stats().Total().TxDrops[DropOversize].Count)
	}

	// The device going away takes the queue down and reports it.
	unix.Shutdown(dev, unix.SHUT_RDWR)
	deadline = time.Now().Add(5 * time.Second)
	for tap.Stats().Queues[0].State != QueueDead.String() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if len(down) != 1 || down[0] != 0 {
		t.Errorf("OnQueueState down events %v", down)
	}
	mu.Unlock()
	tap.Attach(nil)
}

// TestTapSoftwareFallback checks that a tap without offloads gets plain,
// fully checksummed, MTU-sized frames with a zero vnet header.
func TestTapSoftwareFallback(t *testing.T) {
	tap, dev := socketpairTap(t, TapOptions{NoOffloads: true, MTU: 1500})
	if tap.SupportedGSO() != stack.GSONotSupported {
		t.Errorf("SupportedGSO = %v", tap.SupportedGSO())
	}
	tso := frameSpec{payload: 5000, tcpFlags: header.TCPFlagAck | header.TCPFlagPsh, partial: true}
	csum := frameSpec{udp: true, payload: 100, partial: true}
	p1 := packetOf(tso.build())
	p1.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20}
	p2 := packetOf(csum.build())
	p2.GSOOptions = stack.GSO{NeedsCsum: true, CsumOffset: 6, L3HdrLen: 20}
	n, err := tap.WriteQueue(7, listOf(p1, p2))
	p1.DecRef()
	p2.DecRef()
	if n != 2 || err != nil {
		t.Fatalf("WriteQueue = %d, %v", n, err)
	}
	var segs [][]byte
	buf := make([]byte, 70000)
	for i := 0; i < 5; i++ {
		rn, err := unix.Read(dev, buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:12], make([]byte, 12)) {
			t.Errorf("segment %d vnet header % x, want zero", i, buf[:12])
		}
		if rn-12 > 1514 {
			t.Errorf("segment %d is %d bytes", i, rn-12)
		}
		segs = append(segs, bytes.Clone(buf[12:rn]))
	}
	verifySegments(t, tso, segs[:4], 1448)
	checkFrame(t, segs[4])
	st := tap.Stats().Total()
	if st.Segmented != 1 || st.Checksummed != 1 || st.TxPackets != 5 {
		t.Errorf("stats segmented %d checksummed %d tx %d", st.Segmented, st.Checksummed, st.TxPackets)
	}
}

func TestWriteNoAlloc(t *testing.T) {
	tap, dev := socketpairTap(t, TapOptions{})
	f := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, make([]byte, 1000))
	p := packetOf(f)
	defer p.DecRef()
	buf := make([]byte, 2000)
	var l stack.PacketBufferList
	l.PushBack(p) // the list's slice is the caller's allocation
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := tap.WritePackets(l); n != 1 || err != nil {
			t.Fatalf("WritePackets = %d, %v", n, err)
		}
		unix.Read(dev, buf)
	})
	if allocs != 0 {
		t.Errorf("WritePackets allocs = %v, want 0", allocs)
	}
}

func TestSendReceiveFDs(t *testing.T) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range pair {
		c, err := net.FileConn(fileOf(fd))
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		defer conns[i].Close()
	}
	payload, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(payload[:])
	if err := SendFDs(conns[0], "tap-broker0", payload[:]); err != nil {
		t.Fatal(err)
	}
	name, fds, err := ReceiveFDs(conns[1], 4)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFDs(fds)
	if name != "tap-broker0" || len(fds) != 2 {
		t.Fatalf("ReceiveFDs = %q, %v", name, fds)
	}
	// The received FDs are the same sockets.
	if _, err := unix.Write(fds[0], []byte("hi")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if n, err := unix.Read(payload[1], b); err != nil || string(b[:n]) != "hi" {
		t.Errorf("read %q, %v", b[:n], err)
	}
	// Too many FDs: all closed, error.
	if err := SendFDs(conns[0], "x", payload[:]); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	if _, _, err := ReceiveFDs(conns[1], 1); err == nil {
		t.Errorf("ReceiveFDs(max 1) of 2 fds succeeded")
	}
	if after := openFDs(t); after != before {
		t.Errorf("a refused message leaked fds: %d open before, %d after", before, after)
	}
	// The FDs that were accepted are close-on-exec.
	if fl, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("received fd flags %#x, %v: not close-on-exec", fl, err)
	}
}

// TestRightsOfMalformed: a control buffer that is well formed up to a
// point still yields every FD it names, so that the caller can close them.
func TestRightsOfMalformed(t *testing.T) {
	fd, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	good := unix.UnixRights(fd, fd)
	if fds, err := rightsOf(good); err != nil || len(fds) != 2 || fds[0] != fd {
		t.Fatalf("rightsOf(good) = %v, %v", fds, err)
	}
	// A second header that claims more than the buffer holds.
	bad := append(slices.Clone(good), good...)
	bad = bad[:len(bad)-2]
	fds, err := rightsOf(bad)
	if err == nil || len(fds) < 2 {
		t.Errorf("rightsOf(truncated) = %v, %v; want an error and the FDs found", fds, err)
	}
	// Stray bytes after a good message.
	if fds, err := rightsOf(append(slices.Clone(good), 1, 2, 3)); err == nil || len(fds) != 2 {
		t.Errorf("rightsOf(stray bytes) = %v, %v", fds, err)
	}
	if fds, err := rightsOf(nil); err != nil || fds != nil {
		t.Errorf("rightsOf(nil) = %v, %v", fds, err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestTapBusyPoll: with busy polling on, a frame that arrives while the
// reader polls is read without parking (counted in busy_polled), frames
// are delivered as without it, and stopping the endpoint ends a poll.
// Off, nothing is counted.
func TestTapBusyPoll(t *testing.T) {
	goroutineLeakCheck(t)
	frame := vnetWrite(VnetHdr{}, 12, frameSpec{udp: true, payload: 16}.build())
	send := func(t *testing.T, tap *Tap, dev int, rec *recorder, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := unix.Write(dev, frame); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(rec.snapshot()) < i+1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		if got := len(rec.snapshot()); got != n {
			t.Fatalf("delivered %d frames, want %d", got, n)
		}
	}

	t.Run("on", func(t *testing.T) {
		tap, dev := socketpairTap(t, TapOptions{})
		tap.SetBusyPoll(time.Hour) // clamped
		if got := tap.BusyPoll(); got != MaxBusyPoll {
			t.Fatalf("BusyPoll() = %v after SetBusyPoll(1h), want %v", got, MaxBusyPoll)
		}
		rec := newRecorder()
		tap.Attach(rec)
		// The reader polls for 100 ms after each frame: the next ones,
		// 1 ms apart, are found by polling.
		send(t, tap, dev, rec, 10)
		if got := tap.Stats().Total().BusyPolled; got == 0 {
			t.Errorf("busy_polled = 0 after 10 frames 1 ms apart with a 100 ms poll")
		}
		// Stop the reader in the middle of its poll; the leak check
		// sees that it returned.
		start := time.Now()
		tap.Attach(nil)
		tap.Close()
		t.Logf("stopped a polling reader in %v (poll time %v)", time.Since(start), MaxBusyPoll)
	})
	t.Run("off", func(t *testing.T) {
		tap, dev := socketpairTap(t, TapOptions{})
		rec := newRecorder()
		tap.Attach(rec)
		send(t, tap, dev, rec, 10)
		if got := tap.Stats().Total().BusyPolled; got != 0 {
			t.Errorf("busy_polled = %d with busy polling off", got)
		}
	})
}

// TestNetnsTapDeviceDrops: frames the sandbox sends while nobody reads the
// tap overflow its queue; the tap counts them as tx_dropped, and the
// endpoint's stats report the same number (DeviceDrops), also after the
// sandbox renamed the interface.
func TestNetnsTapDeviceDrops(t *testing.T) {
	requireNetns(t)
	tap, ns, path := newTestTap(t, 1, TapOptions{})
	nsRun(t, ns, "ip", "neigh", "replace", "10.77.0.2", "lladdr", net.HardwareAddr(peerMAC).String(), "dev", "mvtap0")
	sock := udpSocket(t, path, "10.77.0.1:9999")
	for i := 0; i < 3000; i++ { // the queue holds txqueuelen (1000) frames
		if _, err := sock.WriteTo([]byte("unread"), &net.UDPAddr{IP: net.IP(peerIP[:]), Port: 4444}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := strconv.ParseUint(strings.TrimSpace(nsRun(t, ns, "cat", "/sys/class/net/mvtap0/statistics/tx_dropped")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want < 1000 {
		t.Fatalf("tap tx_dropped = %d after 3000 unread frames, want ≥ 1000", want)
	}
	if got := tap.Stats().DeviceDrops; got != want {
		t.Errorf("Stats().DeviceDrops = %d, tap tx_dropped = %d", got, want)
	}
	// The sandbox renames its interface: the count follows the device,
	// not the name.
	nsRun(t, ns, "ip", "link", "set", "mvtap0", "name", "renamed0")
	if got := tap.Stats().DeviceDrops; got != want {
		t.Errorf("after a rename in the sandbox: Stats().DeviceDrops = %d, want %d", got, want)
	}
}
