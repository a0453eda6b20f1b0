//go:build linux

package endpoints

import (
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// MaxPacketQueues is the most sockets a Packet endpoint opens in its
// fanout group, and the cap of the default of one per CPU: more only adds
// contention on the socket locks.
const MaxPacketQueues = 16

// socketBuffer is each AF_PACKET socket's send and receive buffer size.
const socketBuffer = 4 << 20

// PacketOptions configures NewPacket. The zero value (with Interface set)
// is promiscuous, uses PACKET_VNET_HDR, opens one socket per CPU and
// receives by recvmmsg.
type PacketOptions struct {
	// Interface is the name of the netdev to bind to. Required.
	Interface string
	// NetNS is the path of the network namespace the interface lives in
	// (/var/run/netns/NAME or /proc/PID/ns/net); empty means the caller's.
	NetNS string
	// Queues is the number of sockets in the fanout group, 1 to
	// MaxPacketQueues; 0 means one per CPU, at most MaxPacketQueues.
	Queues int
	// NoPromiscuous skips PACKET_MR_PROMISC; use SetUnicastFilter and
	// SetMulticastFilter to receive frames for other MACs.
	NoPromiscuous bool
	// NoVnetHdr skips PACKET_VNET_HDR: super-frames then arrive without
	// their GSO metadata, and outbound GSO is segmented in software.
	NoVnetHdr bool
	// Rx selects the receive mechanism; the zero value, PacketRxDefault,
	// is the one the package doc reports as faster.
	Rx PacketRx
	// Ring sizes each socket's TPACKET_V3 receive ring (PacketRxRing
	// only); zero fields take defaults.
	Ring RingOptions
	// OnLinkChange, if set, is installed with SetLinkFunc.
	OnLinkChange func(up bool, mtu uint32, mac tcpip.LinkAddress)
	// OnQueueState, if set, is called when a socket fails or comes back
	// (see SetQueueStateFunc).
	OnQueueState func(q int, up bool)
	// Logger receives state changes; nil discards.
	Logger *slog.Logger

	// linkWatchBuffer sizes the link watcher's socket (tests).
	linkWatchBuffer int
}

// Packet is an AF_PACKET endpoint bound to one netdev: the switch's lower
// NIC, or a port on an existing netdev such as a veth into a sandbox or a
// VM's tap in the VM's namespace. It is built on the queue engine
// (queues.go), one queue per socket.
//
// Its sockets (SOCK_RAW, ETH_P_ALL, bound to the ifindex) form one
// PACKET_FANOUT_HASH group created with PACKET_FANOUT_FLAG_IGNORE_OUTGOING,
// so the kernel spreads flows over them and never returns our own
// transmissions; frames with sll_pkttype PACKET_OUTGOING are dropped in
// userspace too, for kernels without the flag. PACKET_VNET_HDR keeps GSO
// and partial-checksum metadata, and PACKET_AUXDATA lets us re-insert the
// VLAN tag the kernel stripped, as macvtap does on read.
//
// Receive: recvmmsg batches into pooled views, or the socket's own mapped
// TPACKET_V3 ring (Options.Rx). Transmit: sendmmsg batches, non-blocking;
// a full socket buffer drops and counts.
//
// The interface is followed by name (LinkState): when it goes down the
// sockets fail with ENETDOWN and their queues die; when it comes up again,
// or is deleted and created again with a new ifindex, the endpoint opens a
// fresh socket set (fanout group, buffers, vnet header, memberships) and
// forwarding resumes.
//
// Ownership: the endpoint creates and owns its sockets and closes them in
// Close. Methods are safe for concurrent use.
type Packet struct {
	engine
	ns      *netNS
	ifname  string
	nq      int
	rx      PacketRx // resolved: never PacketRxDefault
	ring    RingOptions
	promisc bool

	ifindex   atomic.Int32
	watch     *linkWatcher
	closeOnce sync.Once
	reopens   atomic.Uint64

	// linkMu orders calls of onLink: the one SetLinkFunc makes and the
	// watcher's.
	linkMu sync.Mutex
	onLink func(up bool, mtu uint32, mac tcpip.LinkAddress)

	// filterMu guards the memberships, applied on the first socket and
	// applied again to a fresh socket set.
	filterMu  sync.Mutex
	unicast   map[[6]byte]struct{}
	multicast map[[6]byte]struct{}
	allmulti  bool
}

var (
	_ stack.LinkEndpoint = (*Packet)(nil)
	_ stack.GSOEndpoint  = (*Packet)(nil)
)

// NewPacket opens the sockets, joins them into a fanout group, sets
// promiscuity and starts following the interface.
func NewPacket(opts PacketOptions) (*Packet, error) {
	if opts.Interface == "" {
		return nil, fmt.Errorf("af_packet: no interface")
	}
	nq := opts.Queues
	if nq == 0 {
		nq = min(runtime.NumCPU(), MaxPacketQueues)
	}
	if nq < 1 || nq > MaxPacketQueues {
		return nil, fmt.Errorf("af_packet %q: queues %d out of range 1..%d", opts.Interface, nq, MaxPacketQueues)
	}
	rx := opts.Rx
	if rx == PacketRxDefault {
		rx = defaultPacketRx
	}
	if rx >= numPacketRx {
		return nil, fmt.Errorf("af_packet %q: receive mode %d unknown", opts.Interface, rx)
	}
	ring, err := opts.Ring.withDefaults()
	if rx == PacketRxRing && err != nil {
		return nil, fmt.Errorf("af_packet %q: %w", opts.Interface, err)
	}
	ns, err := openNetNS(opts.NetNS)
	if err != nil {
		return nil, fmt.Errorf("af_packet %q: %w", opts.Interface, err)
	}
	p := &Packet{
		ns:        ns,
		ifname:    opts.Interface,
		nq:        nq,
		rx:        rx,
		ring:      ring,
		promisc:   !opts.NoPromiscuous,
		unicast:   map[[6]byte]struct{}{},
		multicast: map[[6]byte]struct{}{},
	}
	e := &p.engine
	if !opts.NoVnetHdr {
		e.hdrSize = VnetHdrSize
		e.canGSO, e.canCsum = true, true
	}
	e.newWriter = newMMsgWriter
	e.newReader = func(q *fdQueue) reader {
		if q.ring != nil {
			return newRingReader(q)
		}
		return newMMsgReader(q, true)
	}
	e.init("af_packet", opts.Interface, opts.Logger)
	p.watch, err = watchLink(ns, opts.Interface, e.log, opts.linkWatchBuffer, p.linkChanged)
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("af_packet: %w", err)
	}
	st := p.watch.State()
	if !st.Exists {
		p.watch.Close()
		ns.close()
		return nil, fmt.Errorf("af_packet: interface %q not found in %s", opts.Interface, ns)
	}
	e.mtu.Store(st.MTU)
	mac := tcpip.LinkAddress(st.MAC)
	e.mac.Store(&mac)
	e.SetQueueStateFunc(opts.OnQueueState)
	if opts.OnLinkChange != nil {
		p.SetLinkFunc(opts.OnLinkChange)
	}
	// Under mu: the watcher may already want to reopen (it waits for this).
	p.mu.Lock()
	fds, rings, err := p.openSockets(st.Index)
	if err == nil {
		e.setQueues(fds)
		for i, r := range rings {
			e.queueList()[i].ring = r
		}
	}
	p.mu.Unlock()
	if err != nil {
		p.watch.Close()
		ns.close()
		return nil, err
	}
	return p, nil
}

// openSockets creates the socket set bound to ifindex, in one fanout
// group, each with a mapped receive ring in PacketRxRing mode, and applies
// promiscuity and the memberships to the first socket.
func (p *Packet) openSockets(ifindex int) (fds []int, rings []*rxRing, err error) {
	err = p.ns.do(func() error {
		var err error
		fds, rings, err = p.openSocketsHere(ifindex)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if err := p.applyMemberships(fds[0], ifindex); err != nil {
		closeFDs(fds)
		for _, r := range rings {
			r.unmap()
		}
		return nil, nil, err
	}
	p.ifindex.Store(int32(ifindex))
	return fds, rings, nil
}

// openSocketsHere runs in the interface's namespace.
func (p *Packet) openSocketsHere(ifindex int) (fds []int, rings []*rxRing, err error) {
	defer func() {
		if err != nil {
			closeFDs(fds)
			for _, r := range rings {
				r.unmap()
			}
			fds, rings = nil, nil
		}
	}()
	// PACKET_FANOUT arg: id in the low 16 bits, type and flags above
	// (include/uapi/linux/if_packet.h, Documentation/networking/packet_mmap.rst).
	const create = (unix.PACKET_FANOUT_HASH | unix.PACKET_FANOUT_FLAG_UNIQUEID | unix.PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16
	joinFlags := unix.PACKET_FANOUT_HASH | unix.PACKET_FANOUT_FLAG_IGNORE_OUTGOING
	var id int
	for i := 0; i < p.nq; i++ {
		// Protocol 0: no frames are queued before bind and fanout.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fds, rings, fmt.Errorf("af_packet %q: socket: %w", p.ifname, err)
		}
		fds = append(fds, fd)
		if p.hdrSize > 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return fds, rings, fmt.Errorf("af_packet %q: PACKET_VNET_HDR: %w", p.ifname, err)
			}
		}
		if p.rx == PacketRxRing {
			// After PACKET_VNET_HDR (EBUSY once a ring exists), before bind.
			r, err := newRxRing(fd, p.ring)
			if err != nil {
				return fds, rings, fmt.Errorf("af_packet %q: %w", p.ifname, err)
			}
			rings = append(rings, r)
		}
		// GSO super-frames are up to 64 KiB: the default ~208 KiB socket
		// buffers hold three, and a TCP burst then drops. 4 MiB, as runsc
		// uses; the FORCE variants pass net.core.[rw]mem_max (we are
		// privileged), and the plain ones are the fallback.
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], socketBuffer) != nil {
				_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], socketBuffer)
			}
		}
		// The ring carries the VLAN tag in tpacket3_hdr; recvmmsg needs
		// the control message.
		if p.rx == PacketRxMMsg {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
				return fds, rings, fmt.Errorf("af_packet %q: PACKET_AUXDATA: %w", p.ifname, err)
			}
		}
		// Belt and braces: also ignore outgoing per socket (4.20+); the
		// fanout flag is what counts once the socket is in the group.
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		setSocketBusyPoll(fd, p.BusyPoll())
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
		if err := unix.Bind(fd, sa); err != nil {
			return fds, rings, fmt.Errorf("af_packet %q: bind: %w", p.ifname, err)
		}
		if i == 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, create); err != nil {
				// Kernels without IGNORE_OUTGOING: rely on the sll_pkttype check.
				joinFlags = unix.PACKET_FANOUT_HASH
				if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, (unix.PACKET_FANOUT_HASH|unix.PACKET_FANOUT_FLAG_UNIQUEID)<<16); err != nil {
					return fds, rings, fmt.Errorf("af_packet %q: create fanout group: %w", p.ifname, err)
				}
			}
			v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
			if err != nil {
				return fds, rings, fmt.Errorf("af_packet %q: read fanout id: %w", p.ifname, err)
			}
			id = v & 0xffff
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, joinFlags<<16|id); err != nil {
			return fds, rings, fmt.Errorf("af_packet %q: join fanout group %d: %w", p.ifname, id, err)
		}
	}
	return fds, rings, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// SetLinkFunc installs f (nil removes it), called at once with the
// interface's current state and then whenever it changes: up (there,
// IFF_UP and IFF_LOWER_UP) or down, MTU, MAC. It runs on the link
// watcher's goroutine, after the endpoint has applied the change (a
// reopened socket set is in place when f hears "up"), one call at a time,
// and must not block. It implements bridge.LinkNotifier.
func (p *Packet) SetLinkFunc(f func(up bool, mtu uint32, mac tcpip.LinkAddress)) {
	p.linkMu.Lock()
	defer p.linkMu.Unlock()
	p.onLink = f
	if f != nil {
		st := p.watch.State()
		f(st.Up(), st.MTU, tcpip.LinkAddress(st.MAC))
	}
}

// linkChanged follows the interface: MTU and MAC, and a fresh socket set
// whenever it comes up (again) or comes back with a new ifindex.
func (p *Packet) linkChanged(old, st LinkState) {
	if st.Exists {
		p.mtu.Store(st.MTU)
		mac := tcpip.LinkAddress(st.MAC)
		p.mac.Store(&mac)
	}
	reopen := st.Up() && (!old.Up() || st.Index != int(p.ifindex.Load()))
	p.log.Info("link changed", "interface", p.ifname, "exists", st.Exists, "up", st.Up(), "ifindex", st.Index, "mtu", st.MTU, "reopen", reopen)
	if reopen {
		if err := p.reopen(st.Index); err != nil {
			p.log.Warn("af_packet: reopen sockets", "interface", p.ifname, "err", err)
		}
	}
	p.linkMu.Lock()
	if p.onLink != nil {
		p.onLink(st.Up(), st.MTU, tcpip.LinkAddress(st.MAC))
	}
	p.linkMu.Unlock()
}

// SetInterfaceMAC sets the interface's MAC (`ip link set IF address MAC`),
// as a passthru port does to its lower (BEHAVIOUR.md §1.5).
func (p *Packet) SetInterfaceMAC(mac tcpip.LinkAddress) error {
	return p.ns.setLinkAttrs(p.ifname, 0, net.HardwareAddr(mac), 0)
}

// reopen replaces every socket with a fresh one bound to ifindex.
func (p *Packet) reopen(ifindex int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if p.queues.Load() == nil {
		return nil // NewPacket has not finished: its sockets are new
	}
	p.filterMu.Lock()
	fds, rings, err := p.openSockets(ifindex)
	p.filterMu.Unlock()
	if err != nil {
		return err
	}
	for i, fd := range fds {
		var r *rxRing
		if rings != nil {
			r = rings[i]
		}
		if err := p.setFDLocked(i, fd, r); err != nil {
			return err
		}
	}
	p.reopens.Add(1)
	return nil
}

// LinkState returns the interface's last known state.
func (p *Packet) LinkState() LinkState { return p.watch.State() }

// Stats returns every socket's counters and how often the endpoint opened
// a fresh socket set.
func (p *Packet) Stats() counters.Endpoint {
	s := p.engine.Stats()
	s.Reopens = p.reopens.Load()
	return s
}

// Interface returns the interface name.
func (p *Packet) Interface() string { return p.ifname }

// membership adds or drops one PACKET_*_MEMBERSHIP on fd.
func membership(fd, ifindex int, add bool, typ uint16, mac []byte) error {
	op := unix.PACKET_ADD_MEMBERSHIP
	if !add {
		op = unix.PACKET_DROP_MEMBERSHIP
	}
	r := &unix.PacketMreq{Ifindex: int32(ifindex), Type: typ, Alen: uint16(len(mac))}
	copy(r.Address[:], mac)
	return unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, op, r)
}

// applyMemberships puts promiscuity and the current memberships on fd, the
// first socket of a fresh set.
//
// Preconditions: p.filterMu is held (or the endpoint is not yet shared).
func (p *Packet) applyMemberships(fd, ifindex int) error {
	if p.promisc {
		if err := membership(fd, ifindex, true, unix.PACKET_MR_PROMISC, nil); err != nil {
			return fmt.Errorf("af_packet %q: promiscuous: %w", p.ifname, err)
		}
	}
	if p.allmulti {
		if err := membership(fd, ifindex, true, unix.PACKET_MR_ALLMULTI, nil); err != nil {
			return fmt.Errorf("af_packet %q: allmulti membership: %w", p.ifname, err)
		}
	}
	for _, set := range []struct {
		m   map[[6]byte]struct{}
		typ uint16
	}{{p.unicast, unix.PACKET_MR_UNICAST}, {p.multicast, unix.PACKET_MR_MULTICAST}} {
		for m := range set.m {
			if err := membership(fd, ifindex, true, set.typ, m[:]); err != nil {
				return fmt.Errorf("af_packet %q: add membership %s: %w", p.ifname, net.HardwareAddr(m[:]), err)
			}
		}
	}
	return nil
}

// SetUnicastFilter makes the interface accept exactly macs as additional
// unicast addresses (PACKET_MR_UNICAST memberships, like `bridge fdb add
// MAC dev IF self`), adding and removing only the difference from the
// current set. Useful with NoPromiscuous.
func (p *Packet) SetUnicastFilter(macs [][6]byte) error {
	return p.setFilter(p.unicast, macs, unix.PACKET_MR_UNICAST)
}

// SetMulticastFilter makes the interface accept exactly groups as multicast
// addresses (PACKET_MR_MULTICAST memberships, like `ip maddr add`), adding
// and removing only the difference from the current set.
func (p *Packet) SetMulticastFilter(groups [][6]byte) error {
	return p.setFilter(p.multicast, groups, unix.PACKET_MR_MULTICAST)
}

// SetAllMulti makes the interface accept every multicast frame (on) or
// only the groups joined (off), with a PACKET_MR_ALLMULTI membership like
// `ip link set IF allmulticast on`. The kernel counts such memberships per
// device, so other users' allmulti setting is kept; closing the endpoint
// drops ours.
func (p *Packet) SetAllMulti(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filterMu.Lock()
	defer p.filterMu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if p.allmulti == on {
		return nil
	}
	if fd := p.firstFDLocked(); fd >= 0 {
		if err := membership(fd, int(p.ifindex.Load()), on, unix.PACKET_MR_ALLMULTI, nil); err != nil {
			return fmt.Errorf("af_packet %q: allmulti membership %v: %w", p.ifname, on, err)
		}
	}
	p.allmulti = on
	return nil
}

// firstFDLocked is the FD memberships live on: the first socket's, or -1
// while the set is down (the next reopen applies them).
//
// Preconditions: p.mu is held.
func (p *Packet) firstFDLocked() int {
	q := p.queueList()[0]
	if QueueState(q.state.Load()) == QueueDead {
		return -1
	}
	return q.fd
}

// SetBusyPoll is the engine's SetBusyPoll, and SO_BUSY_POLL on the open
// sockets as well as on those opened later.
func (p *Packet) SetBusyPoll(d time.Duration) {
	p.engine.SetBusyPoll(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range p.queueList() {
		if q.fd >= 0 { // FDs change only under p.mu
			setSocketBusyPoll(q.fd, p.BusyPoll())
		}
	}
}

// setSocketBusyPoll sets SO_BUSY_POLL to d in µs and, with it, asks the
// kernel to prefer busy polling over interrupts (SO_PREFER_BUSY_POLL). A
// kernel or device without busy polling ignores it; errors are not
// fatal: the reader's own polling (SetBusyPoll) works without.
func setSocketBusyPoll(fd int, d time.Duration) {
	us := int(d / time.Microsecond)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, us)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, min(us, 1))
}

func (p *Packet) setFilter(cur map[[6]byte]struct{}, want [][6]byte, typ uint16) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.filterMu.Lock()
	defer p.filterMu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	fd, ifindex := p.firstFDLocked(), int(p.ifindex.Load())
	wantSet := make(map[[6]byte]struct{}, len(want))
	for _, m := range want {
		wantSet[m] = struct{}{}
	}
	for m := range cur {
		if _, ok := wantSet[m]; ok {
			continue
		}
		if fd >= 0 {
			if err := membership(fd, ifindex, false, typ, m[:]); err != nil {
				return fmt.Errorf("af_packet %q: drop membership %s: %w", p.ifname, net.HardwareAddr(m[:]), err)
			}
		}
		delete(cur, m)
	}
	for m := range wantSet {
		if _, ok := cur[m]; ok {
			continue
		}
		if fd >= 0 {
			if err := membership(fd, ifindex, true, typ, m[:]); err != nil {
				return fmt.Errorf("af_packet %q: add membership %s: %w", p.ifname, net.HardwareAddr(m[:]), err)
			}
		}
		cur[m] = struct{}{}
	}
	return nil
}

// Close implements stack.LinkEndpoint.Close. It is idempotent. Order: stop
// following the link (no reopen can start), stop the readers, fence the
// writers and close the sockets (which drops their memberships and the
// fanout group).
func (p *Packet) Close() {
	p.closeOnce.Do(func() {
		p.watch.Close()
		p.closeQueues()
		p.ns.close()
	})
}
