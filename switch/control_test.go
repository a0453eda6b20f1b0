package vswitch

import (
	"errors"
	"strings"
	"testing"
)

// Spec case 57 and §5: the kernel's control-plane refusals.
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

// Spec §1.6: source list operations.
func TestSourceList(t *testing.T) {
	s := newSwitch(t, Options{})
	sp := addPort(t, s, PortConfig{Name: "s", Mode: ModeSource, MAC: macC})
	must(t, s.SourceMACs(sp, SourceAdd, macE, macE)) // existing: no-op
	must(t, s.SourceMACs(sp, SourceDel, macA))       // missing: success
	if len(sp.sources) != 1 {
		t.Fatalf("sources %v, want [%v]", sp.sources, macE)
	}
	must(t, s.SourceMACs(sp, SourceSet, macA, macB))
	if _, ok := sp.sources[macE]; ok || len(sp.sources) != 2 {
		t.Errorf("after set: %v", sp.sources)
	}
	if err := s.SourceMACs(sp, SourceAdd, Broadcast); !errors.Is(err, ErrAddrNotAvail) {
		t.Errorf("adding broadcast = %v, want ErrAddrNotAvail", err)
	}
	must(t, s.SourceMACs(sp, SourceFlush))
	if len(sp.sources) != 0 {
		t.Errorf("after flush: %v", sp.sources)
	}
	must(t, s.SourceMACs(sp, SourceAdd, macE))
	must(t, s.SetNoDst(sp, true))
	must(t, s.SetMode(sp, ModeBridge)) // leaving source mode flushes
	if len(sp.sources) != 0 || sp.nodst {
		t.Errorf("leaving source mode kept sources %v nodst %v", sp.sources, sp.nodst)
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
