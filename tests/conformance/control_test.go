package conformance

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
)

// TestControlRules compares the control-plane refusals of switch/BEHAVIOUR.md §8.2 case 57
// (and §5) live: kernel macvlan through ip(8), macvsw through its CLI, on
// the same kind of lower. Each rule reports whether the operation was
// refused (or, for the MTU clamp and the default mode, the resulting
// value), and both must agree.
func TestControlRules(t *testing.T) {
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
	type result map[string]string
	refused := func(err error) string { return fmt.Sprint(err != nil) }

	// Kernel.
	k, err := netlab.BuildKernel("mvsk", false, []netlab.SandboxSpec{{Mode: "bridge"}})
	defer k.Close()
	if err != nil {
		t.Fatal(err)
	}
	sw := k.Topo.SW
	ip := func(args ...string) error { return k.Lab.IP(sw, args...) }
	a := netlab.SandboxMAC(5)
	kr := result{}
	must(t, ip("link", "add", "link", netlab.Lower, "name", "ka", "type", "macvlan", "mode", "bridge"))
	must(t, ip("link", "set", "ka", "address", a, "up"))
	// Created with the sibling's MAC (not checked at creation, switch/BEHAVIOUR.md §5.1).
	must(t, ip("link", "add", "link", netlab.Lower, "name", "kb", "address", a, "type", "macvlan", "mode", "bridge"))
	kr["sibling's MAC: up refused"] = refused(ip("link", "set", "kb", "up"))
	ip("link", "del", "kb")
	kr["MAC of the lower refused"] = refused(ip("link", "set", "ka", "address", netlab.LowerMAC))
	kr["MTU above the lower refused"] = refused(ip("link", "add", "link", netlab.Lower, "name", "kc", "type", "macvlan", "mtu", "1600"))
	kr["passthru with siblings refused"] = refused(ip("link", "add", "link", netlab.Lower, "name", "kp", "type", "macvlan", "mode", "passthru"))
	kr["macaddr on a bridge port refused"] = refused(ip("link", "set", "ka", "type", "macvlan", "macaddr", "add", netlab.HostMAC))
	must(t, ip("link", "add", "link", netlab.Lower, "name", "kd", "type", "macvlan"))
	out, _ := k.Lab.Exec(sw, "ip", "-d", "-j", "link", "show", "kd")
	kr["default mode"] = jsonMode(out)
	must(t, ip("link", "set", netlab.Lower, "mtu", "1400"))
	must(t, ip("link", "set", netlab.Lower, "mtu", "9000"))
	out, _ = k.Lab.Exec(sw, "cat", "/sys/class/net/ka/mtu")
	kr["port MTU after lower 1500->1400->9000"] = strings.TrimSpace(out)

	// macvsw.
	m, err := netlab.BuildMacvsw("mvsk", macvswBin, t.TempDir(), false, []netlab.SandboxSpec{{Mode: "bridge"}})
	defer m.Close()
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) error {
		out, err := exec.Command(macvswBin, append(args, "--socket", m.Socket)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	sb := func(name string) string {
		ns, err := m.Lab.AddNS(name)
		if err != nil {
			t.Fatal(err)
		}
		return netlab.Path(ns)
	}
	mr := result{}
	must(t, cli("port", "add", "a", "--mode", "bridge", "--mac", a, "--tap-netns", sb("ca"), "--ifname", "eth0"))
	// macvsw brings a port up as it adds it: the kernel's "created, then
	// up refused" is one refused add here.
	mr["sibling's MAC: up refused"] = refused(cli("port", "add", "b", "--mode", "bridge", "--mac", a, "--tap-netns", sb("cb"), "--ifname", "eth0"))
	mr["MAC of the lower refused"] = refused(cli("port", "set", "a", "--mac", netlab.LowerMAC))
	mr["MTU above the lower refused"] = refused(cli("port", "add", "c", "--mtu", "1600", "--mac", netlab.SandboxMAC(6), "--tap-netns", sb("cc"), "--ifname", "eth0"))
	mr["passthru with siblings refused"] = refused(cli("port", "add", "p", "--mode", "passthru", "--tap-netns", sb("cp"), "--ifname", "eth0"))
	mr["macaddr on a bridge port refused"] = refused(cli("port", "macaddr", "a", "add", netlab.HostMAC))
	must(t, cli("port", "add", "d", "--mac", netlab.SandboxMAC(7), "--tap-netns", sb("cd"), "--ifname", "eth0"))
	out2, _ := exec.Command(macvswBin, "port", "show", "d", "--socket", m.Socket).Output()
	var v struct{ Mode string }
	json.Unmarshal(out2, &v)
	mr["default mode"] = v.Mode
	must(t, m.Lab.IP(m.Topo.SW, "link", "set", netlab.Lower, "mtu", "1400"))
	time.Sleep(300 * time.Millisecond) // the daemon follows the lower through netlink
	must(t, m.Lab.IP(m.Topo.SW, "link", "set", netlab.Lower, "mtu", "9000"))
	time.Sleep(300 * time.Millisecond)
	out2, _ = exec.Command(macvswBin, "port", "show", "a", "--socket", m.Socket).Output()
	var va struct{ MTU int }
	json.Unmarshal(out2, &va)
	mr["port MTU after lower 1500->1400->9000"] = fmt.Sprint(va.MTU)

	var table strings.Builder
	fmt.Fprintf(&table, "%-40s %-8s %-8s\n", "rule (case 57)", "kernel", "macvsw")
	rules := make([]string, 0, len(kr))
	for r := range kr {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	for _, rule := range rules {
		want, got := kr[rule], mr[rule]
		verdict := "same"
		if got != want {
			verdict = "DIFFERS"
			t.Errorf("%s: kernel %s, macvsw %s", rule, want, got)
		}
		fmt.Fprintf(&table, "%-40s %-8s %-8s %s\n", rule, want, got, verdict)
	}
	t.Logf("control-plane rules, kernel macvlan vs macvsw:\n%s", table.String())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// jsonMode extracts the macvlan mode from `ip -d -j link show`.
func jsonMode(out string) string {
	var links []struct {
		LinkInfo struct {
			InfoData struct {
				Mode string `json:"mode"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if json.Unmarshal([]byte(out), &links) != nil || len(links) == 0 {
		return "?"
	}
	return links[0].LinkInfo.InfoData.Mode
}
