package bridge

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
)

// BenchmarkPortPairs measures frames moving between two bridge-mode
// ports of one switch, as their sandboxes see it: a sender writes frames
// into its side of port A as fast as it can, a receiver reads them on its
// side of port B. Socket ports' sides are the peer ends of socket pairs
// (seqpacket: the FD hand-off and gVisor's fdbased; stream: QEMU's
// framing); a tap port's side is an AF_PACKET socket on the tap netdev in
// its namespace (root only). Each run reports frames/s and Gbit/s
// delivered, and the share lost (a tap's queue or the port's queue
// overflowing: neither gives the sender backpressure).
//
//	go test -run '^$' -bench PortPairs -benchtime 200000x ./bridge   # as root for the tap pairs
func BenchmarkPortPairs(b *testing.B) {
	for _, pair := range [][2]string{{"seqpacket", "seqpacket"}, {"stream", "stream"}, {"seqpacket", "tap"}, {"tap", "tap"}} {
		for _, size := range []int{64, 1500} {
			b.Run(fmt.Sprintf("%s-%s/%d", pair[0], pair[1], size), func(b *testing.B) {
				benchPair(b, pair[0], pair[1], size)
			})
		}
	}
}

// side is a sandbox's end of a port: it sends and receives whole frames.
type side struct {
	fd     int
	stream bool // 4-byte big-endian length before each frame
	close  func()
}

func (s *side) send(frame []byte, buf []byte) error {
	if s.stream {
		binary.BigEndian.PutUint32(buf, uint32(len(frame)))
		n := copy(buf[4:], frame)
		_, err := unix.Write(s.fd, buf[:4+n])
		return err
	}
	_, err := unix.Write(s.fd, frame)
	return err
}

// recvLoop counts the frames of size bytes that arrive, until stop.
func (s *side) recvLoop(size int, got *atomic.Int64, stop <-chan struct{}) {
	buf := make([]byte, 1<<17)
	pending := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := unix.Read(s.fd, buf[pending:])
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			return
		}
		if !s.stream {
			if n == size {
				got.Add(1)
			}
			continue
		}
		pending += n
		for pending >= 4 {
			l := int(binary.BigEndian.Uint32(buf))
			if pending < 4+l {
				break
			}
			if l == size {
				got.Add(1)
			}
			copy(buf, buf[4+l:pending])
			pending -= 4 + l
		}
	}
}

func benchPair(b *testing.B, kindA, kindB string, size int) {
	if (kindA == "tap" || kindB == "tap") && os.Geteuid() != 0 {
		b.Skip("tap ports need root")
	}
	sw := New(Options{})
	defer sw.Close()
	macA, macB := net.HardwareAddr{2, 0, 0, 0, 0xbe, 1}, net.HardwareAddr{2, 0, 0, 0, 0xbe, 2}
	a := addBenchPort(b, sw, "a", kindA, macA)
	defer a.close()
	bb := addBenchPort(b, sw, "b", kindB, macB)
	defer bb.close()

	frame := make([]byte, size)
	copy(frame[0:], macB)
	copy(frame[6:], macA)
	binary.BigEndian.PutUint16(frame[12:], 0x88b5) // local experimental ethertype
	var got atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { bb.recvLoop(size, &got, stop); close(done) }()
	buf := make([]byte, 4+size)
	// Warm up: the first frames find the ports' goroutines parked.
	for range 100 {
		a.send(frame, buf)
	}
	time.Sleep(50 * time.Millisecond)
	start := got.Load()
	b.ResetTimer()
	t0 := time.Now()
	for range b.N {
		if err := a.send(frame, buf); err != nil && err != unix.ENOBUFS && err != unix.EAGAIN {
			b.Fatal(err)
		}
	}
	// Let what is in flight arrive.
	for last := int64(-1); ; {
		time.Sleep(20 * time.Millisecond)
		n := got.Load()
		if n-start >= int64(b.N) || n == last {
			break
		}
		last = n
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	close(stop)
	bb.close() // unblocks the reader
	<-done
	delivered := got.Load() - start
	b.ReportMetric(float64(delivered)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(delivered)*float64(size)*8/elapsed.Seconds()/1e9, "Gbit/s")
	b.ReportMetric(100*float64(int64(b.N)-delivered)/float64(b.N), "%lost")
}

// addBenchPort adds a bridge-mode port of kind and returns its sandbox
// side.
func addBenchPort(b *testing.B, sw *Switch, name, kind string, mac net.HardwareAddr) *side {
	cfg := vswitch.PortConfig{Name: name, Mode: vswitch.ModeBridge, MAC: vswitch.MAC(mac), QueueLen: 4096}
	switch kind {
	case "seqpacket", "stream":
		typ, sk := unix.SOCK_SEQPACKET, endpoints.SocketSeqpacket
		if kind == "stream" {
			typ, sk = unix.SOCK_STREAM, endpoints.SocketStream
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		for _, fd := range fds {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		}
		ep, err := endpoints.NewSocketFD(fds[0], sk, mac, 1500, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sw.AddPort(cfg, ep, PortOptions{}); err != nil {
			b.Fatal(err)
		}
		once := false
		return &side{fd: fds[1], stream: kind == "stream", close: func() {
			if !once {
				once = true
				unix.Shutdown(fds[1], unix.SHUT_RDWR)
				unix.Close(fds[1])
			}
		}}
	case "tap":
		ns := fmt.Sprintf("mvsbench%d%s", os.Getpid(), name)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v %s", err, out)
		}
		nsPath := "/var/run/netns/" + ns
		ep, err := endpoints.NewTap(endpoints.TapOptions{Name: "eth0", NetNS: nsPath, MAC: mac, MTU: 1500})
		if err != nil {
			exec.Command("ip", "netns", "delete", ns).Run()
			b.Fatal(err)
		}
		if _, err := sw.AddPort(cfg, ep, PortOptions{}); err != nil {
			b.Fatal(err)
		}
		exec.Command("ip", "-n", ns, "link", "set", "eth0", "up").Run()
		fd := packetSocketIn(b, nsPath, "eth0")
		once := false
		return &side{fd: fd, close: func() {
			if !once {
				once = true
				unix.Close(fd)
				exec.Command("ip", "netns", "delete", ns).Run()
			}
		}}
	}
	b.Fatalf("unknown port kind %q", kind)
	return nil
}

// packetSocketIn opens an AF_PACKET socket on ifname in the namespace at
// nsPath: the sandbox's side of a tap.
func packetSocketIn(b *testing.B, nsPath, ifname string) int {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// This thread enters the namespace and is never reused.
		runtime.LockOSThread()
		nsfd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{-1, err}
			return
		}
		defer unix.Close(nsfd)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ch <- res{-1, err}
			return
		}
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- res{-1, err}
			return
		}
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			ch <- res{-1, err}
			return
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		ch <- res{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		b.Fatalf("packet socket in %s: %v", nsPath, r.err)
	}
	return r.fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
