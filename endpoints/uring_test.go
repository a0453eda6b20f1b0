//go:build linux

package endpoints

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// batchRecorder is a recorder that is also a BatchDispatcher: it checks
// that batches are bracketed and remembers the largest.
type batchRecorder struct {
	*recorder
	mu       sync.Mutex
	open     bool
	cur, max int
	bad      string
}

func (r *batchRecorder) BeginBatch(int) {
	r.mu.Lock()
	if r.open {
		r.bad = "BeginBatch inside a batch"
	}
	r.open, r.cur = true, 0
	r.mu.Unlock()
}

func (r *batchRecorder) EndBatch(int) {
	r.mu.Lock()
	if !r.open {
		r.bad = "EndBatch outside a batch"
	}
	r.open = false
	r.max = max(r.max, r.cur)
	r.mu.Unlock()
}

func (r *batchRecorder) DeliverQueuePacket(q int, pkt *stack.PacketBuffer) {
	r.mu.Lock()
	if r.open {
		r.cur++
	}
	r.mu.Unlock()
	r.recorder.DeliverQueuePacket(q, pkt)
}

// TestTapBatchedIO writes and reads a burst through a tap queue with each
// I/O strategy and virtio-net header size: every frame arrives whole, in
// order, with its header. The io_uring strategy must actually batch: the
// reader hands the dispatcher bracketed batches.
func TestTapBatchedIO(t *testing.T) {
	const burst = 40
	frames := make([][]byte, burst)
	for i := range frames {
		frames[i] = udpFrame(peerMAC, tapMAC, peerIP, tapIP, uint16(1000+i), 2, bytes.Repeat([]byte{byte(i)}, 10+i))
	}
	for _, syscallIO := range []bool{true, false} {
		for _, hs := range []int{VnetHdrSize, VnetHdrMrgSize, 20} {
			t.Run(fmt.Sprintf("syscall=%v/hdr=%d", syscallIO, hs), func(t *testing.T) {
				goroutineLeakCheck(t)
				tap, dev := socketpairTap(t, TapOptions{VnetHdrSize: hs, SyscallIO: syscallIO})
				// Transmit: one WritePackets call with the whole burst.
				var l stack.PacketBufferList
				for _, f := range frames {
					l.PushBack(packetOf(f))
				}
				n, err := tap.WritePackets(l)
				l.DecRef()
				if n != burst || err != nil {
					t.Fatalf("WritePackets = %d, %v; want %d", n, err, burst)
				}
				buf := make([]byte, 4096)
				for i, f := range frames {
					m, err := unix.Read(dev, buf)
					if err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					want := append(make([]byte, hs), f...)
					if !bytes.Equal(buf[:m], want) {
						t.Fatalf("frame %d on the wire:\n got %x\nwant %x", i, buf[:m], want)
					}
				}
				if st := tap.Stats().Total(); st.TxPackets != burst {
					t.Errorf("tx_packets = %d, want %d", st.TxPackets, burst)
				}
				// Receive: the burst is queued before the reader starts.
				for _, f := range frames {
					if _, err := unix.Write(dev, append(make([]byte, hs), f...)); err != nil {
						t.Fatal(err)
					}
				}
				rec := &batchRecorder{recorder: newRecorder()}
				tap.Attach(rec)
				defer tap.Attach(nil)
				deadline := time.Now().Add(5 * time.Second)
				got := rec.snapshot()
				for ; len(got) < burst && time.Now().Before(deadline); got = rec.snapshot() {
					time.Sleep(10 * time.Millisecond)
				}
				if len(got) != burst {
					t.Fatalf("read %d frames, want %d", len(got), burst)
				}
				for i, f := range frames {
					if !bytes.Equal(got[i].data, f) {
						t.Fatalf("frame %d read:\n got %x\nwant %x", i, got[i].data, f)
					}
				}
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if rec.bad != "" {
					t.Error(rec.bad)
				}
				if syscallIO && rec.max != 0 {
					t.Errorf("readv reader delivered a batch of %d", rec.max)
				}
				if !syscallIO && uringWorks(t) && rec.max < 2 {
					t.Errorf("io_uring reader: largest batch %d, want several frames per batch", rec.max)
				}
			})
		}
	}
}

// uringWorks reports whether this kernel gives us an io_uring; where it
// does not, taps fall back to readv/writev and tests say so.
func uringWorks(t *testing.T) bool {
	r, err := newUring(2)
	if err != nil {
		t.Logf("io_uring unavailable, taps use readv/writev: %v", err)
		return false
	}
	r.close()
	return true
}

// TestTapBatchWriteNoAlloc: a batch through the io_uring writer allocates
// nothing per frame.
func TestTapBatchWriteNoAlloc(t *testing.T) {
	tap, dev := socketpairTap(t, TapOptions{})
	var l stack.PacketBufferList
	for i := 0; i < 8; i++ {
		p := packetOf(udpFrame(peerMAC, tapMAC, peerIP, tapIP, uint16(i), 2, make([]byte, 100)))
		defer p.DecRef()
		l.PushBack(p)
	}
	buf := make([]byte, 2000)
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := tap.WritePackets(l); n != 8 || err != nil {
			t.Fatalf("WritePackets = %d, %v", n, err)
		}
		for i := 0; i < 8; i++ {
			unix.Read(dev, buf)
		}
	})
	if allocs != 0 {
		t.Errorf("WritePackets of 8 allocs = %v, want 0", allocs)
	}
}

// TestURingNowait: a read on an empty nonblocking FD completes at once
// with EAGAIN instead of waiting in the ring, so submit never blocks.
func TestURingNowait(t *testing.T) {
	r, err := newUring(4)
	if err != nil {
		t.Skipf("io_uring unavailable here: %v", err)
	}
	defer r.close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	unix.Write(fds[1], []byte("one"))
	bufs := [3][8]byte{}
	iovs := make([][]unix.Iovec, 3)
	for i := range iovs {
		iovs[i] = []unix.Iovec{{Base: &bufs[i][0]}}
		iovs[i][0].SetLen(8)
		r.prep(uringOpReadv, fds[0], iovs[i])
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.submit(); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("submit blocked on an empty FD")
	}
	if r.res[0] != 3 || string(bufs[0][:3]) != "one" {
		t.Errorf("first read: %d %q", r.res[0], bufs[0][:3])
	}
	for i := 1; i < 3; i++ {
		if r.res[i] != -int32(unix.EAGAIN) {
			t.Errorf("read %d on the empty FD: %d, want -EAGAIN", i, r.res[i])
		}
	}
}

// BenchmarkNetnsTapWriteSyscalls compares one writev per frame with one
// io_uring_enter per batch of writevs, raw, on a tap queue FD.
func BenchmarkNetnsTapWriteSyscalls(b *testing.B) {
	requireNetns(b)
	_, path := newNetns(b)
	tap, err := NewTap(TapOptions{Name: "mvtapu", NetNS: path, Queues: 1, MAC: net.HardwareAddr(tapMAC)})
	if err != nil {
		b.Fatal(err)
	}
	defer tap.Close()
	fd := tap.queueList()[0].fd
	other := tcpip.LinkAddress("\x02\x00\x00\x00\x99\x99")
	frame := udpFrame(peerMAC, other, peerIP, tapIP, 1000, 2000, make([]byte, 22))
	hdr := make([]byte, VnetHdrMrgSize)
	iov := []unix.Iovec{{Base: &hdr[0]}, {Base: &frame[0]}}
	iov[0].SetLen(len(hdr))
	iov[1].SetLen(len(frame))
	b.Run("writev", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if e := writevFD(fd, iov); e != 0 {
				b.Fatal(e)
			}
		}
	})
	for _, batch := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("uring/%d", batch), func(b *testing.B) {
			r, err := newUring(batch)
			if err != nil {
				b.Skip(err)
			}
			defer r.close()
			for i := 0; i < b.N; {
				k := min(batch, b.N-i)
				for j := 0; j < k; j++ {
					r.prep(uringOpWritev, fd, iov)
				}
				if err := r.submit(); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < k; j++ {
					if r.res[j] < 0 {
						b.Fatal(unix.Errno(-r.res[j]))
					}
				}
				i += k
			}
		})
	}
}

// echoOnce is a dispatcher that, while the first frame is being
// delivered, writes a second one into the device and lets the poller see
// it before the reader looks again.
type echoOnce struct {
	*recorder
	dev  int
	once sync.Once
	next []byte
}

func (e *echoOnce) DeliverQueuePacket(q int, pkt *stack.PacketBuffer) {
	e.recorder.DeliverQueuePacket(q, pkt)
	e.once.Do(func() {
		unix.Write(e.dev, e.next)
		time.Sleep(50 * time.Millisecond) // the netpoller takes the edge now
	})
}

// TestTapReaderFrameDuringDelivery: a frame that arrives while the reader
// is delivering the last one (after its batch found the queue empty) is
// read at once. Go's poller forgets readiness it saw before a wait
// begins, so a reader that skipped its look after an empty batch left
// such a frame in the queue until another came.
func TestTapReaderFrameDuringDelivery(t *testing.T) {
	for _, syscallIO := range []bool{true, false} {
		t.Run(fmt.Sprintf("syscall=%v", syscallIO), func(t *testing.T) {
			tap, dev := socketpairTap(t, TapOptions{SyscallIO: syscallIO})
			f1 := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, []byte("first"))
			f2 := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, []byte("second"))
			d := &echoOnce{recorder: newRecorder(), dev: dev, next: append(make([]byte, VnetHdrMrgSize), f2...)}
			tap.Attach(d)
			defer tap.Attach(nil)
			unix.Write(dev, append(make([]byte, VnetHdrMrgSize), f1...))
			deadline := time.Now().Add(3 * time.Second)
			for len(d.snapshot()) < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := d.snapshot(); len(got) != 2 || !bytes.Equal(got[1].data, f2) {
				t.Fatalf("read %d frames in 3s, want both", len(got))
			}
		})
	}
}

// TestNetnsTapBatchWhileDown: the sandbox takes its interface down while
// batches go out through the ring. Each refused frame is counted, the
// queue stays up, and batches go out again once the interface is back.
func TestNetnsTapBatchWhileDown(t *testing.T) {
	requireNetns(t)
	tap, ns, _ := newTestTap(t, 1, TapOptions{})
	batch := func() int {
		var l stack.PacketBufferList
		for i := 0; i < 8; i++ {
			l.PushBack(packetOf(udpFrame(tapMAC, peerMAC, tapIP, peerIP, uint16(i), 2, make([]byte, 100))))
		}
		defer l.DecRef()
		n, _ := tap.WritePackets(l)
		return n
	}
	if n := batch(); n != 8 {
		t.Fatalf("up: wrote %d of 8", n)
	}
	nsRun(t, ns, "ip", "link", "set", "mvtap0", "down")
	before := tap.Stats().Total()
	if n := batch(); n != 0 {
		t.Errorf("down: wrote %d of 8, want 0", n)
	}
	after := tap.Stats().Total()
	if got := after.TxDrops.Total() - before.TxDrops.Total(); got != 8 {
		t.Errorf("down: %d frames counted dropped, want 8", got)
	}
	if after.State != "up" {
		t.Errorf("queue state %q after the sandbox's link went down, want up", after.State)
	}
	nsRun(t, ns, "ip", "link", "set", "mvtap0", "up")
	if n := batch(); n != 8 {
		t.Errorf("back up: wrote %d of 8", n)
	}
}
