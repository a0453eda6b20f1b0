package conformance

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// controlLab is one implementation's lab for a control-plane rule: the
// switch namespace's lower with port A (MAC portA, bridge mode, up), made
// through the implementation's own interface — ip(8) for the kernel, the
// CLI for macvsw — beside the harness's own sandbox port.
type controlLab struct {
	v *netlab.Variant
}

// portA is the MAC of every rule's port A.
var portA = netlab.SandboxMAC(5)

// ip runs ip(8) in the switch namespace.
func (l *controlLab) ip(args ...string) error { return l.v.Lab.IP(l.v.Topo.SW, args...) }

// cli runs the macvsw CLI against the lab's daemon.
func (l *controlLab) cli(args ...string) error {
	out, err := exec.Command(macvswBin, append(args, "--socket", l.v.Socket)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("macvsw %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// sandbox creates a namespace for a macvsw port's tap and returns its path.
func (l *controlLab) sandbox(name string) (string, error) {
	ns, err := l.v.Lab.AddNS(name)
	if err != nil {
		return "", step("create namespace "+name, err)
	}
	return netlab.Path(ns), nil
}

// show returns `macvsw port show NAME` decoded into v.
func (l *controlLab) show(name string, v any) error {
	out, err := exec.Command(macvswBin, "port", "show", name, "--json", "--socket", l.v.Socket).Output()
	if err != nil {
		return step("macvsw port show "+name, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return step("decode macvsw port show "+name, fmt.Errorf("%w: %s", err, out))
	}
	return nil
}

// addKernelA and addMacvswA make port A.
func (l *controlLab) addKernelA() error {
	if err := l.ip("link", "add", "link", netlab.Lower, "name", "ka", "type", "macvlan", "mode", "bridge"); err != nil {
		return err
	}
	return l.ip("link", "set", "ka", "address", portA, "up")
}

func (l *controlLab) addMacvswA() error {
	ns, err := l.sandbox("ca")
	if err != nil {
		return err
	}
	return l.cli("port", "add", "a", "--mode", "bridge", "--mac", portA, "--tap-netns", ns, "--ifname", "eth0")
}

// refused is a rule's outcome when the rule is whether an operation is
// refused.
func refused(err error) string { return fmt.Sprint(err != nil) }

// controlRule is one rule of switch/BEHAVIOUR.md §8.2 case 57 (and §5):
// the same operation through each implementation's interface, whose
// outcome (refused or not, or a resulting value) must be the same. An
// error is a harness error, not an outcome.
type controlRule struct {
	name   string
	kernel func(l *controlLab) (string, error)
	macvsw func(l *controlLab) (string, error)
}

var controlRules = []controlRule{
	{
		name: "57_sibling_mac_refused_on_up",
		kernel: func(l *controlLab) (string, error) {
			// Created with the sibling's MAC (not checked at creation,
			// switch/BEHAVIOUR.md §5.1).
			if err := l.ip("link", "add", "link", netlab.Lower, "name", "kb", "address", portA, "type", "macvlan", "mode", "bridge"); err != nil {
				return "", step("create kb with A's MAC", err)
			}
			return refused(l.ip("link", "set", "kb", "up")), nil
		},
		// macvsw brings a port up as it adds it: the kernel's "created,
		// then up refused" is one refused add here.
		macvsw: func(l *controlLab) (string, error) {
			ns, err := l.sandbox("cb")
			if err != nil {
				return "", err
			}
			return refused(l.cli("port", "add", "b", "--mode", "bridge", "--mac", portA, "--tap-netns", ns, "--ifname", "eth0")), nil
		},
	},
	{
		name: "57_lower_mac_refused",
		kernel: func(l *controlLab) (string, error) {
			return refused(l.ip("link", "set", "ka", "address", netlab.LowerMAC)), nil
		},
		macvsw: func(l *controlLab) (string, error) {
			return refused(l.cli("port", "set", "a", "--mac", netlab.LowerMAC)), nil
		},
	},
	{
		name: "57_mtu_above_lower_refused",
		kernel: func(l *controlLab) (string, error) {
			return refused(l.ip("link", "add", "link", netlab.Lower, "name", "kc", "type", "macvlan", "mtu", "1600")), nil
		},
		macvsw: func(l *controlLab) (string, error) {
			ns, err := l.sandbox("cc")
			if err != nil {
				return "", err
			}
			return refused(l.cli("port", "add", "c", "--mtu", "1600", "--mac", netlab.SandboxMAC(6), "--tap-netns", ns, "--ifname", "eth0")), nil
		},
	},
	{
		name: "57_passthru_with_siblings_refused",
		kernel: func(l *controlLab) (string, error) {
			return refused(l.ip("link", "add", "link", netlab.Lower, "name", "kp", "type", "macvlan", "mode", "passthru")), nil
		},
		macvsw: func(l *controlLab) (string, error) {
			ns, err := l.sandbox("cp")
			if err != nil {
				return "", err
			}
			return refused(l.cli("port", "add", "p", "--mode", "passthru", "--tap-netns", ns, "--ifname", "eth0")), nil
		},
	},
	{
		name: "57_macaddr_on_bridge_port_refused",
		kernel: func(l *controlLab) (string, error) {
			return refused(l.ip("link", "set", "ka", "type", "macvlan", "macaddr", "add", netlab.HostMAC)), nil
		},
		macvsw: func(l *controlLab) (string, error) {
			return refused(l.cli("port", "macaddr", "a", "add", netlab.HostMAC)), nil
		},
	},
	{
		name: "57_default_mode",
		kernel: func(l *controlLab) (string, error) {
			if err := l.ip("link", "add", "link", netlab.Lower, "name", "kd", "type", "macvlan"); err != nil {
				return "", step("create kd without a mode", err)
			}
			out, err := l.v.Lab.Exec(l.v.Topo.SW, "ip", "-d", "-j", "link", "show", "kd")
			if err != nil {
				return "", step("ip -d -j link show kd", err)
			}
			return jsonMode(out)
		},
		macvsw: func(l *controlLab) (string, error) {
			ns, err := l.sandbox("cd")
			if err != nil {
				return "", err
			}
			if err := l.cli("port", "add", "d", "--mac", netlab.SandboxMAC(7), "--tap-netns", ns, "--ifname", "eth0"); err != nil {
				return "", step("add port d without a mode", err)
			}
			var v struct{ Mode string }
			if err := l.show("d", &v); err != nil {
				return "", err
			}
			return v.Mode, nil
		},
	},
	{
		name: "57_port_mtu_after_lower_1500_1400_9000",
		kernel: func(l *controlLab) (string, error) {
			for _, mtu := range []string{"1400", "9000"} {
				if err := l.ip("link", "set", netlab.Lower, "mtu", mtu); err != nil {
					return "", step("set the lower's MTU to "+mtu, err)
				}
			}
			out, err := l.v.Lab.Exec(l.v.Topo.SW, "cat", "/sys/class/net/ka/mtu")
			if err != nil {
				return "", step("read ka's MTU", err)
			}
			return strings.TrimSpace(out), nil
		},
		macvsw: func(l *controlLab) (string, error) {
			for _, mtu := range []string{"1400", "9000"} {
				if err := l.ip("link", "set", netlab.Lower, "mtu", mtu); err != nil {
					return "", step("set the lower's MTU to "+mtu, err)
				}
				time.Sleep(300 * time.Millisecond) // the daemon follows the lower through netlink
			}
			var v struct{ MTU int }
			if err := l.show("a", &v); err != nil {
				return "", err
			}
			return fmt.Sprint(v.MTU), nil
		},
	},
}

// TestControlRules compares the control-plane rules of switch/BEHAVIOUR.md
// §8.2 case 57 (and §5) live, each rule a subtest with fresh labs: kernel
// macvlan through ip(8), macvsw through its CLI, on the same kind of
// lower. Each rule reports whether the operation was refused (or, for the
// MTU clamp and the default mode, the resulting value), and both must
// agree.
func TestControlRules(t *testing.T) {
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	sum := newSummary("rule (case 57)", "kernel", "macvsw", "verdict")
	t.Cleanup(func() {
		t.Logf("control-plane rules, kernel macvlan vs macvsw:\n%s", sum)
		t.Log(sum.tally("rules"))
	})
	for i, r := range controlRules {
		t.Run(r.name, func(t *testing.T) {
			want, err := runControl(t, false, r.kernel)
			if err != nil {
				sum.add(i, r.name, "-", "-", verdictHarness+": kernel, "+stepOf(err))
				t.Fatalf("kernel macvlan: %v", err)
			}
			got, err := runControl(t, true, r.macvsw)
			if err != nil {
				sum.add(i, r.name, "-", "-", verdictHarness+": macvsw, "+stepOf(err))
				t.Fatalf("macvsw: %v", err)
			}
			verdict := verdictSame
			if got != want {
				verdict = verdictDiffers
				t.Errorf("kernel %s, macvsw %s", want, got)
			}
			sum.add(i, r.name, want, got, verdict)
		})
	}
}

// runControl builds one implementation's control lab, makes port A, runs
// rule and tears the lab down.
func runControl(t *testing.T, macvsw bool, rule func(*controlLab) (string, error)) (string, error) {
	specs := []netlab.SandboxSpec{{Mode: "bridge"}}
	var v *netlab.Variant
	var err error
	what := "kernel"
	if macvsw {
		what = "macvsw"
		v, err = netlab.BuildMacvsw("mvsk", macvswBin, t.TempDir(), false, specs)
	} else {
		v, err = netlab.BuildKernel("mvsk", false, specs)
	}
	defer teardown(t, what, v)()
	if err != nil {
		return "", step("build the lab", err)
	}
	l := &controlLab{v: v}
	if macvsw {
		err = l.addMacvswA()
	} else {
		err = l.addKernelA()
	}
	if err != nil {
		return "", step("add port A", err)
	}
	return rule(l)
}

// jsonMode extracts the macvlan mode from `ip -d -j link show`.
func jsonMode(out string) (string, error) {
	var links []struct {
		LinkInfo struct {
			InfoData struct {
				Mode string `json:"mode"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return "", step("decode ip -d -j link show", fmt.Errorf("%w: %s", err, out))
	}
	if len(links) == 0 {
		return "", step("decode ip -d -j link show", fmt.Errorf("no link in %s", out))
	}
	return links[0].LinkInfo.InfoData.Mode, nil
}
