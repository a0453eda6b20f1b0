package vswitch

import (
	"encoding/binary"
	"slices"
	"sort"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Reassembly defaults: the kernel's ipfrag_high_thresh, ipfrag_low_thresh
// and ipfrag_time (net/ipv4/ip_fragment.c ipv4_frags_init_net).
const (
	DefaultReassemblyHigh    = 4 << 20
	DefaultReassemblyLow     = 3 << 20
	DefaultReassemblyTimeout = 30 * time.Second
)

// maxIPv4Len is the largest IPv4 total length, header included.
const maxIPv4Len = 65535

// Reassembly bounds the reassembly of IPv4 fragments addressed to group
// MACs (BEHAVIOUR.md §2.2.1, §9 item 18). Memory is counted in bytes the
// switch really holds: the copied payload and headers, the bookkeeping of
// every fragment and datagram, with the slack of the buffers holding them.
// Zero fields take their defaults.
type Reassembly struct {
	// High is the most memory reassembly may hold. A fragment that takes
	// it above High evicts the oldest datagrams until at most Low is held
	// (the kernel's ipfrag_high_thresh and ipfrag_low_thresh, as kernels
	// before 4.17 used them). 0 means DefaultReassemblyHigh.
	High int
	// Low is what eviction brings memory down to. 0 means
	// DefaultReassemblyLow when High is 0, three quarters of High
	// otherwise; above High it is taken as High.
	Low int
	// Timeout is how long a datagram may wait for its missing fragments,
	// counted from its first fragment (ipfrag_time). 0 means
	// DefaultReassemblyTimeout.
	Timeout time.Duration
	// MaxPerSource bounds the memory held for the datagrams of one source
	// IPv4 address: a fragment that takes its source above it evicts that
	// source's oldest datagrams until the source is back within it, so a
	// source flooding fragments only ever displaces its own. 0 means a
	// quarter of High; above High it is taken as High.
	MaxPerSource int
}

// WithDefaults returns r with every zero field set to its default and the
// bounds made consistent (Low and MaxPerSource at most High).
func (r Reassembly) WithDefaults() Reassembly {
	if r.High <= 0 {
		r.High = DefaultReassemblyHigh
		if r.Low <= 0 {
			r.Low = DefaultReassemblyLow
		}
	}
	if r.Low <= 0 {
		r.Low = r.High / 4 * 3
	}
	r.Low = min(r.Low, r.High)
	if r.Timeout <= 0 {
		r.Timeout = DefaultReassemblyTimeout
	}
	if r.MaxPerSource <= 0 {
		r.MaxPerSource = r.High / 4
	}
	r.MaxPerSource = min(r.MaxPerSource, r.High)
	return r
}

// What the bookkeeping of reassembly costs, for its memory accounting. A
// test checks the struct sizes against unsafe.Sizeof (the core may not
// import unsafe).
const (
	// fragDatagramBytes bounds the size of a fragDatagram.
	fragDatagramBytes = 256
	// fragMapBytes is a datagram's share of the maps that find it: a slot
	// of the active table (key and pointer, with the table's spare room)
	// and, at worst, a source of its own: a slot of the per-source table
	// and a fragSource.
	fragMapBytes = 160
	// fragPieceBytes and fragRunBytes are the sizes of fragPiece and
	// fragRun.
	fragPieceBytes = 12
	fragRunBytes   = 8
)

// defragger reassembles IPv4 fragments addressed to broadcast or multicast
// MACs before they are flooded, as macvlan does with ip_check_defrag
// (user IP_DEFRAG_MACVLAN), following ip_frag_queue and
// inet_frag_queue_insert (BEHAVIOUR.md §2.2.1).
type defragger struct {
	mu  sync.Mutex
	cfg Reassembly // with defaults; fixed at New
	// active holds every datagram under reassembly; oldest and newest
	// chain them in creation order, which is also expiry order.
	active map[fragKey]*fragDatagram
	all    fragList // links: fragDatagram.age
	// mem is the memory held, the sum of every datagram's mem; bySource
	// has the same per source address, and each source's datagrams in
	// creation order.
	mem      int
	bySource map[[4]byte]*fragSource
	merged   uint64
	pending  uint64
}

// fragSource is what one source address has under reassembly.
type fragSource struct {
	mem  int
	list fragList // links: fragDatagram.bySrc
}

// fragList chains datagrams oldest first through one of their link pairs
// (at picks which): every datagram, or one source's.
type fragList struct {
	oldest, newest *fragDatagram
	at             func(*fragDatagram) *fragLinks
}

// fragLinks are a datagram's neighbours in one fragList.
type fragLinks struct{ prev, next *fragDatagram }

func byAge(dg *fragDatagram) *fragLinks    { return &dg.age }
func bySource(dg *fragDatagram) *fragLinks { return &dg.bySrc }

// push appends dg as the newest.
func (l *fragList) push(dg *fragDatagram) {
	l.at(dg).prev = l.newest
	if l.newest != nil {
		l.at(l.newest).next = dg
	} else {
		l.oldest = dg
	}
	l.newest = dg
}

// remove unlinks dg.
func (l *fragList) remove(dg *fragDatagram) {
	ln := l.at(dg)
	if ln.prev != nil {
		l.at(ln.prev).next = ln.next
	} else {
		l.oldest = ln.next
	}
	if ln.next != nil {
		l.at(ln.next).prev = ln.prev
	} else {
		l.newest = ln.prev
	}
	*ln = fragLinks{}
}

// evict drops the oldest datagrams other than keep while over() holds.
func (l *fragList) evict(keep *fragDatagram, over func() bool, drop func(*fragDatagram)) {
	for dg := l.oldest; dg != nil && over(); {
		next := l.at(dg).next
		if dg != keep {
			drop(dg)
		}
		dg = next
	}
}

// fragKey identifies a datagram, as the kernel's frag_v4_compare_key
// (without user and vif, which are constant here).
type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
}

// fragDatagram is one datagram under reassembly: the kernel's ipq.
type fragDatagram struct {
	key            fragKey
	created        time.Time
	age            fragLinks   // creation order, in defragger.all
	bySrc          fragLinks   // creation order among its source's
	hdr            []byte      // link and IP header of the offset-0 fragment; nil until it came
	l3off, ihl     int         // of hdr
	data           []byte      // payload of every fragment held, in arrival order
	pieces         []fragPiece // where each fragment's payload is in data
	runs           []fragRun   // what is held, as the kernel's runs; the last is the tail's
	len            int         // the datagram's payload length: known when lastIn, a lower bound before
	lastIn         bool        // the fragment without MF came (INET_FRAG_LAST_IN)
	frags          uint64      // fragments held
	mem            int         // memory held, see size
	ecn            uint8       // the IPFRAG_ECN_* bits of every fragment, OR-ed
	maxSize, maxDF int         // largest fragment, largest with DF (ip_frag_reasm's DF rule)
	rxQueue        int
}

// fragPiece places one fragment's payload: [off, off+n) of the datagram
// is data[at:at+n].
type fragPiece struct{ off, n, at int32 }

// fragRun is a range of the datagram held, the kernel's "run": fragments
// that arrived one after the other, each starting where the previous
// ended, at the tail of the datagram. A fragment inserted anywhere else
// starts a run of its own and never joins another.
type fragRun struct{ off, end int32 }

// size is what dg holds, in bytes.
func (dg *fragDatagram) size() int {
	return fragDatagramBytes + fragMapBytes + cap(dg.hdr) + cap(dg.data) +
		cap(dg.pieces)*fragPieceBytes + cap(dg.runs)*fragRunBytes
}

func (d *defragger) init(cfg Reassembly) {
	d.cfg = cfg.WithDefaults()
	d.active = make(map[fragKey]*fragDatagram)
	d.all = fragList{at: byAge}
	d.bySource = make(map[[4]byte]*fragSource)
}

// fragCounts is the defragger's part of the switch's counters.
type fragCounts struct {
	merged, pending uint64
	mem, datagrams  int
}

func (d *defragger) counts() fragCounts {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fragCounts{d.merged, d.pending, d.mem, len(d.active)}
}

// flush drops everything under reassembly.
func (d *defragger) flush(drops *dropCounters) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.all.oldest != nil {
		d.dropLocked(d.all.oldest, DropRemoved, 0, drops)
	}
}

// expireLocked drops the datagrams whose time is up: the oldest first,
// which is creation order.
//
// Preconditions: d.mu is held.
func (d *defragger) expireLocked(now time.Time, drops *dropCounters) {
	for dg := d.all.oldest; dg != nil && now.Sub(dg.created) >= d.cfg.Timeout; dg = d.all.oldest {
		d.dropLocked(dg, DropDefragTimeout, 0, drops)
	}
}

// dropLocked discards dg and counts its fragments, plus extra fragments
// not yet held (the one that condemned it), under why.
//
// Preconditions: d.mu is held.
func (d *defragger) dropLocked(dg *fragDatagram, why DropReason, extra uint64, drops *dropCounters) {
	d.removeLocked(dg)
	drops[why].Add(dg.frags + extra)
}

// linkLocked puts a new datagram under reassembly, the newest of all and
// of its source.
//
// Preconditions: d.mu is held.
func (d *defragger) linkLocked(dg *fragDatagram) {
	d.active[dg.key] = dg
	d.all.push(dg)
	src := d.bySource[dg.key.src]
	if src == nil {
		src = &fragSource{list: fragList{at: bySource}}
		d.bySource[dg.key.src] = src
	}
	src.list.push(dg)
	d.charge(dg, dg.size())
}

// removeLocked takes dg out of reassembly and gives back its memory.
//
// Preconditions: d.mu is held.
func (d *defragger) removeLocked(dg *fragDatagram) {
	d.charge(dg, -dg.mem)
	delete(d.active, dg.key)
	d.all.remove(dg)
	src := d.bySource[dg.key.src]
	src.list.remove(dg)
	if src.list.oldest == nil {
		delete(d.bySource, dg.key.src)
	}
	d.pending -= dg.frags
}

// charge adds delta bytes to what dg, its source and reassembly hold.
//
// Preconditions: d.mu is held; dg is linked.
func (d *defragger) charge(dg *fragDatagram, delta int) {
	dg.mem += delta
	d.mem += delta
	d.bySource[dg.key.src].mem += delta
}

// evictLocked drops the oldest datagrams other than keep until at most
// low bytes are held, counting their fragments under DropDefragOverflow.
//
// Preconditions: d.mu is held.
func (d *defragger) evictLocked(low int, keep *fragDatagram, drops *dropCounters) {
	d.all.evict(keep, func() bool { return d.mem > low }, func(dg *fragDatagram) {
		d.dropLocked(dg, DropDefragOverflow, 0, drops)
	})
}

// evictSourceLocked drops the oldest datagrams of keep's source, other
// than keep, until the source holds at most max bytes, counting their
// fragments under DropDefragSourceLimit.
//
// Preconditions: d.mu is held.
func (d *defragger) evictSourceLocked(max int, keep *fragDatagram, drops *dropCounters) {
	src := d.bySource[keep.key.src]
	src.list.evict(keep, func() bool { return src.mem > max }, func(dg *fragDatagram) {
		d.dropLocked(dg, DropDefragSourceLimit, 0, drops)
	})
}

// ExpireFragments drops the fragments of datagrams that have waited longer
// than the reassembly timeout. The core runs no timers: its owner calls
// this periodically (bridge.Switch does, every FragmentTick). Without such
// a caller, datagrams still expire whenever another fragment arrives, but
// an idle switch keeps up to Reassembly.High bytes until then.
func (s *Switch) ExpireFragments() {
	s.frag.mu.Lock()
	s.frag.expireLocked(s.now(), &s.drops)
	s.frag.mu.Unlock()
}

// Reassembly returns the reassembly bounds in force, defaults applied.
func (s *Switch) Reassembly() Reassembly { return s.frag.cfg }

// fragment is one arriving IPv4 fragment, parsed.
type fragment struct {
	key      fragKey
	off, end int    // payload range in the datagram; end is trimmed to 8 when MF
	more, df bool   // MF and DF
	ecn      uint8  // 1 << (tos & 3), the kernel's ip4_frag_ecn
	hdr      []byte // link and IP header, in a caller's buffer; the payload follows
	l3off    int
	ihl      int
	rxQueue  int
}

// defragment absorbs one fragment (Receive found f.ipv4Frag on a group
// destination); when its datagram is complete, the reassembled frame is
// forwarded like any frame from the wire. It borrows pkt: only the
// fragment's payload is copied, never Ethernet padding.
func (s *Switch) defragment(pkt *stack.PacketBuffer, h []byte, f *frame, rxQueue int) {
	l3 := h[f.l3off:]
	ihl := int(l3[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(l3[2:4]))
	if ihl < 20 || tot < ihl || f.size-f.l3off < tot {
		// ip_check_defrag leaves a packet whose lengths do not add up
		// alone: it goes on as it is.
		s.finish(s.receive(s.fib.Load(), pkt, f, rxQueue))
		return
	}
	ff := binary.BigEndian.Uint16(l3[6:8])
	fr := fragment{
		off:     int(ff&0x1fff) * 8,
		more:    ff&0x2000 != 0,
		df:      ff&0x4000 != 0,
		ecn:     1 << (l3[1] & 3),
		hdr:     h[:f.l3off+ihl],
		l3off:   f.l3off,
		ihl:     ihl,
		rxQueue: rxQueue,
	}
	fr.end = fr.off + tot - ihl
	copy(fr.key.src[:], l3[12:16])
	copy(fr.key.dst[:], l3[16:20])
	fr.key.id = binary.BigEndian.Uint16(l3[4:6])
	fr.key.proto = l3[9]

	done := s.frag.add(s.now(), &fr, pkt, &s.drops)
	if done == nil {
		return
	}
	full := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(done.assemble())})
	defer full.DecRef()
	s.accepted.Add(1)
	s.reassembled.Add(1)
	var g frame
	var hb [peekLen]byte
	s.classify(full, &g, &hb) // at least a link and an IP header: never false
	g.ipv4Frag = false
	s.finish(s.receive(s.fib.Load(), full, &g, done.rxQueue))
}

// fragInsert is the outcome of inserting a fragment's range, as the
// kernel's IPFRAG_OK, IPFRAG_DUP and IPFRAG_OVERLAP.
type fragInsert int

const (
	fragOK fragInsert = iota
	fragDup
	fragOverlap
)

// insertRun records [off, end) as held, with the kernel's rules
// (inet_frag_queue_insert): past the tail it extends the tail's run when
// it starts where the tail ends, or starts a run; overlapping the tail is
// an overlap. Anywhere else, a range wholly inside one run is a duplicate,
// one that touches a run otherwise an overlap, and one in a hole a run of
// its own.
func (dg *fragDatagram) insertRun(off, end int) fragInsert {
	n := len(dg.runs)
	if n == 0 {
		dg.runs = append(dg.runs, fragRun{int32(off), int32(end)})
		return fragOK
	}
	if tail := &dg.runs[n-1]; int(tail.end) < end {
		switch {
		case off < int(tail.end):
			return fragOverlap
		case off == int(tail.end):
			tail.end = int32(end)
		default:
			dg.runs = append(dg.runs, fragRun{int32(off), int32(end)})
		}
		return fragOK
	}
	// The first run ending after off is the only one [off, end) can
	// touch without also touching another before it.
	i := sort.Search(n, func(i int) bool { return int(dg.runs[i].end) > off })
	if r := dg.runs[i]; int(r.off) < end {
		if off >= int(r.off) && end <= int(r.end) {
			return fragDup
		}
		return fragOverlap
	}
	dg.runs = slices.Insert(dg.runs, i, fragRun{int32(off), int32(end)})
	return fragOK
}

// add takes one fragment into reassembly, with ip_frag_queue's rules and
// the memory bounds, and returns its datagram when that is complete: out
// of reassembly, its fragments counted as merged, ready to assemble.
func (d *defragger) add(now time.Time, fr *fragment, pkt *stack.PacketBuffer, drops *dropCounters) *fragDatagram {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(now, drops)
	dg := d.active[fr.key]
	if dg == nil {
		dg = &fragDatagram{key: fr.key, created: now, rxQueue: fr.rxQueue}
		d.linkLocked(dg)
	}

	// The end rules of ip_frag_queue: the last fragment fixes the end,
	// which nothing may contradict; before it comes, the end seen so far
	// only grows.
	off, end := fr.off, fr.end
	if !fr.more {
		if end < dg.len || (dg.lastIn && end != dg.len) {
			d.dropLocked(dg, DropDefragEnd, 1, drops)
			return nil
		}
		dg.lastIn, dg.len = true, end
	} else {
		end &^= 7 // all but the last carry multiples of 8 bytes
		if end > dg.len {
			if dg.lastIn {
				d.dropLocked(dg, DropDefragEnd, 1, drops)
				return nil
			}
			dg.len = end
		}
	}
	if end == off {
		d.dropLocked(dg, DropDefragInvalid, 1, drops)
		return nil
	}
	// The kernel refuses a datagram above 65535 bytes when it completes
	// (ip_frag_reasm, E2BIG); refusing it as soon as its end says so
	// frees its memory at once.
	ihl := 20
	switch {
	case dg.hdr != nil:
		ihl = dg.ihl
	case off == 0:
		ihl = fr.ihl
	}
	if ihl+dg.len > maxIPv4Len {
		d.dropLocked(dg, DropDefragOversize, 1, drops)
		return nil
	}
	switch dg.insertRun(off, end) {
	case fragDup:
		drops[DropDefragDuplicate].Add(1)
		return nil
	case fragOverlap:
		d.dropLocked(dg, DropDefragOverlap, 1, drops)
		return nil
	}

	n := end - off
	at := len(dg.data)
	dg.data = slices.Grow(dg.data, n)[:at+n]
	CopyFrame(pkt, len(fr.hdr), dg.data[at:])
	dg.pieces = append(dg.pieces, fragPiece{int32(off), int32(n), int32(at)})
	if off == 0 {
		dg.hdr = slices.Clone(fr.hdr)
		dg.l3off, dg.ihl = fr.l3off, fr.ihl
		dg.rxQueue = fr.rxQueue
	}
	dg.frags++
	d.pending++
	dg.ecn |= fr.ecn
	size := n + fr.ihl
	dg.maxSize = max(dg.maxSize, size)
	if fr.df {
		dg.maxDF = max(dg.maxDF, size)
	}
	d.charge(dg, dg.size()-dg.mem)

	if dg.hdr != nil && dg.lastIn && len(dg.data) == dg.len {
		if _, ok := fragECN(dg.ecn); !ok {
			d.dropLocked(dg, DropDefragInvalid, 0, drops)
			return nil
		}
		d.removeLocked(dg)
		d.merged += dg.frags
		return dg
	}
	// The bounds, the source's first: its own datagrams go before anyone
	// else's. The datagram just added goes last.
	if d.bySource[dg.key.src].mem > d.cfg.MaxPerSource {
		d.evictSourceLocked(d.cfg.MaxPerSource, dg, drops)
		if dg.mem > d.cfg.MaxPerSource {
			d.dropLocked(dg, DropDefragSourceLimit, 0, drops)
			return nil
		}
	}
	if d.mem > d.cfg.High {
		d.evictLocked(d.cfg.Low, dg, drops)
		if d.mem > d.cfg.High {
			d.dropLocked(dg, DropDefragOverflow, 0, drops)
		}
	}
	return nil
}

// fragECN is the kernel's ip_frag_ecn_table (RFC 3168 §5.3) over the OR of
// every fragment's 1 << ECN field: the ECN bits to set on the datagram,
// and false for a mix that must be dropped (not-ECT with anything else).
func fragECN(bits uint8) (uint8, bool) {
	const notECT, ect1, ect0, ce = 1, 2, 4, 8
	switch {
	case bits&notECT != 0 && bits&^notECT != 0:
		return 0, false
	case bits&ce != 0 && bits&(ect0|ect1) != 0:
		return 3, true
	}
	return 0, true
}

// assemble builds the reassembled frame (ip_frag_reasm): the link header
// and IP header of the offset-0 fragment with the total length set, the
// fragment fields cleared except DF, kept only when the largest fragment
// carried it, the ECN rule applied (add refused a forbidden mix), a new
// header checksum, and the payload in order.
func (dg *fragDatagram) assemble() []byte {
	ecn, _ := fragECN(dg.ecn)
	out := make([]byte, len(dg.hdr)+dg.len)
	copy(out, dg.hdr)
	for _, p := range dg.pieces {
		copy(out[len(dg.hdr)+int(p.off):], dg.data[p.at:p.at+p.n])
	}
	ip := out[dg.l3off:]
	binary.BigEndian.PutUint16(ip[2:4], uint16(dg.ihl+dg.len))
	ip[1] |= ecn
	var ff uint16
	if dg.maxDF == dg.maxSize {
		ff = 0x4000
	}
	binary.BigEndian.PutUint16(ip[6:8], ff)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip[:dg.ihl], 0))
	return out
}
