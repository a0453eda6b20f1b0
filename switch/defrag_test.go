package vswitch

import (
	"encoding/binary"
	"testing"
	"time"
)

// frag4 builds one IPv4 fragment of datagram id carrying n payload bytes at
// byte offset off.
func frag4(dst MAC, id uint16, off, n int, more bool) []byte {
	b := ethFrame(dst, macE, etherTypeIPv4, 14+20+n)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+n))
	binary.BigEndian.PutUint16(ip[4:6], id)
	ff := uint16(off / 8)
	if more {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(ip[6:8], ff)
	ip[8], ip[9] = 64, ipProtoUDP
	copy(ip[12:20], []byte{10, 0, 0, 1, 10, 0, 0, 255})
	return b
}

func TestDefragTimeout(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSwitch(t, Options{Now: func() time.Time { return now }})
	p := addPort(t, s, PortConfig{Name: "a", MAC: macA})
	send(s, nil, frag4(Broadcast, 1, 0, 64, true))
	if st := s.Stats(); st.Pending != 1 {
		t.Fatalf("pending %d, want 1", st.Pending)
	}
	checkInvariant(t, s)
	now = now.Add(31 * time.Second)
	s.ExpireFragments()
	if st := s.Stats(); st.Pending != 0 || st.Drops.Get("defrag_timeout") != 1 {
		t.Errorf("after timeout: pending %d drops %v", st.Pending, st.Drops)
	}
	if n := sum(drain(p)); n != 0 {
		t.Errorf("port got %d frames from an incomplete datagram", n)
	}
	checkInvariant(t, s)
}

func TestDefragOverlapAndOrder(t *testing.T) {
	s := newSwitch(t, Options{})
	p := addPort(t, s, PortConfig{Name: "a", MAC: macA})
	// Out of order: last fragment first.
	send(s, nil, frag4(Broadcast, 2, 64, 40, false))
	send(s, nil, frag4(Broadcast, 2, 0, 64, true))
	if n := sum(drain(p)); n != 1 {
		t.Errorf("out-of-order datagram: port got %d frames, want 1", n)
	}
	// Overlap: the datagram is dropped whole.
	send(s, nil, frag4(Broadcast, 3, 0, 64, true))
	send(s, nil, frag4(Broadcast, 3, 56, 40, false))
	if n := sum(drain(p)); n != 0 {
		t.Errorf("overlapping datagram delivered %d frames", n)
	}
	if st := s.Stats(); st.Drops.Get("defrag_invalid") != 2 {
		t.Errorf("defrag_invalid %d, want 2", st.Drops.Get("defrag_invalid"))
	}
	checkInvariant(t, s)
}

func TestDefragOverflow(t *testing.T) {
	s := newSwitch(t, Options{})
	addPort(t, s, PortConfig{Name: "a", MAC: macA})
	for id := 0; id < defragMaxActive+5; id++ {
		send(s, nil, frag4(Broadcast, uint16(id), 0, 64, true))
	}
	if st := s.Stats(); st.Drops.Get("defrag_overflow") != 5 || st.Pending != defragMaxActive {
		t.Errorf("overflow %d pending %d", st.Drops.Get("defrag_overflow"), st.Pending)
	}
	checkInvariant(t, s)
}
