package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/tests/netlab"
)

// cliStep is one command of a table test over the real binary against a
// live daemon: its arguments, the exit status it must end with, and what
// its stdout (and stderr) must show.
type cliStep struct {
	name string
	args []string
	code int
	out  []string // regexps stdout must match
	err  []string // regexps stderr must match
	// check, if set, looks at the result further (a JSON answer, the
	// sandbox's interface).
	check func(t *testing.T, stdout string)
}

func (l *lab) runSteps(t *testing.T, steps []cliStep) {
	t.Helper()
	for _, s := range steps {
		out, errs, code := l.cli(s.args...)
		ok := code == s.code
		for _, re := range s.out {
			ok = ok && regexp.MustCompile(re).MatchString(out)
		}
		for _, re := range s.err {
			ok = ok && regexp.MustCompile(re).MatchString(errs)
		}
		if !ok {
			t.Errorf("%s: macvsw %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant stdout %q, stderr %q",
				s.name, strings.Join(s.args, " "), code, s.code, out, errs, s.out, s.err)
			continue
		}
		if s.check != nil {
			s.check(t, out)
		}
	}
}

// jsonInto decodes a command's JSON output, failing t if it is not JSON.
func jsonInto(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("not JSON (%v):\n%s", err, out)
	}
}

// linkFlags returns the flags of ifname in ns (`ip -o link show`), "" if
// it is not there.
func linkFlags(l *netlab.Lab, ns, ifname string) string {
	out, err := l.Exec(ns, "ip", "-o", "link", "show", ifname)
	if err != nil {
		return ""
	}
	if m := regexp.MustCompile(`<([^>]*)>`).FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// TestNetnsCLIPorts drives port add, list, show, set, del and their
// flags through the binary against a running daemon: every port kind
// from flags, a netns by name, --route, --adopt, --no-lo-up, an AF_PACKET
// port that takes its veth peer's MAC and says so, --may-exist and
// --if-exists, --json on each, the list's NETNS and CARRIER columns and
// show's groups, netns and owner.
//
//	sandboxes 0, 1 (tap ports p0, p1, from the file)
//	sb2  (by name: p2, with a route)   guest ── veth ── vm0 in vmns (AF_PACKET port vm)
//	lodown, lokeep (lo down; t4 brings it up, t5 --no-lo-up leaves it)
//	hand (a tap made by hand, adopted by t6)   s1, s2, s3: socket ports
func TestNetnsCLIPorts(t *testing.T) {
	requireNetns(t)
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}})
	lab := m.Lab
	dir := filepath.Dir(m.Socket)
	sb2, err := lab.AddNS("sb2")
	if err != nil {
		t.Fatal(err)
	}
	sb2Name := strings.TrimPrefix(netlab.Path(sb2), config.NetnsDir+"/")
	vmns, _ := lab.AddNS("vmns")
	guest, _ := lab.AddNS("guest")
	const guestMAC = "02:00:00:00:01:0e"
	if err := lab.Veth(vmns, "vm0", guest, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.IPs(guest, "link set eth0 address "+guestMAC, "addr add 10.77.0.14/24 dev eth0"); err != nil {
		t.Fatal(err)
	}
	lodown, _ := lab.AddNS("lodown")
	lokeep, _ := lab.AddNS("lokeep")
	hand, _ := lab.AddNS("hand")
	for _, ns := range []string{lodown, lokeep} {
		if err := lab.IP(ns, "link", "set", "lo", "down"); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.IPs(hand, "tuntap add dev eth0 mode tap multi_queue vnet_hdr"); err != nil {
		t.Fatal(err)
	}

	p2 := []string{"port", "add", "p2", "--mode", "bridge", "--mac", netlab.SandboxMAC(2), "--tap-netns", sb2Name, "--ifname", "eth0",
		"--address", netlab.SandboxIP4(2) + "/24", "--route", "10.99.0.0/16,via=" + netlab.SandboxIP4(0) + ",metric=7"}
	m.runSteps(t, []cliStep{
		{name: "tap port, netns by name, a route", args: append(p2, "--json"), check: func(t *testing.T, out string) {
			var v struct{ Name, Kind, Netns, Interface string }
			jsonInto(t, out, &v)
			if v.Name != "p2" || v.Kind != "tap" || v.Netns != netlab.Path(sb2) || v.Interface != "eth0" {
				t.Errorf("port add --json: %+v", v)
			}
			if err := m.Topo.WaitLink(sb2, "eth0", 20*time.Second); err != nil {
				t.Fatal(err)
			}
			r, _ := lab.Exec(sb2, "ip", "route", "show", "10.99.0.0/16")
			if !strings.Contains(r, "via "+netlab.SandboxIP4(0)) || !strings.Contains(r, "metric 7") {
				t.Errorf("--route: the sandbox's route is %q", r)
			}
		}},
		{name: "again, --may-exist", args: append(p2, "--may-exist"), out: []string{`^port p2 exists \(tap eth0 in ` + sb2Name + `, mode bridge, MAC ` + netlab.SandboxMAC(2) + `\)\n$`}},
		{name: "again, without --may-exist", args: p2, code: 5, err: []string{`port "p2": .*exists`}},
		{name: "--may-exist, made differently", args: []string{"port", "add", "p2", "--tap-netns", lodown, "--may-exist"}, code: 5,
			err: []string{`port p2 exists, made differently: netns ` + netlab.Path(sb2) + `, not ` + netlab.Path(lodown) + `; interface eth0, not p2`}},
		{name: "AF_PACKET without --mac takes its veth peer's", args: []string{"port", "add", "vm", "--mode", "bridge", "--afpacket", "vm0", "--afpacket-netns", vmns},
			out: []string{`port vm added \(afpacket vm0 in ` + vmns + `, mode bridge, MAC ` + guestMAC + `\)`,
				`no --mac given: the port took the MAC of vm0's veth peer eth0 in ` + netlab.Path(guest)}},
		{name: "socket, listen", args: []string{"port", "add", "s1", "--mode", "bridge", "--mac", "02:00:00:00:02:01", "--socket-listen", dir + "/s1.sock"},
			out: []string{`port s1 added \(socket ` + dir + `/s1.sock, mode bridge`}},
		{name: "socket, connect", args: []string{"port", "add", "s2", "--mac", "02:00:00:00:02:02", "--socket-connect", dir + "/qemu.sock", "--json"},
			check: func(t *testing.T, out string) {
				var v struct{ Kind, Interface string }
				jsonInto(t, out, &v)
				if v.Kind != "socket" || v.Interface != dir+"/qemu.sock" {
					t.Errorf("socket-connect port: %+v", v)
				}
			}},
		{name: "socket, dgram", args: []string{"port", "add", "s3", "--mac", "02:00:00:00:02:03", "--socket-listen", dir + "/s3.sock",
			"--socket-type", "dgram", "--socket-peer", dir + "/s3-guest.sock"}, out: []string{`port s3 added \(socket`}},
		{name: "lo brought up", args: []string{"port", "add", "t4", "--mac", "02:00:00:00:02:04", "--tap-netns", lodown, "--ifname", "eth0"},
			check: func(t *testing.T, _ string) {
				if f := linkFlags(lab, lodown, "lo"); !strings.Contains(f, "UP") {
					t.Errorf("lo in the tap's fresh namespace: %q, want UP", f)
				}
			}},
		{name: "--no-lo-up", args: []string{"port", "add", "t5", "--mac", "02:00:00:00:02:05", "--tap-netns", lokeep, "--ifname", "eth0", "--no-lo-up"},
			check: func(t *testing.T, _ string) {
				if f := linkFlags(lab, lokeep, "lo"); strings.Contains(f, ",UP") || strings.HasPrefix(f, "UP") {
					t.Errorf("--no-lo-up: lo is %q", f)
				}
			}},
		{name: "a hand-made tap refused", args: []string{"port", "add", "t6", "--mac", "02:00:00:00:02:06", "--tap-netns", hand, "--ifname", "eth0"},
			code: 5, err: []string{`set tap.adopt`}},
		{name: "--adopt", args: []string{"port", "add", "t6", "--mac", "02:00:00:00:02:06", "--tap-netns", hand, "--ifname", "eth0", "--adopt"},
			out: []string{`port t6 added \(tap eth0 in ` + hand}},
	})

	// The AF_PACKET port passes traffic: its MAC is the guest's.
	if !m.reaches(guest, netlab.SandboxIP4(0)) {
		t.Error("the guest behind the AF_PACKET port without --mac cannot reach sandbox 0")
	}
	// sb2 reaches 10.99.0.1 only through its route (via sandbox 0).
	if err := lab.IP(m.Sandboxes[0], "addr", "add", "10.99.0.1/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if !m.reaches(sb2, "10.99.0.1") {
		t.Error("sb2 does not reach 10.99.0.1 through its --route")
	}

	// An owned port, as a runtime adds it.
	if status, body := m.api("POST", "/v1/ports", fmt.Sprintf(`{"name": "own", "mode": "bridge", "mac": "02:00:00:00:02:07", "owner": {"container_id": "c0ffee", "ifname": "eth1"}, "socket": {"type": "stream", "listen": %q}}`, dir+"/own.sock")); status != 200 {
		t.Fatalf("owned port: %d %s", status, body)
	}
	// A runtime that retries: the same owned ADD eight times at once gets
	// one port and eight answers naming it.
	var wg sync.WaitGroup
	answers := make([]string, 8)
	start := make(chan struct{})
	entry := map[string]any{"name": "own2", "mode": "bridge", "mac": "02:00:00:00:02:08",
		"owner": map[string]string{"container_id": "c0ffee", "ifname": "eth2"}, "socket": map[string]string{"type": "stream", "listen": dir + "/own2.sock"}}
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p, err := newAPIClient(m).AddPort(context.Background(), entry)
			answers[i] = fmt.Sprintf("%q %v", p.Name, err)
		}()
	}
	close(start)
	wg.Wait()
	for _, a := range answers {
		if a != `"own2" <nil>` {
			t.Errorf("concurrent owned ADDs: %s", a)
		}
	}
	if status, body := m.api("DELETE", "/v1/ports/own2", ""); status != 200 {
		t.Fatalf("delete own2: %d %s", status, body)
	}

	m.runSteps(t, []cliStep{
		{name: "list: NETNS and CARRIER columns", args: []string{"port", "list"}, out: []string{
			`(?m)^NAME +KIND +NETNS +INTERFACE +MODE +MAC +MTU +STATE +CARRIER +QUEUES$`,
			`(?m)^p0 +tap +` + regexp.QuoteMeta(netlab.Path(m.Sandboxes[0])[len(config.NetnsDir)+1:]) + ` +eth0 +bridge +` + netlab.SandboxMAC(0) + ` +1500 +up +yes +1$`,
			`(?m)^p2 +tap +` + sb2Name + ` +eth0 `,
			`(?m)^vm +afpacket +` + vmns + ` +vm0 +bridge +` + guestMAC + ` .* up +yes `,
			`(?m)^s2 +socket +- +` + regexp.QuoteMeta(dir) + `/qemu.sock .* up +no `,
		}},
		{name: "list --json", args: []string{"port", "list", "--json"}, check: func(t *testing.T, out string) {
			var ps []struct{ Name, Netns string }
			jsonInto(t, out, &ps)
			if len(ps) != 11 {
				t.Errorf("port list --json: %d ports, want 11", len(ps))
			}
		}},
		{name: "set: groups", args: []string{"port", "set", "p1", "--allmulticast=false", "--join", "01:00:5e:00:00:fb", "--json"},
			check: func(t *testing.T, out string) {
				var v struct {
					AllMulticast bool     `json:"allmulticast"`
					Multicast    []string `json:"multicast"`
				}
				jsonInto(t, out, &v)
				if v.AllMulticast || len(v.Multicast) != 1 || v.Multicast[0] != "01:00:5e:00:00:fb" {
					t.Errorf("port set --json: %+v", v)
				}
			}},
		{name: "show: groups, netns, owner", args: []string{"port", "show", "p1"}, out: []string{
			`(?m)^port p1$`, `(?m)^  netns +` + regexp.QuoteMeta(netlab.Path(m.Sandboxes[1])[len(config.NetnsDir)+1:]) + `$`,
			`(?m)^  groups +01:00:5e:00:00:fb$`, `(?m)^  allmulticast +no$`, `(?m)^  owner +-$`, `(?m)^  state +up, link up, carrier yes$`}},
		{name: "show: owner", args: []string{"port", "show", "own"}, out: []string{`(?m)^  owner +container c0ffee, interface eth1$`, `(?m)^  origin +api$`}},
		{name: "show: where the MAC came from", args: []string{"port", "show", "vm"}, out: []string{`(?m)^  mac +` + guestMAC + ` \(the MAC of vm0's veth peer eth0 in `}},
		{name: "del --if-exists, none", args: []string{"port", "del", "nosuch", "--if-exists"}, out: []string{`^$`}},
		{name: "del --if-exists --json, none", args: []string{"port", "del", "nosuch", "--if-exists", "--json"}, out: []string{`"deleted": null`}},
		{name: "del, none", args: []string{"port", "del", "nosuch"}, code: 4, err: []string{`nosuch`}},
		{name: "del --json", args: []string{"port", "del", "s3", "--json"}, out: []string{`"deleted": "s3"`}},
		{name: "del, adopted: the tap stays", args: []string{"port", "del", "t6", "--if-exists"}, check: func(t *testing.T, _ string) {
			if linkFlags(lab, hand, "eth0") == "" {
				t.Error("deleting the adopting port removed the hand-made tap")
			}
		}},
		{name: "a refused change from the daemon", args: []string{"port", "set", "p1", "--mac", netlab.SandboxMAC(0)}, code: 5, err: []string{`(?i)in use`}},
	})
}

// TestNetnsRunningConfig: whatever was done to a running daemon, through
// the file, the API and the CLI, its running config (GET /v1/config)
// passes `macvsw config check` and loads back to the same config.
func TestNetnsRunningConfig(t *testing.T) {
	requireNetns(t)
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "source", Sources: []string{netlab.HostMAC}}, {Mode: "vepa", Kind: "afpacket"}})
	lab := m.Lab
	dir := filepath.Dir(m.Socket)
	sbR, _ := lab.AddNS("sbr")
	vmns, _ := lab.AddNS("vmns")
	guest, _ := lab.AddNS("guest")
	if err := lab.Veth(vmns, "vm0", guest, "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		// Groups with allmulticast on, and off.
		{"port", "set", "p0", "--join", "01:00:5e:00:00:fb"},
		{"port", "set", "p0", "--join", "33:33:00:00:00:01"},
		{"port", "set", "p1", "--allmulticast=false", "--join", "01:00:5e:00:00:01"},
		// A source port's list, then the port leaves source mode.
		{"port", "macaddr", "p1", "add", "02:00:00:00:00:aa"},
		{"port", "set", "p1", "--mode", "bridge"},
		{"port", "set", "p2", "--mtu", "1400", "--down"},
		// API ports of every kind, with routes, without a MAC.
		{"port", "add", "r", "--tap-netns", sbR, "--address", "10.77.0.30/24", "--address", "fd77::30/64",
			"--route", "0.0.0.0/0,via=10.77.0.1", "--route", "fd78::/64,via=fd77::1,metric=3", "--no-offloads"},
		{"port", "add", "vm", "--afpacket", "vm0", "--afpacket-netns", vmns, "--queues", "2"},
		{"port", "add", "s", "--socket-listen", dir + "/s.sock", "--mode", "private", "--queue-len", "64"},
		{"port", "add", "d", "--socket-listen", dir + "/d.sock", "--socket-type", "dgram", "--socket-peer", dir + "/d-guest.sock"},
	} {
		if out, errs, code := m.cli(args...); code != 0 {
			t.Fatalf("macvsw %s: exit %d %s%s", strings.Join(args, " "), code, out, errs)
		}
	}
	status, running := m.api("GET", "/v1/config", "")
	if status != 200 {
		t.Fatalf("GET /v1/config: %d %s", status, running)
	}
	file := filepath.Join(t.TempDir(), "running.yaml")
	if err := os.WriteFile(file, []byte(running), 0o600); err != nil {
		t.Fatal(err)
	}
	// Checked where the daemon runs, host objects included.
	out, err := exec.Command("ip", "netns", "exec", m.Topo.SW, macvswBin, "config", "check", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok (7 ports)") {
		t.Fatalf("config check of the running config: %v %s\n%s", err, out, running)
	}
	c, err := config.Parse("running", []byte(running))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Marshal()
	if err != nil || string(again) != running {
		t.Errorf("the running config does not load back to itself: %v\n%s\n---\n%s", err, running, again)
	}
	for _, want := range []string{"01:00:5e:00:00:fb", "33:33:00:00:00:01", "via: 10.77.0.1", "metric: 3", "netns: " + netlab.Path(vmns)} {
		if !strings.Contains(running, want) {
			t.Errorf("running config lacks %q:\n%s", want, running)
		}
	}
}
