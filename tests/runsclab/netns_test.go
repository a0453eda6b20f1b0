package runsclab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// The sandbox namespace's device gets sandbox 0's addresses, the peer
// namespace's the LAN host's (netlab's fixed plan; both live only in this
// test's namespaces).
var (
	sbIP4   = netlab.SandboxIP4(0)
	sbIP6   = netlab.SandboxIP6(0)
	peerIP4 = netlab.HostIP4
	peerIP6 = netlab.HostIP6
)

// newLab returns a lab closed at cleanup, after the test's sandboxes
// (cleanups run last-registered first).
func newLab(t *testing.T) (*Binary, *netlab.Lab) {
	t.Helper()
	bin := RequireRunsc(t)
	// The sandboxes run the host's ping, nc and iperf3.
	if m := testenv.Missing("ping", "nc", "iperf3", "ethtool"); len(m) > 0 {
		t.Fatalf("the sandbox runs host tools that are missing: %v", m)
	}
	lab := netlab.New("mvsrl")
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return bin, lab
}

// address gives dev in ns addresses ip4/24 and ip6/64 (no DAD) and sets it
// up.
func address(t *testing.T, lab *netlab.Lab, ns, dev, ip4, ip6 string) {
	t.Helper()
	if err := lab.IPs(ns,
		"addr add "+ip4+"/24 dev "+dev,
		"-6 addr add "+ip6+"/64 dev "+dev+" nodad",
		"link set "+dev+" up",
	); err != nil {
		t.Fatal(err)
	}
}

// vethPair makes namespaces sb and peer joined by a veth pair, eth0 at
// both ends, addressed.
func vethPair(t *testing.T, lab *netlab.Lab) (sb, peer string) {
	t.Helper()
	var err error
	if sb, err = lab.AddNS("sb"); err != nil {
		t.Fatal(err)
	}
	if peer, err = lab.AddNS("peer"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Veth(sb, "eth0", peer, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.IP(sb, "link", "set", "eth0", "address", netlab.SandboxMAC(0)); err != nil {
		t.Fatal(err)
	}
	address(t, lab, sb, "eth0", sbIP4, sbIP6)
	address(t, lab, peer, "eth0", peerIP4, peerIP6)
	return sb, peer
}

// describeNIC logs what runsc made of the sandbox namespace's devices and
// checks eth0 was taken with its MAC and addresses, and that the host side
// lost its addresses. It returns eth0's Link.
func describeNIC(t *testing.T, s *Sandbox, lab *netlab.Lab, ns, mac string) Link {
	t.Helper()
	links, err := s.Links()
	if err != nil {
		t.Fatal(err)
	}
	var eth0 *Link
	for i := range links {
		t.Logf("runsc link %+v", links[i])
		if links[i].Name == "eth0" {
			eth0 = &links[i]
		}
	}
	if eth0 == nil {
		t.Fatalf("runsc did not take eth0: %+v", links)
	}
	if mac != "" && !strings.EqualFold(eth0.MAC, mac) {
		t.Errorf("runsc eth0 MAC %s, want the device's %s", eth0.MAC, mac)
	}
	if !strings.Contains(strings.Join(eth0.Addresses, " "), sbIP4+"/24") {
		t.Errorf("runsc eth0 addresses %v lack %s/24", eth0.Addresses, sbIP4)
	}
	for _, l := range logLines(s, "GSO not available", `Enabling interface "eth0"`) {
		t.Logf("runsc log: %s", l)
	}
	if out, err := lab.Exec(ns, "ip", "-br", "addr", "show", "dev", "eth0"); err != nil {
		t.Error(err)
	} else if strings.Contains(out, sbIP4) {
		t.Errorf("host side of eth0 still has %s: %s", sbIP4, out)
	}
	if out, err := s.Exec(ctxT(t, 20*time.Second), "cat", "/proc/net/dev"); err != nil {
		t.Error(err)
	} else if !strings.Contains(out, "eth0:") {
		t.Errorf("sandbox /proc/net/dev has no eth0:\n%s", out)
	}
	return *eth0
}

// logLines returns the debug-log lines containing any of subs.
func logLines(s *Sandbox, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(s.Logs(0), "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, strings.TrimSpace(l))
				break
			}
		}
	}
	return out
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkReach pings the peer from the sandbox (IPv4, IPv6) and back, and
// exchanges a line each way over nc with the sandbox listening, then with
// the peer listening, over both families.
func checkReach(t *testing.T, s *Sandbox, lab *netlab.Lab, peer string) {
	t.Helper()
	for _, dst := range []string{peerIP4, peerIP6} {
		out, err := s.Exec(ctxT(t, 20*time.Second), "ping", "-c", "3", "-i", "0.2", "-W", "2", dst)
		if err != nil {
			t.Errorf("sandbox ping %s: %v", dst, err)
			continue
		}
		t.Logf("sandbox ping %s: %s", dst, pingSummary(out))
	}
	for _, dst := range []string{sbIP4, sbIP6} {
		out, err := lab.Exec(peer, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst)
		if err != nil {
			t.Errorf("peer ping sandbox %s: %v", dst, err)
			continue
		}
		t.Logf("peer ping %s: %s", dst, pingSummary(out))
	}
	port := 5201 + 10
	for _, fam := range []struct{ flag, sb, peer string }{{"-4", sbIP4, peerIP4}, {"-6", sbIP6, peerIP6}} {
		port++
		ncSandboxListens(t, s, lab, peer, fam.flag, fam.sb, port)
		port++
		ncPeerListens(t, s, lab, peer, fam.flag, fam.peer, port)
	}
}

func pingSummary(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "packets transmitted") {
			return l
		}
	}
	return strings.TrimSpace(out)
}

// The nc exchanges: each side sends a line and must get the other's. Only
// the kernel side half-closes (-N). gVisor's poll reports POLLERR (with
// POLLIN|POLLHUP, and no error pending) on a TCP socket in TIME_WAIT, which
// Linux does not, and OpenBSD nc drops a socket on POLLERR before reading
// it: an nc in the sandbox that half-closed first loses the peer's last
// data (about 3 runs in 4 here). Without -N the sandbox's nc closes second
// and reads everything.

// ncSandboxListens: nc -l in the sandbox, the peer dials.
func ncSandboxListens(t *testing.T, s *Sandbox, lab *netlab.Lab, peer, fam, addr string, port int) {
	t.Helper()
	fromSB, fromPeer := fmt.Sprintf("sandbox-says-%d", port), fmt.Sprintf("peer-says-%d", port)
	lst, err := s.Spawn("sh", "-c", fmt.Sprintf("printf '%s\\n' | timeout 15 nc %s -l %d", fromSB, fam, port))
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for i := 0; i < 30; i++ { // until the listener is up: 30 x 200 ms at most
		got, err = lab.Exec(peer, "sh", "-c", fmt.Sprintf("printf '%s\\n' | timeout 10 nc -N -w 5 %s %d", fromPeer, addr, port))
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || !strings.Contains(got, fromSB) {
		t.Errorf("nc peer -> sandbox [%s]:%d: got %q, %v", addr, port, got, err)
	}
	out, err := lst.Wait(15 * time.Second)
	if err != nil || !strings.Contains(out, fromPeer) {
		t.Errorf("nc listener in sandbox on %d: got %q, %v", port, out, err)
	} else {
		t.Logf("nc %s sandbox listens on [%s]:%d: both lines crossed", fam, addr, port)
	}
}

// ncPeerListens: nc -l in the peer namespace, the sandbox dials.
func ncPeerListens(t *testing.T, s *Sandbox, lab *netlab.Lab, peer, fam, addr string, port int) {
	t.Helper()
	fromSB, fromPeer := fmt.Sprintf("sandbox-says-%d", port), fmt.Sprintf("peer-says-%d", port)
	var lout bytes.Buffer
	lst, err := lab.Start(peer, &lout, &lout, "sh", "-c", fmt.Sprintf("printf '%s\\n' | timeout 15 nc %s -l -N %d", fromPeer, fam, port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- lst.Wait() }()
	var got string
	for i := 0; i < 30; i++ {
		got, err = s.Exec(ctxT(t, 20*time.Second), "sh", "-c", fmt.Sprintf("printf '%s\\n' | timeout 10 nc -w 5 %s %d", fromSB, addr, port))
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || !strings.Contains(got, fromPeer) {
		t.Errorf("nc sandbox -> peer [%s]:%d: got %q, %v", addr, port, got, err)
	}
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		err = fmt.Errorf("listener still running")
	}
	if err != nil || !strings.Contains(lout.String(), fromSB) {
		t.Errorf("nc listener in peer on %d: got %q, %v", port, lout.String(), err)
	} else {
		t.Logf("nc %s peer listens on [%s]:%d: both lines crossed", fam, addr, port)
	}
}

// iperfResult is the part of iperf3 -J's report we use.
type iperfResult struct {
	Gbps        float64
	Retransmits int
}

// iperf runs a bounded iperf3 TCP test between the sandbox (client) and an
// iperf3 server in peer (one test, then it exits): secs seconds, sandbox
// sending, or receiving with reverse.
func iperf(t *testing.T, s *Sandbox, lab *netlab.Lab, peer, dst string, secs int, reverse bool) iperfResult {
	t.Helper()
	srv, err := lab.Start(peer, nil, nil, "timeout", fmt.Sprint(secs+20), "iperf3", "-s", "-1")
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.Stop(srv, 5*time.Second)
	args := []string{"timeout", fmt.Sprint(secs + 15), "iperf3", "-J", "-c", dst, "-t", fmt.Sprint(secs)}
	if reverse {
		args = append(args, "-R")
	}
	var out string
	for i := 0; i < 10; i++ { // until the server listens
		time.Sleep(200 * time.Millisecond)
		if out, err = s.Exec(ctxT(t, time.Duration(secs+30)*time.Second), args...); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("iperf3 in sandbox: %v", err)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("iperf3 output: %v\n%s", err, tail(out, 2000))
	}
	return iperfResult{Gbps: r.End.SumReceived.BitsPerSecond / 1e9, Retransmits: r.End.SumSent.Retransmits}
}

// TestNetnsRunscVeth: a sandbox in a namespace whose eth0 is a veth to a
// second namespace pings it (IPv4, IPv6), is pinged back, and exchanges
// lines over nc with it in both directions.
func TestNetnsRunscVeth(t *testing.T) {
	bin, lab := newLab(t)
	sb, peer := vethPair(t, lab)
	s := StartTB(t, Config{Runsc: bin.Path, NetNS: sb})
	l := describeNIC(t, s, lab, sb, netlab.SandboxMAC(0))
	if !l.HostGSO {
		t.Errorf("veth: runsc did not use host GSO (PACKET_VNET_HDR): %+v", l)
	}
	checkReach(t, s, lab, peer)
}

// TestNetnsRunscMacvlan: the same with a macvlan (bridge mode) whose lower
// is a veth to the peer, the lower in a third namespace.
func TestNetnsRunscMacvlan(t *testing.T) {
	bin, lab := newLab(t)
	var sb, sw, peer string
	var err error
	for _, p := range []struct {
		ns   *string
		name string
	}{{&sb, "sb"}, {&sw, "sw"}, {&peer, "peer"}} {
		if *p.ns, err = lab.AddNS(p.name); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.Veth(sw, "low", peer, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.IPs(sw,
		"link add link low name mvl0 address "+netlab.SandboxMAC(0)+" type macvlan mode bridge",
		"link set mvl0 netns "+sb,
	); err != nil {
		t.Fatal(err)
	}
	if err := lab.IP(sb, "link", "set", "mvl0", "name", "eth0"); err != nil {
		t.Fatal(err)
	}
	address(t, lab, sb, "eth0", sbIP4, sbIP6)
	address(t, lab, peer, "eth0", peerIP4, peerIP6)
	s := StartTB(t, Config{Runsc: bin.Path, NetNS: sb})
	l := describeNIC(t, s, lab, sb, netlab.SandboxMAC(0))
	t.Logf("macvlan: host GSO (PACKET_VNET_HDR) %v, gso max %d", l.HostGSO, l.GSOMaxSize)
	checkReach(t, s, lab, peer)
}

// TestNetnsRunscIperf: a 2 s iperf3 from the sandbox to the peer over the
// veth pair, and 2 s back.
func TestNetnsRunscIperf(t *testing.T) {
	bin, lab := newLab(t)
	sb, peer := vethPair(t, lab)
	s := StartTB(t, Config{Runsc: bin.Path, NetNS: sb})
	up := iperf(t, s, lab, peer, peerIP4, 2, false)
	t.Logf("veth iperf3 sandbox -> peer: %.2f Gbit/s, %d retransmits", up.Gbps, up.Retransmits)
	down := iperf(t, s, lab, peer, peerIP4, 2, true)
	t.Logf("veth iperf3 peer -> sandbox: %.2f Gbit/s, %d retransmits", down.Gbps, down.Retransmits)
	if up.Gbps <= 0 || down.Gbps <= 0 {
		t.Errorf("no throughput: up %+v down %+v", up, down)
	}
}

// TestNetnsRunscStartFailure: a container whose process cannot start makes
// Start fail with runsc's reason and debug logs, and leaves no directory
// and no process behind.
func TestNetnsRunscStartFailure(t *testing.T) {
	bin, lab := newLab(t)
	sb, err := lab.AddNS("sb")
	if err != nil {
		t.Fatal(err)
	}
	id := "rl-fail-" + randHex(3)
	s, err := Start(context.Background(), Config{Runsc: bin.Path, NetNS: sb, ID: id, Args: []string{"/nonexistent/program"}})
	if err == nil {
		s.Close()
		t.Fatal("Start of a missing program succeeded")
	}
	msg := err.Error()
	head := strings.SplitN(msg, "\n", 4)
	t.Logf("Start error (%d bytes), begins:\n%s", len(msg), strings.Join(head[:min(3, len(head))], "\n"))
	if !strings.Contains(msg, "/nonexistent/program") || !strings.Contains(msg, "--- debug logs ---") {
		t.Errorf("the error lacks the reason or the logs:\n%s", tail(msg, 3000))
	}
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "runsclab-"+id+"-*")); len(dirs) != 0 {
		t.Errorf("left behind %v", dirs)
	}
	if out, _ := exec.Command("pgrep", "-f", id).Output(); len(out) != 0 {
		t.Errorf("left processes behind: %s", out)
	}
}
