//go:build linux

package endpoints

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Topology of the AF_PACKET tests:
//
//	netns A                          netns B
//	 vetha 02:..:88:01 10.88.0.1 ─── vethb 02:..:88:02 10.88.0.2
//	                                   └─ Packet endpoint (2 sockets)
var (
	vethAMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x88\x01")
	vethBMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x88\x02")
	vethAIP  = [4]byte{10, 88, 0, 1}
	vethBIP  = [4]byte{10, 88, 0, 2}
)

// vethPair creates namespaces A and B joined by a veth pair with addresses.
func vethPair(t testing.TB) (nsA, pathA, nsB, pathB string) {
	t.Helper()
	nsA, pathA = newNetns(t)
	nsB, pathB = newNetns(t)
	nsRun(t, nsA, "ip", "link", "add", "name", "vetha", "address", "02:00:00:00:88:01", "type", "veth",
		"peer", "name", "vethb", "address", "02:00:00:00:88:02", "netns", nsB)
	nsRun(t, nsA, "ip", "addr", "add", "10.88.0.1/24", "dev", "vetha")
	nsRun(t, nsB, "ip", "addr", "add", "10.88.0.2/24", "dev", "vethb")
	nsRun(t, nsA, "ip", "link", "set", "vetha", "up")
	nsRun(t, nsB, "ip", "link", "set", "vethb", "up")
	return
}

// packetRxModes are the receive mechanisms the netns tests run over.
var packetRxModes = []PacketRx{PacketRxMMsg, PacketRxRing}

func TestNetnsPacket(t *testing.T) {
	requireNetns(t)
	for _, rx := range packetRxModes {
		t.Run(rx.String(), func(t *testing.T) { testNetnsPacket(t, rx) })
	}
}

func testNetnsPacket(t *testing.T, rx PacketRx) {
	goroutineLeakCheck(t)
	nsA, pathA, nsB, pathB := vethPair(t)
	var linkMu sync.Mutex
	var linkEvents []string
	ep, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 2, Rx: rx,
		OnLinkChange: func(up bool, mtu uint32, _ tcpip.LinkAddress) {
			linkMu.Lock()
			linkEvents = append(linkEvents, map[bool]string{true: "up", false: "down"}[up]+"/"+itoa(int(mtu)))
			linkMu.Unlock()
		}})
	if err != nil {
		t.Fatalf("NewPacket: %v", err)
	}
	defer ep.Close()
	if ep.NumQueues() != 2 || ep.LinkAddress() != vethBMAC || ep.MTU() != 1500 {
		t.Errorf("queues %d mac %v mtu %d", ep.NumQueues(), ep.LinkAddress(), ep.MTU())
	}
	rec := newRecorder()
	ep.Attach(rec)

	// RX: a datagram from A's kernel arrives whole.
	sockA := udpSocket(t, pathA, "10.88.0.1:7000")
	sockB := udpSocket(t, pathB, "10.88.0.2:7001")
	if _, err := sockA.WriteTo([]byte("a-to-b"), &net.UDPAddr{IP: net.IP(vethBIP[:]), Port: 7001}); err != nil {
		t.Fatal(err)
	}
	f := rec.wait(t, 5*time.Second, func(f recFrame) bool { return bytes.HasSuffix(f.data, []byte("a-to-b")) })
	if !bytes.Equal(f.data[:12], []byte(vethBMAC+vethAMAC)) {
		t.Errorf("frame MACs % x", f.data[:12])
	}

	// TX: the endpoint's frame reaches A's kernel socket.
	writeFrames(t, ep, 0, udpFrame(vethBMAC, vethAMAC, vethBIP, vethAIP, 7001, 7000, []byte("ep-to-a")))
	sockA.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, _, err := sockA.ReadFrom(buf); err != nil || string(buf[:n]) != "ep-to-a" {
		t.Fatalf("A read %q, %v", buf[:n], err)
	}

	// Ignore outgoing: B's own kernel transmissions (and ours) never come
	// back, although B's kernel answered ARP and we sent a frame.
	if _, err := sockB.WriteTo([]byte("b-out"), &net.UDPAddr{IP: net.IP(vethAIP[:]), Port: 7000}); err != nil {
		t.Fatal(err)
	}
	sockA.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := sockA.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	for _, f := range rec.snapshot() {
		if bytes.Equal(f.data[6:12], []byte(vethBMAC)) {
			t.Errorf("outgoing frame delivered: % x", f.data[:min(len(f.data), 42)])
		}
	}

	// VLAN: a tagged frame from A arrives with its tag re-inserted.
	tagged := udpFrame(vethAMAC, vethBMAC, vethAIP, vethBIP, 1, 2, []byte("tagged-frame"))
	tagged = append(tagged[:12], append([]byte{0x81, 0x00, 0x00, 100}, tagged[12:]...)...)
	rawSend(t, pathA, "vetha", tagged)
	f = rec.wait(t, 5*time.Second, func(f recFrame) bool { return bytes.HasSuffix(f.data, []byte("tagged-frame")) })
	if !bytes.Equal(f.data, tagged) {
		t.Errorf("VLAN frame delivered as % x, want % x", f.data[:18], tagged[:18])
	}

	// TSO: a TCP stream from A arrives as GSO super-frames with metadata.
	tsoStream(t, pathA, pathB, 1<<20)
	f = rec.wait(t, 5*time.Second, func(f recFrame) bool { return len(f.data) > 1514 })
	gso := f.gso
	t.Logf("super-frame of %d bytes, GSO %+v", len(f.data), gso)
	if gso.Type != stack.GSOTCPv4 || !gso.NeedsCsum || gso.MSS == 0 || gso.L3HdrLen != 20 || gso.CsumOffset != 16 {
		t.Errorf("super-frame GSO %+v", gso)
	}
	sp := packetWithGSO(f.data, gso)
	segs, err := SegmentPacket(sp, 1500)
	sp.DecRef()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range segs.AsSlice() {
		v := p.ToView()
		checkFrame(t, v.AsSlice())
		v.Release()
	}
	segs.Reset()

	// Link state follows the interface.
	nsRun(t, nsB, "ip", "link", "set", "vethb", "mtu", "1400")
	nsRun(t, nsA, "ip", "link", "set", "vetha", "down")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st := ep.LinkState(); !st.Up() && st.MTU == 1400 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := ep.LinkState(); st.Up() || st.MTU != 1400 {
		t.Errorf("LinkState = %+v; want down, 1400", st)
	}
	linkMu.Lock()
	if len(linkEvents) == 0 || linkEvents[len(linkEvents)-1] != "down/1400" {
		t.Errorf("link events %v", linkEvents)
	}
	linkMu.Unlock()
	st := ep.Stats().Total()
	if st.RxPackets == 0 || st.TxPackets != 1 || st.Failures != 0 {
		t.Errorf("stats %+v", st)
	}
	perQueue := uint64(0)
	for _, q := range ep.Stats().Queues {
		perQueue += q.RxPackets
	}
	if perQueue != st.RxPackets {
		t.Errorf("per-queue rx %d, total %d", perQueue, st.RxPackets)
	}
	for _, f := range rec.snapshot() {
		if f.queue < 0 || f.queue >= 2 {
			t.Errorf("frame delivered on queue %d", f.queue)
		}
	}
	ep.Attach(nil)
	ep.Close()
	ep.Close()
}

func TestNetnsPacketFilters(t *testing.T) {
	requireNetns(t)
	_, _, _, pathB := vethPair(t)
	ep, err := NewPacket(PacketOptions{Interface: "vethb", NetNS: pathB, Queues: 1, NoPromiscuous: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	m1, m2 := [6]byte{2, 0, 0, 0, 0x99, 1}, [6]byte{2, 0, 0, 0, 0x99, 2}
	g1 := [6]byte{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}
	if err := ep.SetUnicastFilter([][6]byte{m1, m2}); err != nil {
		t.Fatal(err)
	}
	if err := ep.SetUnicastFilter([][6]byte{m2}); err != nil {
		t.Fatal(err)
	}
	if err := ep.SetMulticastFilter([][6]byte{g1}); err != nil {
		t.Fatal(err)
	}
	out := run(t, "ip", "netns", "exec", strings.TrimPrefix(pathB, "/var/run/netns/"), "ip", "maddr", "show", "dev", "vethb")
	if !strings.Contains(out, "01:00:5e:01:02:03") {
		t.Errorf("multicast membership missing: %s", out)
	}
	if len(ep.unicast) != 1 || len(ep.multicast) != 1 {
		t.Errorf("filters %v %v", ep.unicast, ep.multicast)
	}
	if err := ep.SetMulticastFilter(nil); err != nil {
		t.Fatal(err)
	}
}

// rawSend writes one frame on ifname from an AF_PACKET socket in the
// namespace at path.
func rawSend(t testing.TB, path, ifname string, frame []byte) {
	t.Helper()
	inNS(t, path, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
	})
}

// tsoStream sends n bytes of TCP from namespace A to a listener in B.
func tsoStream(t testing.TB, pathA, pathB string, n int) {
	t.Helper()
	var ln net.Listener
	inNS(t, pathB, func() error {
		var err error
		ln, err = net.Listen("tcp4", "10.88.0.2:7100")
		return err
	})
	defer ln.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.Copy(io.Discard, c)
		done <- got
	}()
	var c net.Conn
	inNS(t, pathA, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", "10.88.0.2:7100", 5*time.Second)
		return err
	})
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := <-done; got != int64(n) {
		t.Fatalf("TCP stream: %d of %d bytes arrived", got, n)
	}
}

func packetWithGSO(frame []byte, g stack.GSO) *stack.PacketBuffer {
	p := packetOf(frame)
	p.GSOOptions = g
	return p
}

func itoa(i int) string { return strconv.Itoa(i) }
