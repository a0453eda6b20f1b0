package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
)

// sandboxSpec is one sandbox of a scenario: its mode, and its kind in the
// macvsw variant ("tap" or "afpacket").
type sandboxSpec struct {
	mode    string
	kind    string
	sources []string // source mode remotes
	noOffl  bool     // tap with offloads off
	queues  int
}

// lab is one built variant: the topology and its sandbox namespaces.
type lab struct {
	t    *testing.T
	topo *netlab.Topo
	sb   []string
	d    *exec.Cmd
	dlog *syncBuffer
	cfg  string // config file path
	sock string // control socket path
	text string // config file contents
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTopo(t *testing.T, hairpin bool) *netlab.Topo {
	t.Helper()
	l := netlab.New("mvs")
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	topo, err := l.BuildLAN(hairpin)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func sandboxes(t *testing.T, topo *netlab.Topo, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		ns, err := topo.Sandbox(i)
		if err != nil {
			t.Fatal(err)
		}
		// Addresses must be usable at once: no duplicate address detection.
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := topo.Lab.Sysctl(ns, k, "0"); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, ns)
	}
	return out
}

// kernelLab builds the scenario with kernel macvlan devices.
func kernelLab(t *testing.T, hairpin bool, specs []sandboxSpec) *lab {
	topo := newTopo(t, hairpin)
	l := &lab{t: t, topo: topo, sb: sandboxes(t, topo, len(specs))}
	if err := topo.Lab.IP(topo.SW, "link", "set", netlab.Lower, "up"); err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		if err := topo.KernelPort(l.sb[i], i, s.mode, s.sources...); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// macvswLab builds the scenario with macvsw: tap ports created by the daemon
// in the sandboxes, AF_PACKET ports over a veth into the sandbox.
func macvswLab(t *testing.T, hairpin bool, specs []sandboxSpec) *lab {
	topo := newTopo(t, hairpin)
	l := &lab{t: t, topo: topo, sb: sandboxes(t, topo, len(specs)), dlog: &syncBuffer{}}
	if err := topo.Lab.IP(topo.SW, "link", "set", netlab.Lower, "up"); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	l.sock = "/run/" + topo.Lab.Prefix + ".sock"
	fmt.Fprintf(&cfg, "lower: {interface: %s, queues: 2}\ncontrol: {socket: %s}\nmetrics: {listen: \"127.0.0.1:9464\"}\nlog: {level: debug}\nports:\n", netlab.Lower, l.sock)
	for i, s := range specs {
		fmt.Fprintf(&cfg, "  - name: p%d\n    mode: %s\n    mac: %s\n", i, s.mode, netlab.SandboxMAC(i))
		if s.queues > 0 {
			fmt.Fprintf(&cfg, "    queues: %d\n", s.queues)
		}
		if len(s.sources) > 0 {
			fmt.Fprintf(&cfg, "    source_macs: [%s]\n", strings.Join(s.sources, ", "))
		}
		switch s.kind {
		case "afpacket":
			// The sandbox's end of the veth carries the port's MAC.
			ifc := fmt.Sprintf("vp%d", i)
			if err := topo.Lab.Veth(topo.SW, ifc, l.sb[i], "eth0"); err != nil {
				t.Fatal(err)
			}
			if err := topo.Lab.IPs(l.sb[i],
				"link set eth0 address "+netlab.SandboxMAC(i),
				"addr add "+netlab.SandboxIP4(i)+"/24 dev eth0",
				"addr add "+netlab.SandboxIP6(i)+"/64 dev eth0 nodad",
			); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&cfg, "    afpacket: {interface: %s}\n", ifc)
		default:
			fmt.Fprintf(&cfg, "    tap: {netns: %s, ifname: eth0, addresses: [%s/24, %s/64], offloads: %v}\n",
				netlab.Path(l.sb[i]), netlab.SandboxIP4(i), netlab.SandboxIP6(i), !s.noOffl)
		}
	}
	l.text = cfg.String()
	l.text = cfg.String()
	l.cfg = filepath.Join(t.TempDir(), "macvsw.yaml")
	if err := os.WriteFile(l.cfg, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := topo.Lab.Start(topo.SW, l.dlog, l.dlog, macvswBin, "run", "--config", l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.d = d
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("config:\n%s\nmacvsw log:\n%s", cfg.String(), l.dlog.String())
		}
	})
	for i := range specs {
		if err := topo.WaitLink(l.sb[i], "eth0", 10*time.Second); err != nil {
			t.Fatalf("%v\nmacvsw log:\n%s", err, l.dlog.String())
		}
	}
	return l
}

// stop stops the daemon and checks it exited cleanly.
func (l *lab) stop() {
	if l.d == nil {
		return
	}
	if err := netlab.Stop(l.d, 10*time.Second); err != nil {
		l.t.Errorf("macvsw did not exit cleanly: %v\n%s", err, l.dlog.String())
	}
	l.d = nil
}

// addr returns the IPv4 or IPv6 address of a participant: "host" or a
// sandbox index.
func addr(who string, v6 bool) string {
	if who == "host" {
		if v6 {
			return netlab.HostIP6
		}
		return netlab.HostIP4
	}
	var i int
	fmt.Sscanf(who, "%d", &i)
	if v6 {
		return netlab.SandboxIP6(i)
	}
	return netlab.SandboxIP4(i)
}

func (l *lab) ns(who string) string {
	if who == "host" {
		return l.topo.Host
	}
	var i int
	fmt.Sscanf(who, "%d", &i)
	return l.sb[i]
}

// probe is "from>to" with an optional "/6" for IPv6.
func (l *lab) reach(probe string) bool {
	v6 := strings.HasSuffix(probe, "/6")
	from, to, _ := strings.Cut(strings.TrimSuffix(probe, "/6"), ">")
	return l.topo.Lab.Ping(l.ns(from), addr(to, v6), 1*time.Second)
}
