//go:build linux

package endpoints

import (
	"fmt"
	"log/slog"
	"net"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

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
	// Queues is the number of queue FDs to open, 1 to MaxQueues
	// (default 1). Ignored by AdoptTap.
	Queues int
	// MAC is set on the interface by NewTap (nil keeps the kernel's random
	// one). For AdoptTap it is only what LinkAddress reports.
	MAC net.HardwareAddr
	// MTU is the interface (IP) MTU. NewTap sets it when non-zero; 0 keeps
	// the kernel's. AdoptTap uses it as the endpoint MTU (default 1500).
	MTU uint32
	// Addresses are CIDR strings ("10.0.0.1/24", "fd00::1/64") that NewTap
	// adds to the interface it creates.
	Addresses []string
	// Routes are added after the addresses, to the interface NewTap
	// creates (`ip route add DST via GW metric M dev NAME`).
	Routes []Route
	// LoUp brings up lo in the namespace along with the tap NewTap creates
	// (a fresh namespace, and runsc, have no loopback otherwise).
	LoUp bool
	// Persist makes the interface outlive the endpoint (TUNSETPERSIST):
	// Close leaves it in place, with no carrier, and a later NewTap with
	// Attach picks it up again; Destroy removes it.
	Persist bool
	// Attach attaches to an existing tap of that name in NetNS instead of
	// creating one: no MAC, MTU, address or route is set, the interface
	// keeps what it has. IfIndex, when not 0, must be its index (the tap
	// the caller created before). Without Attach an existing interface of
	// that name is an error (ErrInterfaceExists): NewTap never takes over a
	// device it did not create.
	Attach  bool
	IfIndex int
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
	// SyscallIO makes every queue read and write one frame per system
	// call (readv, writev). By default a queue reads and writes batches
	// through io_uring, and falls back to this by itself where the kernel
	// refuses io_uring (kernel.io_uring_disabled, a seccomp filter).
	SyscallIO bool
	// OnQueueState, if set, is called when a queue goes down (FD error,
	// DetachQueue) or comes back (AttachFD, AttachQueue). It runs on the
	// goroutine that noticed the change and must not block.
	OnQueueState func(q int, up bool)
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
}

// Tap is a multi-queue tap endpoint: a stack.LinkEndpoint over one FD per
// queue of a tun/tap device opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR|
// IFF_MULTI_QUEUE, built on the queue engine (queues.go) with a readv
// reader and a writev writer per queue.
//
// Receive: while attached, one goroutine per queue reads a virtio-net
// header and a frame per readv into pooled views, validates the header as
// the kernel validates guest writes, and delivers the whole Ethernet frame
// (no header consumed) with pkt.GSOOptions set. Readers park on Go's
// netpoller (pollWaiter), which Attach(nil) and Close stop.
//
// Transmit: WritePackets and WriteQueue writev a virtio-net header built
// from pkt.GSOOptions and the frame's views, never blocking: a full queue
// drops and counts. Writers to one queue are serialized by that queue's
// lock; different queues write in parallel.
//
// The device (tapdev.go): NewTap holds the sandbox's namespace open and
// does every netlink call through it, sets the interface's MAC and MTU
// when the port's change (DeviceConfigurer) and, once SetLinkFunc is
// called, follows what the sandbox does to it (down, MAC, MTU) and
// whether its namespace still exists.
//
// Ownership: a Tap owns its queue FDs and closes them in Close. Close
// leaves a persistent interface in place (its kernel deletes a
// non-persistent one with the last FD); Destroy deletes it. Methods are
// safe for concurrent use.
type Tap struct {
	engine
	ns      *netNS // nil for an adopted FD set
	isTap   bool   // FDs are tun/tap FDs (TUN ioctls apply)
	ifindex int    // the interface NewTap created or attached to

	dev tapDevice // the sandbox side: link and namespace watch
}

var (
	_ stack.LinkEndpoint = (*Tap)(nil)
	_ stack.GSOEndpoint  = (*Tap)(nil)
)

// NewTap creates a tap interface (in opts.NetNS, named opts.Name) with
// opts.Queues queues, configures MAC, MTU, addresses and brings it up
// (like `ip link set dev NAME address MAC mtu MTU up; ip addr add CIDR dev
// NAME`), and returns an endpoint owning the queue FDs.
func NewTap(opts TapOptions) (*Tap, error) {
	nq := opts.Queues
	if nq == 0 {
		nq = 1
	}
	if nq < 1 || nq > MaxQueues {
		return nil, fmt.Errorf("tap %q: queues %d out of range 1..%d", opts.Name, nq, MaxQueues)
	}
	ns, err := openNetNS(opts.NetNS)
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", opts.Name, err)
	}
	ifindex, err := checkTapName(ns, opts)
	if err != nil {
		ns.close()
		return nil, err
	}
	fds, name, err := openTapQueues(ns, opts.Name, nq, !opts.NoVnetHdr)
	if err != nil {
		ns.close()
		return nil, err
	}
	t, err := newTap(fds, opts)
	if err != nil {
		closeFDs(fds)
		ns.close()
		return nil, err
	}
	t.ns, t.ifindex = ns, ifindex
	t.setName(name)
	if !opts.Attach {
		if err := t.createLink(opts); err != nil {
			t.Destroy()
			return nil, err
		}
	} else if err := t.readLink(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// AdoptTap makes an endpoint of tap queue FDs opened by someone else (a
// privileged broker, an inherited FD). The endpoint takes ownership of fds
// and closes them in Close, or at once if it fails; it never deletes the
// interface. The FDs are
// set non-blocking, and if they have IFF_VNET_HDR their header size and
// offloads are set as opts say (per-file ioctls that need no privilege).
//
// An FD that is not a tun/tap FD (TUNGETIFF fails), such as one end of a
// socketpair(AF_UNIX, SOCK_SEQPACKET) in tests, is used as a device that
// exchanges frames with a virtio-net header of opts.VnetHdrSize bytes
// (none with opts.NoVnetHdr); queue ioctls then fail.
func AdoptTap(fds []int, opts TapOptions) (*Tap, error) {
	if len(fds) < 1 || len(fds) > MaxQueues {
		closeFDs(fds)
		return nil, fmt.Errorf("adopt tap: %d fds, want 1..%d", len(fds), MaxQueues)
	}
	t, err := newTap(fds, opts)
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	if opts.MTU == 0 {
		t.mtu.Store(1500)
	}
	return t, nil
}

func newTap(fds []int, opts TapOptions) (*Tap, error) {
	t := &Tap{}
	name := opts.Name
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return nil, err
	}
	var flags uint16
	if err := unix.IoctlIfreq(fds[0], unix.TUNGETIFF, ifr); err == nil {
		t.isTap = true
		flags = ifr.Uint16()
		if n := ifr.Name(); n != "" {
			name = n
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
	e := &t.engine
	e.hdrSize = hdrSize
	if hdrSize > 0 && !opts.NoOffloads {
		e.canGSO, e.canCsum = true, true
	}
	e.syscallIO = opts.SyscallIO
	e.newReader = newTapReader
	e.newWriter = newTapWriter
	e.mtu.Store(opts.MTU)
	mac := tcpip.LinkAddress(opts.MAC)
	e.mac.Store(&mac)
	e.init("tap", name, opts.Logger)
	for _, fd := range fds {
		if err := t.setupFD(fd); err != nil {
			return nil, err
		}
	}
	e.setQueues(fds)
	e.SetQueueStateFunc(opts.OnQueueState)
	return t, nil
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
	ns, err := openNetNS(netnsPath)
	if err != nil {
		return nil, "", err
	}
	defer ns.close()
	return openTapQueues(ns, name, n, vnetHdr)
}

func openTapQueues(ns *netNS, name string, n int, vnetHdr bool) ([]int, string, error) {
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	var fds []int
	err := ns.do(func() error {
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
	flag, op, state := uint16(unix.IFF_DETACH_QUEUE), "detach", QueueDetached
	if attach {
		flag, op, state = unix.IFF_ATTACH_QUEUE, "attach", QueueUp
	}
	tq, err := t.liveQueueLocked(q)
	if err != nil {
		return err
	}
	if !t.isTap {
		return fmt.Errorf("tap %q queue %d: not a tap fd", t.Name(), q)
	}
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	ifr.SetUint16(flag)
	if err := unix.IoctlIfreq(tq.fd, unix.TUNSETQUEUE, ifr); err != nil {
		return fmt.Errorf("%s tap %q queue %d: %w", op, t.Name(), q, err)
	}
	tq.state.Store(uint32(state))
	t.log.Info("tap queue "+op+"ed", "tap", t.Name(), "queue", q)
	t.notifyQueue(q, attach)
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
	idx := len(qs)
	for i, q := range qs {
		if QueueState(q.state.Load()) == QueueDead {
			idx = i
			break
		}
	}
	if err := t.setFDLocked(idx, fd, nil); err != nil {
		return -1, err
	}
	t.log.Info("tap queue fd attached", "tap", t.Name(), "queue", idx)
	return idx, nil
}

// Close implements stack.LinkEndpoint.Close. It is idempotent. Order: stop
// following the device, stop the readers and wait for them, fence writers
// per queue and close the queue FDs, release the namespace. A persistent
// interface stays (with no carrier); the kernel deletes any other with
// its last FD.
func (t *Tap) Close() {
	t.dev.stop()
	if t.closeQueues() {
		t.ns.close()
	}
}

// Destroy closes the endpoint and deletes its interface, the one it
// created or attached to (checked by index in the namespace it holds, so
// another sandbox's interface is never touched), if its namespace still
// exists.
func (t *Tap) Destroy() {
	t.dev.stop()
	if t.ns != nil && t.ifindex != 0 && !t.dev.nsGone.Load() {
		if err := t.deleteLink(); err != nil {
			t.log.Warn("delete tap", "tap", t.Name(), "err", err)
		}
	}
	t.Close()
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
	fd := t.liveFDLocked()
	if fd < 0 {
		return fmt.Errorf("tap %q: set carrier: %w", t.Name(), errNoLiveQueue)
	}
	v := 0
	if on {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(fd, tunSetCarrier, v); err != nil {
		return fmt.Errorf("tap %q: set carrier: %w", t.Name(), err)
	}
	return nil
}
