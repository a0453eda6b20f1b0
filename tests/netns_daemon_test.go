package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/switch/counters"
	"github.com/macvsw/macvsw/tests/netlab"
)

// cli runs the macvsw binary as a client of lab l and returns its stdout,
// stderr and exit status.
func (l *lab) cli(args ...string) (string, string, int) {
	cmd := exec.Command(macvswBin, args...)
	cmd.Env = append(os.Environ(), "MACVSW_SOCKET="+l.Socket)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("macvsw %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// api sends one raw request to the control socket.
func (l *lab) api(method, path, body string) (int, string) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", l.Socket)
	}}}
	req, _ := http.NewRequest(method, "http://macvsw"+path, strings.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// udpBackground runs bounded-rate UDP from sandbox 0 to sandbox 1 for secs
// seconds and returns a function that waits for the result.
//
// Zero loss is what the callers check, and it must hold on a loaded
// machine too: the ends macvsw does not own get buffers for a second or
// more of this rate, so that a receiving iperf3 or a sender's tap starved
// of CPU for a while loses nothing (under load the receiver's socket
// overflowed, with every datagram through the switch). The sender's tap
// queue: txqueuelen 10000; the sockets: 4 MiB (iperf3 -w, both ends).
func (l *lab) udpBackground(secs int) func() netlab.IperfResult {
	if err := l.Lab.IP(l.Sandboxes[0], "link", "set", "eth0", "txqueuelen", "10000"); err != nil {
		l.t.Fatal(err)
	}
	done := make(chan netlab.IperfResult, 1)
	go func() {
		r, err := l.Lab.Iperf(l.Sandboxes[1], l.Sandboxes[0], netlab.SandboxIP4(1), secs, "-u", "-b", "20M", "-w", "4M")
		if err != nil {
			l.t.Errorf("background iperf3: %v", err)
		}
		done <- r
	}()
	return func() netlab.IperfResult { return <-done }
}

// pcapFrame is one frame of a capture.
type pcapFrame []byte

func (f pcapFrame) src() string { return net.HardwareAddr(f[6:12]).String() }

// icmpType returns the ICMP type of an IPv4 ICMP frame, "" for others.
func (f pcapFrame) icmpType() string {
	if len(f) < 14+20+1 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14+9] != 1 {
		return ""
	}
	ihl := int(f[14]&0xf) * 4
	if len(f) <= 14+ihl {
		return ""
	}
	return fmt.Sprint(f[14+ihl])
}

// readPcap reads a classic little-endian pcap file of Ethernet frames
// (pcap-savefile(5); what macvsw capture writes), as tshark -r would.
func readPcap(path string) ([]pcapFrame, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		return nil, fmt.Errorf("%s: not a little-endian Ethernet pcap file (% x)", path, b[:min(len(b), 24)])
	}
	var frames []pcapFrame
	for b = b[24:]; len(b) > 0; {
		if len(b) < 16 {
			return nil, fmt.Errorf("%s: truncated record header", path)
		}
		n := int(binary.LittleEndian.Uint32(b[8:]))
		if len(b) < 16+n || n < 14 {
			return nil, fmt.Errorf("%s: record of %d bytes, %d left", path, n, len(b)-16)
		}
		frames = append(frames, pcapFrame(b[16:16+n]))
		b = b[16+n:]
	}
	return frames, nil
}

// flowing waits until frames move through ports (their packet counters
// grow by at least 100 frames), at most 20 s: a background flow has
// really started, however long a loaded machine took to start it.
func (l *lab) flowing(ports ...string) {
	l.t.Helper()
	count := func() uint64 {
		out, errs, code := l.cli("stats", "--json")
		var st counters.Snapshot
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			l.t.Fatalf("stats --json: exit %d %s%s", code, out, errs)
		}
		var n uint64
		for _, p := range ports {
			if ps := st.Port(p); ps != nil {
				n += ps.Switch.RxPackets + ps.Switch.TxPackets
			}
		}
		return n
	}
	base := count()
	if !waitFor(20*time.Second, func() bool { return count() >= base+100 }) {
		l.t.Fatalf("no traffic through %v after 20 s", ports)
	}
}

// reaches pings from ns until addr answers, at most 10 s.
func (l *lab) reaches(ns, addr string) bool {
	return waitFor(10*time.Second, func() bool { return l.Lab.Ping(ns, addr, time.Second) })
}

// TestNetnsDaemonCLI drives a running daemon through its CLI: ports added
// and removed while UDP flows between two other ports with no loss, bad
// requests refused with a JSON error and no change, a capture read back
// in Go, and SIGHUP reload.
func TestNetnsDaemonCLI(t *testing.T) {
	requireNetns(t, "iperf3", "curl", "setpriv")
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}})
	lab := m.Lab

	out, _, code := m.cli("port", "list")
	if code != 0 || !strings.Contains(out, "p0") || !strings.Contains(out, "p1") {
		t.Fatalf("port list (exit %d):\n%s", code, out)
	}

	// Add and delete a port while traffic flows between p0 and p1.
	sb2, err := lab.AddNS("sb2")
	if err != nil {
		t.Fatal(err)
	}
	wait := m.udpBackground(4)
	m.flowing("p0", "p1")
	out, errs, code := m.cli("port", "add", "p2", "--mode", "bridge", "--mac", netlab.SandboxMAC(2),
		"--tap-netns", netlab.Path(sb2), "--ifname", "eth0", "--address", netlab.SandboxIP4(2)+"/24")
	if code != 0 {
		t.Fatalf("port add: exit %d: %s%s", code, out, errs)
	}
	if err := m.Topo.WaitLink(sb2, "eth0", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if !m.reaches(sb2, netlab.SandboxIP4(0)) {
		t.Error("the added port cannot reach p0")
	}
	if _, errs, code := m.cli("port", "del", "p2"); code != 0 {
		t.Fatalf("port del: exit %d: %s", code, errs)
	}
	if r := wait(); r.Lost != 0 || r.Packets == 0 {
		t.Errorf("UDP between untouched ports while adding/removing p2: %d of %d lost", r.Lost, r.Packets)
	}

	// Refusals: exit codes and messages, and nothing changed.
	if _, errs, code := m.cli("port", "set", "p0", "--mtu", "9999"); code != 1 || !strings.Contains(errs, "MTU") {
		t.Errorf("MTU above the lower: exit %d, %q; want 1 and an MTU error", code, errs)
	}
	if _, errs, code := m.cli("port", "del", "nosuch"); code != 4 {
		t.Errorf("deleting a missing port: exit %d, %q; want 4", code, errs)
	}
	if _, errs, code := m.cli("port", "set", "p1", "--mac", netlab.SandboxMAC(0)); code != 5 {
		t.Errorf("taking p0's MAC: exit %d, %q; want 5", code, errs)
	}
	if _, errs, code := m.cli("port", "macaddr", "p0", "add", netlab.HostMAC); code != 1 || !strings.Contains(errs, "source mode") {
		t.Errorf("macaddr on a bridge port: exit %d, %q", code, errs)
	}
	before, _, _ := m.cli("port", "list", "--json")
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/ports", `{"name": "x", "bogus": 1, "afpacket": {"interface": "low"}}`, 400},
		{"POST", "/v1/ports", `not json`, 400},
		{"POST", "/v1/ports", `{"name": "p9", "mac": "zz:00:00:00:00:01", "tap": {"netns": "/var/run/netns/nope"}}`, 400},
		{"PATCH", "/v1/ports/p0", `{"mtu": "big"}`, 400},
		{"PATCH", "/v1/ports/p0", `{"mode": "passthru"}`, 409},
		{"POST", "/v1/ports/p0/macaddr", `{"op": "explode", "macs": []}`, 400},
		{"GET", "/v1/nothing", ``, 404},
	} {
		status, body := m.api(tc.method, tc.path, tc.body)
		var e struct{ Error string }
		if status != tc.status || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
			t.Errorf("%s %s %s: %d %s; want %d with a JSON error", tc.method, tc.path, tc.body, status, body, tc.status)
		}
	}
	if after, _, _ := m.cli("port", "list", "--json"); after != before {
		t.Errorf("refused requests changed the ports:\n%s\n%s", before, after)
	}

	// The sandbox sees its port's carrier: admin down, or the lower down,
	// shows NO-CARRIER on the tap inside it, as a macvtap follows its lower.
	carrier := func(ns string) bool {
		out, err := lab.Exec(ns, "ip", "-o", "link", "show", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		return !strings.Contains(out, "NO-CARRIER")
	}
	waitCarrier := func(ns string, want bool) bool {
		return waitFor(10*time.Second, func() bool { return carrier(ns) == want })
	}
	if _, errs, code := m.cli("port", "set", "p1", "--down"); code != 0 {
		t.Fatalf("port set --down: %d %s", code, errs)
	}
	if !waitCarrier(m.Sandboxes[1], false) || !carrier(m.Sandboxes[0]) {
		t.Error("admin down: want NO-CARRIER on p1's tap only")
	}
	m.cli("port", "set", "p1", "--up")
	if !waitCarrier(m.Sandboxes[1], true) {
		t.Error("admin up: p1's tap has no carrier")
	}
	lab.IP(m.Topo.SW, "link", "set", netlab.Lower, "down")
	if !waitCarrier(m.Sandboxes[0], false) || !waitCarrier(m.Sandboxes[1], false) {
		t.Error("lower down: taps still have carrier")
	}
	lab.IP(m.Topo.SW, "link", "set", netlab.Lower, "up")
	if !waitCarrier(m.Sandboxes[0], true) || !waitCarrier(m.Sandboxes[1], true) {
		t.Error("lower up: taps have no carrier")
	}
	if !m.reaches(m.Sandboxes[0], netlab.SandboxIP4(1)) {
		t.Error("no traffic after the carrier came back")
	}

	// A non-root peer is refused.
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", macvswBin, "port", "list", "--socket", m.Socket)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "permission denied") {
		t.Errorf("uid 65534 on the control socket: %v %s", err, out)
	}

	// Capture: the frames of a ping, read back as pcap. Other frames
	// (the LAN bridge's IPv6 multicast, ARP) may be captured too, so ping
	// until the capture has its count, and look for the ICMP ones.
	pcap := filepath.Join(t.TempDir(), "p0.pcap")
	capDone := make(chan string, 1)
	go func() {
		_, errs, code := m.cli("capture", "p0", "-w", pcap, "-c", "8")
		capDone <- fmt.Sprintf("%d %s", code, errs)
	}()
	deadline := time.After(15 * time.Second)
capture:
	for {
		lab.Exec(m.Sandboxes[0], "ping", "-c", "2", "-i", "0.2", netlab.SandboxIP4(1))
		select {
		case res := <-capDone:
			if !strings.HasPrefix(res, "0 ") {
				t.Fatalf("capture: %s", res)
			}
			break capture
		case <-deadline:
			t.Fatal("capture did not finish")
		default:
		}
	}
	frames, err := readPcap(pcap)
	if err != nil {
		t.Fatalf("reading the capture: %v", err)
	}
	// Source MAC and ICMP type of each frame, as `tshark -T fields -e
	// eth.src -e icmp.type` prints them.
	var fields []string
	for _, f := range frames {
		fields = append(fields, f.src()+"\t"+f.icmpType())
	}
	sum := strings.Join(fields, "\n")
	if len(frames) != 8 || !strings.Contains(sum, netlab.SandboxMAC(0)+"\t8") || !strings.Contains(sum, netlab.SandboxMAC(1)+"\t0") {
		t.Errorf("the capture's frames (source, ICMP type):\n%s", sum)
	}

	// Stats: the text table shows non-zero drop reasons only (all with
	// --all), the port's subject, and JSON parses into the counters type.
	out, _, code = m.cli("stats")
	if code != 0 || !strings.Contains(out, "port p0 (up)") || strings.Contains(out, "queue_full") {
		t.Errorf("stats (exit %d):\n%s", code, out)
	}
	out, _, code = m.cli("stats", "--all")
	if code != 0 || !strings.Contains(out, "reason=queue_full") {
		t.Errorf("stats --all (exit %d):\n%s", code, out)
	}
	out, _, _ = m.cli("stats", "p1", "--json")
	var st counters.Snapshot
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Port("p1") == nil || st.Port("p1").Switch.RxPackets == 0 ||
		len(st.Port("p1").Switch.RxDrops) != int(vswitch.NumDropReasons) {
		t.Errorf("stats p1 --json: %v\n%s", err, out)
	}

	// Metrics: the switch's counters for p0's transmissions and p1's
	// receptions equal what the kernel counted on the sandboxes' taps.
	scrape := func() map[string]float64 {
		out, err := lab.Exec(m.Topo.SW, "curl", "-sf", "http://127.0.0.1:9464/metrics")
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		v := map[string]float64{}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			k, val, _ := strings.Cut(line, " ")
			var f float64
			fmt.Sscan(val, &f)
			v[k] = f
		}
		return v
	}
	// A frame can be between the sandbox's count and the switch's (and
	// the sandboxes send IPv6 chatter of their own at any time): compare
	// until both sides agree, or for 10 s.
	lab.Exec(m.Sandboxes[0], "ping", "-c", "5", "-i", "0.1", netlab.SandboxIP4(1))
	var mv map[string]float64
	var sent, got uint64
	agree := waitFor(10*time.Second, func() bool {
		s0, _ := lab.LinkStat(m.Sandboxes[0], "eth0", "tx_packets")
		g0, _ := lab.LinkStat(m.Sandboxes[1], "eth0", "rx_packets")
		mv = scrape()
		sent, _ = lab.LinkStat(m.Sandboxes[0], "eth0", "tx_packets")
		got, _ = lab.LinkStat(m.Sandboxes[1], "eth0", "rx_packets")
		return s0 == sent && g0 == got && sent > 0 &&
			uint64(mv[`macvsw_port_packets_total{direction="tx",port="p0"}`]) == sent &&
			uint64(mv[`macvsw_port_packets_total{direction="rx",port="p1"}`]) == got
	})
	if !agree {
		t.Errorf("metrics: p0 tx %v, sandbox 0 sent %d; p1 rx %v, sandbox 1 received %d",
			mv[`macvsw_port_packets_total{direction="tx",port="p0"}`], sent, mv[`macvsw_port_packets_total{direction="rx",port="p1"}`], got)
	}
	if _, ok := mv[`macvsw_port_drops_total{direction="rx",port="p0",reason="queue_full"}`]; !ok {
		t.Error("metrics lack the per-reason drop counters")
	}

	// SIGHUP: the file gains p3; p0 and p1 keep forwarding without loss.
	sb3, err := lab.AddNS("sb3")
	if err != nil {
		t.Fatal(err)
	}
	text := m.ConfigText + fmt.Sprintf("  - name: p3\n    mode: bridge\n    mac: %s\n    tap: {netns: %s, ifname: eth0, addresses: [%s/24]}\n",
		netlab.SandboxMAC(3), netlab.Path(sb3), netlab.SandboxIP4(3))
	if err := os.WriteFile(m.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	wait = m.udpBackground(3)
	m.flowing("p0", "p1")
	m.Daemon.Process.Signal(syscall.SIGHUP)
	if err := m.Topo.WaitLink(sb3, "eth0", 20*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, m.Log.String())
	}
	if r := wait(); r.Lost != 0 || r.Packets == 0 {
		t.Errorf("UDP between untouched ports during SIGHUP reload: %d of %d lost", r.Lost, r.Packets)
	}
	if out, _, _ := m.cli("port", "list"); !strings.Contains(out, "p3") {
		t.Errorf("after reload:\n%s", out)
	}
	// A reload that touches another section is refused whole.
	bad := strings.Replace(text, "127.0.0.1:9464", "127.0.0.1:9465", 1)
	bad = strings.Replace(bad, "  - name: p3", "  - name: p3x", 1)
	if err := os.WriteFile(m.ConfigPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Daemon.Process.Signal(syscall.SIGHUP)
	waitFor(10*time.Second, func() bool { return strings.Contains(m.Log.String(), "needs a restart") })
	if !strings.Contains(m.Log.String(), "metrics changed, which needs a restart") {
		t.Errorf("reload of a metrics change was not refused:\n%s", m.Log.String())
	}
	if out, _, _ := m.cli("port", "list"); !strings.Contains(out, "p3 ") || strings.Contains(out, "p3x") {
		t.Errorf("a refused reload changed the ports:\n%s", out)
	}
	m.stop()
	// SIGTERM removed the socket and left the taps in place, without
	// carrier, for the next start; `macvsw down` with no daemon deletes
	// them from the state it left.
	if _, err := os.Stat(m.Socket); err == nil {
		t.Error("control socket left behind")
	}
	out, err = lab.Exec(sb3, "ip", "-o", "link", "show", "eth0")
	if err != nil || !strings.Contains(out, "NO-CARRIER") {
		t.Errorf("after SIGTERM, p3's tap: %v %s; want it there with NO-CARRIER", err, out)
	}
	if out, errs, code := m.cli("down"); code != 0 || !strings.Contains(out, "deleted tap eth0 in "+netlab.Path(sb3)) {
		t.Errorf("macvsw down without a daemon: exit %d\n%s%s", code, out, errs)
	}
	if err := lab.IP(sb3, "link", "show", "eth0"); err == nil {
		t.Error("macvsw down left p3's tap behind")
	}
}
