package vswitch

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// BEHAVIOUR.md §8.2 case 57 and §5: the kernel's control-plane refusals.
func TestControlRules(t *testing.T) {
	t.Run("sibling MAC: created down ok, up refused", func(t *testing.T) {
		s := newSwitch(t, Options{})
		addPort(t, s, PortConfig{Name: "a", MAC: macA})
		b := addPort(t, s, PortConfig{Name: "b", MAC: macA, Down: true})
		err := s.SetUp(b, true)
		if !errors.Is(err, ErrAddrInUse) {
			t.Fatalf("SetUp = %v, want ErrAddrInUse", err)
		}
		var pe *PortError
		if !errors.As(err, &pe) || pe.Port != "b" || !strings.Contains(err.Error(), `"a"`) {
			t.Errorf("error %q should name port b and the owner a", err)
		}
		if _, err := s.AddPort(PortConfig{Name: "c", MAC: macA}); !errors.Is(err, ErrAddrInUse) {
			t.Errorf("AddPort up with a busy MAC = %v, want ErrAddrInUse", err)
		}
		if s.Port("c") != nil {
			t.Error("a refused AddPort left a port behind")
		}
	})
	t.Run("set MAC to the lower's", func(t *testing.T) {
		s := newSwitch(t, Options{})
		a := addPort(t, s, PortConfig{Name: "a", MAC: macA})
		if err := s.SetMAC(a, lowerMAC); !errors.Is(err, ErrAddrInUse) {
			t.Errorf("SetMAC(lower) = %v, want ErrAddrInUse", err)
		}
		if _, err := s.AddPort(PortConfig{Name: "b", MAC: lowerMAC}); !errors.Is(err, ErrAddrInUse) {
			t.Errorf("AddPort(lower MAC) = %v, want ErrAddrInUse", err)
		}
		b := addPort(t, s, PortConfig{Name: "b", MAC: macB, Down: true})
		if err := s.SetMAC(b, macA); !errors.Is(err, ErrAddrInUse) {
			t.Errorf("SetMAC(up sibling's) on a down port = %v, want ErrAddrInUse", err)
		}
		if err := s.SetMAC(a, macA); err != nil {
			t.Errorf("SetMAC(own) = %v, want nil", err)
		}
		if err := s.SetMAC(a, Broadcast); !errors.Is(err, ErrAddrNotAvail) {
			t.Errorf("SetMAC(broadcast) = %v, want ErrAddrNotAvail", err)
		}
	})
	t.Run("MTU", func(t *testing.T) {
		s := newSwitch(t, Options{LowerMTU: 1500})
		if _, err := s.AddPort(PortConfig{Name: "a", MTU: 1600}); !errors.Is(err, ErrMTU) {
			t.Errorf("AddPort(mtu 1600) = %v, want ErrMTU", err)
		}
		a := addPort(t, s, PortConfig{Name: "a"})
		if a.MTU() != 1500 {
			t.Errorf("default MTU %d, want the lower's 1500", a.MTU())
		}
		if err := s.SetMTU(a, 1600); !errors.Is(err, ErrMTU) {
			t.Errorf("SetMTU(1600) = %v, want ErrMTU", err)
		}
		if err := s.SetMTU(a, 67); !errors.Is(err, ErrMTU) {
			t.Errorf("SetMTU(67) = %v, want ErrMTU", err)
		}
		must(t, s.SetLowerMTU(1400))
		must(t, s.SetLowerMTU(9000))
		if a.MTU() != 1400 {
			t.Errorf("after lower 1500->1400->9000 port MTU %d, want 1400", a.MTU())
		}
	})
	t.Run("passthru is exclusive", func(t *testing.T) {
		s := newSwitch(t, Options{})
		a := addPort(t, s, PortConfig{Name: "a"})
		if _, err := s.AddPort(PortConfig{Name: "pt", Mode: ModePassthru}); !errors.Is(err, ErrPassthru) {
			t.Errorf("passthru with a sibling = %v, want ErrPassthru", err)
		}
		if err := s.SetMode(a, ModePassthru); !errors.Is(err, ErrPassthru) {
			t.Errorf("mode change to passthru = %v, want ErrPassthru", err)
		}
		must(t, s.RemovePort(a))
		pt := addPort(t, s, PortConfig{Name: "pt", Mode: ModePassthru})
		if _, err := s.AddPort(PortConfig{Name: "b"}); !errors.Is(err, ErrPassthru) {
			t.Errorf("sibling on a passthru lower = %v, want ErrPassthru", err)
		}
		if err := s.SetMode(pt, ModeBridge); !errors.Is(err, ErrPassthru) {
			t.Errorf("mode change out of passthru = %v, want ErrPassthru", err)
		}
	})
	t.Run("macaddr needs source mode", func(t *testing.T) {
		s := newSwitch(t, Options{})
		a := addPort(t, s, PortConfig{Name: "a", Mode: ModeBridge})
		if err := s.SourceMACs(a, SourceAdd, macE); !errors.Is(err, ErrNotSource) {
			t.Errorf("macaddr add on bridge = %v, want ErrNotSource", err)
		}
		if _, err := s.AddPort(PortConfig{Name: "b", NoDst: true}); !errors.Is(err, ErrNotSource) {
			t.Errorf("nodst on vepa = %v, want ErrNotSource", err)
		}
	})
	t.Run("default mode is vepa", func(t *testing.T) {
		s := newSwitch(t, Options{})
		if m := addPort(t, s, PortConfig{Name: "a"}).Mode(); m != ModeVEPA {
			t.Errorf("default mode %v, want vepa", m)
		}
	})
	t.Run("duplicate name and bad queues", func(t *testing.T) {
		s := newSwitch(t, Options{})
		addPort(t, s, PortConfig{Name: "a"})
		if _, err := s.AddPort(PortConfig{Name: "a"}); !errors.Is(err, ErrExists) {
			t.Errorf("duplicate name = %v, want ErrExists", err)
		}
		if _, err := s.AddPort(PortConfig{Name: "q", Queues: 257}); !errors.Is(err, ErrInvalid) {
			t.Errorf("257 queues = %v, want ErrInvalid", err)
		}
	})
	t.Run("removed port", func(t *testing.T) {
		s := newSwitch(t, Options{})
		a := addPort(t, s, PortConfig{Name: "a"})
		must(t, s.RemovePort(a))
		if err := s.SetUp(a, true); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetUp on removed port = %v, want ErrNotFound", err)
		}
		if err := s.RemovePort(a); !errors.Is(err, ErrNotFound) {
			t.Errorf("second RemovePort = %v, want ErrNotFound", err)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BEHAVIOUR.md §1.6: source list operations.
func TestSourceList(t *testing.T) {
	s := newSwitch(t, Options{})
	sp := addPort(t, s, PortConfig{Name: "s", Mode: ModeSource, MAC: macC})
	must(t, s.SourceMACs(sp, SourceAdd, macE, macE)) // existing: no-op
	must(t, s.SourceMACs(sp, SourceDel, macA))       // missing: success
	if len(sp.st.sources) != 1 {
		t.Fatalf("sources %v, want [%v]", sp.st.sources, macE)
	}
	must(t, s.SourceMACs(sp, SourceSet, macA, macB))
	if _, ok := sp.st.sources[macE]; ok || len(sp.st.sources) != 2 {
		t.Errorf("after set: %v", sp.st.sources)
	}
	if err := s.SourceMACs(sp, SourceAdd, Broadcast); !errors.Is(err, ErrAddrNotAvail) {
		t.Errorf("adding broadcast = %v, want ErrAddrNotAvail", err)
	}
	must(t, s.SourceMACs(sp, SourceFlush))
	if len(sp.st.sources) != 0 {
		t.Errorf("after flush: %v", sp.st.sources)
	}
	must(t, s.SourceMACs(sp, SourceAdd, macE))
	must(t, s.SetNoDst(sp, true))
	must(t, s.SetMode(sp, ModeBridge)) // leaving source mode flushes
	if len(sp.st.sources) != 0 || sp.st.nodst {
		t.Errorf("leaving source mode kept sources %v nodst %v", sp.st.sources, sp.st.nodst)
	}
}

func TestLowerFilter(t *testing.T) {
	var got []LowerFilter
	s := newSwitch(t, Options{NoPromisc: true, LowerFilterChanged: func(f LowerFilter) { got = append(got, f) }})
	a := addPort(t, s, PortConfig{Name: "a", MAC: macA, Groups: []MAC{{0x01, 0, 0x5e, 0, 0, 1}}})
	last := got[len(got)-1]
	if last.Promisc || len(last.Unicast) != 1 || last.Unicast[0] != macA || len(last.Groups) != 1 {
		t.Errorf("filter with one port = %+v", last)
	}
	n := len(got)
	must(t, s.SetMTU(a, 1400)) // no filter change: no callback
	if len(got) != n {
		t.Errorf("MTU change notified a filter change")
	}
	must(t, s.SetUp(a, false))
	if last := got[len(got)-1]; len(last.Unicast) != 0 {
		t.Errorf("down port still in filter: %+v", last)
	}
}

func TestCarrierFollowsLower(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a"})
	s.SetLowerState(false)
	if a.Carrier() {
		t.Error("carrier with the lower down")
	}
	s.SetLowerState(true)
	if !a.Carrier() {
		t.Error("no carrier with the lower up")
	}
}

// TestUpdateAllOrNothing: a change that breaks any rule changes nothing,
// even the fields before the one refused.
func TestUpdateAllOrNothing(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", Mode: ModeBridge, MAC: macA})
	addPort(t, s, PortConfig{Name: "b", Mode: ModeBridge, MAC: macB})
	before := a.Config()
	mtu := uint32(1400)
	if err := s.Update(a, PortChange{MTU: &mtu, MAC: &macB}); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("Update(mtu, busy mac) = %v, want ErrAddrInUse", err)
	}
	var pe *PortError
	if err := s.Update(a, PortChange{MTU: &mtu, MAC: &macB}); !errors.As(err, &pe) || pe.Field != "mac" || pe.Other != "b" {
		t.Errorf("refusal = %#v, want field mac, other b", pe)
	}
	if got := a.Config(); !reflect.DeepEqual(got, before) {
		t.Errorf("refused update changed the port:\n%+v\n%+v", got, before)
	}
	// Several fields in one request, each needing the one before.
	src := ModeSource
	must(t, s.Update(a, PortChange{Mode: &src, Sources: &SourceChange{Op: SourceSet, MACs: []MAC{macE}}, NoDst: Bool(true)}))
	if c := a.Config(); c.Mode != ModeSource || len(c.SourceMACs) != 1 || !c.NoDst {
		t.Errorf("after source update: %+v", c)
	}
	before = a.Config()
	br, big := ModeBridge, uint32(9000)
	if err := s.Update(a, PortChange{Mode: &br, MTU: &big}); !errors.Is(err, ErrMTU) {
		t.Fatalf("Update(mode, mtu too big) = %v, want ErrMTU", err)
	}
	if got := a.Config(); !reflect.DeepEqual(got, before) {
		t.Errorf("refused update changed the port:\n%+v\n%+v", got, before)
	}
	// A down port's MAC may not be taken either, but a down port may hold
	// a MAC an up port has: bringing it up is what fails.
	down := addPort(t, s, PortConfig{Name: "c", Mode: ModeBridge, MAC: macC, Down: true})
	if err := s.Update(down, PortChange{MAC: &macB}); !errors.Is(err, ErrAddrInUse) {
		t.Errorf("down port taking b's MAC = %v, want ErrAddrInUse", err)
	}
}

// TestConfigRoundTrip: Config reports what AddPort was given (with the
// defaults filled in), and re-creating a port from it gives the same port.
func TestConfigRoundTrip(t *testing.T) {
	s := newSwitch(t, Options{})
	cfg := PortConfig{
		Name: "s", Mode: ModeSource, MAC: macC, MTU: 1400, Queues: 3, QueueLen: 77,
		AllMulti: Bool(false), Groups: []MAC{{0x01, 0, 0x5e, 0, 0, 1}}, SourceMACs: []MAC{macE},
		NoDst: true, BroadcastQueueLen: Int(5),
	}
	p := addPort(t, s, cfg)
	if got := p.Config(); !reflect.DeepEqual(got, cfg) {
		t.Errorf("Config() = %+v, want %+v", got, cfg)
	}
	d := addPort(t, s, PortConfig{Name: "d"})
	c := d.Config()
	if c.Mode != DefaultMode || c.MTU != DefaultMTU || c.Queues != 1 || c.QueueLen != DefaultQueueLen ||
		c.AllMulti == nil || !*c.AllMulti || c.MAC.IsZero() || *c.BroadcastQueueLen != DefaultBroadcastQueue {
		t.Errorf("defaults: %+v", c)
	}
	s2 := newSwitch(t, Options{})
	p2 := addPort(t, s2, p.Config())
	if !reflect.DeepEqual(p2.Config(), p.Config()) {
		t.Errorf("re-created port differs: %+v vs %+v", p2.Config(), p.Config())
	}
}

// TestCheckPorts: the rules AddPort applies, without a switch, each
// refusal naming the port's index, the field and the other port.
func TestCheckPorts(t *testing.T) {
	lower := LowerInfo{MAC: lowerMAC, MTU: 1500}
	if errs := CheckPorts(lower, []PortConfig{{Name: "a", MAC: macA}, {Name: "b", MAC: macB}}); errs != nil {
		t.Errorf("good ports: %v", errs)
	}
	for _, tc := range []struct {
		name  string
		ports []PortConfig
		index int
		field string
		other string
		want  error
	}{
		{"dup MAC", []PortConfig{{Name: "a", MAC: macA}, {Name: "b", MAC: macA}}, 1, "mac", "a", ErrAddrInUse},
		{"lower's MAC", []PortConfig{{Name: "a", MAC: lowerMAC}}, 0, "mac", "", ErrAddrInUse},
		{"dup name", []PortConfig{{Name: "a", MAC: macA}, {Name: "a", MAC: macB}}, 1, "name", "", ErrExists},
		{"passthru sibling", []PortConfig{{Name: "p", Mode: ModePassthru}, {Name: "b", MAC: macB}}, 1, "mode", "p", ErrPassthru},
		{"passthru second", []PortConfig{{Name: "a", MAC: macA}, {Name: "p", Mode: ModePassthru}}, 1, "mode", "", ErrPassthru},
		{"mtu", []PortConfig{{Name: "a", MAC: macA, MTU: 9000}}, 0, "mtu", "", ErrMTU},
		{"sources", []PortConfig{{Name: "a", MAC: macA, SourceMACs: []MAC{macE}}}, 0, "source_macs", "", ErrNotSource},
		{"nodst", []PortConfig{{Name: "a", MAC: macA, NoDst: true}}, 0, "nodst", "", ErrNotSource},
		{"nopromisc", []PortConfig{{Name: "a", MAC: macA, NoPromisc: true}}, 0, "nopromisc", "", ErrInvalid},
		{"group", []PortConfig{{Name: "a", MAC: macA, Groups: []MAC{macB}}}, 0, "multicast", "", ErrInvalid},
		{"queues", []PortConfig{{Name: "a", MAC: macA, Queues: MaxQueues + 1}}, 0, "queues", "", ErrInvalid},
		{"group MAC", []PortConfig{{Name: "a", MAC: Broadcast}}, 0, "mac", "", ErrAddrNotAvail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := CheckPorts(lower, tc.ports)
			if len(errs) != 1 {
				t.Fatalf("CheckPorts = %v, want one error", errs)
			}
			e := errs[0]
			if e.Index != tc.index || e.Field != tc.field || e.Other != tc.other || !errors.Is(e, tc.want) {
				t.Errorf("CheckPorts = %+v (%v), want index %d field %q other %q, %v", e, e, tc.index, tc.field, tc.other, tc.want)
			}
		})
	}
}

// TestSetLinkUp: a port whose device is down is out of the MAC table, as a
// macvlan set down (case 17: a bridge sibling's unicast for it goes to the
// wire), and its MAC is free; its link cannot come back while an up port
// holds that MAC.
func TestSetLinkUp(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addPort(t, s, PortConfig{Name: "a", Mode: ModeBridge, MAC: macA})
	b := addPort(t, s, PortConfig{Name: "b", Mode: ModeBridge, MAC: macB})
	must(t, s.SetLinkUp(b, false))
	if b.LinkUp() || !b.Up() || !b.Carrier() || b.Running() {
		t.Errorf("link down: link %v up %v carrier %v running %v", b.LinkUp(), b.Up(), b.Carrier(), b.Running())
	}
	send(s, a, udp4(macB, macA, 1, 2, 60))
	if got, wire := sum(drain(b)), sum(drain(s.Lower())); got != 0 || wire != 1 {
		t.Errorf("unicast to a link-down bridge port: port got %d, wire %d; want 0, 1", got, wire)
	}
	c := addPort(t, s, PortConfig{Name: "c", Mode: ModeBridge, MAC: macB})
	if err := s.SetLinkUp(b, true); !errors.Is(err, ErrAddrInUse) || b.LinkUp() {
		t.Errorf("link up with the MAC taken = %v (link %v), want ErrAddrInUse and down", err, b.LinkUp())
	}
	must(t, s.RemovePort(c))
	must(t, s.SetLinkUp(b, true))
	send(s, a, udp4(macB, macA, 1, 2, 60))
	if got := sum(drain(b)); got != 1 || !b.Running() {
		t.Errorf("link back up: port got %d (running %v), want 1", got, b.Running())
	}
}
