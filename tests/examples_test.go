package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/macvsw/macvsw/config"
	vswitch "github.com/macvsw/macvsw/switch"
)

// TestExamples loads every configuration in examples/ with the config
// package, as macvsw run would (host objects aside), and checks that
// each shows the setup its name and the examples README promise, with
// comments that explain it.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	index, err := os.ReadFile("../examples/README.md")
	if err != nil {
		t.Fatal(err)
	}
	modes := func(c *config.Config) []vswitch.Mode {
		var m []vswitch.Mode
		for _, p := range c.Ports {
			m = append(m, p.Mode)
		}
		return m
	}
	kinds := func(c *config.Config) []string {
		var k []string
		for _, p := range c.Ports {
			k = append(k, p.Kind())
		}
		return k
	}
	// What each example must show.
	shows := map[string]func(c *config.Config) bool{
		"bridge-nic.yaml": func(c *config.Config) bool {
			return !slices.ContainsFunc(modes(c), func(m vswitch.Mode) bool { return m != vswitch.ModeBridge }) &&
				c.Ports[0].Tap != nil && len(c.Ports[0].Tap.Routes) > 0 && c.Ports[0].Tap.Netns == config.NetnsDir+"/web"
		},
		"vepa-relay.yaml": func(c *config.Config) bool {
			return !slices.ContainsFunc(modes(c), func(m vswitch.Mode) bool { return m != vswitch.ModeVEPA })
		},
		"private-sandboxes.yaml": func(c *config.Config) bool {
			return !slices.ContainsFunc(modes(c), func(m vswitch.Mode) bool { return m != vswitch.ModePrivate })
		},
		"source-monitor.yaml": func(c *config.Config) bool {
			p := c.Port("ids")
			return p != nil && p.Mode == vswitch.ModeSource && len(p.SourceMACs) == 2 && !p.NoDst && c.Lower.Promiscuous
		},
		"runsc-sandboxes.yaml": func(c *config.Config) bool {
			return slices.Equal(kinds(c), []string{"tap", "afpacket"}) && c.Ports[0].Tap.LoUp
		},
		"qemu-vms.yaml": func(c *config.Config) bool {
			var forms []string
			for _, p := range c.Ports {
				if s := p.Socket; s != nil {
					forms = append(forms, string(s.Type)+map[bool]string{true: "-listen", false: "-connect"}[s.Listen != ""])
				}
			}
			return slices.Equal(forms, []string{"stream-listen", "stream-connect", "dgram-listen"}) && c.Port("vm4").AFPacket != nil
		},
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			c, err := config.Load(f)
			if err != nil {
				t.Fatalf("does not load:\n%v", err)
			}
			if len(c.Ports) == 0 {
				t.Error("no ports")
			}
			b, _ := os.ReadFile(f)
			if n := len(regexp.MustCompile(`(?m)^\s*#`).FindAll(b, -1)); n < 5 {
				t.Errorf("%d comment lines: an example explains itself", n)
			}
			if !strings.Contains(string(index), "("+name+")") {
				t.Errorf("examples/README.md does not list %s", name)
			}
			show, ok := shows[name]
			if !ok {
				t.Fatalf("no check of what %s shows: add one", name)
			}
			if !show(c) {
				t.Errorf("%s does not show the setup it is named for", name)
			}
		})
	}
	for name := range shows {
		if !slices.Contains(files, "../examples/"+name) {
			t.Errorf("examples/%s is missing", name)
		}
	}
}

// TestSystemdUnit: examples/macvsw.service runs the daemon as Type=notify
// with a reload that answers, keeps its state directory across restarts,
// holds exactly the capabilities macvsw needs, and is hardened; and
// systemd-analyze verify, where systemd is installed, finds nothing to say.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../examples/macvsw.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"ExecStart":                `^/usr/local/bin/macvsw run --config /etc/macvsw/macvsw.yaml --pidfile /run/macvsw/macvsw.pid$`,
		"ExecReload":               `^/usr/local/bin/macvsw reload --socket /run/macvsw/macvsw.sock$`,
		"RuntimeDirectory":         "^macvsw$",
		"RuntimeDirectoryPreserve": "^yes$",
		"CapabilityBoundingSet":    `^CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN CAP_CHOWN$`,
		"NoNewPrivileges":          "^yes$",
		"ProtectSystem":            "^strict$",
		"DeviceAllow":              `^/dev/net/tun rw$`,
		"RestrictNamespaces":       "^net$",
		"RestrictAddressFamilies":  "AF_NETLINK AF_PACKET",
	} {
		if !regexp.MustCompile(want).MatchString(keys[k]) {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit's keys are not verified by systemd")
		return
	}
	// verify wants the commands to exist: point them at an executable.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "macvsw.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/macvsw", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
