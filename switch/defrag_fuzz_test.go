package vswitch

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzDefrag drives reassembly with a stream of fragments from a few
// sources and datagram IDs, at offsets, lengths and flags the input picks,
// with the clock moving and ExpireFragments called now and then, under a
// small budget so that eviction and the per-source bound happen often.
// Invariants, after every fragment:
//   - no panic; accepted == forwarded + merged + pending + dropped;
//   - reassembly never holds more than High, nor a source more than
//     MaxPerSource, and its books balance (checkDefragBooks);
//   - a frame reaches the port only as a whole datagram: unfragmented, its
//     total length the frame's, its header checksum valid, every payload
//     byte the one sent at that offset (no hole, nothing misplaced), and
//     its length the end of a last fragment sent for that datagram.
//
// Each fragment takes four bytes: op (source, ID, clock), offset, flags,
// length. Inputs stop at maxDefragFuzzFrags fragments: a fresh switch per
// run and a check of the books after every fragment cost about 10 µs a
// fragment, and Go's minimizer is quadratic in input length.
func FuzzDefrag(f *testing.F) {
	f.Add([]byte{0x00, 0, 0x01, 8, 0x00, 8, 0x00, 4})                      // two in order
	f.Add([]byte{0x00, 8, 0x00, 4, 0x00, 0, 0x01, 8})                      // last first
	f.Add([]byte{0x00, 0, 0x01, 8, 0x00, 0, 0x01, 8, 0x00, 8, 0x00, 1})    // duplicate
	f.Add([]byte{0x00, 0, 0x01, 8, 0x00, 7, 0x00, 5})                      // overlap
	f.Add([]byte{0x05, 0, 0x71, 255, 0x05, 255, 0x81, 255, 0xc5, 0, 0, 1}) // options, far, expiry
	f.Add([]byte{0x00, 0, 0x05, 8, 0x01, 0, 0x0d, 8, 0x00, 8, 0x0c, 4, 0x01, 8, 0x02, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*maxDefragFuzzFrags {
			return
		}
		now := time.Unix(1000, 0)
		r := Reassembly{High: 24 << 10, Low: 16 << 10, MaxPerSource: 12 << 10, Timeout: 10 * time.Second}
		s := New(Options{LowerMAC: lowerMAC, Reassembly: r, Now: func() time.Time { return now }})
		defer s.Close()
		p, err := s.AddPort(PortConfig{Name: "a", MAC: macA, QueueLen: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		type dgKey struct {
			src byte
			id  uint16
		}
		ends := map[dgKey]map[int]bool{} // last fragments' ends sent since the datagram last came out
		rd := &reader{b: data}
		for !rd.done() {
			op, offB, flags, nB := rd.next(), rd.next(), rd.next(), rd.next()
			if op&0x80 != 0 {
				now = now.Add(time.Duration(op>>4&7) * 2 * time.Second)
			}
			if op&0x40 != 0 {
				s.ExpireFragments()
			}
			fs := fragSpec{
				src:  op&3 + 1,
				id:   uint16(op >> 2 & 3),
				off:  int(offB) * 8,
				n:    int(nB)*8 + int(flags>>4&7),
				more: flags&1 != 0,
				df:   flags&2 != 0,
				tos:  flags >> 2 & 3,
			}
			if flags&0x80 != 0 {
				fs.off <<= 5 // far: up to 65280
			}
			if op&0x20 != 0 {
				fs.opts = int(flags>>4&7) * 4
				fs.size = 1514
			}
			if fs.off == 0 && !fs.more {
				fs.more = true // an unfragmented packet is not reassembly's
			}
			if !fs.more {
				k := dgKey{fs.src, fs.id}
				if ends[k] == nil {
					ends[k] = map[int]bool{}
				}
				ends[k][fs.off+fs.n] = true
			}
			send(s, nil, fs.build())
			checkDefragBooks(t, s)
			checkInvariant(t, s)
			for _, b := range takeFrames(p) {
				ip := b[14:]
				if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
					t.Fatalf("a fragment reached the port: % x", ip[:20])
				}
				ihl := int(ip[0]&0xf) * 4
				payload := int(binary.BigEndian.Uint16(ip[2:4])) - ihl
				checkDatagram(t, b, payload)
				k := dgKey{ip[15], binary.BigEndian.Uint16(ip[4:6])}
				if !ends[k][payload] {
					t.Fatalf("datagram %+v of %d bytes; last fragments sent end at %v", k, payload, ends[k])
				}
				delete(ends, k)
			}
		}
	})
}

// maxDefragFuzzFrags bounds FuzzDefrag's streams: enough to fill its 24 KiB
// budget several times over with 1514-byte frames.
const maxDefragFuzzFrags = 128

// checkDefragBooks checks reassembly's bookkeeping: every datagram is in
// the table, the creation-order list and its source's list; memory and
// pending fragments add up; each datagram is charged what it holds; and
// the bounds hold.
func checkDefragBooks(t testing.TB, s *Switch) {
	t.Helper()
	d := &s.frag
	d.mu.Lock()
	defer d.mu.Unlock()
	mem, n := 0, 0
	var pending uint64
	for dg := d.all.oldest; dg != nil; dg = dg.age.next {
		n++
		if d.active[dg.key] != dg {
			t.Fatalf("datagram %+v listed but not in the table", dg.key)
		}
		if dg.mem != dg.size() {
			t.Fatalf("datagram %+v charged %d, holds %d", dg.key, dg.mem, dg.size())
		}
		if dg.age.next != nil && dg.age.next.created.Before(dg.created) {
			t.Fatal("creation order broken")
		}
		mem += dg.mem
		pending += dg.frags
	}
	if n != len(d.active) || mem != d.mem {
		t.Fatalf("%d datagrams listed, %d in the table; %d bytes listed, %d counted", n, len(d.active), mem, d.mem)
	}
	if pending != d.pending {
		t.Fatalf("%d fragments held, %d counted pending", pending, d.pending)
	}
	if d.mem > d.cfg.High {
		t.Fatalf("reassembly holds %d bytes, high %d", d.mem, d.cfg.High)
	}
	n = 0
	for addr, src := range d.bySource {
		sm := 0
		for dg := src.list.oldest; dg != nil; dg = dg.bySrc.next {
			if dg.key.src != addr {
				t.Fatalf("datagram of %v in %v's list", dg.key.src, addr)
			}
			sm += dg.mem
			n++
		}
		if sm != src.mem || sm == 0 {
			t.Fatalf("source %v: %d bytes listed, %d counted", addr, sm, src.mem)
		}
		if src.mem > d.cfg.MaxPerSource {
			t.Fatalf("source %v holds %d bytes, limit %d", addr, src.mem, d.cfg.MaxPerSource)
		}
	}
	if n != len(d.active) {
		t.Fatalf("%d datagrams in source lists, %d in the table", n, len(d.active))
	}
}
