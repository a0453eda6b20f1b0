//go:build linux

package endpoints

import (
	"errors"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The transmit side of the engine: how a frame goes out (planTx), the
// writer strategies, and the software fallbacks for receivers that cannot
// take an offload.

// txAction is how a frame goes out.
type txAction uint8

const (
	txDirect   txAction = iota // as is, with the virtio-net header if any
	txSegment                  // software GSO
	txChecksum                 // software checksum completion
	txDrop
)

// planTx decides how to send a frame of frameLen bytes whose start is head,
// carrying gso, to a receiver with IP MTU mtu that takes GSO super-frames
// (canGSO) and partial checksums (canCsum) through a virtio-net header.
func planTx(gso stack.GSO, head []byte, frameLen int, mtu int, canGSO, canCsum bool) (VnetHdr, txAction, DropReason) {
	l2, _, ok := l2Len(head)
	if !ok {
		return VnetHdr{}, txDrop, DropRunt
	}
	h := VnetFromGSO(gso, head, frameLen)
	switch {
	case h.IsGSO():
		// Segments the receiver's GSO would produce must fit its MTU too.
		if canGSO && int(h.HdrLen)-l2+int(h.GSOSize) <= mtu {
			return h, txDirect, 0
		}
		return h, txSegment, 0
	case frameLen > mtu+l2 && !canGSO:
		// A receiver that negotiated GSO takes frames above its MTU (the
		// kernel does not check the MTU on receive either: BEHAVIOUR.md
		// §5.2, a reassembled datagram, case 28); one that did not must
		// not see them.
		return h, txDrop, DropOversize
	case h.NeedsCsum() && !canCsum:
		return h, txChecksum, 0
	}
	return h, txDirect, 0
}

// plan applies planTx with the engine's MTU and offloads.
func (e *engine) plan(pkt *stack.PacketBuffer, head []byte, frameLen int) (VnetHdr, txAction, DropReason) {
	return planTx(pkt.GSOOptions, head, frameLen, int(e.mtu.Load()), e.canGSO, e.canCsum)
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

// appendFrame appends iovecs for pkt's whole frame (its views, shared, not
// copied) to iovs.
func appendFrame(iovs []unix.Iovec, pkt *stack.PacketBuffer) []unix.Iovec {
	views, off := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		iovs = rawfile.AppendIovecFromBytes(iovs, b[off:], rawfile.MaxIovs)
		off = 0
	}
	return iovs
}

// sendFunc writes one frame's iovecs on fd.
type sendFunc func(fd int, iovs []unix.Iovec) unix.Errno

// writevFD writes one frame with writev, retrying on EINTR.
func writevFD(fd int, iovs []unix.Iovec) unix.Errno {
	for {
		e := rawfile.NonBlockingWriteIovec(fd, iovs)
		if e != unix.EINTR {
			return e
		}
	}
}

// txResult turns a failed write's errno into the drop reason it counts
// as, whether it broke the FD, and what WritePackets reports.
func txResult(e unix.Errno) (DropReason, unix.Errno, tcpip.Error) {
	switch {
	case e == unix.EAGAIN:
		return DropTxFull, 0, &tcpip.ErrWouldBlock{}
	case fdBroken(e):
		return DropTxError, e, &tcpip.ErrClosedForSend{}
	}
	return DropTxError, 0, nil
}

// fdBroken reports whether a write error means the FD itself is unusable
// (as opposed to this frame being refused, or the interface being down).
func fdBroken(e unix.Errno) bool {
	switch e {
	case unix.EBADF, unix.EBADFD, unix.EPIPE, unix.ECONNRESET, unix.ENOTCONN, unix.ENXIO, unix.ENODEV, unix.EFAULT,
		unix.ECONNREFUSED: // a dgram socket's peer is gone
		return true
	}
	return false
}

// sendOne sends one frame through send as planned: directly with the
// virtio-net header h, or through a software fallback (checksum or
// segmentation) whose output frames carry an all-zero header. It counts
// the outcome in c.
func (s *txScratch) sendOne(c *queueCounters, fd, hdrSize, mtu int, pkt *stack.PacketBuffer, frameLen int,
	h VnetHdr, act txAction, reason DropReason, send sendFunc) (bool, unix.Errno, tcpip.Error) {
	fail := func(e unix.Errno) (bool, unix.Errno, tcpip.Error) {
		r, broken, terr := txResult(e)
		c.txDrops[r].Add(1)
		return false, broken, terr
	}
	emit := func(frame []byte) unix.Errno {
		s.iovs = rawfile.AppendIovecFromBytes(s.iovs[:0], s.zero, rawfile.MaxIovs)
		s.iovs = rawfile.AppendIovecFromBytes(s.iovs, frame, rawfile.MaxIovs)
		if e := send(fd, s.iovs); e != 0 {
			return e
		}
		c.txPackets.Add(1)
		c.txBytes.Add(uint64(len(frame)))
		return 0
	}
	switch act {
	case txDrop:
		c.txDrops[reason].Add(1)
		return false, 0, nil
	case txDirect:
		if hdrSize > 0 {
			h.Encode(s.hdr)
		}
		s.iovs = rawfile.AppendIovecFromBytes(s.iovs[:0], s.hdr, rawfile.MaxIovs)
		s.iovs = appendFrame(s.iovs, pkt)
		if e := send(fd, s.iovs); e != 0 {
			return fail(e)
		}
		c.txPackets.Add(1)
		c.txBytes.Add(uint64(frameLen))
		return true, 0, nil
	case txChecksum:
		flat, _ := s.fallbackBufs()
		frame := copyPacket(flat, pkt)
		if err := FinishChecksum(frame, int(h.CsumStart), int(h.CsumOffset)); err != nil {
			c.txDrops[DropMalformed].Add(1)
			return false, 0, nil
		}
		c.checksummed.Add(1)
		if e := emit(frame); e != 0 {
			return fail(e)
		}
		return true, 0, nil
	}
	// txSegment.
	flat, seg := s.fallbackBufs()
	frame := copyPacket(flat, pkt)
	var failE unix.Errno
	_, err := Segment(frame, h, mtu, seg, func(b []byte) bool {
		failE = emit(b)
		return failE == 0
	})
	switch {
	case errors.Is(err, ErrSegmentTooBig):
		c.txDrops[DropOversize].Add(1)
		return false, 0, nil
	case errors.Is(err, ErrTooManySegments):
		c.txDrops[DropGSOSegments].Add(1)
		return false, 0, nil
	case err != nil:
		c.txDrops[DropMalformed].Add(1)
		return false, 0, nil
	case failE != 0:
		return fail(failE)
	}
	c.segmented.Add(1)
	return true, 0, nil
}

// writevWriter writes one frame per writev, the virtio-net header in the
// first iovec and the frame's views after it: a tap queue, which is not a
// socket and has no sendmmsg.
type writevWriter struct {
	q *fdQueue
	s txScratch
}

func newWritevWriter(q *fdQueue) writer {
	return &writevWriter{q: q, s: newTxScratch(q.e.hdrSize)}
}

func (w *writevWriter) write(fd int, pkts []*stack.PacketBuffer) (int, unix.Errno, tcpip.Error) {
	e, c := w.q.e, &w.q.c
	mtu := int(e.mtu.Load())
	sent := 0
	var terr tcpip.Error
	for i, pkt := range pkts {
		frameLen := pkt.Size()
		h, act, reason := e.plan(pkt, peekPacket(w.s.head[:], pkt), frameLen)
		ok, broken, err := w.s.sendOne(c, fd, e.hdrSize, mtu, pkt, frameLen, h, act, reason, writevFD)
		if ok {
			sent++
		} else if err != nil {
			terr = err
		}
		if broken != 0 {
			c.txDrops[DropTxError].Add(uint64(len(pkts) - i - 1))
			return sent, broken, terr
		}
	}
	return sent, 0, terr
}

// mmsgTxBatch is the number of frames per sendmmsg; gVisor's qdisc
// BatchSize.
const mmsgTxBatch = 47

// mmsgWriter sends batches with sendmmsg, each message a frame's iovecs
// (virtio-net header first) over the frame's shared views: an AF_PACKET
// socket, or a datagram or seqpacket socket carrying one frame per
// message. Frames that need a software fallback go out one by one, in
// order.
type mmsgWriter struct {
	frameBatch
	q    *fdQueue
	s    txScratch
	mmsg []rawfile.MMsgHdr
}

func newMMsgWriter(q *fdQueue) writer {
	return &mmsgWriter{q: q, s: newTxScratch(q.e.hdrSize), frameBatch: frameBatch{hdrSize: q.e.hdrSize, limit: mmsgTxBatch}}
}

func (w *mmsgWriter) write(fd int, pkts []*stack.PacketBuffer) (int, unix.Errno, tcpip.Error) {
	w.reset()
	return writeBatched(w.q, &w.s, fd, w.q.e.hdrSize, pkts, w, writevFD)
}

// frameBatch is the frames a batching writer has queued: each one's
// iovecs (its virtio-net header, then its shared views) and length.
type frameBatch struct {
	hdrSize int
	limit   int // frames per batch
	iovs    []unix.Iovec
	spans   [][2]int // iovec range of each frame
	lens    []int    // bytes of each frame
	hdrs    []byte   // limit headers of hdrSize bytes, allocated once
}

func (b *frameBatch) reset() {
	b.iovs, b.spans, b.lens = b.iovs[:0], b.spans[:0], b.lens[:0]
}

// add queues one frame and reports whether the batch is full.
func (b *frameBatch) add(h VnetHdr, pkt *stack.PacketBuffer, frameLen int) bool {
	k := len(b.spans)
	start := len(b.iovs)
	if b.hdrSize > 0 {
		if b.hdrs == nil {
			b.hdrs = make([]byte, b.limit*b.hdrSize)
		}
		hdr := b.hdrs[k*b.hdrSize : (k+1)*b.hdrSize]
		// Encode fills the first VnetHdrSize bytes; the rest of a
		// larger header (num_buffers) is 0.
		h.Encode(hdr)
		clear(hdr[VnetHdrSize:])
		b.iovs = append(b.iovs, unix.Iovec{Base: &hdr[0]})
		b.iovs[len(b.iovs)-1].SetLen(b.hdrSize)
	}
	b.iovs = appendFrame(b.iovs, pkt)
	b.spans = append(b.spans, [2]int{start, len(b.iovs)})
	b.lens = append(b.lens, frameLen)
	return len(b.spans) == b.limit
}

// frame returns frame i's iovecs. Only call it once all frames are added:
// appends may move the iovecs.
func (b *frameBatch) frame(i int) []unix.Iovec {
	sp := b.spans[i]
	return b.iovs[sp[0]:sp[1]]
}

// batcher is a writer that queues frames and writes them out together
// (sendmmsg, a stream's writev); writeBatched runs the loop around it.
type batcher interface {
	// add queues a frame that goes out as it is and reports whether the
	// batch is now full.
	add(h VnetHdr, pkt *stack.PacketBuffer, frameLen int) (full bool)
	// flush writes the queued frames out and counts each.
	flush(fd int) (int, unix.Errno, tcpip.Error)
}

// writeBatched writes pkts through b: frames that go out as they are are
// queued and flushed whenever b is full and at the end; a frame that needs
// a software fallback goes out alone with send, after what was queued
// before it, so the order holds. Once the FD is broken the rest is
// counted tx_error.
func writeBatched(q *fdQueue, s *txScratch, fd, hdrSize int, pkts []*stack.PacketBuffer, b batcher, send sendFunc) (int, unix.Errno, tcpip.Error) {
	e, c := q.e, &q.c
	mtu := int(e.mtu.Load())
	sent := 0
	var terr tcpip.Error
	flush := func() unix.Errno {
		k, broken, err := b.flush(fd)
		sent += k
		if err != nil {
			terr = err
		}
		return broken
	}
	for i, pkt := range pkts {
		frameLen := pkt.Size()
		h, act, reason := e.plan(pkt, peekPacket(s.head[:], pkt), frameLen)
		if act == txDirect {
			if b.add(h, pkt, frameLen) {
				if broken := flush(); broken != 0 {
					c.txDrops[DropTxError].Add(uint64(len(pkts) - i - 1))
					return sent, broken, terr
				}
			}
			continue
		}
		if broken := flush(); broken != 0 {
			c.txDrops[DropTxError].Add(uint64(len(pkts) - i))
			return sent, broken, terr
		}
		ok, broken, err := s.sendOne(c, fd, hdrSize, mtu, pkt, frameLen, h, act, reason, send)
		if ok {
			sent++
		} else if err != nil {
			terr = err
		}
		if broken != 0 {
			c.txDrops[DropTxError].Add(uint64(len(pkts) - i - 1))
			return sent, broken, terr
		}
	}
	return sent, flush(), terr
}

// flush sends the queued frames and counts each.
func (w *mmsgWriter) flush(fd int) (int, unix.Errno, tcpip.Error) {
	if len(w.spans) == 0 {
		return 0, 0, nil
	}
	defer w.reset()
	c := &w.q.c
	// Point the headers at the iovecs only now: appends may have moved them.
	w.mmsg = w.mmsg[:0]
	for i := range w.spans {
		iovs := w.frame(i)
		w.mmsg = append(w.mmsg, rawfile.MMsgHdr{})
		w.mmsg[i].Msg.Iov = &iovs[0]
		w.mmsg[i].Msg.SetIovlen(len(iovs))
	}
	sent := 0
	var terr tcpip.Error
	for i := 0; i < len(w.mmsg); {
		n, errno := rawfile.NonBlockingSendMMsg(fd, w.mmsg[i:])
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			c.txDrops[DropTxFull].Add(uint64(len(w.mmsg) - i))
			return sent, 0, &tcpip.ErrWouldBlock{}
		case errno != 0:
			// The first remaining frame was refused; skip it.
			r, broken, err := txResult(errno)
			c.txDrops[r].Add(1)
			if broken != 0 {
				c.txDrops[DropTxError].Add(uint64(len(w.mmsg) - i - 1))
				return sent, broken, err
			}
			if err != nil {
				terr = err
			} else {
				terr = tcpip.TranslateErrno(errno)
			}
			i++
			continue
		}
		for k := i; k < i+n; k++ {
			c.txPackets.Add(1)
			c.txBytes.Add(uint64(w.lens[k]))
		}
		sent += n
		i += n
	}
	return sent, 0, terr
}

// uringTxBatch is the most frames one io_uring submit writes.
const uringTxBatch = 64

// uringWriter writes a batch of frames to a tap queue with one
// io_uring_enter: one writev request per frame, run in order by the kernel
// (see uring). Frames that need a software fallback go out one by one with
// writev, in order.
type uringWriter struct {
	writevWriter // a lone frame, and the fallback
	frameBatch
	r *uring
}

// newTapWriter returns a tap queue's writer: io_uring batches where the
// kernel allows them and the endpoint wants them, else writev per frame.
func newTapWriter(q *fdQueue) writer {
	r := q.e.ring(uringTxBatch)
	if r == nil {
		return newWritevWriter(q)
	}
	return &uringWriter{
		writevWriter: writevWriter{q: q, s: newTxScratch(q.e.hdrSize)},
		frameBatch:   frameBatch{hdrSize: q.e.hdrSize, limit: uringTxBatch},
		r:            r,
	}
}

func (w *uringWriter) write(fd int, pkts []*stack.PacketBuffer) (int, unix.Errno, tcpip.Error) {
	if len(pkts) == 1 {
		// One frame: writev costs one system call as well, and less.
		return w.writevWriter.write(fd, pkts)
	}
	w.reset()
	return writeBatched(w.q, &w.s, fd, w.q.e.hdrSize, pkts, w, writevFD)
}

// flush writes the queued frames with one submit and counts each.
func (w *uringWriter) flush(fd int) (int, unix.Errno, tcpip.Error) {
	n := len(w.spans)
	if n == 0 {
		return 0, 0, nil
	}
	defer w.reset()
	if n == 1 || w.r == nil {
		// One frame is not worth a ring round trip.
		return w.count(n, func(i int) unix.Errno { return writevFD(fd, w.frame(i)) })
	}
	for i := range n {
		// A full socket standing in for a tap answers EAGAIN (prep's
		// RWF_NOWAIT): tx_full, as for writev.
		w.r.prep(uringOpWritev, fd, w.frame(i))
	}
	if err := w.r.submit(); err != nil {
		// The ring itself failed (enter only fails so on bad
		// arguments); which requests ran is unknown. Count them lost
		// and go on with writev.
		w.q.c.txDrops[DropTxError].Add(uint64(n))
		w.dropRing(err)
		return 0, 0, &tcpip.ErrClosedForSend{}
	}
	res := w.r.res[:n]
	return w.count(n, func(i int) unix.Errno {
		switch {
		case res[i] == -int32(unix.EOPNOTSUPP):
			// The FD refuses RWF_NOWAIT: writev from now on.
			w.dropRing(unix.EOPNOTSUPP)
			return writevFD(fd, w.frame(i))
		case res[i] < 0:
			return unix.Errno(-res[i])
		}
		return 0
	})
}

// count counts the outcome of frames 0..n-1, result(i) being frame i's
// write error or 0, and returns what flush does.
func (w *uringWriter) count(n int, result func(i int) unix.Errno) (int, unix.Errno, tcpip.Error) {
	c := &w.q.c
	sent := 0
	var broken unix.Errno
	var terr tcpip.Error
	for i := range n {
		e := result(i)
		if e == 0 {
			sent++
			c.txPackets.Add(1)
			c.txBytes.Add(uint64(w.lens[i]))
			continue
		}
		r, b, err := txResult(e)
		c.txDrops[r].Add(1)
		if b != 0 && broken == 0 {
			broken = b
		}
		if err != nil {
			terr = err
		} else {
			terr = tcpip.TranslateErrno(e)
		}
	}
	return sent, broken, terr
}

// dropRing makes the writer use writev from now on.
func (w *uringWriter) dropRing(err error) {
	if w.r != nil {
		w.q.e.log.Warn("io_uring write failed; using writev from now on", "queue", w.q.idx, "err", err)
		w.r.close()
		w.r = nil
	}
}

// close releases the ring.
func (w *uringWriter) close() {
	if w.r != nil {
		w.r.close()
	}
}
