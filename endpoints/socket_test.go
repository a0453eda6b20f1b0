//go:build linux

package endpoints

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkLog records what a socket port reports through SetLinkFunc.
type linkLog struct {
	mu  sync.Mutex
	ups []bool
	ch  chan bool
}

func watchSocketLink(s *Socket) *linkLog {
	l := &linkLog{ch: make(chan bool, 64)}
	s.SetLinkFunc(func(up bool, _ uint32, _ tcpip.LinkAddress) {
		l.mu.Lock()
		l.ups = append(l.ups, up)
		l.mu.Unlock()
		l.ch <- up
	})
	return l
}

// wait waits for the link to be reported in state up.
func (l *linkLog) wait(t *testing.T, up bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-l.ch:
			if got == up {
				return
			}
		case <-deadline:
			t.Fatalf("link never reported %v (saw %v)", up, l.ups)
		}
	}
}

func framed(f []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(f))), f...)
}

// readFramed reads one length-prefixed frame from c.
func readFramed(t *testing.T, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [4]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatalf("read length: %v", err)
	}
	f := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(c, f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

// TestSocketStreamListen: QEMU's stream framing both ways, one peer at a
// time, a peer's departure and a new one, and a bad length that closes
// only that connection, all counted.
func TestSocketStreamListen(t *testing.T) {
	goroutineLeakCheck(t)
	path := filepath.Join(t.TempDir(), "vm.sock")
	s, err := NewSocket(SocketOptions{Kind: SocketStream, Listen: path, MAC: net.HardwareAddr(tapMAC)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	links := watchSocketLink(s)
	rec := newRecorder()
	s.Attach(rec)
	defer s.Attach(nil)

	c1, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	links.wait(t, true)
	// Frames from the peer, several in one write, split across writes.
	f1 := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, []byte("one"))
	f2 := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, []byte("two"))
	all := append(framed(f1), framed(f2)...)
	c1.Write(all[:7])
	time.Sleep(20 * time.Millisecond)
	c1.Write(all[7:])
	rec.wait(t, 5*time.Second, func(f recFrame) bool { return bytes.Equal(f.data, f2) })
	if got := rec.snapshot(); len(got) != 2 || !bytes.Equal(got[0].data, f1) {
		t.Fatalf("delivered %d frames", len(got))
	}
	// Frames to the peer, framed.
	out := udpFrame(tapMAC, peerMAC, tapIP, peerIP, 2, 1, []byte("back"))
	writeFrames(t, s, 0, out, out)
	if got := readFramed(t, c1); !bytes.Equal(got, out) {
		t.Errorf("peer read % x", got[:20])
	}
	readFramed(t, c1)

	// A second peer is refused while the first is there.
	c2, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("second peer: read %d, %v; want EOF", n, err)
	}
	c2.Close()

	// The peer goes: no link; a new one: link again.
	c1.Close()
	links.wait(t, false)
	c3, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	links.wait(t, true)
	// A zero length closes this connection only.
	c3.Write([]byte{0, 0, 0, 0})
	links.wait(t, false)
	c4, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	links.wait(t, true)
	c4.Write(framed(f1))
	for deadline := time.Now().Add(5 * time.Second); len(rec.snapshot()) < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the frame from the fourth peer never arrived")
		}
	}

	st := s.Stats()
	for _, want := range []struct {
		reason string
		n      uint64
	}{{"busy", 1}, {"bad_length", 1}, {"peer_gone", 1}} {
		if got := st.Refused.Get(want.reason); got != want.n {
			t.Errorf("refused %s = %d, want %d (%v)", want.reason, got, want.n, st.Refused)
		}
	}
	if st.Connects != 3 {
		t.Errorf("connects %d, want 3", st.Connects)
	}
}

// TestSocketStreamStalledPeer: a peer that stops reading fills its socket;
// the port drops and counts what does not fit, never blocks, and the
// stream stays whole: every frame the peer later reads parses.
func TestSocketStreamStalledPeer(t *testing.T) {
	goroutineLeakCheck(t)
	s, c := streamPeer(t)
	f := udpFrame(tapMAC, peerMAC, tapIP, peerIP, 2, 1, make([]byte, 1400))
	start := time.Now()
	for i := 0; i < 3000; i++ {
		writeFramesQuiet(s, f)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("3000 writes to a stalled peer took %v: the port blocked", d)
	}
	st := s.Stats().Total()
	if st.TxDrops[DropTxFull].Count == 0 {
		t.Fatalf("no tx_full drops toward a stalled peer: %+v", st)
	}
	// Read everything: whole frames, all equal to f.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n := 0
	for {
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			break
		}
		got := make([]byte, binary.BigEndian.Uint32(l[:]))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, f) {
			t.Fatalf("frame %d broken after a stall: %v, %d bytes", n, err, len(got))
		}
		n++
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	}
	if uint64(n) != st.TxPackets {
		t.Errorf("peer read %d frames, the port counted %d sent", n, st.TxPackets)
	}
	t.Logf("stalled peer: %d frames sent, %d dropped as tx_full", st.TxPackets, st.TxDrops[DropTxFull].Count)
}

// streamPeer makes a listening stream port and connects to it as a VM
// would; both close with the test.
func streamPeer(t *testing.T) (*Socket, net.Conn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vm.sock")
	s, err := NewSocket(SocketOptions{Kind: SocketStream, Listen: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	links := watchSocketLink(s)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	links.wait(t, true)
	return s, c
}

func writeFramesQuiet(w stack.LinkWriter, frames ...[]byte) {
	var l stack.PacketBufferList
	for _, f := range frames {
		l.PushBack(packetOf(f))
	}
	w.WritePackets(l)
	l.Reset()
}

// TestSocketStreamConnect: the port connects to a listening peer (QEMU
// server=on) and again after the peer restarts.
func TestSocketStreamConnect(t *testing.T) {
	goroutineLeakCheck(t)
	path := filepath.Join(t.TempDir(), "qemu.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSocket(SocketOptions{Kind: SocketStream, Connect: path, Retry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	links := watchSocketLink(s)
	s.Attach(newRecorder()) // the reader is what sees the peer go
	defer s.Attach(nil)
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	links.wait(t, true)
	c.Close()
	ln.Close() // the peer restarts
	links.wait(t, false)
	ln, err = net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	links.wait(t, true)
	out := udpFrame(tapMAC, peerMAC, tapIP, peerIP, 2, 1, []byte("again"))
	writeFrames(t, s, 0, out)
	if got := readFramed(t, c); !bytes.Equal(got, out) {
		t.Errorf("after reconnecting, peer read % x", got)
	}
}

// TestSocketDgram: one frame per datagram with a peer that binds its own
// path (QEMU's -netdev dgram), and a peer that goes and comes back.
func TestSocketDgram(t *testing.T) {
	goroutineLeakCheck(t)
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "sw.sock"), filepath.Join(dir, "vm.sock")
	s, err := NewSocket(SocketOptions{Kind: SocketDgram, Listen: ours, Peer: theirs, Retry: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	links := watchSocketLink(s)
	rec := newRecorder()
	s.Attach(rec)
	defer s.Attach(nil)
	peer, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: theirs, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	links.wait(t, true)
	f := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, []byte("dgram"))
	if _, err := peer.WriteToUnix(f, &net.UnixAddr{Name: ours, Net: "unixgram"}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 5*time.Second, func(r recFrame) bool { return bytes.Equal(r.data, f) })
	out := udpFrame(tapMAC, peerMAC, tapIP, peerIP, 2, 1, []byte("to vm"))
	writeFrames(t, s, 0, out)
	buf := make([]byte, 2000)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer.Read(buf); err != nil || !bytes.Equal(buf[:n], out) {
		t.Fatalf("peer read %d, %v", n, err)
	}
	// The peer goes (its socket closed and unlinked): the next send finds
	// out; a new peer on the same path brings the link back.
	peer.Close()
	writeFramesQuiet(s, out)
	links.wait(t, false)
	os.Remove(theirs) // as QEMU does before it binds
	peer, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: theirs, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	links.wait(t, true)
	writeFrames(t, s, 0, out)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := peer.Read(buf); err != nil || !bytes.Equal(buf[:n], out) {
		t.Fatalf("new peer read %d, %v", n, err)
	}
}

// TestSocketSeqpacketFD: a handed-off seqpacket pair: whole frames both
// ways; the peer closing its end takes the link down for good.
func TestSocketSeqpacketFD(t *testing.T) {
	goroutineLeakCheck(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSocketFD(fds[0], SocketSeqpacket, net.HardwareAddr(tapMAC), 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	links := watchSocketLink(s)
	links.wait(t, true)
	rec := newRecorder()
	s.Attach(rec)
	defer s.Attach(nil)
	f := udpFrame(peerMAC, tapMAC, peerIP, tapIP, 1, 2, []byte("seqpacket"))
	unix.Write(fds[1], f)
	rec.wait(t, 5*time.Second, func(r recFrame) bool { return bytes.Equal(r.data, f) })
	out := udpFrame(tapMAC, peerMAC, tapIP, peerIP, 2, 1, []byte("back"))
	writeFrames(t, s, 0, out)
	buf := make([]byte, 2000)
	if n, err := unix.Read(fds[1], buf); err != nil || !bytes.Equal(buf[:n], out) {
		t.Fatalf("peer read %d, %v", n, err)
	}
	unix.Close(fds[1])
	links.wait(t, false)
}

// TestSocketSegments: a TSO super-frame toward a socket peer, which takes
// no virtio-net header, arrives as MTU-sized segments.
func TestSocketSegments(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSocketFD(fds[0], SocketSeqpacket, nil, 1500, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer unix.Close(fds[1])
	tso := frameSpec{payload: 4000, partial: true}
	p := packetWithGSO(tso.build(), stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, CsumOffset: 16, MSS: 1448, L3HdrLen: 20})
	var l stack.PacketBufferList
	l.PushBack(p)
	if n, err := s.WritePackets(l); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v", n, err)
	}
	l.Reset()
	var segs [][]byte
	buf := make([]byte, 70000)
	for len(segs) < 3 {
		n, err := unix.Read(fds[1], buf)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, bytes.Clone(buf[:n]))
	}
	verifySegments(t, tso, segs, 1448)
}

// TestSocketPathNotASocket: a socket port whose path names an existing
// file that is not a socket is refused, and the file is left alone.
func TestSocketPathNotASocket(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "precious")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []SocketOptions{
		{Kind: SocketStream, Listen: victim},
		{Kind: SocketDgram, Listen: victim, Peer: filepath.Join(dir, "peer")},
	} {
		if s, err := NewSocket(opts); err == nil {
			s.Close()
			t.Errorf("%v socket on a regular file: no error", opts.Kind)
		}
		if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
			t.Fatalf("%v socket port touched the file: %q, %v", opts.Kind, b, err)
		}
	}
	// A stale socket is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s, err := NewSocket(SocketOptions{Kind: SocketStream, Listen: stale})
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	s.Close()
}

// TestSocketStreamOrderAfterPartialWrite: a peer that reads slowly makes
// the socket take part of a frame now and then; the rest of that frame
// must go before any later frame, within one WritePackets call and across
// calls, or the peer's framing breaks. Every frame the peer reads parses,
// and their sequence numbers only increase (drops allowed, counted).
func TestSocketStreamOrderAfterPartialWrite(t *testing.T) {
	goroutineLeakCheck(t)
	s, c := streamPeer(t)
	c.(*net.UnixConn).SetReadBuffer(4096)

	const calls, perCall = 200, 200 // several flushes per call (streamBatch 64)
	frame := func(seq int) []byte {
		p := make([]byte, 64+seq%1300)
		binary.BigEndian.PutUint32(p, uint32(seq))
		for i := 4; i < len(p); i++ {
			p[i] = byte(seq)
		}
		return udpFrame(tapMAC, peerMAC, tapIP, peerIP, 2, 1, p)
	}
	read := make(chan error, 1)
	var got int
	go func() {
		last := -1
		for {
			c.SetReadDeadline(time.Now().Add(time.Second))
			var l [4]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				read <- nil
				return
			}
			b := make([]byte, binary.BigEndian.Uint32(l[:]))
			if len(b) > 2000 {
				read <- fmt.Errorf("frame %d: length %d: the stream's framing broke", got, len(b))
				return
			}
			if _, err := io.ReadFull(c, b); err != nil {
				read <- fmt.Errorf("frame %d: %v", got, err)
				return
			}
			seq := int(binary.BigEndian.Uint32(b[42:]))
			if seq <= last || !bytes.Equal(b, frame(seq)) {
				read <- fmt.Errorf("frame %d: seq %d after %d, or its bytes differ", got, seq, last)
				return
			}
			last = seq
			got++
			if got%64 == 0 {
				time.Sleep(50 * time.Microsecond) // a slow reader
			}
		}
	}()
	seq := 0
	for i := 0; i < calls; i++ {
		var fs [][]byte
		for j := 0; j < perCall; j++ {
			fs = append(fs, frame(seq))
			seq++
		}
		writeFramesQuiet(s, fs...)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	st := s.Stats().Total()
	if uint64(got) != st.TxPackets {
		t.Errorf("peer read %d frames, the port counted %d sent", got, st.TxPackets)
	}
	t.Logf("%d frames offered, %d sent, %d tx_full", seq, st.TxPackets, st.TxDrops[DropTxFull].Count)
}
