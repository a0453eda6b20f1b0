package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/macvsw/macvsw/tests/netlab"
)

// TestNetnsReachability builds each scenario twice on the same topology —
// with kernel macvlan devices and with macvsw (tap ports, and an AF_PACKET
// port over a veth) — and requires that ARP/ping and IPv6 ND/ping6 between
// sandboxes and to the LAN host give the same answers. Nothing is
// hard-coded: the kernel is the oracle.
func TestNetnsReachability(t *testing.T) {
	requireNetns(t)
	probes := []string{"0>1", "1>0", "0>1/6", "0>host", "0>host/6", "host>0", "host>1", "1>host/6"}
	scenarios := []struct {
		name    string
		hairpin bool
		specs   []sandboxSpec
		extra   []string
	}{
		{name: "bridge", specs: []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}, {Mode: "bridge", Kind: "afpacket"}},
			extra: []string{"0>2", "2>1/6", "2>host"}},
		{name: "vepa-hairpin-off", specs: []sandboxSpec{{Mode: "vepa"}, {Mode: "vepa"}}},
		{name: "vepa-hairpin-on", hairpin: true, specs: []sandboxSpec{{Mode: "vepa"}, {Mode: "vepa"}, {Mode: "vepa", Kind: "afpacket"}},
			extra: []string{"2>0", "0>2/6"}},
		{name: "private-hairpin-on", hairpin: true, specs: []sandboxSpec{{Mode: "private"}, {Mode: "private"}}},
		{name: "source", specs: []sandboxSpec{{Mode: "source", Sources: []string{netlab.HostMAC}}, {Mode: "bridge"}}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			all := append(append([]string(nil), probes...), sc.extra...)
			want := map[string]bool{}
			func() {
				k := kernelLab(t, sc.hairpin, sc.specs)
				for _, p := range all {
					want[p] = k.Reach(p)
				}
				k.Close()
			}()
			m := macvswLab(t, sc.hairpin, sc.specs)
			var table strings.Builder
			fmt.Fprintf(&table, "%-10s %-7s %-7s\n", "probe", "kernel", "macvsw")
			for _, p := range all {
				got := m.Reach(p)
				verdict := ""
				if got != want[p] {
					verdict = "  DIFFERS"
					t.Errorf("%s: %s: macvsw %v, kernel macvlan %v", sc.name, p, got, want[p])
				}
				fmt.Fprintf(&table, "%-10s %-7v %-7v%s\n", p, want[p], got, verdict)
			}
			t.Logf("%s (hairpin %v):\n%s", sc.name, sc.hairpin, table.String())
			m.stop()
		})
	}
}
