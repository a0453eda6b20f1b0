package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/endpoints"
	"github.com/macvsw/macvsw/switch/counters"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// notifySocket is a fake systemd: the unixgram socket NOTIFY_SOCKET names,
// collecting what the daemon sends with sd_notify, one datagram each.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock"), msgs: make(chan string, 64)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return n
}

// next returns the next datagram, failing t after timeout.
func (n *notifySocket) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		return m
	case <-time.After(timeout):
		t.Fatalf("no sd_notify message within %v", timeout)
		return ""
	}
}

// expect reads the next datagram and checks it against a regexp.
func (n *notifySocket) expect(t *testing.T, re string) string {
	t.Helper()
	m := n.next(t, 30*time.Second)
	if !regexp.MustCompile(re).MatchString(m) {
		t.Fatalf("sd_notify message %q, want %q", m, re)
	}
	return m
}

// carrierRows matches the rows of `port list` of ports up with carrier.
var carrierRows = regexp.MustCompile(`(?m) up +yes +\d+$`)

// startDaemonWith starts `macvsw run` on the lab's config in its switch
// namespace, with extra environment and arguments, in place of the lab's
// own daemon; the lab stops it (by PID) when it closes.
func (l *lab) startDaemonWith(env []string, args ...string) *exec.Cmd {
	l.t.Helper()
	cmdline := append(append([]string{"env"}, env...), macvswBin, "run", "--config", l.ConfigPath)
	d, err := l.Lab.Start(l.Topo.SW, l.Log, l.Log, append(cmdline, args...)...)
	if err != nil {
		l.t.Fatal(err)
	}
	return d
}

// TestNetnsSupervision: what systemd sees of the daemon, through a fake
// NOTIFY_SOCKET: STATUS while it starts, READY=1 only once the ports are
// up and the control socket, the metrics address and the pidfile are
// there; RELOADING=1 and READY=1 around each reload `macvsw reload`
// asks for, which prints what the reload did (added, nothing, refused,
// failed); SIGHUP through the pidfile; STOPPING=1 and the pidfile gone
// on SIGTERM.
func TestNetnsSupervision(t *testing.T) {
	requireNetns(t, "curl")
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}})
	m.stop()
	logStart := len(m.Log.String())
	ns := newNotifySocket(t)
	pidfile := filepath.Join(t.TempDir(), "macvsw.pid")
	d := m.startDaemonWith([]string{"NOTIFY_SOCKET=" + ns.path}, "--pidfile", pidfile)

	ns.expect(t, `^STATUS=starting: lower low$`)
	ns.expect(t, `^READY=1\nSTATUS=running: 2 ports \(2 with carrier\) on low$`)
	// Everything READY=1 promises is there now, without waiting.
	if out, errs, code := m.cli("port", "list"); code != 0 || len(carrierRows.FindAllString(out, -1)) != 2 {
		t.Errorf("at READY=1, port list: exit %d\n%s%s", code, out, errs)
	}
	if _, err := m.Lab.Exec(m.Topo.SW, "curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:9464/metrics"); err != nil {
		t.Errorf("at READY=1, metrics: %v", err)
	}
	if b, err := os.ReadFile(pidfile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(d.Process.Pid) {
		t.Errorf("at READY=1, pidfile %q (%v), want pid %d", b, err, d.Process.Pid)
	}
	// Nothing says running or listening before every bind succeeded:
	// those lines come last, in this order.
	log := m.Log.String()[logStart:]
	api, metrics, running := strings.Index(log, `msg="control API listening"`), strings.Index(log, `msg="metrics listening"`), strings.Index(log, `msg="macvsw running"`)
	if api < 0 || metrics < api || running < metrics || strings.Count(log, "running") != 1 {
		t.Errorf("start-up log order (API %d, metrics %d, running %d):\n%s", api, metrics, running, log)
	}

	// A reload that adds a port.
	sb2, err := m.Lab.AddNS("sb2")
	if err != nil {
		t.Fatal(err)
	}
	base := m.ConfigText
	withP2 := base + fmt.Sprintf("  - name: p2\n    mode: bridge\n    mac: %s\n    tap: {netns: %s, ifname: eth0, addresses: [%s/24]}\n",
		netlab.SandboxMAC(2), netlab.Path(sb2), netlab.SandboxIP4(2))
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(m.ConfigPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reloading := `^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading ` + regexp.QuoteMeta(m.ConfigPath) + `$`
	write(withP2)
	m.runSteps(t, []cliStep{{name: "reload adds a port", args: []string{"reload"}, out: []string{`^added: +p2\n$`}}})
	ns.expect(t, reloading)
	ns.expect(t, `^READY=1\nSTATUS=running: 3 ports \(3 with carrier\) on low$`)

	m.runSteps(t, []cliStep{{name: "reload, nothing to do", args: []string{"reload", "--json"}, check: func(t *testing.T, out string) {
		var rep struct{ Added, Removed, Changed, Rebuilt, Failed []string }
		jsonInto(t, out, &rep)
		if len(rep.Added)+len(rep.Removed)+len(rep.Changed)+len(rep.Rebuilt)+len(rep.Failed) != 0 {
			t.Errorf("a reload of an unchanged file: %+v", rep)
		}
	}}})
	ns.expect(t, reloading)
	ns.expect(t, `^READY=1\n`)

	write(strings.Replace(withP2, "127.0.0.1:9464", "127.0.0.1:9465", 1))
	m.runSteps(t, []cliStep{{name: "reload refused whole", args: []string{"reload"}, code: 1,
		err: []string{`^macvsw: reload refused, nothing changed: reload: metrics changed, which needs a restart; nothing changed\n$`}}})
	ns.expect(t, reloading)
	ns.expect(t, `^READY=1\n`)

	late := m.Lab.Prefix + "-late"
	write(withP2 + fmt.Sprintf("  - name: late\n    mode: bridge\n    tap: {netns: %s, ifname: eth0}\n", netlab.Path(late)))
	m.runSteps(t, []cliStep{{name: "reload with a port it cannot add", args: []string{"reload", "--json"}, code: 1,
		err: []string{`reload: 1 port\(s\) not applied: late`},
		check: func(t *testing.T, out string) {
			var rep struct {
				Failed []string
				Errors map[string]string
			}
			jsonInto(t, out, &rep)
			if len(rep.Failed) != 1 || !strings.Contains(rep.Errors["late"], netlab.Path(late)) {
				t.Errorf("reload --json: %+v", rep)
			}
		}}})
	ns.expect(t, reloading)
	ns.expect(t, `^READY=1\n`)

	// SIGHUP through the pidfile: no answer, but systemd hears it.
	write(withP2)
	m.runSteps(t, []cliStep{{name: "reload --pidfile", args: []string{"reload", "--pidfile", pidfile},
		out: []string{fmt.Sprintf(`^sent SIGHUP to pid %d; `, d.Process.Pid)}}})
	ns.expect(t, reloading)
	ns.expect(t, `^READY=1\n`)

	if err := netlab.Stop(d, 10*time.Second); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	ns.expect(t, `^STOPPING=1\nSTATUS=stopping$`)
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pidfile after exit: %v", err)
	}
}

// jsonLines decodes stderr as JSON log lines, failing t on a line that is
// not JSON.
func jsonLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Errorf("not a JSON log line: %q", sc.Text())
			continue
		}
		lines = append(lines, v)
	}
	return lines
}

// TestNetnsStartFailure: a start that fails logs why once, in the
// configured format, says nothing of running or listening, and touches
// nothing: the metrics address is bound before any tap is made.
func TestNetnsStartFailure(t *testing.T) {
	requireNetns(t)
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}})
	sbx, err := m.Lab.AddNS("sbx")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(text string, args ...string) (string, int) {
		t.Helper()
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", m.Topo.SW, macvswBin, "run", "--config", path}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return stderr.String(), code
	}
	// The lab's daemon holds 127.0.0.1:9464 in the switch namespace; this
	// one, with its own state directory, wants it too.
	second := "/run/" + m.Lab.Prefix + "-second"
	t.Cleanup(func() { os.RemoveAll(second) })
	busy := fmt.Sprintf("lower: {interface: low}\ncontrol: {socket: %s/macvsw.sock}\nmetrics: {listen: \"127.0.0.1:9464\"}\nports:\n  - {name: x, mode: bridge, tap: {netns: %s, ifname: eth0}}\n", second, netlab.Path(sbx))

	stderr, code := run(busy, "--log-format", "json")
	lines := jsonLines(t, stderr)
	if code != 1 || len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["msg"] != "macvsw cannot run" ||
		!strings.Contains(fmt.Sprint(lines[0]["err"]), "metrics.listen 127.0.0.1:9464") || !strings.Contains(fmt.Sprint(lines[0]["err"]), "address already in use") {
		t.Errorf("metrics address in use, --log-format json: exit %d\n%s", code, stderr)
	}
	if linkFlags(m.Lab, sbx, "eth0") != "" {
		t.Error("a start that failed on the metrics address made the tap")
	}
	if _, err := os.Stat(second); err == nil {
		t.Error("a start that failed on the metrics address made its state directory")
	}

	// The file's log.format is the format when the file loads.
	stderr, code = run(strings.Replace(busy, "ports:", "log: {format: json}\nports:", 1))
	if lines := jsonLines(t, stderr); code != 1 || len(lines) != 1 || lines[0]["msg"] != "macvsw cannot run" {
		t.Errorf("metrics address in use, log.format json: exit %d\n%s", code, stderr)
	}
	// A config error, before any format is known but the flag's.
	stderr, code = run("lower: {interface: low}\nports:\n  - name: x\n    mac: zz\n    tap: {netns: sbx}\n", "--log-format", "json")
	if lines := jsonLines(t, stderr); code != 1 || len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["err"]), `c.yaml:4:5: ports[0].mac: bad MAC address "zz"`) {
		t.Errorf("config error, --log-format json: exit %d\n%s", code, stderr)
	}
	// Text: one log line, not a second copy printed by main.
	stderr, code = run("lower: {interface: low}\nports:\n  - name: x\n    mac: zz\n    tap: {netns: sbx}\n")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `level=ERROR msg="macvsw cannot run"`) || !strings.Contains(stderr, "bad MAC address") {
		t.Errorf("config error, text: exit %d\n%s", code, stderr)
	}
	// The lab's daemon never noticed.
	if _, errs, code := m.cli("port", "list"); code != 0 {
		t.Errorf("the running daemon after the failed starts: %s", errs)
	}
}

// TestNetnsNsenter: `config check` and `run` under nsenter --net= (as
// under systemd's NetworkNamespacePath=), where /sys/class/net is still
// the host's: every interface is looked up through netlink in its
// namespace, so both work.
func TestNetnsNsenter(t *testing.T) {
	requireNetns(t, "nsenter")
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge", Kind: "afpacket"}})
	m.stop()
	nsenter := func(args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"--net=" + netlab.Path(m.Topo.SW), macvswBin}, args...)...)
	}
	if out, err := nsenter("config", "check", m.ConfigPath).CombinedOutput(); err != nil || !strings.Contains(string(out), "ok (2 ports)") {
		t.Fatalf("nsenter --net=... macvsw config check: %v\n%s", err, out)
	}
	// Outside the namespace the lower is not there (unless the host has
	// an interface of that name): the check really looks in the namespace.
	if _, err := endpoints.LookupInterface("", netlab.Lower); err != nil {
		if out, err := exec.Command(macvswBin, "config", "check", m.ConfigPath).CombinedOutput(); err == nil || !strings.Contains(string(out), "lower.interface: interface low does not exist") {
			t.Errorf("config check outside the namespace: %v\n%s", err, out)
		}
	}

	d := nsenter("run", "--config", m.ConfigPath, "--realtime", "5")
	d.Stdout, d.Stderr = m.Log, m.Log
	if err := testenv.StartWithParent(d); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			netlab.Stop(d, 10*time.Second)
		}
	})
	answers := func() bool {
		c, err := net.Dial("unix", m.Socket)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	if !waitFor(20*time.Second, answers) {
		t.Fatalf("the daemon under nsenter never answered:\n%s", m.Log.String())
	}
	if out, errs, code := m.cli("port", "list"); code != 0 || len(carrierRows.FindAllString(out, -1)) != 2 {
		t.Errorf("port list: exit %d\n%s%s", code, out, errs)
	}
	if !m.reaches(m.Sandboxes[0], netlab.SandboxIP4(1)) || !m.reaches(m.Sandboxes[1], netlab.HostIP4) {
		t.Error("no traffic through the daemon started under nsenter")
	}
	// --realtime 5: every thread, those started after the flag took
	// effect included, runs SCHED_RR (policy 2) at priority 5.
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", d.Process.Pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", d.Process.Pid, task.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		if prio, policy := f[37], f[38]; policy != "2" || prio != "5" {
			t.Errorf("thread %s: policy %s rt_priority %s, want SCHED_RR (2) at 5", task.Name(), policy, prio)
		}
	}
	if len(tasks) < 2 || !strings.Contains(m.Log.String(), "real-time scheduling") {
		t.Errorf("%d threads; log:\n%s", len(tasks), m.Log.String())
	}
	stopped = true
	if err := netlab.Stop(d, 10*time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, m.Log.String())
	}
}

// TestNetnsTapRoutesRebuild: tap.routes (destination, gateway, metric,
// IPv4 and IPv6) are added with the addresses, lo comes up in the fresh
// namespace (and stays down with lo_up: false), and a reload that changes
// the tap's device (a new address) rebuilds it with its routes; one that
// changes only switch settings keeps the tap as it is, as does one that
// changes busy_poll, which a SIGKILL and restart keep.
func TestNetnsTapRoutesRebuild(t *testing.T) {
	requireNetns(t)
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}})
	lab := m.Lab
	sbR, _ := lab.AddNS("sbr")
	sbL, _ := lab.AddNS("sbl")
	for _, ns := range []string{sbR, sbL} {
		if err := lab.IP(ns, "link", "set", "lo", "down"); err != nil {
			t.Fatal(err)
		}
	}
	// Sandbox 0 holds 10.99.0.1: sbr reaches it only through its route.
	if err := lab.IP(m.Sandboxes[0], "addr", "add", "10.99.0.1/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	port := func(mode string, addrs ...string) string {
		return fmt.Sprintf(`  - name: r
    mode: %s
    mac: 02:00:00:00:03:01
    tap:
      netns: %s
      ifname: eth0
      addresses: [%s]
      routes:
        - {to: 10.99.0.0/16, via: %s, metric: 7}
        - {to: "fd99::/64", via: "fd77::1"}
  - name: l
    mode: bridge
    mac: 02:00:00:00:03:02
    tap: {netns: %s, ifname: eth0, addresses: [10.77.0.40/24], lo_up: false}
`, mode, filepath.Base(sbR), strings.Join(addrs, ", "), netlab.SandboxIP4(0), filepath.Base(sbL))
	}
	reload := func(text, want string) {
		t.Helper()
		if err := os.WriteFile(m.ConfigPath, []byte(m.ConfigText+text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, errs, code := m.cli("reload"); code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("reload: exit %d\n%s%s\nwant %q", code, out, errs, want)
		}
	}
	routes := func() string {
		out, _ := lab.Exec(sbR, "sh", "-c", "ip route show 10.99.0.0/16; ip -6 route show fd99::/64")
		return out
	}
	checkRoutes := func(when string) {
		t.Helper()
		r := routes()
		if !regexp.MustCompile(`10\.99\.0\.0/16 via `+regexp.QuoteMeta(netlab.SandboxIP4(0))+` dev eth0 .*metric 7`).MatchString(r) ||
			!regexp.MustCompile(`fd99::/64 via fd77::1 dev eth0`).MatchString(r) {
			t.Errorf("%s: routes in the sandbox:\n%s", when, r)
		}
		if !m.reaches(sbR, "10.99.0.1") {
			t.Errorf("%s: no traffic through the route", when)
		}
	}

	reload(port("bridge", "10.77.0.30/24", "fd77::30/64"), `^added: +r l\n$`)
	checkRoutes("added")
	if f := linkFlags(lab, sbR, "lo"); !strings.Contains(f, "UP") {
		t.Errorf("lo in r's namespace: %q, want up (lo_up defaults to true)", f)
	}
	if f := linkFlags(lab, sbL, "lo"); strings.Contains(f, ",UP") || strings.HasPrefix(f, "UP") {
		t.Errorf("lo in l's namespace: %q, want it left down (lo_up: false)", f)
	}

	idx0, _, _, _ := linkInfo(t, lab, sbR, "eth0")
	reload(port("bridge", "10.77.0.30/24", "fd77::30/64", "10.77.0.31/24"), `^rebuilt: +r\n$`)
	idx1, _, _, _ := linkInfo(t, lab, sbR, "eth0")
	if idx1 == idx0 {
		t.Errorf("a new address did not rebuild the tap (ifindex %d)", idx1)
	}
	if a, _ := lab.Exec(sbR, "ip", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(a, "10.77.0.31/24") {
		t.Errorf("the rebuilt tap lacks the new address:\n%s", a)
	}
	checkRoutes("rebuilt")

	reload(port("vepa", "10.77.0.30/24", "fd77::30/64", "10.77.0.31/24"), `^changed: +r\n$`)
	if idx2, _, _, _ := linkInfo(t, lab, sbR, "eth0"); idx2 != idx1 {
		t.Errorf("a mode change re-created the tap (ifindex %d -> %d)", idx1, idx2)
	}
	r := routes()
	if !strings.Contains(r, "metric 7") || !strings.Contains(r, "fd99::/64") {
		t.Errorf("after an in-place change: routes\n%s", r)
	}

	// busy_poll is the endpoint's, changed in place too, and it stays
	// across a SIGKILL and restart.
	polled := strings.Replace(port("vepa", "10.77.0.30/24", "fd77::30/64", "10.77.0.31/24"), "    mode: vepa\n", "    mode: vepa\n    busy_poll: 50us\n", 1)
	reload(polled, `^changed: +r\n$`)
	runningBusyPoll := func(when string) {
		t.Helper()
		if status, body := m.api("GET", "/v1/config", ""); status != 200 || !strings.Contains(body, "busy_poll: 50µs") {
			t.Errorf("%s: running config (%d) without busy_poll: 50µs:\n%s", when, status, body)
		}
		if idx, _, _, _ := linkInfo(t, lab, sbR, "eth0"); idx != idx1 {
			t.Errorf("%s: tap re-created (ifindex %d -> %d)", when, idx1, idx)
		}
	}
	runningBusyPoll("busy_poll reloaded")
	m.KillDaemon()
	if err := m.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	runningBusyPoll("after SIGKILL and restart")
	// VEPA without a hairpin LAN: r reaches no sibling, so only the routes
	// themselves can be checked.
	if r := routes(); !strings.Contains(r, "metric 7") || !strings.Contains(r, "fd99::/64") {
		t.Errorf("after SIGKILL and restart: routes\n%s", r)
	}
}

// TestNetnsMetricsAtStart: at the first scrape, before any frame is
// counted, every series exists (at zero until something counts): the
// switch's, the lower's, and each port's, its queues' and its
// endpoint's, every drop and refusal reason; beside them
// macvsw_build_info and the Go and process collectors. A port added
// later has all of its series from its start too.
func TestNetnsMetricsAtStart(t *testing.T) {
	requireNetns(t, "curl")
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge", Queues: 2}, {Mode: "bridge", Kind: "afpacket"}})
	if status, body := m.api("POST", "/v1/ports", fmt.Sprintf(`{"name": "s", "mode": "bridge", "mac": "02:00:00:00:04:01", "socket": {"type": "stream", "listen": %q}}`, filepath.Dir(m.Socket)+"/s.sock")); status != 200 {
		t.Fatalf("add a socket port: %d %s", status, body)
	}
	out, err := m.Lab.Exec(m.Topo.SW, "curl", "-sf", "http://127.0.0.1:9464/metrics")
	if err != nil {
		t.Fatal(err)
	}
	samples := map[string]float64{}
	names := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		samples[line[:i]] = v
		name, _, _ := strings.Cut(line[:i], "{")
		names[name] = true
	}
	for _, m := range counters.Metrics {
		if !names["macvsw_"+m.Name] {
			t.Errorf("no macvsw_%s series at start", m.Name)
		}
	}
	if !regexp.MustCompile(`(?m)^macvsw_build_info\{commit="[^"]+",go="go[^"]+",version="[^"]+"\} 1$`).MatchString(out) {
		t.Error("no macvsw_build_info{commit,go,version} 1")
	}
	for _, n := range []string{"go_goroutines", "go_gc_duration_seconds_count", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} {
		if !names[n] {
			t.Errorf("no %s (Go and process collectors)", n)
		}
	}
	// Every reason of every endpoint queue of every port, each direction.
	ports := map[string]int{"p0": 1, "p1": 2, "p2": 1, "s": 1}
	for port, queues := range ports {
		for q := range queues {
			for _, dir := range []string{"rx", "tx"} {
				for r := range endpoints.NumDropReasons {
					key := fmt.Sprintf(`macvsw_endpoint_drops_total{direction=%q,port=%q,queue="%d",reason=%q}`, dir, port, q, endpoints.DropReason(r))
					if _, ok := samples[key]; !ok {
						t.Errorf("no %s", key)
					}
				}
			}
			for r := range endpoints.NumVnetReasons {
				key := fmt.Sprintf(`macvsw_endpoint_vnet_errors_total{port=%q,queue="%d",reason=%q}`, port, q, endpoints.VnetReason(r))
				if _, ok := samples[key]; !ok {
					t.Errorf("no %s", key)
				}
			}
			for _, key := range []string{
				fmt.Sprintf(`macvsw_endpoint_packets_total{direction="rx",port=%q,queue="%d"}`, port, q),
				fmt.Sprintf(`macvsw_queue_dropped_total{port=%q,queue="%d"}`, port, q),
			} {
				if _, ok := samples[key]; !ok {
					t.Errorf("no %s", key)
				}
			}
		}
		key := fmt.Sprintf(`macvsw_port_drops_total{direction="rx",port=%q,reason="queue_full"}`, port)
		if v, ok := samples[key]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", key, v, ok)
		}
	}
	for _, r := range []string{"busy", "bad_length", "short_read", "peer_gone"} {
		key := fmt.Sprintf(`macvsw_endpoint_refused_total{port="s",reason=%q}`, r)
		if v, ok := samples[key]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0 from the start", key, v, ok)
		}
	}
}
