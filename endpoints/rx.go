//go:build linux

package endpoints

import (
	"encoding/binary"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The receive side of the engine: the reader strategies and the one path
// every received frame takes into the dispatcher (deliver).

// rxBufSizes shapes receive buffers: the first view holds any frame's L2-L4
// headers, so that validation reads them without copying; the sum covers
// MaxFrameSize plus a virtio-net header, with one spare byte so that a
// full-buffer read reveals truncation. The views come from gVisor's chunk
// pools.
var rxBufSizes = []int{256, 256, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768}

// rxBuffer is a reader's reusable set of pooled views and the iovecs that
// point at them (the shape of fdbased's iovecBuffer). The first iovec
// receives the virtio-net header, which is parsed and not kept.
type rxBuffer struct {
	sizes   []int
	views   []*buffer.View
	iovs    []unix.Iovec
	vnet    []byte
	vlanGap int // bytes left free at offset 12 of the first view (AF_PACKET VLAN re-insertion)
}

// newRxBuffer sizes the buffer for frames of up to maxFrame bytes.
func newRxBuffer(hdrSize, maxFrame, vlanGap int) *rxBuffer {
	b := &rxBuffer{vlanGap: vlanGap}
	total := 0
	for _, s := range rxBufSizes {
		b.sizes = append(b.sizes, s)
		total += s
		if total > maxFrame+vlanGap {
			break
		}
	}
	b.views = make([]*buffer.View, len(b.sizes))
	b.vnet = make([]byte, max(hdrSize, 1))[:hdrSize]
	n := len(b.sizes)
	if hdrSize > 0 {
		n++
	}
	if vlanGap > 0 {
		n++
	}
	b.iovs = make([]unix.Iovec, 0, n)
	return b
}

// capacity is the largest frame a read can return without truncation.
func (b *rxBuffer) capacity() int {
	c := -b.vlanGap
	for _, s := range b.sizes {
		c += s
	}
	return c
}

// iovecs allocates views consumed by the previous pull and returns the
// iovecs for the next read.
func (b *rxBuffer) iovecs() []unix.Iovec {
	b.iovs = b.iovs[:0]
	if len(b.vnet) > 0 {
		b.iovs = append(b.iovs, unix.Iovec{Base: &b.vnet[0]})
		b.iovs[len(b.iovs)-1].SetLen(len(b.vnet))
	}
	if b.vlanGap > 0 && b.views[0] != nil && b.views[0].Size() != b.sizes[0] {
		// fillGap trimmed it for a frame that was then dropped.
		b.views[0].Release()
		b.views[0] = nil
	}
	for i := range b.views {
		if b.views[i] == nil {
			b.views[i] = buffer.NewViewSize(b.sizes[i])
		}
		s := b.views[i].AsSlice()
		if i == 0 && b.vlanGap > 0 {
			b.iovs = append(b.iovs, unix.Iovec{Base: &s[0]})
			b.iovs[len(b.iovs)-1].SetLen(12)
			s = s[12+b.vlanGap:]
		}
		b.iovs = append(b.iovs, unix.Iovec{Base: &s[0]})
		b.iovs[len(b.iovs)-1].SetLen(len(s))
	}
	return b.iovs
}

// head returns the start of the frame in the first view, valid until pull
// (at most the first view's size).
func (b *rxBuffer) head(frameLen int) []byte {
	s := b.views[0].AsSlice()
	return s[:min(len(s), frameLen)]
}

// fillGap finishes the frame of an AF_PACKET read with a VLAN gap: it puts
// the tag (TPID, TCI) in the gap, or, with no tag, closes the gap by moving
// the MAC addresses up. It returns the frame length. n is the frame bytes
// the read returned (without the virtio-net header).
func (b *rxBuffer) fillGap(n int, tagged bool, tpid, tci uint16) int {
	if b.vlanGap == 0 {
		return n
	}
	v := b.views[0].AsSlice()
	if tagged && n >= 12 {
		binary.BigEndian.PutUint16(v[12:], tpid)
		binary.BigEndian.PutUint16(v[14:], tci)
		return n + b.vlanGap
	}
	copy(v[b.vlanGap:12+b.vlanGap], v[:12])
	b.views[0].TrimFront(b.vlanGap)
	return n
}

// pull detaches the views holding frameLen bytes of frame and returns them
// as a buffer the caller owns (usually moved into a PacketBuffer).
func (b *rxBuffer) pull(frameLen int) buffer.Buffer {
	var out buffer.Buffer
	rem := frameLen
	for i := range b.views {
		if rem <= 0 {
			break
		}
		v := b.views[i]
		n := min(v.Size(), rem)
		v.CapLength(n)
		out.Append(v)
		b.views[i] = nil
		rem -= n
	}
	return out
}

func (b *rxBuffer) release() {
	for i, v := range b.views {
		if v != nil {
			v.Release()
			b.views[i] = nil
		}
	}
}

// rxScratch is a reader's memory for USO segmentation on receive.
type rxScratch struct {
	flat, seg []byte
}

// receive validates one frame read into b (frameLen bytes, whose start is
// head) with its virtio-net header vh (when the engine uses one), handles
// USO and UFO, wraps the frame's views in a packet and delivers it. Every
// frame read is either delivered or counted under a reason.
func (q *fdQueue) receive(b *rxBuffer, head []byte, frameLen int, vh VnetHdr, rs *rxScratch) {
	e, c := q.e, &q.c
	var g stack.GSO
	validated := false
	if e.hdrSize > 0 {
		validated = vh.Flags&VnetFlagDataValid != 0
		h, r := vh.check(head, frameLen)
		if r != VnetOK {
			c.vnetErrors[r].Add(1)
			return
		}
		switch h.GSOType &^ VnetGSOECN {
		case VnetGSOUDPL4:
			q.receiveUSO(b, frameLen, h, rs)
			return
		case VnetGSOUDP:
			c.rxDrops[DropUnsupportedGSO].Add(1)
			return
		}
		l2, _, _ := l2Len(head)
		g, _ = h.GSO(l2)
	} else if frameLen < header.EthernetMinimumSize {
		c.rxDrops[DropRunt].Add(1)
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: b.pull(frameLen)})
	pkt.GSOOptions = g
	pkt.RXChecksumValidated = validated
	c.rxPackets.Add(1)
	c.rxBytes.Add(uint64(frameLen))
	deliver(&e.dispatch, q.idx, head, pkt)
	pkt.DecRef()
}

// receiveUSO segments a received USO super-frame in software and delivers
// each datagram: gVisor's stack.GSO has no UDP type to carry it on.
func (q *fdQueue) receiveUSO(b *rxBuffer, frameLen int, h VnetHdr, rs *rxScratch) {
	c := &q.c
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
		deliver(&q.e.dispatch, q.idx, seg, pkt)
		pkt.DecRef()
		return true
	})
	if err != nil {
		c.rxDrops[DropMalformed].Add(1)
		return
	}
	c.segmented.Add(1)
}

// readvReader reads one frame per readv, with the virtio-net header in the
// first iovec: a tap queue.
type readvReader struct {
	q  *fdQueue
	b  *rxBuffer
	rs rxScratch
}

func newReadvReader(q *fdQueue) reader {
	return &readvReader{q: q, b: newRxBuffer(q.e.hdrSize, MaxFrameSize, 0)}
}

func (r *readvReader) release() { r.b.release() }

func (r *readvReader) read(w *pollWaiter) (string, error) {
	n, errno := w.readv(r.b.iovecs())
	switch {
	case n == -1:
		return "", errStopped
	case errno != 0:
		return "read", errno
	case n == 0:
		return "read", io.EOF
	}
	r.q.receiveRead(r.b, n, &r.rs)
	return "", nil
}

// receiveRead takes in the n bytes a read put in b: the virtio-net header
// if the queue has one, then the frame.
func (q *fdQueue) receiveRead(b *rxBuffer, n int, rs *rxScratch) {
	hs := q.e.hdrSize
	if n < hs {
		q.c.vnetErrors[VnetShortWrite].Add(1)
		return
	}
	frameLen := n - hs
	if frameLen >= b.capacity() {
		q.c.rxDrops[DropOversize].Add(1)
		return
	}
	var vh VnetHdr
	if hs > 0 {
		vh, _ = ParseVnetHdr(b.vnet)
	}
	q.receive(b, b.head(frameLen), frameLen, vh, rs)
}

// uringRxBatch is the most frames one io_uring submit reads.
const uringRxBatch = 16

// uringBigFrame is the mean frame size (bytes, with the virtio-net
// header) above which a tap reader reads one frame per readv: GSO
// super-frames.
const uringBigFrame = 8 << 10

// uringReader reads a tap queue in batches: one io_uring_enter runs up to
// k readv requests, in order (see uring). k adapts to what the queue
// holds: it doubles while batches come back full and falls to twice what
// the last one found, so an idle queue costs one enter per frame (the
// frame and the empty read after it) and a busy one a sixteenth of that.
// After GSO super-frames k is 1, a plain readv. So are the looks after a
// batch that ended on an empty read and after a wake-up, until two in a
// row find a frame: a lone frame (a ping) costs what it did with readv
// alone, and the reader's thread is soon free to run the goroutine its
// frame's answer wakes.
type uringReader struct {
	q    *fdQueue
	r    *uring
	bufs []*rxBuffer // allocated as k first reaches them
	k    int
	// single makes the next look one plain readv: the queue was last
	// seen empty. streak counts the frames plain readvs found in a
	// row; batch says the last look was a batch.
	single bool
	streak int
	batch  bool
	w      *pollWaiter
	try    func(uintptr) bool
	err    error // a failed submit, for read
	rs     rxScratch
	plain  *readvReader // set once the FD refused RWF_NOWAIT
}

// newTapReader returns a tap queue's reader: io_uring batches where the
// kernel allows them and the endpoint wants them, else readv per frame.
func newTapReader(q *fdQueue) reader {
	r := q.e.ring(uringRxBatch)
	if r == nil {
		return newReadvReader(q)
	}
	u := &uringReader{q: q, r: r, k: 2, bufs: make([]*rxBuffer, uringRxBatch)}
	u.try = u.submit
	return u
}

func (u *uringReader) release() {
	if u.plain != nil {
		u.plain.release()
	}
	for _, b := range u.bufs {
		if b != nil {
			b.release()
		}
	}
	u.r.close()
}

// buf returns read buffer i, made on first use.
func (u *uringReader) buf(i int) *rxBuffer {
	if u.bufs[i] == nil {
		u.bufs[i] = newRxBuffer(u.q.e.hdrSize, MaxFrameSize, 0)
	}
	return u.bufs[i]
}

// submit is the waiter's try: it runs one batch and reports false (wait)
// when it read nothing.
func (u *uringReader) submit(uintptr) bool {
	if u.k == 1 || u.single {
		// One frame, or a queue last seen empty (the last batch ran dry,
		// or the reader parked since): a plain readv is the cheapest
		// look, and the quickest to deliver a lone frame after a
		// wake-up. (Never skip the look: the poller forgets readiness
		// that came before this wait began.)
		iov := u.buf(0).iovecs()
		n, _, e := unix.RawSyscall(unix.SYS_READV, uintptr(u.w.fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		u.batch = false
		switch e {
		case unix.EAGAIN, unix.EINTR:
			u.single, u.streak = true, 0
			return false
		case 0:
			u.r.res[0] = int32(n)
		default:
			u.r.res[0] = -int32(e)
		}
		// Batch once the queue shows a backlog: a second frame right
		// after the first. A lone frame (a ping) is followed by one
		// empty readv and a park, as with readv alone.
		if u.streak++; u.streak >= 2 {
			u.single = false
		}
		return u.w.done(1, 0)
	}
	u.batch = true
	for i := range u.k {
		u.r.prep(uringOpReadv, u.w.fd, u.buf(i).iovecs())
	}
	if err := u.r.submit(); err != nil {
		u.err = err
		return u.w.done(0, 0)
	}
	res := u.r.res[:u.k]
	for _, v := range res {
		if v != -int32(unix.EAGAIN) {
			return u.w.done(uintptr(u.k), 0)
		}
	}
	u.single = true
	return false
}

func (u *uringReader) read(w *pollWaiter) (string, error) {
	if u.plain != nil {
		return u.plain.read(w)
	}
	u.w = w
	n, errno := w.wait(u.try)
	switch {
	case n == -1:
		return "", errStopped
	case errno != 0:
		return "read", errno
	case u.err != nil:
		return "io_uring", u.err
	}
	got, bytes := 0, 0
	var op string
	var err error
	if u.q.beginBatch(n) {
		defer u.q.endBatch()
	}
	for i, v := range u.r.res[:n] {
		switch {
		case v > 0:
			got++
			bytes += int(v)
			u.q.receiveRead(u.bufs[i], int(v), &u.rs)
			continue
		case v == -int32(unix.EAGAIN), v == -int32(unix.EINTR):
			continue
		case v == 0:
			op, err = "read", io.EOF
		case v == -int32(unix.EOPNOTSUPP):
			// The FD refuses RWF_NOWAIT (a file kind without
			// FMODE_NOWAIT): read it with readv from now on.
			u.q.e.noteNoUring(unix.EOPNOTSUPP)
			u.plain = &readvReader{q: u.q, b: u.bufs[0]}
			u.bufs[0] = nil
			return "", nil
		default:
			op, err = "read", unix.Errno(-v)
		}
		break
	}
	if u.batch {
		u.single = u.r.res[n-1] == -int32(unix.EAGAIN)
	}
	switch {
	case got > 0 && bytes/got > uringBigFrame:
		// GSO super-frames: the copy dwarfs the system call, and
		// reading several before delivering the first stalls the
		// receiver (a single TCP stream lost 10%). One at a time.
		u.k = 1
	case u.batch:
		u.k = min(max(2*got, 2), uringRxBatch)
	default:
		u.k = max(u.k, 2)
	}
	return op, err
}

// Batching of recvmmsg readers.
const (
	// mmsgRxBatch is the number of frames one recvmmsg may return; as
	// fdbased's MaxMsgsPerRecv. Each slot holds a 64 KiB buffer set.
	mmsgRxBatch = 8
	// sockaddrLLSize is sizeof(struct sockaddr_ll); sll_pkttype is at 10.
	sockaddrLLSize = unix.SizeofSockaddrLinklayer
	sllPkttypeOff  = 10
	auxdataSize    = 20 // sizeof(struct tpacket_auxdata)
	auxVLANTCIOff  = 16
	auxVLANTPIDOff = 18
	tpStatusTPID   = 0x40 // TP_STATUS_VLAN_TPID_VALID (include/uapi/linux/if_packet.h)
)

// mmsgReader receives batches with recvmmsg straight into pooled views:
// an AF_PACKET socket (packet: with its sockaddr_ll, to drop our own
// transmissions, and PACKET_AUXDATA, to re-insert the VLAN tag the kernel
// stripped, as macvtap does on read), or a datagram or seqpacket socket
// that carries one frame per message.
type mmsgReader struct {
	q          *fdQueue
	packet     bool
	eofOnEmpty bool // a seqpacket socket: an empty message is its peer closing
	bufs       []*rxBuffer
	mmsg       []rawfile.MMsgHdr
	names      [][sockaddrLLSize]byte
	ctrl       [][]byte
	rs         rxScratch
}

func newMMsgReader(q *fdQueue, packet bool) *mmsgReader {
	r := &mmsgReader{
		q:      q,
		packet: packet,
		mmsg:   make([]rawfile.MMsgHdr, mmsgRxBatch),
		names:  make([][sockaddrLLSize]byte, mmsgRxBatch),
		ctrl:   make([][]byte, mmsgRxBatch),
	}
	gap := 0
	if packet {
		gap = 4 // room in the first view for a VLAN tag to re-insert
	}
	for i := 0; i < mmsgRxBatch; i++ {
		r.bufs = append(r.bufs, newRxBuffer(q.e.hdrSize, MaxFrameSize, gap))
		if packet {
			r.ctrl[i] = make([]byte, unix.CmsgSpace(auxdataSize))
		}
	}
	return r
}

func (r *mmsgReader) release() {
	for _, b := range r.bufs {
		b.release()
	}
}

func (r *mmsgReader) read(w *pollWaiter) (string, error) {
	for i := range r.mmsg {
		iovs := r.bufs[i].iovecs()
		m := &r.mmsg[i]
		m.Len = 0
		m.Msg = unix.Msghdr{}
		m.Msg.Iov = &iovs[0]
		m.Msg.SetIovlen(len(iovs))
		if r.packet {
			m.Msg.Name = &r.names[i][0]
			m.Msg.Namelen = sockaddrLLSize
			m.Msg.Control = &r.ctrl[i][0]
			m.Msg.SetControllen(len(r.ctrl[i]))
		}
	}
	n, errno := w.recvmmsg(r.mmsg)
	switch {
	case n == -1:
		return "", errStopped
	case errno != 0:
		return "recvmmsg", errno
	case n == 0 && !r.packet, n > 0 && r.eofOnEmpty && r.mmsg[0].Len == 0:
		return "recvmmsg", io.EOF // the peer closed
	}
	if r.q.beginBatch(n) {
		defer r.q.endBatch()
	}
	for i := 0; i < n; i++ {
		r.frame(i)
	}
	return "", nil
}

func (r *mmsgReader) frame(i int) {
	q, m, b, hs := r.q, &r.mmsg[i], r.bufs[i], r.q.e.hdrSize
	if r.packet && r.names[i][sllPkttypeOff] == unix.PACKET_OUTGOING {
		q.c.rxDrops[DropOutgoing].Add(1)
		return
	}
	n := int(m.Len)
	if m.Msg.Flags&unix.MSG_TRUNC != 0 || n >= b.capacity()+hs {
		q.c.rxDrops[DropOversize].Add(1)
		return
	}
	if n < hs {
		q.c.vnetErrors[VnetShortWrite].Add(1)
		return
	}
	var vh VnetHdr
	if hs > 0 {
		vh, _ = ParseVnetHdr(b.vnet)
	}
	read := n - hs
	if !r.packet {
		q.receive(b, b.head(read), read, vh, &r.rs)
		return
	}
	tagged, tpid, tci := auxVLAN(r.ctrl[i][:m.Msg.Controllen])
	if read < 12 {
		q.c.rxDrops[DropRunt].Add(1)
		return
	}
	frameLen := b.fillGap(read, tagged, tpid, tci)
	if tagged {
		vh = vh.shifted(4)
	}
	q.receive(b, b.head(frameLen), frameLen, vh, &r.rs)
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
			if status&tpStatusTPID != 0 {
				tpid = binary.NativeEndian.Uint16(data[auxVLANTPIDOff:])
			}
			return true, tpid, tci
		}
		off += unix.CmsgSpace(l - hdrLen)
	}
	return false, 0, 0
}
