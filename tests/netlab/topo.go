package netlab

import (
	"fmt"
	"strings"
	"time"
)

// Fixed addresses of every topology, so outputs read the same every run.
const (
	LowerMAC = "02:00:00:00:00:10"
	HostMAC  = "02:00:00:00:00:ee"
	HostIP4  = "10.77.0.100"
	HostIP6  = "fd77::100"
	Subnet4  = "10.77.0.0/24"
)

// SandboxMAC, SandboxIP4 and SandboxIP6 give sandbox i (0, 1, ...) its
// addresses: 02:00:00:00:01:0i, 10.77.0.(i+1), fd77::(i+1).
func SandboxMAC(i int) string { return fmt.Sprintf("02:00:00:00:01:%02x", i+1) }

// SandboxIP4 is sandbox i's IPv4 address.
func SandboxIP4(i int) string { return fmt.Sprintf("10.77.0.%d", i+1) }

// SandboxIP6 is sandbox i's IPv6 address.
func SandboxIP6(i int) string { return fmt.Sprintf("fd77::%x", i+1) }

// Topo is the harness of BEHAVIOUR.md §8.1:
//
//	[ns LAN]   br0 (stp off, bridge-nf off) ── swl ──┐  ── swe ── eth0 [ns HOST] 10.77.0.100
//	                                   hairpin on/off│
//	[ns SW]    low (02:..:10) ──────────── veth ─────┘
//	           macvsw or kernel macvlan devices on low; sandboxes in their own ns
type Topo struct {
	Lab     *Lab
	LAN     string // namespace holding the bridge
	SW      string // namespace holding the lower, "low"
	Host    string // namespace of the LAN host
	Hairpin bool
}

// Lower is the lower's interface name inside SW.
const Lower = "low"

// BuildLAN makes the LAN, the switch namespace with its lower, and the host.
func (l *Lab) BuildLAN(hairpin bool) (*Topo, error) {
	t := &Topo{Lab: l, Hairpin: hairpin}
	var err error
	if t.LAN, err = l.AddNS("lan"); err != nil {
		return nil, err
	}
	if t.SW, err = l.AddNS("sw"); err != nil {
		return nil, err
	}
	if t.Host, err = l.AddNS("host"); err != nil {
		return nil, err
	}
	// br_netfilter, when loaded, defaults new namespaces to 1 and drops
	// frames with bad IPv4 checksums (BEHAVIOUR.md §8.1). Absent module: no keys.
	for _, k := range []string{"iptables", "ip6tables", "arptables"} {
		_ = l.Sysctl(t.LAN, "net.bridge.bridge-nf-call-"+k, "0")
	}
	if err := l.IP(t.LAN, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"); err != nil {
		return nil, err
	}
	if err := l.Veth(t.LAN, "swl", t.SW, Lower); err != nil {
		return nil, err
	}
	if err := l.Veth(t.LAN, "swe", t.Host, "eth0"); err != nil {
		return nil, err
	}
	hp := "off"
	if hairpin {
		hp = "on"
	}
	if err := l.IPs(t.LAN,
		"link set swl master br0",
		"link set swe master br0",
		"link set dev swl type bridge_slave hairpin "+hp,
		"link set br0 up",
	); err != nil {
		return nil, err
	}
	// The LAN bridge knows where the lower's and the host's MACs live from
	// the start, so whether a frame to them is flooded does not depend on
	// what the stacks happened to send before a test.
	for _, e := range [][2]string{{LowerMAC, "swl"}, {HostMAC, "swe"}} {
		if _, err := run("bridge", "-n", t.LAN, "fdb", "add", e[0], "dev", e[1], "master", "static"); err != nil {
			return nil, err
		}
	}
	if err := l.IPs(t.SW, "link set "+Lower+" address "+LowerMAC); err != nil {
		return nil, err
	}
	if err := l.IPs(t.Host,
		"link set eth0 address "+HostMAC,
		"addr add "+HostIP4+"/24 dev eth0",
		"addr add "+HostIP6+"/64 dev eth0 nodad",
	); err != nil {
		return nil, err
	}
	return t, nil
}

// RecreateLower deletes the lower's veth pair and creates it again, wired
// as before: the lower comes back under its name with a new ifindex, as
// after a driver reload or a NIC hot-plug.
func (t *Topo) RecreateLower() error {
	if err := t.Lab.IP(t.SW, "link", "del", Lower); err != nil {
		return err
	}
	if err := t.Lab.Veth(t.LAN, "swl", t.SW, Lower); err != nil {
		return err
	}
	hp := "off"
	if t.Hairpin {
		hp = "on"
	}
	if err := t.Lab.IPs(t.LAN, "link set swl master br0", "link set dev swl type bridge_slave hairpin "+hp); err != nil {
		return err
	}
	if _, err := run("bridge", "-n", t.LAN, "fdb", "add", LowerMAC, "dev", "swl", "master", "static"); err != nil {
		return err
	}
	return t.Lab.IPs(t.SW, "link set "+Lower+" address "+LowerMAC)
}

// Sandbox creates namespace "sbI" (for sandbox index i) and returns it.
func (t *Topo) Sandbox(i int) (string, error) {
	return t.Lab.AddNS(fmt.Sprintf("sb%d", i))
}

// KernelPort creates a kernel macvlan on the lower in mode (and, for source
// mode, with the given remotes), moves it into sandbox ns as eth0 and gives
// it sandbox i's addresses.
func (t *Topo) KernelPort(ns string, i int, mode string, sources ...string) error {
	name := fmt.Sprintf("mv%d", i)
	if err := t.Lab.IP(t.SW, "link", "add", "link", Lower, "name", name, "type", "macvlan", "mode", mode); err != nil {
		return err
	}
	for _, s := range sources {
		if err := t.Lab.IP(t.SW, "link", "set", name, "type", "macvlan", "macaddr", "add", s); err != nil {
			return err
		}
	}
	if err := t.Lab.IP(t.SW, "link", "set", name, "netns", ns); err != nil {
		return err
	}
	if mode == "passthru" {
		// The port has the lower's MAC; setting it would set the lower's.
		return t.Lab.IPs(ns,
			"link set "+name+" name eth0",
			"addr add "+SandboxIP4(i)+"/24 dev eth0",
			"addr add "+SandboxIP6(i)+"/64 dev eth0 nodad",
			"link set eth0 up",
		)
	}
	return t.Lab.IPs(ns,
		"link set "+name+" name eth0",
		"link set eth0 address "+SandboxMAC(i),
		"addr add "+SandboxIP4(i)+"/24 dev eth0",
		"addr add "+SandboxIP6(i)+"/64 dev eth0 nodad",
		"link set eth0 up",
	)
}

// WaitLink waits until interface ifname exists and is up in ns.
func (t *Topo) WaitLink(ns, ifname string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := run("ip", "-n", ns, "-o", "link", "show", ifname)
		if err == nil && strings.Contains(out, ",UP") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s in %s not up after %v: %v %s", ifname, ns, timeout, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ping reports whether ns reaches addr with one ICMP echo (IPv4 or IPv6),
// waiting at most wait for the reply (address resolution included).
func (l *Lab) Ping(ns, addr string, wait time.Duration) bool {
	secs := fmt.Sprint(max(1, int(wait.Seconds())))
	args := []string{"ping", "-n", "-q", "-c", "2", "-i", "0.3", "-W", secs}
	if strings.Contains(addr, ":") {
		args = append(args, "-6")
	}
	_, err := l.Exec(ns, append(args, addr)...)
	return err == nil
}
