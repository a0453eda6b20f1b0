package conformance

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
)

// TestCounters compares switch/BEHAVIOUR.md §8.2 case 43 live: A and B in bridge mode; A sends
// a 60-byte broadcast, then EXT does. B's rx_bytes and multicast and A's
// tx_bytes must move as the kernel's macvlan counters move (including the
// kernel's +14 on a bridge sibling's flood).
func TestCounters(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	specs := []netlab.SandboxSpec{{Mode: "bridge", ExactGroups: true}, {Mode: "bridge", ExactGroups: true}}
	type counts struct{ bRxBytes, bMulticast, aTxBytes uint64 }
	measure := func(v *netlab.Variant, read func() counts) ([]counts, error) {
		for _, ns := range append(append([]string{}, v.Sandboxes...), v.Topo.Host, v.Topo.SW) {
			v.Lab.Sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
		}
		a, err := openRaw(v.Sandboxes[0], "eth0")
		if err != nil {
			return nil, err
		}
		defer a.close()
		ext, err := openRaw(v.Topo.Host, "eth0")
		if err != nil {
			return nil, err
		}
		defer ext.close()
		time.Sleep(settle)
		var out []counts
		c0 := read()
		for _, s := range []struct {
			sock *rawSocket
			src  string
		}{{a, "A"}, {ext, "E"}} {
			if err := s.sock.send(frame(macOf("bcast"), macOf(s.src), etherTypeTest, "<mvs43>", 60)); err != nil {
				return nil, err
			}
			time.Sleep(settle)
			c := read()
			out = append(out, counts{c.bRxBytes - c0.bRxBytes, c.bMulticast - c0.bMulticast, c.aTxBytes - c0.aTxBytes})
			c0 = c
		}
		return out, nil
	}

	k, err := netlab.BuildKernel("mvsn", false, specs)
	defer k.Close()
	if err != nil {
		t.Fatal(err)
	}
	kstat := func(i int, name string) uint64 {
		v, _ := k.Lab.LinkStat(k.Sandboxes[i], "eth0", name)
		return v
	}
	kernel, err := measure(k, func() counts {
		return counts{kstat(1, "rx_bytes"), kstat(1, "multicast"), kstat(0, "tx_bytes")}
	})
	if err != nil {
		t.Fatal(err)
	}

	m, err := netlab.BuildMacvsw("mvsn", macvswBin, t.TempDir(), false, specs)
	defer m.Close()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := measure(m, func() counts {
		out, err := exec.Command(macvswBin, "stats", "--json", "--socket", m.Socket).Output()
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		var st struct {
			Ports map[string]struct {
				Switch struct {
					RxBytes   uint64 `json:"rx_bytes"`
					Multicast uint64 `json:"multicast"`
					TxBytes   uint64 `json:"tx_bytes"`
				}
			}
		}
		json.Unmarshal(out, &st)
		return counts{st.Ports["p1"].Switch.RxBytes, st.Ports["p1"].Switch.Multicast, st.Ports["p0"].Switch.TxBytes}
	})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	for i, what := range []string{"A -> 60-byte bcast", "EXT -> 60-byte bcast"} {
		verdict := "same"
		if kernel[i] != ours[i] {
			verdict = "DIFFERS"
			t.Errorf("%s: kernel %+v, macvsw %+v", what, kernel[i], ours[i])
		}
		fmt.Fprintf(&table, "%-22s kernel %+v  macvsw %+v  %s\n", what, kernel[i], ours[i], verdict)
	}
	t.Logf("case 43, counter deltas (B rx_bytes, B multicast, A tx_bytes):\n%s", table.String())
}
