package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// SandboxSpec is one sandbox of a scenario: its macvlan mode and, in the
// macvsw variant, its port kind ("tap", the default, or "afpacket": a veth
// into the sandbox).
type SandboxSpec struct {
	Mode       string
	Kind       string
	Sources    []string // source mode: remote MACs
	NoOffloads bool     // tap port without virtio-net offloads
	Queues     int      // port queues (0: default)
	MTU        int      // port MTU (0: the lower's)
	NoDst      bool     // source mode: nodst
	// ExactGroups gives a macvsw port the multicast subscriptions a
	// kernel macvlan with an IPv4 address has (all-hosts) instead of
	// all-multicast, for frame-by-frame comparisons.
	ExactGroups bool
	// NoBroadcastQueue requests a broadcast queue of length 0 (kernel
	// bcqueuelen 0; macvsw bcqueuelen 0 and broadcast.queue_len 0).
	NoBroadcastQueue bool
}

// Variant is one built scenario: the BEHAVIOUR.md §8.1 topology with sandboxes 0..n-1
// (addresses SandboxIP4(i) etc.), served either by kernel macvlan devices
// or by a macvsw daemon.
type Variant struct {
	Lab       *Lab
	Topo      *Topo
	Sandboxes []string

	// macvsw variant only.
	Daemon     *exec.Cmd
	Log        *SyncBuffer
	ConfigPath string
	// Args are extra `macvsw run` flags for the next StartDaemon.
	Args       []string
	bin        string
	ConfigText string
	Socket     string
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func build(prefix string, hairpin bool, n int) (*Variant, error) {
	l := New(prefix)
	v := &Variant{Lab: l}
	topo, err := l.BuildLAN(hairpin)
	if err != nil {
		return v, err
	}
	v.Topo = topo
	if err := l.IP(topo.SW, "link", "set", Lower, "up"); err != nil {
		return v, err
	}
	for i := 0; i < n; i++ {
		ns, err := topo.Sandbox(i)
		if err != nil {
			return v, err
		}
		// Addresses must be usable at once: no duplicate address detection.
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := l.Sysctl(ns, k, "0"); err != nil {
				return v, err
			}
		}
		v.Sandboxes = append(v.Sandboxes, ns)
	}
	return v, nil
}

// BuildKernel builds the scenario with kernel macvlan devices. On error
// the caller still closes the returned Variant.
func BuildKernel(prefix string, hairpin bool, specs []SandboxSpec) (*Variant, error) {
	v, err := build(prefix, hairpin, len(specs))
	if err != nil {
		return v, err
	}
	for i, s := range specs {
		if err := v.Topo.KernelPort(v.Sandboxes[i], i, s.Mode, s.Sources...); err != nil {
			return v, err
		}
		if s.MTU != 0 {
			if err := v.Lab.IP(v.Sandboxes[i], "link", "set", "eth0", "mtu", fmt.Sprint(s.MTU)); err != nil {
				return v, err
			}
		}
		if s.NoDst {
			if err := v.Lab.IP(v.Sandboxes[i], "link", "set", "eth0", "type", "macvlan", "mode", "source", "flag", "nodst"); err != nil {
				return v, err
			}
		}
		if s.NoBroadcastQueue {
			if err := v.Lab.IP(v.Sandboxes[i], "link", "set", "eth0", "type", "macvlan", "bcqueuelen", "0"); err != nil {
				return v, err
			}
		}
	}
	return v, nil
}

// BuildBinary builds cmd/macvsw from the module at root into dir and
// returns its path.
func BuildBinary(root, dir string) (string, error) {
	bin := filepath.Join(dir, "macvsw")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/macvsw")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build macvsw: %w\n%s", err, out)
	}
	return bin, nil
}

// BuildMacvsw builds the scenario with the macvsw binary bin running in the
// switch namespace: tap ports the daemon creates in the sandboxes, AF_PACKET
// ports over veths into them. dir holds the config file. It returns once
// every sandbox's eth0 is up.
func BuildMacvsw(prefix, bin, dir string, hairpin bool, specs []SandboxSpec) (*Variant, error) {
	v, err := build(prefix, hairpin, len(specs))
	if err != nil {
		return v, err
	}
	l, topo := v.Lab, v.Topo
	// The daemon's state directory is its socket's: one per lab.
	v.Socket = "/run/" + l.Prefix + "/macvsw.sock"
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "lower: {interface: %s, queues: 2}\ncontrol: {socket: %s}\nmetrics: {listen: \"127.0.0.1:9464\"}\nlog: {level: debug}\n", Lower, v.Socket)
	if len(specs) > 0 && specs[0].NoBroadcastQueue {
		fmt.Fprintf(&cfg, "broadcast: {queue_len: 0}\n")
	}
	fmt.Fprintf(&cfg, "ports:\n")
	for i, s := range specs {
		fmt.Fprintf(&cfg, "  - name: p%d\n    mode: %s\n", i, s.Mode)
		if s.Mode != "passthru" {
			fmt.Fprintf(&cfg, "    mac: %s\n", SandboxMAC(i))
		}
		if s.NoBroadcastQueue {
			fmt.Fprintf(&cfg, "    bcqueuelen: 0\n")
		}
		if s.Queues > 0 {
			fmt.Fprintf(&cfg, "    queues: %d\n", s.Queues)
		}
		if len(s.Sources) > 0 {
			fmt.Fprintf(&cfg, "    source_macs: [%s]\n", strings.Join(s.Sources, ", "))
		}
		if s.MTU != 0 {
			fmt.Fprintf(&cfg, "    mtu: %d\n", s.MTU)
		}
		if s.NoDst {
			fmt.Fprintf(&cfg, "    nodst: true\n")
		}
		if s.ExactGroups {
			fmt.Fprintf(&cfg, "    allmulticast: false\n    multicast: [\"01:00:5e:00:00:01\"]\n")
		}
		switch s.Kind {
		case "afpacket":
			// The sandbox's end of the veth carries the port's MAC.
			ifc := fmt.Sprintf("vp%d", i)
			ns := v.Sandboxes[i]
			if err := l.Veth(topo.SW, ifc, ns, "eth0"); err != nil {
				return v, err
			}
			if err := l.IPs(ns, "link set eth0 address "+SandboxMAC(i),
				"addr add "+SandboxIP4(i)+"/24 dev eth0",
				"addr add "+SandboxIP6(i)+"/64 dev eth0 nodad"); err != nil {
				return v, err
			}
			fmt.Fprintf(&cfg, "    afpacket: {interface: %s}\n", ifc)
		case "", "tap":
			fmt.Fprintf(&cfg, "    tap: {netns: %s, ifname: eth0, addresses: [%s/24, %s/64], offloads: %v}\n",
				Path(v.Sandboxes[i]), SandboxIP4(i), SandboxIP6(i), !s.NoOffloads)
		default:
			return v, fmt.Errorf("unknown port kind %q", s.Kind)
		}
	}
	v.ConfigText = cfg.String()
	v.ConfigPath = filepath.Join(dir, l.Prefix+".yaml")
	if err := os.WriteFile(v.ConfigPath, []byte(v.ConfigText), 0o600); err != nil {
		return v, err
	}
	v.Log = &SyncBuffer{}
	v.bin = bin
	if err := v.StartDaemon(); err != nil {
		return v, err
	}
	for i := range specs {
		if err := topo.WaitLink(v.Sandboxes[i], "eth0", startTimeout); err != nil {
			return v, fmt.Errorf("%w\nmacvsw log:\n%s", err, v.Log.String())
		}
	}
	return v, nil
}

// startTimeout bounds the waits for the daemon to start and to stop:
// seconds on an idle machine, and a loaded one (tests running beside
// QEMU guests, -race) must not fail them.
const startTimeout = 30 * time.Second

// StartDaemon starts the macvsw daemon on the variant's config (again,
// after StopDaemon or KillDaemon) and waits until its control socket
// answers, at most startTimeout.
func (v *Variant) StartDaemon() error {
	if v.Daemon != nil {
		return fmt.Errorf("macvsw is already running")
	}
	args := append([]string{v.bin, "run", "--config", v.ConfigPath}, v.Args...)
	d, err := v.Lab.Start(v.Topo.SW, v.Log, v.Log, args...)
	if err != nil {
		return err
	}
	v.Daemon = d
	deadline := time.Now().Add(startTimeout)
	for {
		if c, err := net.Dial("unix", v.Socket); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("macvsw's control socket does not answer after %v\n%s", startTimeout, v.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// KillDaemon kills the macvsw daemon (SIGKILL), as a crash would.
func (v *Variant) KillDaemon() {
	if v.Daemon == nil {
		return
	}
	v.Daemon.Process.Kill()
	v.Daemon.Wait()
	v.Daemon = nil
}

// StopDaemon stops the macvsw daemon and reports an unclean exit.
func (v *Variant) StopDaemon() error {
	if v.Daemon == nil {
		return nil
	}
	d := v.Daemon
	v.Daemon = nil
	if err := Stop(d, startTimeout); err != nil {
		return fmt.Errorf("macvsw did not exit cleanly: %w", err)
	}
	return nil
}

// Close stops the daemon and deletes the lab and the config file.
func (v *Variant) Close() error {
	err := v.StopDaemon()
	if v.ConfigPath != "" {
		os.Remove(v.ConfigPath)
	}
	if v.Socket != "" {
		os.RemoveAll(filepath.Dir(v.Socket))
	}
	return errors.Join(err, v.Lab.Close())
}

// NS returns the namespace of a participant: "host" or a sandbox index.
func (v *Variant) NS(who string) string {
	if who == "host" {
		return v.Topo.Host
	}
	var i int
	fmt.Sscanf(who, "%d", &i)
	return v.Sandboxes[i]
}

// Addr returns a participant's IPv4 or IPv6 address.
func Addr(who string, v6 bool) string {
	switch {
	case who == "host" && v6:
		return HostIP6
	case who == "host":
		return HostIP4
	}
	var i int
	fmt.Sscanf(who, "%d", &i)
	if v6 {
		return SandboxIP6(i)
	}
	return SandboxIP4(i)
}

// Reach runs a probe "FROM>TO", with "/6" for IPv6 (participants: sandbox
// indexes or "host"), as a ping, and reports whether it was answered.
func (v *Variant) Reach(probe string) bool {
	v6 := strings.HasSuffix(probe, "/6")
	from, to, _ := strings.Cut(strings.TrimSuffix(probe, "/6"), ">")
	return v.Lab.Ping(v.NS(from), Addr(to, v6), time.Second)
}
