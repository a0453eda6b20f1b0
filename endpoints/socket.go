//go:build linux

package endpoints

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// SocketKind is a socket port's framing.
type SocketKind uint8

// Socket framings.
const (
	// SocketStream is QEMU's -netdev stream: a unix stream socket, each
	// frame preceded by its length as a 4-byte big-endian integer.
	SocketStream SocketKind = iota + 1
	// SocketDgram is QEMU's -netdev dgram: one frame per unix datagram.
	SocketDgram
	// SocketSeqpacket is one frame per message of a unix seqpacket
	// socket: what gVisor's fdbased endpoint reads and writes.
	SocketSeqpacket
)

// String returns "stream", "dgram" or "seqpacket".
func (k SocketKind) String() string {
	switch k {
	case SocketStream:
		return "stream"
	case SocketDgram:
		return "dgram"
	case SocketSeqpacket:
		return "seqpacket"
	}
	return fmt.Sprintf("SocketKind(%d)", uint8(k))
}

// MaxStreamFrame is the largest frame a stream peer may announce: an IP
// datagram of 65535 bytes with its Ethernet header. A length of 0 or above
// it ends the connection (bad_length).
const MaxStreamFrame = 65535 + 14

// Why a socket port closed a connection or refused a peer (the refused
// counters of its stats).
const (
	refusedBusy      = iota // a second peer while one is connected
	refusedBadLength        // a stream length prefix of 0 or above MaxStreamFrame
	refusedShortRead        // a stream peer closed in the middle of a frame
	refusedPeerGone         // the peer closed or its socket went away
	numRefused
)

var refusedNames = [numRefused]string{"busy", "bad_length", "short_read", "peer_gone"}

// SocketOptions configures NewSocket. Exactly one of Listen (stream),
// Connect (stream) and Listen with Peer (dgram) is set.
type SocketOptions struct {
	Kind SocketKind
	// Listen is the path a stream port listens on (QEMU's server=off
	// connects to it) or a dgram port binds (QEMU's remote). A stale
	// socket file there is replaced.
	Listen string
	// Connect is the path of a listening stream peer (QEMU started with
	// server=on); the port connects to it and again whenever it goes.
	Connect string
	// Peer is the path a dgram peer binds (QEMU's local): frames go
	// there, and only frames from there are taken.
	Peer string
	// MAC is what LinkAddress reports (a socket has no address of its
	// own); MTU the IP MTU (default 1500). Frames above it are segmented
	// in software, as the peer takes no virtio-net header.
	MAC net.HardwareAddr
	MTU uint32
	// Retry bounds the wait between reconnection attempts (default 2 s;
	// the first waits 50 ms, then it doubles).
	Retry time.Duration
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
}

// Socket is a switch port on a unix socket a VM or a user-mode guest talks
// to: QEMU's -netdev stream (listening, or connecting to a QEMU server),
// -netdev dgram, or a socket pair handed to a sandbox (NewSocketFD). It is
// built on the queue engine with one queue, the peer's connection, which
// comes and goes: a port with no peer has no link (LinkNotifier reports
// down), a new peer brings it up with the same MAC and mode. One peer at a
// time: a second connection is refused and counted. No virtio-net header
// crosses a socket, so GSO frames are segmented in software.
//
// Ownership: the endpoint owns its listening socket, its connections and
// the socket files it created, and closes and removes them in Close.
type Socket struct {
	engine
	kind    SocketKind
	listen  string
	connect string
	peer    string
	retry   time.Duration
	handoff bool // NewSocketFD: no reconnection; the port dies with its peer

	ln  *net.UnixListener // stream listen
	dfd int               // dgram: our bound socket, connected to the peer when it is there

	connects atomic.Uint64
	refused  [numRefused]atomic.Uint64

	linkMu sync.Mutex // orders calls of onLink
	onLink func(up bool, mtu uint32, mac tcpip.LinkAddress)

	dead      chan struct{} // the peer's queue died
	quit      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ stack.LinkEndpoint = (*Socket)(nil)
	_ stack.GSOEndpoint  = (*Socket)(nil)
)

// NewSocket opens a socket port: it starts listening, or starts trying to
// connect to its peer. The port has no link until a peer is there.
func NewSocket(opts SocketOptions) (*Socket, error) {
	s := newSocket(opts.Kind, opts.MAC, opts.MTU, opts.Logger)
	s.listen, s.connect, s.peer = opts.Listen, opts.Connect, opts.Peer
	s.retry = opts.Retry
	if s.retry <= 0 {
		s.retry = 2 * time.Second
	}
	var err error
	switch {
	case opts.Kind == SocketStream && opts.Listen != "" && opts.Connect == "":
		err = s.startListen()
	case opts.Kind == SocketStream && opts.Connect != "" && opts.Listen == "":
		s.wg.Add(1)
		go s.connectLoop()
	case opts.Kind == SocketDgram && opts.Listen != "" && opts.Peer != "":
		err = s.startDgram()
	default:
		err = fmt.Errorf("socket port: want a stream with listen or connect, or a dgram with listen and peer")
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// NewSocketFD makes a port of a connected socket handed to a peer (one
// end of a socketpair whose other end the caller passes on, SCM_RIGHTS or
// inheritance), of kind SocketSeqpacket, SocketStream or SocketDgram. The
// endpoint owns fd. When the peer closes its end, the port loses its link
// for good.
func NewSocketFD(fd int, kind SocketKind, mac net.HardwareAddr, mtu uint32, log *slog.Logger) (*Socket, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("socket port: %w", err)
	}
	s := newSocket(kind, mac, mtu, log)
	s.handoff = true
	s.mu.Lock()
	err := s.setFDLocked(0, fd, nil)
	s.mu.Unlock()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	s.connects.Add(1)
	s.wg.Add(1)
	go s.watchLoop()
	return s, nil
}

func newSocket(kind SocketKind, mac net.HardwareAddr, mtu uint32, log *slog.Logger) *Socket {
	s := &Socket{kind: kind, dfd: -1, dead: make(chan struct{}, 1), quit: make(chan struct{})}
	e := &s.engine
	switch kind {
	case SocketStream:
		e.newReader, e.newWriter = newStreamReader, newStreamWriter
	default:
		e.newReader = func(q *fdQueue) reader {
			r := newMMsgReader(q, false)
			r.eofOnEmpty = kind == SocketSeqpacket
			return r
		}
		e.newWriter = newMMsgWriter
	}
	if mtu == 0 {
		mtu = 1500
	}
	e.mtu.Store(mtu)
	addr := tcpip.LinkAddress(mac)
	e.mac.Store(&addr)
	e.init("socket", kind.String(), log)
	e.setQueues([]int{-1})
	e.onDead = func(_ *fdQueue, err error) {
		switch {
		case errors.Is(err, errBadLength):
			s.refused[refusedBadLength].Add(1)
		case errors.Is(err, errShortRead):
			s.refused[refusedShortRead].Add(1)
		default:
			s.refused[refusedPeerGone].Add(1)
		}
		select {
		case s.dead <- struct{}{}:
		default:
		}
	}
	return s
}

// RemoveStaleSocket removes path if it is a unix socket (left by a
// process that crashed), and refuses to touch anything else: a daemon
// running as root must not delete a file because a socket path named it.
func RemoveStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("%s exists and is not a socket (%s): refusing to replace it", path, fi.Mode().Type())
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// startListen listens on the stream path and starts accepting.
func (s *Socket) startListen() error {
	if err := RemoveStaleSocket(s.listen); err != nil {
		return fmt.Errorf("socket port: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.listen, Net: "unix"})
	if err != nil {
		return fmt.Errorf("socket port: listen %s: %w", s.listen, err)
	}
	ln.SetUnlinkOnClose(true)
	s.ln = ln
	s.setName(s.listen)
	s.wg.Add(2)
	go s.acceptLoop()
	go s.watchLoop()
	return nil
}

// acceptLoop takes one peer at a time; a second is refused.
func (s *Socket) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		if s.connected() {
			s.refused[refusedBusy].Add(1)
			s.log.Warn("socket port: a second peer refused", "socket", s.listen)
			c.Close()
			continue
		}
		s.adopt(c)
	}
}

// adopt makes connection c the port's peer.
func (s *Socket) adopt(c *net.UnixConn) {
	f, err := c.File() // a dup, blocking: made non-blocking below
	c.Close()
	if err != nil {
		s.log.Warn("socket port: take connection", "err", err)
		return
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		s.log.Warn("socket port: take connection", "err", err)
		return
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return
	}
	s.mu.Lock()
	err = s.setFDLocked(0, fd, nil)
	s.mu.Unlock()
	if err != nil {
		unix.Close(fd)
		return
	}
	s.connects.Add(1)
	s.log.Info("socket port: peer connected", "socket", s.Name())
	s.notifyLink(true)
}

// connectLoop connects to a listening stream peer, and again (with
// backoff) whenever it goes.
func (s *Socket) connectLoop() {
	defer s.wg.Done()
	s.setName(s.connect)
	wait := 50 * time.Millisecond
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: s.connect, Net: "unix"})
		if err == nil {
			wait = 50 * time.Millisecond
			s.adopt(c)
			if !s.waitDead() {
				return
			}
			continue
		}
		select {
		case <-s.quit:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.retry)
	}
}

// startDgram binds the dgram path and starts looking for the peer.
func (s *Socket) startDgram() error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket port: %w", err)
	}
	if err := RemoveStaleSocket(s.listen); err != nil {
		unix.Close(fd)
		return fmt.Errorf("socket port: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: s.listen}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("socket port: bind %s: %w", s.listen, err)
	}
	for _, o := range []int{unix.SO_RCVBUF, unix.SO_SNDBUF} {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, socketBuffer)
	}
	s.dfd = fd
	s.setName(s.listen)
	s.wg.Add(1)
	go s.dgramLoop()
	return nil
}

// dgramLoop connects the bound socket to the peer's path whenever the peer
// is not there (yet, or again after it went: ECONNREFUSED on a send).
func (s *Socket) dgramLoop() {
	defer s.wg.Done()
	wait := 50 * time.Millisecond
	for {
		if err := unix.Connect(s.dfd, &unix.SockaddrUnix{Name: s.peer}); err == nil {
			wait = 50 * time.Millisecond
			fd, err := unix.Dup(s.dfd)
			if err == nil {
				unix.CloseOnExec(fd)
				s.mu.Lock()
				err = s.setFDLocked(0, fd, nil)
				s.mu.Unlock()
			}
			if err == nil {
				s.connects.Add(1)
				s.log.Info("socket port: dgram peer there", "socket", s.listen, "peer", s.peer)
				s.notifyLink(true)
				if !s.waitDead() {
					return
				}
				// Disconnect (AF_UNSPEC) before looking again.
				_ = unix.Connect(s.dfd, &unix.SockaddrUnix{})
				continue
			}
		}
		select {
		case <-s.quit:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.retry)
	}
}

// watchLoop turns a dead peer into no link, for listening and handed-off
// ports (the connecting ones watch in their own loops).
func (s *Socket) watchLoop() {
	defer s.wg.Done()
	for s.waitDead() {
	}
}

// waitDead waits until the peer's queue dies and then lets the peer go:
// false once the endpoint is closing.
func (s *Socket) waitDead() bool {
	select {
	case <-s.quit:
		return false
	case <-s.dead:
	}
	s.mu.Lock()
	s.dropFDLocked(0)
	s.mu.Unlock()
	s.log.Info("socket port: peer gone", "socket", s.Name(), "why", s.queueList()[0].c.lastErr())
	s.notifyLink(false)
	return !s.handoff
}

// connected reports whether a peer is there.
func (s *Socket) connected() bool {
	return QueueState(s.queueList()[0].state.Load()) != QueueDead
}

// SetLinkFunc installs f (nil removes it), called at once with the port's
// link, then whenever a peer comes or goes: up means a peer is there. It
// implements bridge.LinkNotifier.
func (s *Socket) SetLinkFunc(f func(up bool, mtu uint32, mac tcpip.LinkAddress)) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	s.onLink = f
	if f != nil {
		f(s.connected(), s.mtu.Load(), s.LinkAddress())
	}
}

func (s *Socket) notifyLink(up bool) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.onLink != nil {
		s.onLink(up, s.mtu.Load(), s.LinkAddress())
	}
}

// SetDeviceMAC implements bridge.DeviceConfigurer: a socket has no device,
// so it only reports the port's MAC from now on.
func (s *Socket) SetDeviceMAC(mac tcpip.LinkAddress) error {
	s.mac.Store(&mac)
	return nil
}

// SetDeviceMTU implements bridge.DeviceConfigurer: frames above the MTU
// are segmented for the peer from now on.
func (s *Socket) SetDeviceMTU(mtu uint32) error {
	s.mtu.Store(mtu)
	return nil
}

// Kind returns the socket's framing.
func (s *Socket) Kind() SocketKind { return s.kind }

// Stats returns the queue's counters, the peers taken and why
// connections were refused or closed.
func (s *Socket) Stats() counters.Endpoint {
	st := s.engine.Stats()
	st.Connects = s.connects.Load()
	var v [numRefused]uint64
	for i := range v {
		v[i] = s.refused[i].Load()
	}
	st.Refused = counters.NewDrops(refusedNames[:], v[:])
	return st
}

// Close implements stack.LinkEndpoint.Close: it stops accepting and
// reconnecting, closes the peer's connection, and removes the socket file
// it created. Idempotent.
func (s *Socket) Close() {
	s.closeOnce.Do(func() {
		close(s.quit)
		if s.ln != nil {
			s.ln.Close() // removes the file
		}
		s.closeQueues()
		s.wg.Wait()
		if s.dfd >= 0 {
			unix.Close(s.dfd)
			_ = RemoveStaleSocket(s.listen)
		}
	})
}

// errBadLength and errShortRead end a stream connection.
var (
	errBadLength = errors.New("bad frame length")
	errShortRead = errors.New("peer closed in the middle of a frame")
)
