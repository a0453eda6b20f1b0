package conformance

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// counts are the counter deltas case 43 compares.
type counts struct{ bRxBytes, bMulticast, aTxBytes uint64 }

// counterSends are the sends of switch/BEHAVIOUR.md §8.2 case 43, each a
// subtest with labs of its own: A and B in bridge mode, a 60-byte
// broadcast from A or from EXT.
var counterSends = []struct{ name, from, src string }{
	{"43_counters_bridge_to_broadcast_with_bridge", "A", "A"},
	{"43_counters_ext_to_broadcast_with_bridge_bridge", "EXT", "E"},
}

// TestCounters compares case 43 live: B's rx_bytes and multicast and A's
// tx_bytes must move as the kernel's macvlan counters move (including the
// kernel's +14 on a bridge sibling's flood).
func TestCounters(t *testing.T) {
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	sum := newSummary("send (case 43)", "kernel", "macvsw", "verdict")
	t.Cleanup(func() {
		t.Logf("case 43, counter deltas (B rx_bytes, B multicast, A tx_bytes):\n%s", sum)
		t.Log(sum.tally("sends"))
	})
	for i, s := range counterSends {
		t.Run(s.name, func(t *testing.T) {
			kernel, err := runCounters(t, false, s.from, s.src)
			if err != nil {
				sum.add(i, s.name, "-", "-", verdictHarness+": kernel, "+stepOf(err))
				t.Fatalf("kernel macvlan: %v", err)
			}
			ours, err := runCounters(t, true, s.from, s.src)
			if err != nil {
				sum.add(i, s.name, "-", "-", verdictHarness+": macvsw, "+stepOf(err))
				t.Fatalf("macvsw: %v", err)
			}
			verdict := verdictSame
			if kernel != ours {
				verdict = verdictDiffers
				t.Errorf("%s -> 60-byte bcast: kernel %+v, macvsw %+v", s.from, kernel, ours)
			}
			sum.add(i, s.name, fmt.Sprintf("%+v", kernel), fmt.Sprintf("%+v", ours), verdict)
		})
	}
}

// runCounters builds one implementation's lab, sends a 60-byte broadcast
// from A or EXT and returns the counter deltas; the lab is gone when it
// returns.
func runCounters(t *testing.T, macvsw bool, from, src string) (counts, error) {
	specs := []netlab.SandboxSpec{{Mode: "bridge", ExactGroups: true}, {Mode: "bridge", ExactGroups: true}}
	var v *netlab.Variant
	var err error
	what := "kernel"
	if macvsw {
		what = "macvsw"
		v, err = netlab.BuildMacvsw("mvsn", macvswBin, t.TempDir(), false, specs)
	} else {
		v, err = netlab.BuildKernel("mvsn", false, specs)
	}
	defer teardown(t, what, v)()
	if err != nil {
		return counts{}, step("build the lab", err)
	}
	read := readKernelCounts
	if macvsw {
		read = readMacvswCounts
	}
	for _, ns := range append(append([]string{}, v.Sandboxes...), v.Topo.Host, v.Topo.SW) {
		v.Lab.Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
	}
	ns, ifname := v.Topo.Host, "eth0"
	if from != "EXT" {
		ns = v.Sandboxes[sandboxIndex[from]]
	}
	sock, err := openRaw(ns, ifname)
	if err != nil {
		return counts{}, step("open the socket on "+from, err)
	}
	defer sock.close()
	time.Sleep(settle)
	c0, err := read(v)
	if err != nil {
		return counts{}, step("read the counters before", err)
	}
	if err := sock.send(frame(macOf("bcast"), macOf(src), etherTypeTest, "<mvs43>", 60)); err != nil {
		return counts{}, step("send from "+from, err)
	}
	time.Sleep(settle)
	c1, err := read(v)
	if err != nil {
		return counts{}, step("read the counters after", err)
	}
	return counts{c1.bRxBytes - c0.bRxBytes, c1.bMulticast - c0.bMulticast, c1.aTxBytes - c0.aTxBytes}, nil
}

// readKernelCounts reads the kernel macvlans' counters.
func readKernelCounts(v *netlab.Variant) (counts, error) {
	var c counts
	for _, r := range []struct {
		sandbox int
		name    string
		dst     *uint64
	}{{1, "rx_bytes", &c.bRxBytes}, {1, "multicast", &c.bMulticast}, {0, "tx_bytes", &c.aTxBytes}} {
		n, err := v.Lab.LinkStat(v.Sandboxes[r.sandbox], "eth0", r.name)
		if err != nil {
			return c, err
		}
		*r.dst = n
	}
	return c, nil
}

// readMacvswCounts reads the same counters from `macvsw stats`.
func readMacvswCounts(v *netlab.Variant) (counts, error) {
	out, err := exec.Command(macvswBin, "stats", "--json", "--socket", v.Socket).Output()
	if err != nil {
		return counts{}, fmt.Errorf("macvsw stats: %w", err)
	}
	var st counters.Snapshot
	if err := json.Unmarshal(out, &st); err != nil {
		return counts{}, fmt.Errorf("decode macvsw stats: %w: %s", err, out)
	}
	a, b := st.Port("p0"), st.Port("p1")
	if a == nil || b == nil {
		return counts{}, fmt.Errorf("macvsw stats has no p0 or p1: %s", out)
	}
	return counts{b.Switch.RxBytes, b.Switch.Multicast, a.Switch.TxBytes}, nil
}
