//go:build linux

package endpoints

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// MaxTapQueues is the kernel's limit of queues per tun/tap device
// (MAX_TAP_QUEUES in include/uapi/linux/if_tun.h users; tun.c).
const MaxTapQueues = 256

// tapOffloads are the TUNSETOFFLOAD bits we ask for: the kernel may then
// hand us partial checksums and TSO super-frames (include/uapi/linux/if_tun.h).
const (
	tapOffloadsTSO = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	tapOffloadsUSO = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// TapOptions configures NewTap and AdoptTap. The zero value opens one queue
// of a kernel-named tap in the caller's network namespace, with a 12-byte
// virtio-net header and offloads on.
type TapOptions struct {
	// Name is the interface name; empty lets the kernel pick "tapN".
	Name string
	// NetNS is the path of the network namespace to create the tap in
	// (/var/run/netns/NAME or /proc/PID/ns/net); empty means the caller's.
	NetNS string
	// Queues is the number of queue FDs to open, 1 to MaxTapQueues
	// (default 1). Ignored by AdoptTap.
	Queues int
	// MAC is set on the interface by NewTap (nil keeps the kernel's random
	// one). For AdoptTap it is only what LinkAddress reports.
	MAC net.HardwareAddr
	// MTU is the interface (IP) MTU. NewTap sets it when non-zero; 0 keeps
	// the kernel's. AdoptTap uses it as the endpoint MTU (default 1500).
	MTU uint32
	// Addresses are CIDR strings ("10.0.0.1/24", "fd00::1/64") that NewTap
	// adds to the interface.
	Addresses []string
	// NoVnetHdr opens the tap without IFF_VNET_HDR; offloads are then off.
	NoVnetHdr bool
	// NoOffloads keeps the virtio-net header but asks the kernel for no
	// offloads, and makes the endpoint segment GSO and complete partial
	// checksums before writing.
	NoOffloads bool
	// VnetHdrSize is the virtio-net header size set with TUNSETVNETHDRSZ;
	// 0 means VnetHdrMrgSize (12). For AdoptTap of an FD that is not a tap
	// (a socketpair standing in for a device) it is the header size both
	// sides use.
	VnetHdrSize int
	// OnQueueState, if set, is called when a queue goes down (FD error,
	// DetachQueue) or comes back (AttachFD, AttachQueue). It runs on the
	// goroutine that noticed the change and must not block.
	OnQueueState func(q int, up bool)
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
}

// Tap is a multi-queue tap endpoint: a stack.LinkEndpoint over one FD per
// queue of a tun/tap device opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR|
// IFF_MULTI_QUEUE.
//
// Receive: while attached, one goroutine per queue (rxLoop) reads a
// virtio-net header and a frame per readv into pooled views, validates the
// header as the kernel validates guest writes, and delivers the whole
// Ethernet frame (no header consumed) with pkt.GSOOptions set. Readers park
// on Go's netpoller (pollWaiter), which Attach(nil) and Close stop.
//
// Transmit: WritePackets and WriteQueue writev a virtio-net header built
// from pkt.GSOOptions and the frame's views, never blocking: a full queue
// drops and counts. Writers to one queue are serialized by that queue's
// mutex; different queues write in parallel.
//
// Ownership: a Tap owns its queue FDs and closes them in Close, and deletes
// the interface if NewTap created it. Methods are safe for concurrent use.
type Tap struct {
	log          *slog.Logger
	onQueueState func(q int, up bool)
	netns        string
	created      bool // NewTap made the interface; Close deletes it
	isTap        bool // FDs are tun/tap FDs (TUN ioctls apply)
	hdrSize      int  // virtio-net header bytes per frame, 0 without
	canGSO       bool // TX may carry GSO super-frames
	canCsum      bool // TX may carry partial checksums
	maxRxFrame   int

	linkAttrs // MTU, MAC, dispatcher, close action

	name   atomic.Pointer[string]
	closed atomic.Bool
	queues atomic.Pointer[[]*tapQueue] // copy-on-write, under mu

	// mu serializes control operations: Attach, AttachFD, Detach/AttachQueue,
	// Close. Lock order: mu before any tapQueue.wmu. Never held while
	// delivering.
	mu       sync.Mutex
	attached bool
	wg       sync.WaitGroup // running rxLoops
}

var (
	_ stack.LinkEndpoint = (*Tap)(nil)
	_ stack.GSOEndpoint  = (*Tap)(nil)
)

// tapQueue is one queue FD with its reader state, writer scratch and
// counters.
type tapQueue struct {
	idx   int
	fd    int
	state atomic.Uint32 // QueueState
	c     queueCounters

	// Reader, owned by Tap.mu: stop is the running reader's waiter (nil
	// when none), done closes when it exits.
	stopMu sync.Mutex // guards stop against a concurrent close
	stop   *pollWaiter
	done   chan struct{}

	// wmu guards the FD for writing (against Close and AttachFD) and the
	// writer scratch.
	wmu sync.Mutex
	tx  txScratch
}

// txScratch is a writer's reusable memory.
type txScratch struct {
	iovs []unix.Iovec
	hdr  []byte
	zero []byte
	head [256]byte
	flat []byte // lazily MaxFrameSize, software fallbacks only
	seg  []byte
}

func newTxScratch(hdrSize int) txScratch {
	return txScratch{
		iovs: make([]unix.Iovec, 0, 64),
		hdr:  make([]byte, max(hdrSize, 1))[:hdrSize],
		zero: make([]byte, max(hdrSize, 1))[:hdrSize],
	}
}

func (s *txScratch) fallbackBufs() ([]byte, []byte) {
	if s.flat == nil {
		// Allocated once per writer, on the first frame needing software
		// segmentation or checksum completion.
		s.flat = make([]byte, MaxFrameSize)
		s.seg = make([]byte, MaxFrameSize)
	}
	return s.flat, s.seg
}

// NewTap creates a tap interface (in opts.NetNS, named opts.Name) with
// opts.Queues queues, configures MAC, MTU, addresses and brings it up
// (like `ip link set dev NAME address MAC mtu MTU up; ip addr add CIDR dev
// NAME`), and returns an endpoint owning the queue FDs.
func NewTap(opts TapOptions) (*Tap, error) {
	nq := opts.Queues
	if nq == 0 {
		nq = 1
	}
	if nq < 1 || nq > MaxTapQueues {
		return nil, fmt.Errorf("tap %q: queues %d out of range 1..%d", opts.Name, nq, MaxTapQueues)
	}
	fds, name, err := OpenTapQueues(opts.NetNS, opts.Name, nq, !opts.NoVnetHdr)
	if err != nil {
		return nil, err
	}
	t, err := newTap(fds, opts, true)
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	t.name.Store(&name)
	if err := t.configureLink(opts); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// AdoptTap makes an endpoint of tap queue FDs opened by someone else (a
// privileged broker, an inherited FD). The endpoint takes ownership of fds
// and closes them in Close; it never deletes the interface. The FDs are
// set non-blocking, and if they have IFF_VNET_HDR their header size and
// offloads are set as opts say (per-file ioctls that need no privilege).
//
// An FD that is not a tun/tap FD (TUNGETIFF fails), such as one end of a
// socketpair(AF_UNIX, SOCK_SEQPACKET) in tests, is used as a device that
// exchanges frames with a virtio-net header of opts.VnetHdrSize bytes
// (none with opts.NoVnetHdr); queue ioctls then fail.
func AdoptTap(fds []int, opts TapOptions) (*Tap, error) {
	if len(fds) < 1 || len(fds) > MaxTapQueues {
		return nil, fmt.Errorf("adopt tap: %d fds, want 1..%d", len(fds), MaxTapQueues)
	}
	t, err := newTap(fds, opts, false)
	if err != nil {
		return nil, err
	}
	if opts.MTU == 0 {
		t.mtu.Store(1500)
	}
	return t, nil
}

func newTap(fds []int, opts TapOptions, created bool) (*Tap, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tap{
		log:          log,
		onQueueState: opts.OnQueueState,
		netns:        opts.NetNS,
		created:      created,
	}
	name := opts.Name
	t.name.Store(&name)
	t.mtu.Store(opts.MTU)
	mac := tcpip.LinkAddress(opts.MAC)
	t.mac.Store(&mac)

	ifr, err := unix.NewIfreq("")
	if err != nil {
		return nil, err
	}
	var flags uint16
	if err := unix.IoctlIfreq(fds[0], unix.TUNGETIFF, ifr); err == nil {
		t.isTap = true
		flags = ifr.Uint16()
		if n := ifr.Name(); n != "" {
			t.name.Store(&n)
		}
		if flags&unix.IFF_TAP == 0 {
			return nil, fmt.Errorf("adopt tap fd %d: %q is a tun device, not a tap", fds[0], ifr.Name())
		}
	}
	hdrSize := opts.VnetHdrSize
	if hdrSize == 0 {
		hdrSize = VnetHdrMrgSize
	}
	if hdrSize < VnetHdrSize {
		return nil, fmt.Errorf("tap %q: vnet header size %d below %d", name, hdrSize, VnetHdrSize)
	}
	switch {
	case opts.NoVnetHdr:
		hdrSize = 0
	case t.isTap && flags&unix.IFF_VNET_HDR == 0:
		hdrSize = 0
	}
	t.hdrSize = hdrSize
	if hdrSize > 0 && !opts.NoOffloads {
		t.canGSO, t.canCsum = true, true
	}
	for _, fd := range fds {
		if err := t.setupFD(fd); err != nil {
			return nil, err
		}
	}
	t.maxRxFrame = MaxFrameSize
	qs := make([]*tapQueue, len(fds))
	for i, fd := range fds {
		qs[i] = t.newQueue(i, fd)
	}
	t.queues.Store(&qs)
	return t, nil
}

func (t *Tap) newQueue(idx, fd int) *tapQueue {
	return &tapQueue{idx: idx, fd: fd, tx: newTxScratch(t.hdrSize)}
}

// setupFD makes fd non-blocking and applies the vnet settings to a tap FD.
func (t *Tap) setupFD(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("tap %q: set fd %d non-blocking: %w", t.Name(), fd, err)
	}
	if !t.isTap || t.hdrSize == 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, t.hdrSize); err != nil {
		return fmt.Errorf("tap %q: TUNSETVNETHDRSZ %d: %w", t.Name(), t.hdrSize, err)
	}
	off := 0
	if t.canGSO {
		off = tapOffloadsTSO | tapOffloadsUSO
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, off); err != nil {
			// Kernels before 6.2 have no USO.
			off = tapOffloadsTSO
		}
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, off); err != nil {
		return fmt.Errorf("tap %q: TUNSETOFFLOAD %#x: %w", t.Name(), off, err)
	}
	return nil
}

// OpenTapQueues opens n queue FDs of the tap interface name in the network
// namespace at netnsPath (the caller's for ""), creating it if needed, with
// IFF_TAP|IFF_NO_PI|IFF_MULTI_QUEUE and, if vnetHdr, IFF_VNET_HDR. It returns
// the FDs (non-blocking, close-on-exec, owned by the caller) and the
// interface name, which the kernel picks when name is empty. Like `ip tuntap
// add mode tap multi_queue`, but the interface lives only while an FD is
// open. A broker can send the FDs with SendFDs.
func OpenTapQueues(netnsPath, name string, n int, vnetHdr bool) ([]int, string, error) {
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	var fds []int
	err := inNetNS(netnsPath, func() error {
		for i := 0; i < n; i++ {
			fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open /dev/net/tun: %w", err)
			}
			ifr, err := unix.NewIfreq(name)
			if err != nil {
				unix.Close(fd)
				return fmt.Errorf("tap name %q: %w", name, err)
			}
			ifr.SetUint16(flags)
			if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
				unix.Close(fd)
				return fmt.Errorf("TUNSETIFF tap %q queue %d: %w", name, i, err)
			}
			name = ifr.Name()
			fds = append(fds, fd)
		}
		return nil
	})
	if err != nil {
		closeFDs(fds)
		return nil, "", err
	}
	return fds, name, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// configureLink sets MAC, MTU and addresses and brings the link up.
func (t *Tap) configureLink(opts TapOptions) error {
	h, ns, err := netlinkHandle(t.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer h.Close()
	name := t.Name()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find tap %q: %w", name, err)
	}
	if len(opts.MAC) != 0 {
		if err := h.LinkSetHardwareAddr(link, opts.MAC); err != nil {
			return fmt.Errorf("set tap %q address %s: %w", name, opts.MAC, err)
		}
	}
	if opts.MTU != 0 {
		if err := h.LinkSetMTU(link, int(opts.MTU)); err != nil {
			return fmt.Errorf("set tap %q mtu %d: %w", name, opts.MTU, err)
		}
	}
	for _, cidr := range opts.Addresses {
		addr, err := netlink.ParseAddr(cidr)
		if err != nil {
			return fmt.Errorf("tap %q address %q: %w", name, cidr, err)
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %s to tap %q: %w", cidr, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set tap %q up: %w", name, err)
	}
	if link, err = h.LinkByName(name); err == nil {
		t.mtu.Store(uint32(link.Attrs().MTU))
		mac := tcpip.LinkAddress(link.Attrs().HardwareAddr)
		t.mac.Store(&mac)
	}
	return nil
}

// Name returns the interface name ("" for an adopted non-tap FD).
func (t *Tap) Name() string { return *t.name.Load() }

// NumQueues returns the number of queue slots, dead ones included.
func (t *Tap) NumQueues() int { return len(*t.queues.Load()) }

func (t *Tap) queueList() []*tapQueue { return *t.queues.Load() }

// GSOMaxSize implements stack.GSOEndpoint.
func (t *Tap) GSOMaxSize() uint32 {
	if t.canGSO {
		return GSOMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint: host GSO when the tap takes
// offloads.
func (t *Tap) SupportedGSO() stack.SupportedGSO {
	if t.canGSO {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// Attach implements stack.LinkEndpoint.Attach. A non-nil dispatcher starts
// one reader per live queue; nil stops them and returns after they exited,
// so no delivery happens after Attach(nil) returns.
func (t *Tap) Attach(d stack.NetworkDispatcher) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d == nil {
		t.stopReadersLocked()
		t.dispatch.Store(nil)
		t.attached = false
		return
	}
	t.dispatch.Store(newDispatchers(d))
	if t.attached || t.closed.Load() {
		return
	}
	t.attached = true
	for _, q := range t.queueList() {
		t.startReaderLocked(q)
	}
}

// Wait implements stack.LinkEndpoint.Wait: it returns when no reader runs.
func (t *Tap) Wait() { t.wg.Wait() }

// Preconditions: t.mu is held.
func (t *Tap) startReaderLocked(q *tapQueue) {
	if q.done != nil || QueueState(q.state.Load()) == QueueDead {
		return
	}
	sfd, err := newPollWaiter(q.fd)
	if err != nil {
		t.log.Error("tap queue reader not started", "tap", t.Name(), "queue", q.idx, "err", err)
		return
	}
	q.stopMu.Lock()
	q.stop = sfd
	q.stopMu.Unlock()
	q.done = make(chan struct{})
	t.wg.Add(1)
	go t.rxLoop(q, sfd, q.done)
}

// Preconditions: t.mu is held.
func (t *Tap) stopReaderLocked(q *tapQueue) {
	if q.done == nil {
		return
	}
	q.stop.Stop()
	<-q.done
	q.stopMu.Lock()
	q.stop.Close()
	q.stop = nil
	q.stopMu.Unlock()
	q.done = nil
}

// Preconditions: t.mu is held.
func (t *Tap) stopReadersLocked() {
	qs := t.queueList()
	for _, q := range qs {
		if q.done != nil {
			q.stop.Stop()
		}
	}
	for _, q := range qs {
		t.stopReaderLocked(q)
	}
}

// rxLoop reads frames from one queue until stopped or the FD fails.
func (t *Tap) rxLoop(q *tapQueue, w *pollWaiter, done chan struct{}) {
	defer t.wg.Done()
	defer close(done)
	// The waiter's dup keeps the queue open in the kernel: release it as
	// soon as the reader ends, so a failed queue is detached at once.
	defer w.Close()
	b := newRxBuffer(t.hdrSize, t.maxRxFrame, 0)
	defer b.release()
	var rs rxScratch
	for {
		n, errno := w.readv(b.iovecs())
		switch {
		case n == -1:
			return
		case errno != 0:
			t.queueFailed(q, "read", errno)
			return
		case n == 0:
			t.queueFailed(q, "read", io.EOF)
			return
		}
		t.handleFrame(q, b, n, &rs)
	}
}

// rxScratch is a reader's memory for USO segmentation on receive.
type rxScratch struct {
	flat, seg []byte
}

// handleFrame validates and delivers one read of n bytes.
func (t *Tap) handleFrame(q *tapQueue, b *rxBuffer, n int, rs *rxScratch) {
	hs := t.hdrSize
	if n < hs {
		q.c.vnetErrors[VnetShortWrite].Add(1)
		return
	}
	frameLen := n - hs
	if frameLen >= b.capacity() {
		q.c.rxDrops[DropOversize].Add(1)
		return
	}
	head := b.head(frameLen)
	var vh VnetHdr
	if hs > 0 {
		vh, _ = ParseVnetHdr(b.vnet)
	}
	deliverFrame(&t.dispatch, &q.c, q.idx, b, head, frameLen, hs > 0, vh, rs)
}

// deliverFrame is the receive path shared by Tap and Packet: validate the
// virtio-net header (if hasVnet), handle USO/UFO, wrap the frame's views in
// a packet and deliver it.
func deliverFrame(dp *atomic.Pointer[dispatchers], c *queueCounters, qidx int, b *rxBuffer,
	head []byte, frameLen int, hasVnet bool, vh VnetHdr, rs *rxScratch) bool {
	var g stack.GSO
	validated := false
	if hasVnet {
		validated = vh.Flags&VnetFlagDataValid != 0
		h, r := vh.check(head, frameLen)
		if r != VnetOK {
			c.vnetErrors[r].Add(1)
			return false
		}
		switch h.GSOType &^ VnetGSOECN {
		case VnetGSOUDPL4:
			deliverUSO(dp, c, qidx, b, frameLen, h, rs)
			return true
		case VnetGSOUDP:
			c.rxDrops[DropUnsupportedGSO].Add(1)
			return false
		}
		l2, _, _ := l2Len(head)
		g, _ = h.GSO(l2)
	} else if frameLen < header.EthernetMinimumSize {
		c.rxDrops[DropRunt].Add(1)
		return false
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: b.pull(frameLen)})
	pkt.GSOOptions = g
	pkt.RXChecksumValidated = validated
	c.rxPackets.Add(1)
	c.rxBytes.Add(uint64(frameLen))
	deliver(dp, qidx, head, pkt)
	pkt.DecRef()
	return true
}

// deliverUSO segments a received USO super-frame in software and delivers
// each datagram: gVisor's stack.GSO has no UDP type to carry it on.
func deliverUSO(dp *atomic.Pointer[dispatchers], c *queueCounters, qidx int, b *rxBuffer, frameLen int, h VnetHdr, rs *rxScratch) {
	if rs.flat == nil {
		// Once per reader, on its first USO frame.
		rs.flat = make([]byte, MaxFrameSize)
		rs.seg = make([]byte, MaxFrameSize)
	}
	flat := rs.flat[:0]
	for _, v := range b.views {
		if len(flat) >= frameLen || v == nil {
			break
		}
		s := v.AsSlice()
		flat = append(flat, s[:min(len(s), frameLen-len(flat))]...)
	}
	_, err := Segment(flat, h, 0, rs.seg, func(seg []byte) bool {
		pkt := newFramePacket(seg, 0)
		c.rxPackets.Add(1)
		c.rxBytes.Add(uint64(len(seg)))
		deliver(dp, qidx, seg, pkt)
		pkt.DecRef()
		return true
	})
	if err != nil {
		c.rxDrops[DropMalformed].Add(1)
		return
	}
	c.segmented.Add(1)
}

// queueFailed marks q dead after an FD error; only that queue stops.
func (t *Tap) queueFailed(q *tapQueue, op string, err error) {
	if t.closed.Load() {
		return
	}
	if QueueState(q.state.Swap(uint32(QueueDead))) == QueueDead {
		return
	}
	q.c.failures.Add(1)
	q.stopMu.Lock()
	if q.stop != nil {
		q.stop.Stop() // a writer noticed: stop the reader too
	}
	q.stopMu.Unlock()
	t.log.Warn("tap queue down", "tap", t.Name(), "queue", q.idx, "op", op, "err", err)
	if t.onQueueState != nil {
		t.onQueueState(q.idx, false)
	}
	for _, o := range t.queueList() {
		if QueueState(o.state.Load()) != QueueDead {
			return
		}
	}
	t.runCloseAction()
}

// fdBroken reports whether a write error means the FD itself is unusable
// (as opposed to this frame being refused, or the interface being down).
func fdBroken(e unix.Errno) bool {
	switch e {
	case unix.EBADF, unix.EBADFD, unix.EPIPE, unix.ECONNRESET, unix.ENOTCONN, unix.ENXIO, unix.ENODEV, unix.EFAULT:
		return true
	}
	return false
}

// pickQueue returns the first live queue at or after i (mod n), or nil.
func pickQueue(qs []*tapQueue, i int) *tapQueue {
	for k := range qs {
		q := qs[(i+k)%len(qs)]
		if QueueState(q.state.Load()) != QueueDead {
			return q
		}
	}
	return nil
}

// WritePackets implements stack.LinkWriter.WritePackets. Each packet (whole
// frame, borrowed) goes to queue pkt.Hash % NumQueues(), or the next live
// queue. It never blocks: a frame that does not fit is dropped and counted
// (tx_full). It returns the number of frames written and, if any frame
// could not be, the last error (ErrWouldBlock for a full queue,
// ErrClosedForSend after Close); dropped frames are not retried.
func (t *Tap) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	qs := t.queueList()
	n := 0
	var terr tcpip.Error
	for _, pkt := range pkts.AsSlice() {
		q := pickQueue(qs, int(pkt.Hash%uint32(len(qs))))
		ok, err := t.writeOne(q, pkt)
		if ok {
			n++
		} else if err != nil {
			terr = err
		}
	}
	return n, terr
}

// WriteQueue writes pkts (borrowed) to queue q folded into the queue range
// (q % NumQueues(), or the next live queue). Results are as WritePackets'.
func (t *Tap) WriteQueue(q int, pkts stack.PacketBufferList) (int, tcpip.Error) {
	qs := t.queueList()
	tq := pickQueue(qs, q%len(qs))
	n := 0
	var terr tcpip.Error
	for _, pkt := range pkts.AsSlice() {
		ok, err := t.writeOne(tq, pkt)
		if ok {
			n++
		} else if err != nil {
			terr = err
		}
	}
	return n, terr
}

func (t *Tap) writeOne(q *tapQueue, pkt *stack.PacketBuffer) (bool, tcpip.Error) {
	if q == nil {
		qs := t.queueList()
		qs[0].c.txDrops[DropQueueDown].Add(1)
		return false, &tcpip.ErrClosedForSend{}
	}
	q.wmu.Lock()
	defer q.wmu.Unlock()
	if t.closed.Load() || q.fd < 0 {
		q.c.txDrops[DropClosed].Add(1)
		return false, &tcpip.ErrClosedForSend{}
	}
	ok, reason, errno := writeFrame(q.fd, &q.tx, &q.c, t.hdrSize, pkt, int(t.mtu.Load()), t.canGSO, t.canCsum, writevFD)
	if ok {
		return true, nil
	}
	if errno != 0 && fdBroken(errno) {
		t.queueFailed(q, "write", errno)
	}
	if reason == DropTxFull {
		return false, &tcpip.ErrWouldBlock{}
	}
	return false, nil
}

// writevFD writes one frame with writev, retrying on EINTR.
func writevFD(fd int, iovs []unix.Iovec) unix.Errno {
	for {
		e := rawfile.NonBlockingWriteIovec(fd, iovs)
		if e != unix.EINTR {
			return e
		}
	}
}

// writeFrame sends pkt's frame on fd through write, applying the software
// fallbacks when the receiver cannot take what pkt carries. It counts the
// result in c. Preconditions: the caller serializes use of s.
func writeFrame(fd int, s *txScratch, c *queueCounters, hdrSize int, pkt *stack.PacketBuffer,
	mtu int, canGSO, canCsum bool, write func(int, []unix.Iovec) unix.Errno) (bool, DropReason, unix.Errno) {
	frameLen := pkt.Size()
	head := peekPacket(s.head[:], pkt)
	h, act, reason := planTx(pkt.GSOOptions, head, frameLen, mtu, canGSO && hdrSize > 0, canCsum && hdrSize > 0)
	emit := func(hdr []byte, frame []byte) (DropReason, unix.Errno) {
		s.iovs = s.iovs[:0]
		s.iovs = rawfile.AppendIovecFromBytes(s.iovs, hdr, rawfile.MaxIovs)
		s.iovs = rawfile.AppendIovecFromBytes(s.iovs, frame, rawfile.MaxIovs)
		if e := write(fd, s.iovs); e != 0 {
			return dropForErrno(e), e
		}
		c.txPackets.Add(1)
		c.txBytes.Add(uint64(len(frame)))
		return 0, 0
	}
	switch act {
	case txDrop:
		c.txDrops[reason].Add(1)
		return false, reason, 0
	case txDirect:
		if hdrSize > 0 {
			h.Encode(s.hdr)
		}
		s.iovs = s.iovs[:0]
		s.iovs = rawfile.AppendIovecFromBytes(s.iovs, s.hdr, rawfile.MaxIovs)
		views, off := pkt.AsViewList()
		for v := views.Front(); v != nil; v = v.Next() {
			b := v.AsSlice()
			if off >= len(b) {
				off -= len(b)
				continue
			}
			s.iovs = rawfile.AppendIovecFromBytes(s.iovs, b[off:], rawfile.MaxIovs)
			off = 0
		}
		if e := write(fd, s.iovs); e != 0 {
			r := dropForErrno(e)
			c.txDrops[r].Add(1)
			return false, r, e
		}
		c.txPackets.Add(1)
		c.txBytes.Add(uint64(frameLen))
		return true, 0, 0
	case txChecksum:
		flat, _ := s.fallbackBufs()
		frame := copyPacket(flat, pkt)
		if err := FinishChecksum(frame, int(h.CsumStart), int(h.CsumOffset)); err != nil {
			c.txDrops[DropMalformed].Add(1)
			return false, DropMalformed, 0
		}
		c.checksummed.Add(1)
		if r, e := emit(s.zero, frame); e != 0 {
			c.txDrops[r].Add(1)
			return false, r, e
		}
		return true, 0, 0
	}
	// txSegment.
	flat, seg := s.fallbackBufs()
	frame := copyPacket(flat, pkt)
	var (
		failR DropReason
		failE unix.Errno
	)
	_, err := Segment(frame, h, mtu, seg, func(b []byte) bool {
		failR, failE = emit(s.zero, b)
		return failE == 0
	})
	switch {
	case errors.Is(err, ErrSegmentTooBig):
		c.txDrops[DropOversize].Add(1)
		return false, DropOversize, 0
	case err != nil:
		c.txDrops[DropMalformed].Add(1)
		return false, DropMalformed, 0
	case failE != 0:
		c.txDrops[failR].Add(1)
		return false, failR, failE
	}
	c.segmented.Add(1)
	return true, 0, 0
}

func dropForErrno(e unix.Errno) DropReason {
	if e == unix.EAGAIN {
		return DropTxFull
	}
	return DropTxError
}

// DetachQueue removes queue q from the kernel's queue selection
// (TUNSETQUEUE IFF_DETACH_QUEUE): the kernel stops sending it frames, while
// writes on it still work.
func (t *Tap) DetachQueue(q int) error { return t.setQueue(q, false) }

// AttachQueue puts a detached queue back into the kernel's selection
// (TUNSETQUEUE IFF_ATTACH_QUEUE).
func (t *Tap) AttachQueue(q int) error { return t.setQueue(q, true) }

func (t *Tap) setQueue(q int, attach bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return ErrClosed
	}
	qs := t.queueList()
	if q < 0 || q >= len(qs) {
		return fmt.Errorf("tap %q: no queue %d", t.Name(), q)
	}
	tq := qs[q]
	if !t.isTap {
		return fmt.Errorf("tap %q queue %d: not a tap fd", t.Name(), q)
	}
	if QueueState(tq.state.Load()) == QueueDead {
		return fmt.Errorf("tap %q queue %d: queue is dead", t.Name(), q)
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	flag, op, state := uint16(unix.IFF_DETACH_QUEUE), "detach", QueueDetached
	if attach {
		flag, op, state = unix.IFF_ATTACH_QUEUE, "attach", QueueUp
	}
	ifr.SetUint16(flag)
	if err := unix.IoctlIfreq(tq.fd, unix.TUNSETQUEUE, ifr); err != nil {
		return fmt.Errorf("%s tap %q queue %d: %w", op, t.Name(), q, err)
	}
	tq.state.Store(uint32(state))
	t.log.Info("tap queue "+op+"ed", "tap", t.Name(), "queue", q)
	if t.onQueueState != nil {
		t.onQueueState(q, attach)
	}
	return nil
}

// AttachFD adds a queue FD at runtime (taking ownership of fd): it takes the
// slot of the first dead queue, closing that queue's old FD, or becomes a
// new queue. If the endpoint is attached, its reader starts at once. It
// returns the queue index. Use it to bring a port back after its queue FDs
// failed, with an FD from OpenTapQueues or a broker.
func (t *Tap) AttachFD(fd int) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return -1, ErrClosed
	}
	if t.isTap {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return -1, err
		}
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
			return -1, fmt.Errorf("tap %q: fd %d is not a tap: %w", t.Name(), fd, err)
		}
		if (ifr.Uint16()&unix.IFF_VNET_HDR != 0) != (t.hdrSize > 0) {
			return -1, fmt.Errorf("tap %q: fd %d vnet header setting differs", t.Name(), fd)
		}
	}
	if err := t.setupFD(fd); err != nil {
		return -1, err
	}
	qs := t.queueList()
	idx := -1
	for i, q := range qs {
		if QueueState(q.state.Load()) == QueueDead {
			idx = i
			break
		}
	}
	nq := t.newQueue(len(qs), fd)
	if idx >= 0 {
		old := qs[idx]
		t.stopReaderLocked(old)
		old.wmu.Lock()
		unix.Close(old.fd)
		old.fd = -1
		old.wmu.Unlock()
		nq.idx = idx
		nq.c.failures.Store(old.c.failures.Load())
	} else if len(qs) >= MaxTapQueues {
		return -1, fmt.Errorf("tap %q: already %d queues", t.Name(), len(qs))
	}
	next := make([]*tapQueue, len(qs), len(qs)+1)
	copy(next, qs)
	if idx >= 0 {
		next[idx] = nq
	} else {
		next = append(next, nq)
	}
	t.queues.Store(&next)
	if t.attached {
		t.startReaderLocked(nq)
	}
	t.log.Info("tap queue fd attached", "tap", t.Name(), "queue", nq.idx)
	if t.onQueueState != nil {
		t.onQueueState(nq.idx, true)
	}
	return nq.idx, nil
}

// Stats returns a snapshot of every queue's counters.
func (t *Tap) Stats() Stats {
	qs := t.queueList()
	s := Stats{Queues: make([]QueueStats, len(qs))}
	for i, q := range qs {
		s.Queues[i] = q.c.snapshot(QueueState(q.state.Load()))
	}
	return s
}

// Close implements stack.LinkEndpoint.Close. It is idempotent. Order: stop
// the readers and wait for them, fence writers per queue and close the queue
// FDs, then delete the interface if NewTap created it (normally already
// gone with its last FD).
func (t *Tap) Close() {
	t.mu.Lock()
	if t.closed.Swap(true) {
		t.mu.Unlock()
		return
	}
	t.stopReadersLocked()
	t.dispatch.Store(nil)
	t.attached = false
	for _, q := range t.queueList() {
		q.wmu.Lock()
		if q.fd >= 0 {
			unix.Close(q.fd)
			q.fd = -1
		}
		q.state.Store(uint32(QueueDead))
		q.wmu.Unlock()
	}
	t.mu.Unlock()
	if t.created {
		t.deleteLink()
	}
}

func (t *Tap) deleteLink() {
	h, ns, err := netlinkHandle(t.netns)
	if err != nil {
		t.log.Warn("delete tap", "tap", t.Name(), "err", err)
		return
	}
	defer ns.Close()
	defer h.Close()
	link, err := h.LinkByName(t.Name())
	if err != nil {
		return // gone with its FDs
	}
	if err := h.LinkDel(link); err != nil {
		t.log.Warn("delete tap", "tap", t.Name(), "err", err)
	}
}

// tunSetCarrier is TUNSETCARRIER, _IOW('T', 226, int) in
// include/uapi/linux/if_tun.h (Linux 5.0+); x/sys does not name it.
const tunSetCarrier = 0x400454e2

// SetCarrier turns the tap interface's carrier on or off (TUNSETCARRIER),
// so the sandbox sees NO-CARRIER while its port cannot pass frames, as a
// macvtap follows its lower's state and its own admin state.
func (t *Tap) SetCarrier(on bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		return ErrClosed
	}
	if !t.isTap {
		return fmt.Errorf("tap %q: not a tap fd", t.Name())
	}
	v := 0
	if on {
		v = 1
	}
	var err error
	for _, q := range t.queueList() {
		if QueueState(q.state.Load()) == QueueDead {
			continue
		}
		if err = unix.IoctlSetPointerInt(q.fd, tunSetCarrier, v); err == nil {
			return nil
		}
	}
	if err == nil {
		err = errors.New("no live queue")
	}
	return fmt.Errorf("tap %q: set carrier: %w", t.Name(), err)
}
