//go:build linux

package endpoints

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Batching of the AF_PACKET endpoint.
const (
	// packetRxBatch is the number of frames one recvmmsg may return; as
	// fdbased's MaxMsgsPerRecv. Each slot holds a 64 KiB buffer set.
	packetRxBatch = 8
	// packetTxBatch is the number of frames per sendmmsg; gVisor's qdisc
	// BatchSize.
	packetTxBatch = 47
	// maxPacketQueues caps the default of one socket per CPU.
	maxPacketQueues = 16
	// sockaddrLLSize is sizeof(struct sockaddr_ll); sll_pkttype is at 10.
	sockaddrLLSize  = unix.SizeofSockaddrLinklayer
	sllPkttypeOff   = 10
	auxdataSize     = 20 // sizeof(struct tpacket_auxdata)
	auxVLANTCIOff   = 16
	auxVLANTPIDOff  = 18
	tpStatusTPIDVal = 0x40 // TP_STATUS_VLAN_TPID_VALID (include/uapi/linux/if_packet.h)
)

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
	// Queues is the number of sockets in the fanout group; 0 means one per
	// CPU, at most 16.
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
	// OnLinkChange, if set, is called when the interface's operational
	// state (IFF_UP and IFF_LOWER_UP) or MTU changes. It runs on the link
	// watcher goroutine and must not block.
	OnLinkChange func(up bool, mtu uint32)
	// OnQueueState, if set, is called when a socket fails (up=false).
	OnQueueState func(q int, up bool)
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
}

// Packet is an AF_PACKET endpoint bound to one netdev: the switch's lower
// NIC, or a port on an existing netdev such as a veth into a sandbox.
//
// Its sockets (SOCK_RAW, ETH_P_ALL, bound to the ifindex) form one
// PACKET_FANOUT_HASH group created with PACKET_FANOUT_FLAG_IGNORE_OUTGOING,
// so the kernel spreads flows over them and never returns our own
// transmissions; frames with sll_pkttype PACKET_OUTGOING are dropped in
// userspace too, for kernels without the flag. PACKET_VNET_HDR keeps GSO
// and partial-checksum metadata, and PACKET_AUXDATA lets us re-insert the
// VLAN tag the kernel stripped, as macvtap does on read.
//
// Receive: while attached, one goroutine per socket reads until the socket
// is empty and then parks on Go's netpoller (pollWaiter; Attach(nil) and
// Close stop it with a past read deadline). Options.Rx picks how it reads:
// recvmmsg batches into pooled views (rxLoop), or the socket's own mapped
// TPACKET_V3 ring, one block at a time, each frame copied out once
// (ringLoop, see rxRing). Delivery is as Tap's: the whole frame, via
// QueueDispatcher with the socket index when implemented.
//
// Transmit: sendmmsg batches with reusable mmsghdr and iovec scratch per
// socket, non-blocking; a full socket buffer drops and counts.
//
// Ownership: the endpoint creates and owns its sockets and closes them in
// Close. Methods are safe for concurrent use.
type Packet struct {
	log          *slog.Logger
	onLinkChange func(up bool, mtu uint32)
	onQueueState func(q int, up bool)
	netns        string
	ifname       string
	ifindex      int
	hdrSize      int
	rx           PacketRx // resolved: never PacketRxDefault
	socks        []*packetSock

	linkAttrs // MTU, MAC, dispatcher, close action

	up     atomic.Bool
	closed atomic.Bool

	// mu serializes Attach and Close. Never held while delivering.
	mu       sync.Mutex
	attached bool
	wg       sync.WaitGroup // rxLoops

	// filterMu guards the memberships, applied on socket 0.
	filterMu  sync.Mutex
	unicast   map[[6]byte]struct{}
	multicast map[[6]byte]struct{}
	allmulti  bool

	linkDone chan struct{}
	linkWG   sync.WaitGroup
}

var (
	_ stack.LinkEndpoint = (*Packet)(nil)
	_ stack.GSOEndpoint  = (*Packet)(nil)
)

// packetSock is one socket of the fanout group.
type packetSock struct {
	idx   int
	fd    int
	state atomic.Uint32
	c     queueCounters
	ring  *rxRing // PacketRxRing only; read by the socket's reader

	stopMu sync.Mutex
	stop   *pollWaiter
	done   chan struct{}

	wmu sync.Mutex // guards tx and writing to fd against Close
	tx  packetTx
}

// packetTx is a writer's sendmmsg scratch.
type packetTx struct {
	txScratch
	mmsg  []rawfile.MMsgHdr
	iovs  []unix.Iovec
	spans [][2]int // iovec range of each mmsg entry
	lens  []int    // frame bytes of each mmsg entry
	hdrs  [][VnetHdrSize]byte
}

// NewPacket opens the sockets, joins them into a fanout group, sets
// promiscuity and starts following the interface's link state.
func NewPacket(opts PacketOptions) (*Packet, error) {
	if opts.Interface == "" {
		return nil, fmt.Errorf("af_packet: no interface")
	}
	nq := opts.Queues
	if nq == 0 {
		nq = min(runtime.NumCPU(), maxPacketQueues)
	}
	if nq < 1 || nq > maxPacketQueues*4 {
		return nil, fmt.Errorf("af_packet %q: queues %d out of range", opts.Interface, nq)
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
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Packet{
		rx:           rx,
		log:          log,
		onLinkChange: opts.OnLinkChange,
		onQueueState: opts.OnQueueState,
		netns:        opts.NetNS,
		ifname:       opts.Interface,
		unicast:      map[[6]byte]struct{}{},
		multicast:    map[[6]byte]struct{}{},
	}
	if !opts.NoVnetHdr {
		p.hdrSize = VnetHdrSize
	}
	h, ns, err := netlinkHandle(opts.NetNS)
	if err != nil {
		return nil, err
	}
	link, err := h.LinkByName(opts.Interface)
	h.Close()
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("af_packet: find interface %q: %w", opts.Interface, err)
	}
	a := link.Attrs()
	p.ifindex = a.Index
	p.mtu.Store(uint32(a.MTU))
	p.up.Store(linkUp(a.RawFlags))
	mac := tcpip.LinkAddress(a.HardwareAddr)
	p.mac.Store(&mac)

	var fds []int
	var rings []*rxRing
	err = inNetNS(opts.NetNS, func() error {
		var err error
		fds, rings, err = p.openSockets(nq, ring)
		return err
	})
	if err != nil {
		ns.Close()
		return nil, err
	}
	fail := func(err error) (*Packet, error) {
		ns.Close()
		closeFDs(fds)
		for _, r := range rings {
			r.unmap()
		}
		return nil, err
	}
	for i, fd := range fds {
		s := &packetSock{idx: i, fd: fd}
		if rings != nil {
			s.ring = rings[i]
		}
		s.tx.txScratch = newTxScratch(p.hdrSize)
		p.socks = append(p.socks, s)
	}
	if !opts.NoPromiscuous {
		mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fds[0], unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fail(fmt.Errorf("af_packet %q: promiscuous: %w", opts.Interface, err))
		}
	}
	if err := p.watchLink(ns); err != nil {
		return fail(err)
	}
	ns.Close()
	return p, nil
}

func linkUp(rawFlags uint32) bool {
	return rawFlags&unix.IFF_UP != 0 && rawFlags&unix.IFF_LOWER_UP != 0
}

// openSockets creates n bound sockets in one fanout group, each with a
// mapped receive ring in PacketRxRing mode. It runs in the interface's
// namespace.
func (p *Packet) openSockets(n int, ring RingOptions) (fds []int, rings []*rxRing, err error) {
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
	for i := 0; i < n; i++ {
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
			r, err := newRxRing(fd, ring)
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
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}
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

// watchLink subscribes to link updates in the interface's namespace and
// starts linkLoop.
func (p *Packet) watchLink(ns netns.NsHandle) error {
	ch := make(chan netlink.LinkUpdate, 16)
	p.linkDone = make(chan struct{})
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			p.log.Debug("link watch", "interface", p.ifname, "err", err)
		},
	}
	if ns.IsOpen() {
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(ch, p.linkDone, opts); err != nil {
		return fmt.Errorf("af_packet %q: subscribe to link updates: %w", p.ifname, err)
	}
	p.linkWG.Add(1)
	go p.linkLoop(ch)
	return nil
}

// linkLoop follows the interface's state until the subscription closes ch
// (after Close closes linkDone). It keeps draining so the subscription's
// goroutine never blocks.
func (p *Packet) linkLoop(ch <-chan netlink.LinkUpdate) {
	defer p.linkWG.Done()
	for u := range ch {
		if u.Link == nil || u.Attrs().Index != p.ifindex {
			continue
		}
		up := linkUp(u.IfInfomsg.Flags) && u.Header.Type != unix.RTM_DELLINK
		mtu := uint32(u.Attrs().MTU)
		oldUp, oldMTU := p.up.Swap(up), p.mtu.Swap(mtu)
		if oldUp == up && oldMTU == mtu {
			continue
		}
		p.log.Info("link changed", "interface", p.ifname, "up", up, "mtu", mtu)
		if p.onLinkChange != nil {
			p.onLinkChange(up, mtu)
		}
	}
}

// LinkState returns the interface's last known operational state and MTU.
func (p *Packet) LinkState() (up bool, mtu uint32) { return p.up.Load(), p.mtu.Load() }

// Interface returns the interface name.
func (p *Packet) Interface() string { return p.ifname }

// NumQueues returns the number of sockets in the fanout group.
func (p *Packet) NumQueues() int { return len(p.socks) }

// GSOMaxSize implements stack.GSOEndpoint.
func (p *Packet) GSOMaxSize() uint32 {
	if p.hdrSize > 0 {
		return GSOMaxSize
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.
func (p *Packet) SupportedGSO() stack.SupportedGSO {
	if p.hdrSize > 0 {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

// Attach implements stack.LinkEndpoint.Attach; see Tap.Attach.
func (p *Packet) Attach(d stack.NetworkDispatcher) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d == nil {
		p.stopReadersLocked()
		p.dispatch.Store(nil)
		p.attached = false
		return
	}
	p.dispatch.Store(newDispatchers(d))
	if p.attached || p.closed.Load() {
		return
	}
	p.attached = true
	for _, s := range p.socks {
		if s.done != nil || QueueState(s.state.Load()) == QueueDead {
			continue
		}
		sfd, err := newPollWaiter(s.fd)
		if err != nil {
			p.log.Error("af_packet reader not started", "interface", p.ifname, "queue", s.idx, "err", err)
			continue
		}
		s.stopMu.Lock()
		s.stop = sfd
		s.stopMu.Unlock()
		s.done = make(chan struct{})
		p.wg.Add(1)
		if s.ring != nil {
			go p.ringLoop(s, sfd, s.done)
		} else {
			go p.rxLoop(s, sfd, s.done)
		}
	}
}

// Preconditions: p.mu is held.
func (p *Packet) stopReadersLocked() {
	for _, s := range p.socks {
		if s.done != nil {
			s.stop.Stop()
		}
	}
	for _, s := range p.socks {
		if s.done == nil {
			continue
		}
		<-s.done
		s.stopMu.Lock()
		s.stop.Close()
		s.stop = nil
		s.stopMu.Unlock()
		s.done = nil
	}
}

// Wait implements stack.LinkEndpoint.Wait.
func (p *Packet) Wait() { p.wg.Wait() }

// packetRx is a reader's recvmmsg scratch.
type packetRx struct {
	bufs  []*rxBuffer
	mmsg  []rawfile.MMsgHdr
	names [][sockaddrLLSize]byte
	ctrl  [][]byte
	rs    rxScratch
}

func (p *Packet) newPacketRx() *packetRx {
	r := &packetRx{
		mmsg:  make([]rawfile.MMsgHdr, packetRxBatch),
		names: make([][sockaddrLLSize]byte, packetRxBatch),
		ctrl:  make([][]byte, packetRxBatch),
	}
	for i := 0; i < packetRxBatch; i++ {
		// 4 bytes of gap in the first view for a VLAN tag to re-insert.
		r.bufs = append(r.bufs, newRxBuffer(p.hdrSize, MaxFrameSize, 4))
		r.ctrl[i] = make([]byte, unix.CmsgSpace(auxdataSize))
	}
	return r
}

func (r *packetRx) prepare() {
	for i := range r.mmsg {
		iovs := r.bufs[i].iovecs()
		m := &r.mmsg[i]
		m.Len = 0
		m.Msg = unix.Msghdr{}
		m.Msg.Iov = &iovs[0]
		m.Msg.SetIovlen(len(iovs))
		m.Msg.Name = &r.names[i][0]
		m.Msg.Namelen = sockaddrLLSize
		m.Msg.Control = &r.ctrl[i][0]
		m.Msg.SetControllen(len(r.ctrl[i]))
	}
}

func (r *packetRx) release() {
	for _, b := range r.bufs {
		b.release()
	}
}

// auxVLAN extracts the VLAN tag from a PACKET_AUXDATA control message.
func auxVLAN(ctrl []byte) (tagged bool, tpid, tci uint16) {
	hdrLen := unix.CmsgLen(0)
	for off := 0; off+hdrLen <= len(ctrl); {
		var l int
		if unix.SizeofCmsghdr == 16 {
			l = int(binary.NativeEndian.Uint64(ctrl[off:]))
		} else {
			l = int(binary.NativeEndian.Uint32(ctrl[off:]))
		}
		lenOff := unix.SizeofCmsghdr - 8
		level := int32(binary.NativeEndian.Uint32(ctrl[off+lenOff:]))
		typ := int32(binary.NativeEndian.Uint32(ctrl[off+lenOff+4:]))
		if l < hdrLen || off+l > len(ctrl) {
			return false, 0, 0
		}
		data := ctrl[off+hdrLen : off+l]
		if level == unix.SOL_PACKET && typ == unix.PACKET_AUXDATA && len(data) >= auxdataSize {
			status := binary.NativeEndian.Uint32(data)
			if status&unix.TP_STATUS_VLAN_VALID == 0 {
				return false, 0, 0
			}
			tci = binary.NativeEndian.Uint16(data[auxVLANTCIOff:])
			tpid = 0x8100
			if status&tpStatusTPIDVal != 0 {
				tpid = binary.NativeEndian.Uint16(data[auxVLANTPIDOff:])
			}
			return true, tpid, tci
		}
		off += unix.CmsgSpace(l - hdrLen)
	}
	return false, 0, 0
}

// rxLoop receives batches from one socket until stopped or the socket fails.
func (p *Packet) rxLoop(s *packetSock, w *pollWaiter, done chan struct{}) {
	defer p.wg.Done()
	defer close(done)
	// The waiter's dup keeps the queue open in the kernel: release it as
	// soon as the reader ends, so a failed queue is detached at once.
	defer w.Close()
	r := p.newPacketRx()
	defer r.release()
	for {
		r.prepare()
		n, errno := w.recvmmsg(r.mmsg)
		switch {
		case n == -1:
			return
		case errno != 0:
			p.queueFailed(s, "recvmmsg", errno)
			return
		}
		for i := 0; i < n; i++ {
			p.handleFrame(s, r, i)
		}
	}
}

func (p *Packet) handleFrame(s *packetSock, r *packetRx, i int) {
	m := &r.mmsg[i]
	b := r.bufs[i]
	if r.names[i][sllPkttypeOff] == unix.PACKET_OUTGOING {
		s.c.rxDrops[DropOutgoing].Add(1)
		return
	}
	n := int(m.Len)
	if m.Msg.Flags&unix.MSG_TRUNC != 0 || n >= b.capacity()+p.hdrSize {
		s.c.rxDrops[DropOversize].Add(1)
		return
	}
	if n < p.hdrSize {
		s.c.vnetErrors[VnetShortWrite].Add(1)
		return
	}
	var vh VnetHdr
	if p.hdrSize > 0 {
		vh, _ = ParseVnetHdr(b.vnet)
	}
	tagged, tpid, tci := auxVLAN(r.ctrl[i][:m.Msg.Controllen])
	read := n - p.hdrSize
	if read < 12 {
		s.c.rxDrops[DropRunt].Add(1)
		return
	}
	frameLen := b.fillGap(read, tagged, tpid, tci)
	if tagged && vh.NeedsCsum() {
		vh.CsumStart += 4
	}
	if tagged && vh.HdrLen != 0 {
		vh.HdrLen += 4
	}
	deliverFrame(&p.dispatch, &s.c, s.idx, b, b.head(frameLen), frameLen, p.hdrSize > 0, vh, &r.rs)
}

func (p *Packet) queueFailed(s *packetSock, op string, err error) {
	if p.closed.Load() {
		return
	}
	if QueueState(s.state.Swap(uint32(QueueDead))) == QueueDead {
		return
	}
	s.c.failures.Add(1)
	s.stopMu.Lock()
	if s.stop != nil {
		s.stop.Stop()
	}
	s.stopMu.Unlock()
	p.log.Warn("af_packet socket down", "interface", p.ifname, "queue", s.idx, "op", op, "err", err)
	if p.onQueueState != nil {
		p.onQueueState(s.idx, false)
	}
	for _, o := range p.socks {
		if QueueState(o.state.Load()) != QueueDead {
			return
		}
	}
	p.runCloseAction()
}

func pickSock(ss []*packetSock, i int) *packetSock {
	for k := range ss {
		s := ss[(i+k)%len(ss)]
		if QueueState(s.state.Load()) != QueueDead {
			return s
		}
	}
	return nil
}

// WritePackets implements stack.LinkWriter.WritePackets: consecutive
// packets for the same socket (pkt.Hash % NumQueues()) go out in one
// sendmmsg. Packets are borrowed; results are as Tap.WritePackets'.
func (p *Packet) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	all := pkts.AsSlice()
	n := 0
	var terr tcpip.Error
	for len(all) > 0 {
		qi := int(all[0].Hash % uint32(len(p.socks)))
		j := 1
		for j < len(all) && int(all[j].Hash%uint32(len(p.socks))) == qi {
			j++
		}
		sent, err := p.writeBatch(pickSock(p.socks, qi), all[:j])
		n += sent
		if err != nil {
			terr = err
		}
		all = all[j:]
	}
	return n, terr
}

// WriteQueue writes pkts (borrowed) through socket q % NumQueues().
func (p *Packet) WriteQueue(q int, pkts stack.PacketBufferList) (int, tcpip.Error) {
	return p.writeBatch(pickSock(p.socks, q%len(p.socks)), pkts.AsSlice())
}

func (p *Packet) writeBatch(s *packetSock, pkts []*stack.PacketBuffer) (int, tcpip.Error) {
	if s == nil {
		p.socks[0].c.txDrops[DropQueueDown].Add(uint64(len(pkts)))
		return 0, &tcpip.ErrClosedForSend{}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if p.closed.Load() || s.fd < 0 {
		s.c.txDrops[DropClosed].Add(uint64(len(pkts)))
		return 0, &tcpip.ErrClosedForSend{}
	}
	tx := &s.tx
	mtu := int(p.mtu.Load())
	vnet := p.hdrSize > 0
	sent := 0
	var terr tcpip.Error
	tx.reset()
	for _, pkt := range pkts {
		frameLen := pkt.Size()
		head := peekPacket(tx.head[:], pkt)
		h, act, reason := planTx(pkt.GSOOptions, head, frameLen, mtu, vnet, vnet)
		switch act {
		case txDrop:
			s.c.txDrops[reason].Add(1)
			continue
		case txDirect:
			tx.add(h, pkt, frameLen, vnet)
			if len(tx.mmsg) == packetTxBatch {
				k, err := p.flush(s)
				sent += k
				if err != nil {
					terr = err
				}
			}
			continue
		}
		// Software fallback: keep order by flushing the batch first.
		k, err := p.flush(s)
		sent += k
		if err != nil {
			terr = err
		}
		if s.fd < 0 {
			continue
		}
		ok, r, errno := writeFrame(s.fd, &tx.txScratch, &s.c, p.hdrSize, pkt, mtu, vnet, vnet, writevFD)
		if ok {
			sent++
			continue
		}
		if errno != 0 && fdBroken(errno) {
			p.queueFailed(s, "write", errno)
		}
		if r == DropTxFull {
			terr = &tcpip.ErrWouldBlock{}
		}
	}
	k, err := p.flush(s)
	sent += k
	if err != nil {
		terr = err
	}
	return sent, terr
}

func (tx *packetTx) reset() {
	tx.mmsg, tx.iovs, tx.spans, tx.lens = tx.mmsg[:0], tx.iovs[:0], tx.spans[:0], tx.lens[:0]
}

// add queues one frame for the next sendmmsg.
func (tx *packetTx) add(h VnetHdr, pkt *stack.PacketBuffer, frameLen int, vnet bool) {
	k := len(tx.mmsg)
	if len(tx.hdrs) <= k {
		tx.hdrs = append(tx.hdrs, [VnetHdrSize]byte{})
	}
	start := len(tx.iovs)
	if vnet {
		h.Encode(tx.hdrs[k][:])
		tx.iovs = append(tx.iovs, unix.Iovec{Base: &tx.hdrs[k][0]})
		tx.iovs[len(tx.iovs)-1].SetLen(VnetHdrSize)
	}
	views, off := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b = b[off:]
		off = 0
		if len(tx.iovs)-start >= rawfile.MaxIovs {
			break // cannot happen for frames of at most 64 KiB
		}
		tx.iovs = append(tx.iovs, unix.Iovec{Base: &b[0]})
		tx.iovs[len(tx.iovs)-1].SetLen(len(b))
	}
	tx.mmsg = append(tx.mmsg, rawfile.MMsgHdr{})
	tx.spans = append(tx.spans, [2]int{start, len(tx.iovs)})
	tx.lens = append(tx.lens, frameLen)
}

// flush sends the queued frames. Preconditions: s.wmu is held.
func (p *Packet) flush(s *packetSock) (int, tcpip.Error) {
	tx := &s.tx
	if len(tx.mmsg) == 0 {
		return 0, nil
	}
	defer tx.reset()
	// Point the headers at the iovecs only now: appends may have moved them.
	for i := range tx.mmsg {
		sp := tx.spans[i]
		tx.mmsg[i] = rawfile.MMsgHdr{}
		tx.mmsg[i].Msg.Iov = &tx.iovs[sp[0]]
		tx.mmsg[i].Msg.SetIovlen(sp[1] - sp[0])
	}
	sent := 0
	var terr tcpip.Error
	for i := 0; i < len(tx.mmsg); {
		n, errno := rawfile.NonBlockingSendMMsg(s.fd, tx.mmsg[i:])
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			s.c.txDrops[DropTxFull].Add(uint64(len(tx.mmsg) - i))
			return sent, &tcpip.ErrWouldBlock{}
		case errno != 0:
			// The first remaining frame was refused; skip it.
			s.c.txDrops[DropTxError].Add(1)
			if fdBroken(errno) {
				s.c.txDrops[DropTxError].Add(uint64(len(tx.mmsg) - i - 1))
				p.queueFailed(s, "sendmmsg", errno)
				return sent, &tcpip.ErrClosedForSend{}
			}
			terr = tcpip.TranslateErrno(errno)
			i++
			continue
		}
		for k := i; k < i+n; k++ {
			s.c.txPackets.Add(1)
			s.c.txBytes.Add(uint64(tx.lens[k]))
		}
		sent += n
		i += n
	}
	return sent, terr
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
	p.filterMu.Lock()
	defer p.filterMu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	if p.allmulti == on {
		return nil
	}
	op, name := unix.PACKET_ADD_MEMBERSHIP, "add"
	if !on {
		op, name = unix.PACKET_DROP_MEMBERSHIP, "drop"
	}
	mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_ALLMULTI}
	if err := unix.SetsockoptPacketMreq(p.socks[0].fd, unix.SOL_PACKET, op, &mreq); err != nil {
		return fmt.Errorf("af_packet %q: %s allmulti membership: %w", p.ifname, name, err)
	}
	p.allmulti = on
	return nil
}

func (p *Packet) setFilter(cur map[[6]byte]struct{}, want [][6]byte, typ uint16) error {
	p.filterMu.Lock()
	defer p.filterMu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	fd := p.socks[0].fd
	wantSet := make(map[[6]byte]struct{}, len(want))
	for _, m := range want {
		wantSet[m] = struct{}{}
	}
	mreq := func(m [6]byte) *unix.PacketMreq {
		r := &unix.PacketMreq{Ifindex: int32(p.ifindex), Type: typ, Alen: 6}
		copy(r.Address[:], m[:])
		return r
	}
	for m := range cur {
		if _, ok := wantSet[m]; ok {
			continue
		}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_DROP_MEMBERSHIP, mreq(m)); err != nil {
			return fmt.Errorf("af_packet %q: drop membership %s: %w", p.ifname, net.HardwareAddr(m[:]), err)
		}
		delete(cur, m)
	}
	for m := range wantSet {
		if _, ok := cur[m]; ok {
			continue
		}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq(m)); err != nil {
			return fmt.Errorf("af_packet %q: add membership %s: %w", p.ifname, net.HardwareAddr(m[:]), err)
		}
		cur[m] = struct{}{}
	}
	return nil
}

// Stats returns a snapshot of every socket's counters.
func (p *Packet) Stats() Stats {
	s := Stats{Queues: make([]QueueStats, len(p.socks))}
	for i, q := range p.socks {
		s.Queues[i] = q.c.snapshot(QueueState(q.state.Load()))
	}
	return s
}

// Close implements stack.LinkEndpoint.Close. It is idempotent. Order: stop
// the link watcher and the readers, fence writers and close the sockets
// (which drops their memberships and the fanout group).
func (p *Packet) Close() {
	p.mu.Lock()
	if p.closed.Swap(true) {
		p.mu.Unlock()
		return
	}
	close(p.linkDone)
	p.stopReadersLocked()
	p.dispatch.Store(nil)
	p.attached = false
	p.filterMu.Lock()
	for _, s := range p.socks {
		s.wmu.Lock()
		if s.fd >= 0 {
			unix.Close(s.fd)
			s.fd = -1
		}
		s.state.Store(uint32(QueueDead))
		s.wmu.Unlock()
		if s.ring != nil {
			s.ring.unmap() // its reader has returned
		}
	}
	p.filterMu.Unlock()
	p.mu.Unlock()
	p.linkWG.Wait()
}
