//go:build linux

package endpoints

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
)

// PacketRx is how a Packet endpoint's sockets receive.
type PacketRx uint8

// Receive mechanisms.
const (
	// PacketRxDefault is the mechanism the package doc reports as faster.
	PacketRxDefault PacketRx = iota
	// PacketRxMMsg: recvmmsg batches straight into pooled gVisor views.
	PacketRxMMsg
	// PacketRxRing: a TPACKET_V3 PACKET_RX_RING per socket; the kernel
	// fills blocks of frames, each frame is copied once into a pooled view.
	PacketRxRing

	numPacketRx
)

// defaultPacketRx is what PacketRxDefault means; see the package doc for
// the measurements behind it.
const defaultPacketRx = PacketRxMMsg

var packetRxNames = [numPacketRx]string{
	PacketRxDefault: "default",
	PacketRxMMsg:    "recvmmsg",
	PacketRxRing:    "ring",
}

// String returns "default", "recvmmsg" or "ring".
func (m PacketRx) String() string {
	if m < numPacketRx {
		return packetRxNames[m]
	}
	return fmt.Sprintf("PacketRx(%d)", uint8(m))
}

// ParsePacketRx is the inverse of PacketRx.String.
func ParsePacketRx(s string) (PacketRx, error) {
	for i, n := range packetRxNames {
		if n == s {
			return PacketRx(i), nil
		}
	}
	return 0, fmt.Errorf("unknown AF_PACKET receive mode %q", s)
}

// RingOptions sizes a TPACKET_V3 receive ring (struct tpacket_req3,
// Documentation/networking/packet_mmap.rst). Zero fields take the
// defaults below.
type RingOptions struct {
	// BlockSize is the bytes of one block, a power-of-two multiple of the
	// page size; 0 means 256 KiB. A frame larger than a block, less about
	// 100 bytes of headers, is truncated by the kernel and dropped
	// (oversize), so GSO super-frames need at least 128 KiB.
	BlockSize int
	// Blocks is the number of blocks per socket; 0 means 16 (with the
	// default block size, 4 MiB: the recvmmsg socket buffer size).
	Blocks int
	// Timeout is how long the kernel fills a block before handing it over
	// partly full (retire_blk_tov, whole milliseconds); 0 means 1 ms. It
	// bounds the delay a frame can wait at low rates.
	Timeout time.Duration
}

// Ring defaults and bounds.
const (
	defaultRingBlockSize = 256 << 10
	defaultRingBlocks    = 16
	defaultRingTimeout   = time.Millisecond
	maxRingBlockSize     = 16 << 20
	maxRingBlocks        = 1024
	// ringFrameSize is tp_frame_size: meaningless for TPACKET_V3 receive
	// but checked (a TPACKET_ALIGNMENT multiple that divides the block).
	ringFrameSize = 2048
)

// withDefaults fills zero fields and validates the rest.
func (o RingOptions) withDefaults() (RingOptions, error) {
	if o.BlockSize == 0 {
		o.BlockSize = defaultRingBlockSize
	}
	if o.Blocks == 0 {
		o.Blocks = defaultRingBlocks
	}
	if o.Timeout == 0 {
		o.Timeout = defaultRingTimeout
	}
	page := unix.Getpagesize()
	bs := o.BlockSize
	if bs < page || bs > maxRingBlockSize || bs%page != 0 || bs&(bs-1) != 0 {
		return o, fmt.Errorf("ring block size %d: want a power of two from %d to %d", bs, page, maxRingBlockSize)
	}
	if o.Blocks < 1 || o.Blocks > maxRingBlocks {
		return o, fmt.Errorf("ring blocks %d: want 1 to %d", o.Blocks, maxRingBlocks)
	}
	if o.Timeout < time.Millisecond || o.Timeout > time.Minute {
		return o, fmt.Errorf("ring timeout %v: want 1ms to 1m", o.Timeout)
	}
	return o, nil
}

// Layout of the ring (include/uapi/linux/if_packet.h, 64-bit and 32-bit
// alike; ring_unsafe_test.go checks them against x/sys/unix).
const (
	// struct tpacket_block_desc: version, offset_to_priv, then
	// struct tpacket_hdr_v1.
	blockStatusOff   = 8  // bh1.block_status: TP_STATUS_KERNEL or TP_STATUS_USER
	blockNumPktsOff  = 12 // bh1.num_pkts
	blockFirstPktOff = 16 // bh1.offset_to_first_pkt
	// struct tpacket3_hdr.
	tp3NextOff    = 0  // tp_next_offset
	tp3SnaplenOff = 12 // tp_snaplen: bytes in the ring
	tp3LenOff     = 16 // tp_len: bytes on the wire
	tp3StatusOff  = 20 // tp_status
	tp3MacOff     = 24 // tp_mac: frame offset from the header
	tp3VLANTCIOff = 32 // hv1.tp_vlan_tci
	tp3VLANTPIDOf = 36 // hv1.tp_vlan_tpid
	// tpacket3HdrLen is TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): the
	// struct sockaddr_ll follows there. With PACKET_VNET_HDR the
	// virtio-net header sits just before the frame, at tp_mac - 10.
	tpacket3HdrLen = 48
)

// rxRing is one socket's mapped TPACKET_V3 receive ring: blocks that the
// kernel fills with frames and hands over (block_status TP_STATUS_USER)
// when full or after the retire timeout, waking poll; the reader walks a
// block's frames and hands it back (TP_STATUS_KERNEL), in order.
type rxRing struct {
	mem       []byte // the mapping; nil once unmapped
	blockSize int
	blocks    int
	next      int // the next block to read; only the socket's reader uses it
}

// newRxRing sets fd up for TPACKET_V3 (PACKET_VERSION) with a receive ring
// (PACKET_RX_RING) of the given, validated size and maps it. It must run
// before bind and fanout, and after PACKET_VNET_HDR.
func newRxRing(fd int, o RingOptions) (*rxRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("PACKET_VERSION TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(o.BlockSize),
		Block_nr:       uint32(o.Blocks),
		Frame_size:     ringFrameSize,
		Frame_nr:       uint32(o.BlockSize / ringFrameSize * o.Blocks),
		Retire_blk_tov: uint32((o.Timeout + time.Millisecond - 1) / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_RX_RING %d x %d bytes: %w", o.Blocks, o.BlockSize, err)
	}
	// MAP_POPULATE: fault the pages in now rather than on the data path.
	mem, err := unix.Mmap(fd, 0, o.BlockSize*o.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap rx ring of %d bytes: %w", o.BlockSize*o.Blocks, err)
	}
	return &rxRing{mem: mem, blockSize: o.BlockSize, blocks: o.Blocks}, nil
}

// unmap releases the mapping. Preconditions: no reader uses the ring.
func (r *rxRing) unmap() {
	if r == nil || r.mem == nil {
		return
	}
	_ = unix.Munmap(r.mem)
	r.mem = nil
}

// block returns block i of the ring.
func (r *rxRing) block(i int) []byte {
	return r.mem[i*r.blockSize : (i+1)*r.blockSize]
}

// ringReader delivers one socket's TPACKET_V3 ring, block by block: it
// waits until the kernel hands the next block over, copies each frame
// once into a pooled view (a PacketBuffer cannot wrap ring memory, as in
// fdbased's PacketMMap) and gives the block back.
type ringReader struct {
	q       *fdQueue
	r       *rxRing
	b       rxBuffer // one view: the frame being delivered
	rs      rxScratch
	sockErr int
	ready   func(fd uintptr) bool // one closure per reader: waiting allocates nothing
}

func newRingReader(q *fdQueue) reader {
	x := &ringReader{q: q, r: q.ring, b: rxBuffer{views: make([]*buffer.View, 1)}}
	x.ready = func(fd uintptr) bool {
		if x.r.ready() {
			return true
		}
		// With the ring empty, report what recvmmsg would have: a pending
		// socket error such as ENETDOWN.
		if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			x.sockErr = e
			return true
		}
		return false
	}
	return x
}

func (x *ringReader) release() { x.b.release() }

func (x *ringReader) read(w *pollWaiter) (string, error) {
	n, errno := w.wait(x.ready)
	switch {
	case n == -1:
		return "", errStopped
	case errno != 0:
		// EPOLLERR while parked: the socket error says why.
		if e, err := unix.GetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			errno = unix.Errno(e)
		}
		return "poll rx ring", errno
	case x.sockErr != 0:
		return "rx ring", unix.Errno(x.sockErr)
	}
	x.block(x.r.block(x.r.next))
	x.r.release()
	return "", nil
}

// block delivers the frames of one block that the kernel handed over.
func (x *ringReader) block(blk []byte) {
	c := &x.q.c
	n := binary.NativeEndian.Uint32(blk[blockNumPktsOff:])
	off := int(binary.NativeEndian.Uint32(blk[blockFirstPktOff:]))
	if x.q.beginBatch(int(n)) {
		defer x.q.endBatch()
	}
	for i := uint32(0); i < n; i++ {
		if off < 0 || off+tpacket3HdrLen+sockaddrLLSize > len(blk) {
			c.rxDrops[DropMalformed].Add(uint64(n - i)) // broken invariant of the kernel's; count, do not trust
			return
		}
		h := blk[off:]
		x.frame(h)
		next := int(binary.NativeEndian.Uint32(h[tp3NextOff:]))
		if next == 0 {
			if i+1 < n {
				c.rxDrops[DropMalformed].Add(uint64(n - i - 1))
			}
			return
		}
		off += next
	}
}

// frame copies out and delivers the frame whose tpacket3_hdr starts h
// (h runs to the end of the block). It applies what mmsgReader does to a
// recvmmsg frame.
func (x *ringReader) frame(h []byte) {
	q, c, hs := x.q, &x.q.c, x.q.e.hdrSize
	if h[tpacket3HdrLen+sllPkttypeOff] == unix.PACKET_OUTGOING {
		c.rxDrops[DropOutgoing].Add(1)
		return
	}
	status := binary.NativeEndian.Uint32(h[tp3StatusOff:])
	snap := int(binary.NativeEndian.Uint32(h[tp3SnaplenOff:]))
	wire := int(binary.NativeEndian.Uint32(h[tp3LenOff:]))
	mac := int(binary.NativeEndian.Uint16(h[tp3MacOff:]))
	// The kernel truncates a frame that does not fit a block (snaplen <
	// len); TP_STATUS_COPY is the TPACKET_V1/V2 mark of the same.
	if status&unix.TP_STATUS_COPY != 0 || snap < wire || mac+snap > len(h) {
		c.rxDrops[DropOversize].Add(1)
		return
	}
	if mac < tpacket3HdrLen+sockaddrLLSize+hs {
		c.rxDrops[DropMalformed].Add(1)
		return
	}
	if snap < 12 {
		c.rxDrops[DropRunt].Add(1)
		return
	}
	var vh VnetHdr
	if hs > 0 {
		vh, _ = ParseVnetHdr(h[mac-hs : mac])
	}
	frame := h[mac : mac+snap]
	tagged := status&unix.TP_STATUS_VLAN_VALID != 0
	frameLen := snap
	if tagged {
		frameLen += 4
	}
	if frameLen > MaxFrameSize {
		c.rxDrops[DropOversize].Add(1)
		return
	}
	// The one copy per frame, into a pooled view of the frame's size.
	v := buffer.NewViewSize(frameLen)
	d := v.AsSlice()
	if tagged {
		tpid := uint16(0x8100)
		if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = binary.NativeEndian.Uint16(h[tp3VLANTPIDOf:])
		}
		copy(d, frame[:12])
		binary.BigEndian.PutUint16(d[12:], tpid)
		binary.BigEndian.PutUint16(d[14:], uint16(binary.NativeEndian.Uint32(h[tp3VLANTCIOff:])))
		copy(d[16:], frame[12:])
		vh = vh.shifted(4)
	} else {
		copy(d, frame)
	}
	x.b.views[0] = v
	q.receive(&x.b, d, frameLen, vh, &x.rs)
	if x.b.views[0] != nil { // dropped, not pulled
		x.b.views[0].Release()
		x.b.views[0] = nil
	}
}
