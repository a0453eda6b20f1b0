//go:build linux

package endpoints

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The stream framing of a socket port (QEMU's -netdev stream): each frame
// is preceded by its length, a 4-byte big-endian integer, with no
// virtio-net header.

// streamBufSize is a stream reader's buffer: several frames per read, and
// always room for the largest frame after the one being parsed.
const streamBufSize = 256 << 10

// streamReader reads as much of the stream as is there and delivers every
// whole frame in it, copying each once into a pooled view.
type streamReader struct {
	q          *fdQueue
	buf        []byte
	start, end int // the unparsed bytes are buf[start:end]
	iov        []unix.Iovec
	b          rxBuffer // one view: the frame being delivered
	rs         rxScratch
}

func newStreamReader(q *fdQueue) reader {
	return &streamReader{
		q:   q,
		buf: make([]byte, streamBufSize), // once per connection's reader
		iov: make([]unix.Iovec, 1),
		b:   rxBuffer{views: make([]*buffer.View, 1)},
	}
}

func (r *streamReader) release() { r.b.release() }

func (r *streamReader) read(w *pollWaiter) (string, error) {
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	r.iov[0] = unix.Iovec{Base: &r.buf[r.end]}
	r.iov[0].SetLen(len(r.buf) - r.end)
	n, errno := w.readv(r.iov)
	switch {
	case n == -1:
		return "", errStopped
	case errno != 0:
		return "read", errno
	case n == 0 && r.end > 0:
		return "read", errShortRead
	case n == 0:
		return "read", io.EOF
	}
	r.end += n
	for r.end-r.start >= 4 {
		l := int(binary.BigEndian.Uint32(r.buf[r.start:]))
		if l == 0 || l > MaxStreamFrame {
			return "read", fmt.Errorf("%w: %d (want 1..%d)", errBadLength, l, MaxStreamFrame)
		}
		if r.end-r.start < 4+l {
			break
		}
		r.frame(r.buf[r.start+4 : r.start+4+l])
		r.start += 4 + l
	}
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	return "", nil
}

// frame delivers one frame (copied: buf is reused).
func (r *streamReader) frame(f []byte) {
	v := buffer.NewViewSize(len(f))
	copy(v.AsSlice(), f)
	r.b.views[0] = v
	r.q.receive(&r.b, v.AsSlice(), len(f), VnetHdr{}, &r.rs)
	if r.b.views[0] != nil { // dropped, not pulled
		r.b.views[0].Release()
		r.b.views[0] = nil
	}
}

// streamBatch is the most frames one writev carries.
const streamBatch = 64

// streamWriter writes a batch of frames, each after its length, in one
// writev. A stream must never carry part of a frame followed by another:
// when the socket takes only part of a batch, the rest of the frame it
// stopped in is kept and written first (by a flusher waiting for room),
// and frames that come meanwhile are dropped (tx_full).
type streamWriter struct {
	q        *fdQueue
	s        txScratch
	iovs     []unix.Iovec
	lens     [][4]byte
	sizes    []int    // bytes of each queued frame, length included
	spans    [][2]int // iovec range of each queued frame
	pending  []byte
	flushing bool
	// sendFramed's length prefix and iovecs, reused frame after frame.
	segLen  [4]byte
	segIovs []unix.Iovec
}

func newStreamWriter(q *fdQueue) writer {
	return &streamWriter{q: q, s: newTxScratch(0), lens: make([][4]byte, streamBatch)}
}

func (w *streamWriter) write(fd int, pkts []*stack.PacketBuffer) (int, unix.Errno, tcpip.Error) {
	w.iovs, w.sizes, w.spans = w.iovs[:0], w.sizes[:0], w.spans[:0]
	return writeBatched(w.q, &w.s, fd, 0, pkts, w, w.sendFramed)
}

// tailFirst writes what is left of a frame the socket took only part of,
// before anything else may go: it returns EAGAIN while some of it is
// still waiting, or the write's error. Both ways into the socket (flush,
// sendFramed) start with it, so no frame ever overtakes a tail, whether
// the tail was left by an earlier call or earlier in this one.
func (w *streamWriter) tailFirst(fd int) unix.Errno {
	if len(w.pending) == 0 {
		return 0
	}
	if e := w.flushPending(fd); e != 0 {
		return e
	}
	if len(w.pending) > 0 {
		return unix.EAGAIN
	}
	return 0
}

// add queues one frame, after its length, for the next writev.
func (w *streamWriter) add(_ VnetHdr, pkt *stack.PacketBuffer, frameLen int) bool {
	k := len(w.sizes)
	binary.BigEndian.PutUint32(w.lens[k][:], uint32(frameLen))
	start := len(w.iovs)
	w.iovs = rawfile.AppendIovecFromBytes(w.iovs, w.lens[k][:], rawfile.MaxIovs)
	w.iovs = appendFrame(w.iovs, pkt)
	w.sizes = append(w.sizes, 4+frameLen)
	w.spans = append(w.spans, [2]int{start, len(w.iovs)})
	return len(w.sizes) == streamBatch || len(w.iovs) > rawfile.MaxIovs-64
}

// flush writes the queued frames with one writev and counts each.
func (w *streamWriter) flush(fd int) (int, unix.Errno, tcpip.Error) {
	if len(w.sizes) == 0 {
		return 0, 0, nil
	}
	c := &w.q.c
	defer func() { w.iovs, w.sizes, w.spans = w.iovs[:0], w.sizes[:0], w.spans[:0] }()
	var n int
	e := w.tailFirst(fd)
	if e == 0 {
		n, e = writevN(fd, w.iovs)
	}
	if e != 0 && e != unix.EAGAIN {
		r, broken, terr := txResult(e)
		c.txDrops[r].Add(uint64(len(w.sizes)))
		return 0, broken, terr
	}
	sent := 0
	for i, size := range w.sizes {
		switch {
		case n >= size:
			n -= size
			sent++
			c.txPackets.Add(1)
			c.txBytes.Add(uint64(size - 4))
		case n > 0:
			// The socket stopped inside this frame: its rest goes first.
			sp := w.spans[i]
			w.pending = append(w.pending[:0], gather(w.iovs[sp[0]:sp[1]], size)[n:]...)
			w.startFlusher()
			n = 0
			sent++
			c.txPackets.Add(1)
			c.txBytes.Add(uint64(size - 4))
		default:
			c.txDrops[DropTxFull].Add(uint64(len(w.sizes) - i))
			return sent, 0, &tcpip.ErrWouldBlock{}
		}
	}
	return sent, 0, nil
}

// gather copies the first n bytes the iovecs point at.
func gather(iovs []unix.Iovec, n int) []byte {
	out := make([]byte, 0, n) // a rare path: a socket that took part of a batch
	for _, v := range iovs {
		if len(out) >= n {
			break
		}
		b := unsafeSlice(v.Base, int(v.Len))
		out = append(out, b[:min(len(b), n-len(out))]...)
	}
	return out
}

// sendFramed writes one frame (iovs: an empty header, then the frame)
// after its length; a partial write keeps the rest for the flusher.
func (w *streamWriter) sendFramed(fd int, iovs []unix.Iovec) unix.Errno {
	size := 0
	for _, v := range iovs {
		size += int(v.Len)
	}
	if e := w.tailFirst(fd); e != 0 {
		return e
	}
	binary.BigEndian.PutUint32(w.segLen[:], uint32(size))
	w.segIovs = append(append(w.segIovs[:0], unix.Iovec{Base: &w.segLen[0], Len: 4}), iovs...)
	all := w.segIovs
	n, e := writevN(fd, all)
	switch {
	case e != 0:
		return e
	case n < size+4:
		w.pending = append(w.pending[:0], gather(all, size+4)[n:]...)
		w.startFlusher()
	}
	return 0
}

// flushPending tries to write the kept tail. Preconditions: q.wmu held.
func (w *streamWriter) flushPending(fd int) unix.Errno {
	for len(w.pending) > 0 {
		n, err := unix.Write(fd, w.pending)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err.(unix.Errno)
		}
		w.pending = w.pending[n:]
	}
	w.pending = w.pending[:0]
	return 0
}

// startFlusher starts the goroutine that writes the kept tail as soon as
// the socket has room, unless one runs. Preconditions: q.wmu held.
func (w *streamWriter) startFlusher() {
	if w.flushing {
		return
	}
	w.flushing = true
	q := w.q
	fd := q.fd
	go func() {
		for {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(pfd, int((100 * time.Millisecond).Milliseconds()))
			q.wmu.Lock()
			if q.w != w || q.fd != fd {
				// The connection went (a new one may have its FD
				// number, but not this writer): its tail with it.
				w.pending, w.flushing = w.pending[:0], false
				q.wmu.Unlock()
				return
			}
			e := w.flushPending(fd)
			if len(w.pending) == 0 || (e != 0 && e != unix.EAGAIN) {
				w.pending, w.flushing = w.pending[:0], false
				q.wmu.Unlock()
				return
			}
			q.wmu.Unlock()
		}
	}()
}

// writevN writes iovs once (retrying EINTR) and returns how many bytes
// went.
func writevN(fd int, iovs []unix.Iovec) (int, unix.Errno) {
	for {
		n, e := writevRaw(fd, iovs)
		if e != unix.EINTR {
			return n, e
		}
	}
}
