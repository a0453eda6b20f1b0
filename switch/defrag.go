package vswitch

import (
	"encoding/binary"
	"sort"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Reassembly limits. The kernel's defaults are ipfrag_time 30 s and 4 MiB of
// fragment memory per namespace; a switch needs far less, because only
// fragments addressed to a group MAC are reassembled (BEHAVIOUR.md §2.2.1).
const (
	defragTimeout   = 30 * time.Second
	defragMaxActive = 64    // datagrams under reassembly at once
	defragMaxSize   = 65535 // an IPv4 datagram's largest total length
)

// defragger reassembles IPv4 fragments addressed to broadcast or multicast
// MACs before they are flooded, as macvlan does with ip_check_defrag.
type defragger struct {
	mu      sync.Mutex
	active  map[fragKey]*fragDatagram
	merged  uint64
	pending uint64
}

type fragKey struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
}

type fragDatagram struct {
	first   time.Time
	link    []byte // Ethernet header (and VLAN tags) of the first fragment seen
	ipHdr   []byte // IP header of the offset-0 fragment
	pieces  []fragPiece
	total   int // payload length, known once the last fragment arrived
	have    int
	frags   uint64
	rxQueue int
}

type fragPiece struct {
	off  int
	data []byte
}

func (d *defragger) init() { d.active = make(map[fragKey]*fragDatagram) }

func (d *defragger) counts() (merged, pending uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.merged, d.pending
}

// flush drops everything under reassembly.
func (d *defragger) flush(drops *dropCounters) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, dg := range d.active {
		drops[DropRemoved].Add(dg.frags)
		d.pending -= dg.frags
		delete(d.active, k)
	}
}

// expireLocked drops datagrams older than defragTimeout.
//
// Preconditions: d.mu is held.
func (d *defragger) expireLocked(now time.Time, drops *dropCounters) {
	for k, dg := range d.active {
		if now.Sub(dg.first) >= defragTimeout {
			drops[DropDefragTimeout].Add(dg.frags)
			d.pending -= dg.frags
			delete(d.active, k)
		}
	}
}

// ExpireFragments drops fragments whose datagram has waited longer than the
// reassembly timeout. Reassembly also expires old datagrams whenever a new
// fragment arrives; call this from a timer to bound the wait when none does.
func (s *Switch) ExpireFragments() {
	s.frag.mu.Lock()
	s.frag.expireLocked(s.now(), &s.drops)
	s.frag.mu.Unlock()
}

// defragment absorbs one fragment; when its datagram is complete, the
// reassembled frame is forwarded like any frame from the wire.
func (s *Switch) defragment(pkt *stack.PacketBuffer, f *frame, rxQueue int) {
	raw := make([]byte, 0, f.size) // rare path: fragments are copied
	for _, b := range pkt.AsSlices() {
		raw = append(raw, b...)
	}
	l3 := raw[f.l3off:]
	ihl := int(l3[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(l3[2:4]))
	if ihl < 20 || tot < ihl || tot > len(l3) {
		s.finish(false, DropDefragInvalid)
		return
	}
	ff := binary.BigEndian.Uint16(l3[6:8])
	off := int(ff&0x1fff) * 8
	more := ff&0x2000 != 0
	data := l3[ihl:tot]
	var key fragKey
	copy(key.src[:], l3[12:16])
	copy(key.dst[:], l3[16:20])
	key.id = binary.BigEndian.Uint16(l3[4:6])
	key.proto = l3[9]

	d := &s.frag
	d.mu.Lock()
	now := s.now()
	d.expireLocked(now, &s.drops)
	dg := d.active[key]
	if dg == nil {
		if len(d.active) >= defragMaxActive {
			d.mu.Unlock()
			s.finish(false, DropDefragOverflow)
			return
		}
		dg = &fragDatagram{first: now, link: raw[:f.l3off], total: -1, rxQueue: rxQueue}
		d.active[key] = dg
	}
	bad := off+len(data) > defragMaxSize-20 || (more && len(data)%8 != 0) ||
		(!more && dg.total >= 0) || (dg.total >= 0 && off+len(data) > dg.total)
	for _, p := range dg.pieces {
		if off < p.off+len(p.data) && p.off < off+len(data) {
			bad = true
		}
	}
	if bad {
		// An inconsistent datagram is dropped whole.
		s.drops[DropDefragInvalid].Add(dg.frags + 1)
		d.pending -= dg.frags
		delete(d.active, key)
		d.mu.Unlock()
		return
	}
	dg.pieces = append(dg.pieces, fragPiece{off: off, data: data})
	dg.have += len(data)
	dg.frags++
	d.pending++
	if off == 0 {
		dg.ipHdr = l3[:ihl]
		dg.link = raw[:f.l3off]
	}
	if !more {
		dg.total = off + len(data)
	}
	if dg.total < 0 || dg.have != dg.total || dg.ipHdr == nil {
		d.mu.Unlock()
		return
	}
	delete(d.active, key)
	d.pending -= dg.frags
	d.merged += dg.frags
	d.mu.Unlock()

	out := dg.assemble()
	full := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(out)})
	defer full.DecRef()
	s.accepted.Add(1)
	s.reassembled.Add(1)
	var g frame
	if !s.classify(full, &g) {
		s.finish(false, DropDefragInvalid)
		return
	}
	g.ipv4Frag = false
	s.finish(s.receive(s.fib.Load(), full, &g, dg.rxQueue))
}

// assemble builds the reassembled frame: the link header, the first
// fragment's IP header with fragment fields cleared (DF kept), a new total
// length and checksum, and the payload in order.
func (dg *fragDatagram) assemble() []byte {
	sort.Slice(dg.pieces, func(i, j int) bool { return dg.pieces[i].off < dg.pieces[j].off })
	ihl := len(dg.ipHdr)
	out := make([]byte, 0, len(dg.link)+ihl+dg.total)
	out = append(out, dg.link...)
	out = append(out, dg.ipHdr...)
	ip := out[len(dg.link):]
	binary.BigEndian.PutUint16(ip[2:4], uint16(ihl+dg.total))
	binary.BigEndian.PutUint16(ip[6:8], binary.BigEndian.Uint16(ip[6:8])&0x4000)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], ^checksum.Checksum(ip[:ihl], 0))
	for _, p := range dg.pieces {
		out = append(out, p.data...)
	}
	return out
}
