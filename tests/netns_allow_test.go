package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
)

// TestNetnsControlAllowList: a member of control.group may do only what
// control.allow grants; each refusal is a 403 that names the rule and
// changes nothing; root may do everything; a reload changes the list
// without a restart.
func TestNetnsControlAllowList(t *testing.T) {
	requireNetns(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}})
	lab := m.Lab
	sbNS, err := lab.AddNS("asb")
	if err != nil {
		t.Fatal(err)
	}
	// The daemon runs in the lab's switch namespace, which has a name
	// under the allowed prefix: it must still be refused as the daemon's
	// own. (The host's namespace is refused the same way; TestPolicy
	// checks that without creating anything: should a check here fail, a
	// tap lands in a lab namespace, never on the host.)
	sockDir := filepath.Join(filepath.Dir(m.Socket), "vm")
	os.MkdirAll(sockDir, 0o755)

	allow := func(captures bool) string {
		return fmt.Sprintf(`{socket: %s, group: "65534", allow: {ports: ["sb-*"], netns: [/var/run/netns/%s-], addresses: [10.77.0.0/24], interfaces: ["vsb*"], socket_dirs: [%s/], captures: %v}}`,
			m.Socket, lab.Prefix, sockDir, captures)
	}
	m.stop()
	text := strings.Replace(m.ConfigText, "control: {socket: "+m.Socket+"}", "control: "+allow(false), 1)
	if err := os.WriteFile(m.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(m.Socket), 0o755)

	// as sends one request as uid/gid 65534 (nobody/nogroup).
	as := func(method, path, body string) (int, string) {
		t.Helper()
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", m.Socket, "-X", method,
			"-H", "Content-Type: application/json", "--data-binary", body, "http://macvsw"+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl as 65534: %v %s", err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		var code int
		fmt.Sscan(s[i+1:], &code)
		return code, s[:max(i, 0)]
	}
	tap := func(name, netns, addr string) string {
		return fmt.Sprintf(`{"name": %q, "mode": "bridge", "tap": {"netns": %q, "ifname": "eth9", "addresses": [%q]}}`, name, netns, addr)
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		rule                     string // in the 403's message
	}{
		{"reading is allowed", "GET", "/v1/ports", "", 200, ""},
		{"stats", "GET", "/v1/stats", "", 200, ""},
		{"a port name outside the list", "POST", "/v1/ports", tap("other", netlab.Path(sbNS), "10.77.0.60/24"), 403, "control.allow.ports"},
		{"a netns outside the list", "POST", "/v1/ports", tap("sb-x", fmt.Sprintf("/proc/%d/ns/net", m.Daemon.Process.Pid), "10.77.0.60/24"), 403, "control.allow.netns"},
		{"the daemon's own netns", "POST", "/v1/ports", tap("sb-x", netlab.Path(m.Topo.SW), "10.77.0.60/24"), 403, "daemon's own network namespace"},
		{"an address outside the list", "POST", "/v1/ports", tap("sb-x", netlab.Path(sbNS), "10.0.0.1/1"), 403, "control.allow.addresses"},
		{"a default route via an outside gateway", "POST", "/v1/ports", fmt.Sprintf(`{"name": "sb-x", "tap": {"netns": %q, "addresses": ["10.77.0.60/24"], "routes": [{"to": "0.0.0.0/0", "via": "192.168.0.1"}]}}`, netlab.Path(sbNS)), 403, "control.allow.addresses"},
		{"an interface outside the list", "POST", "/v1/ports", `{"name": "sb-x", "afpacket": {"interface": "low"}}`, 403, "control.allow.interfaces"},
		{"a socket path outside the list", "POST", "/v1/ports", `{"name": "sb-x", "socket": {"type": "stream", "listen": "/etc/evil.sock"}}`, 403, "control.allow.socket_dirs"},
		{"a port within the list", "POST", "/v1/ports", tap("sb-1", netlab.Path(sbNS), "10.77.0.60/24"), 200, ""},
		{"a socket port within the list", "POST", "/v1/ports", fmt.Sprintf(`{"name": "sb-vm", "mode": "bridge", "socket": {"type": "stream", "listen": "%s/vm.sock"}}`, sockDir), 200, ""},
		{"changing another's port", "PATCH", "/v1/ports/p0", `{"mtu": 1400}`, 403, "control.allow.ports"},
		{"deleting another's port", "DELETE", "/v1/ports/p0", "", 403, "control.allow.ports"},
		{"changing its port", "PATCH", "/v1/ports/sb-1", `{"mtu": 1400}`, 200, ""},
		{"capturing", "GET", "/v1/ports/sb-1/capture?count=1", "", 403, "control.allow.captures"},
		{"stopping the daemon", "POST", "/v1/down", "", 403, "root only"},
		{"reloading the daemon", "POST", "/v1/reload", "", 403, "root only"},
		{"deleting its port", "DELETE", "/v1/ports/sb-vm", "", 200, ""},
	}
	for _, c := range cases {
		status, body := as(c.method, c.path, c.body)
		if status != c.status || c.rule != "" && !strings.Contains(body, c.rule) {
			t.Errorf("%s: %s %s: %d %s; want %d naming %q", c.name, c.method, c.path, status, body, c.status, c.rule)
		}
	}
	out, _, _ := m.cli("port", "list")
	if strings.Contains(out, "other") || strings.Contains(out, "sb-x") || !strings.Contains(out, "p0") || !strings.Contains(out, "sb-1") {
		t.Errorf("refused requests changed the ports:\n%s", out)
	}
	// Root may do what the group may not, and gets a clear 400 for a
	// netns path that is not a namespace.
	if status, body := m.api("PATCH", "/v1/ports/p0", `{"mtu": 1400}`); status != 200 {
		t.Errorf("root PATCH p0: %d %s", status, body)
	}
	if status, body := m.api("POST", "/v1/ports", tap("rootport", "/etc/passwd", "10.77.0.61/24")); status != 400 {
		t.Errorf("tap.netns /etc/passwd: %d %s, want 400", status, body)
	}
	// A reload that allows captures applies without a restart.
	text = strings.Replace(text, allow(false), allow(true), 1)
	if err := os.WriteFile(m.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := m.Daemon.Process.Pid
	syscall.Kill(pid, syscall.SIGHUP)
	if !waitFor(5*time.Second, func() bool {
		status, _ := as("GET", "/v1/ports/sb-1/capture?count=0&seconds=1", "")
		return status == 200
	}) {
		status, body := as("GET", "/v1/ports/sb-1/capture?count=1", "")
		t.Errorf("after a reload allowing captures: %d %s\n%s", status, body, m.Log.String())
	}
	if m.Daemon.Process.Pid != pid {
		t.Errorf("the daemon restarted")
	}
}
