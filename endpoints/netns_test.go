//go:build linux

package endpoints

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/testenv"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func requireNetns(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "creates network namespaces and tap devices")
	testenv.NeedTools(t, "ip", "unshare")
	if err := exec.Command("unshare", "-n", "true").Run(); err != nil {
		testenv.Skip(t, "cannot create a network namespace: %v", err)
	}
}

var netnsSeq atomic.Int32

// newNetns creates a network namespace with a per-run unique name
// ("mvswep<pid>-<n>"), IPv6 off to keep it quiet, loopback up, and deletes
// it in Cleanup. It returns the name and its path.
func newNetns(t testing.TB) (string, string) {
	t.Helper()
	name := fmt.Sprintf("mvswep%d-%d", os.Getpid(), netnsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	nsRun(t, name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	nsRun(t, name, "ip", "link", "set", "lo", "up")
	return name, "/var/run/netns/" + name
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func nsRun(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// recorder is a dispatcher (QueueDispatcher) that copies delivered frames.
type recorder struct {
	mu     sync.Mutex
	frames []recFrame
	notify chan struct{}
}

type recFrame struct {
	queue int
	data  []byte
	gso   stack.GSO
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) DeliverQueuePacket(q int, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	f := recFrame{queue: q, data: v.ToSlice(), gso: pkt.GSOOptions}
	v.Release()
	r.mu.Lock()
	r.frames = append(r.frames, f)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	panic("DeliverNetworkPacket called on a QueueDispatcher")
}

func (r *recorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// wait returns the first frame (after skipping index from) matching pred,
// or fails after timeout.
func (r *recorder) wait(t testing.TB, timeout time.Duration, pred func(recFrame) bool) recFrame {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for _, f := range r.frames {
			if pred(f) {
				r.mu.Unlock()
				return f
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("no matching frame within %v", timeout)
		}
	}
}

func (r *recorder) snapshot() []recFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recFrame(nil), r.frames...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.frames = nil
	r.mu.Unlock()
}

// udpFrame builds an Ethernet/IPv4/UDP frame with full checksums.
func udpFrame(srcMAC, dstMAC tcpip.LinkAddress, src, dst [4]byte, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: srcMAC, DstAddr: dstMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(f[14:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(f) - 14), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src), DstAddr: tcpip.AddrFrom4(dst)})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(f[34:])
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(8 + len(payload))})
	copy(f[42:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, tcpip.AddrFrom4(src), tcpip.AddrFrom4(dst), uint16(8+len(payload)))
	u.SetChecksum(^u.CalculateChecksum(checksumOf(payload, xsum)))
	return f
}

func checksumOf(b []byte, initial uint16) uint16 {
	var c uint32 = uint32(initial)
	for i := 0; i+1 < len(b); i += 2 {
		c += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		c += uint32(b[len(b)-1]) << 8
	}
	for c > 0xffff {
		c = c&0xffff + c>>16
	}
	return uint16(c)
}

// arpRequest builds a who-has request.
func arpRequest(srcMAC tcpip.LinkAddress, src, target [4]byte) []byte {
	f := make([]byte, 14+header.ARPSize)
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: srcMAC, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(f[14:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), srcMAC)
	copy(a.ProtocolAddressSender(), src[:])
	copy(a.ProtocolAddressTarget(), target[:])
	return f
}

func packetOf(frame []byte) *stack.PacketBuffer {
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
}

func listOf(pkts ...*stack.PacketBuffer) stack.PacketBufferList {
	var l stack.PacketBufferList
	for _, p := range pkts {
		l.PushBack(p)
	}
	return l
}

// writeFrames writes frames through w and releases the packets.
func writeFrames(t testing.TB, w stack.LinkWriter, hash uint32, frames ...[]byte) {
	t.Helper()
	var l stack.PacketBufferList
	for _, f := range frames {
		p := packetOf(f)
		p.Hash = hash
		l.PushBack(p)
	}
	n, err := w.WritePackets(l)
	l.Reset()
	if err != nil || n != len(frames) {
		t.Fatalf("WritePackets = %d, %v; want %d, nil", n, err, len(frames))
	}
}

// inNS runs fn in the namespace at path on a locked thread (test helper).
func inNS(t testing.TB, path string, fn func() error) {
	t.Helper()
	ns, err := openNetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.close()
	if err := ns.do(fn); err != nil {
		t.Fatal(err)
	}
}

// udpSocket opens a UDP socket bound to addr inside the namespace.
func udpSocket(t testing.TB, nsPath, addr string) *net.UDPConn {
	t.Helper()
	var c net.PacketConn
	inNS(t, nsPath, func() error {
		var err error
		c, err = net.ListenPacket("udp4", addr)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c.(*net.UDPConn)
}

func goroutineLeakCheck(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func fileOf(fd int) *os.File { return os.NewFile(uintptr(fd), "socket") }
