package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/macvsw/macvsw/config"
)

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// macvswBinary builds this command once per test run: the exit statuses
// and what reaches stdout and stderr are the binary's (main), not run's.
func macvswBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "macvsw-cli-test"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "macvsw")
		if out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// runBinary runs the binary with args and no daemon to talk to, and
// returns its stdout, stderr and exit status.
func runBinary(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(macvswBinary(t), args...)
	cmd.Env = append(os.Environ(), "MACVSW_SOCKET="+filepath.Join(t.TempDir(), "none.sock"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("macvsw %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// TestCLIHelp: --help for every command and subcommand prints that
// command's usage, and only it, on stdout, and exits 0.
func TestCLIHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the usage line's start
		not  string // text of another command's usage that must not show
	}{
		{[]string{"--help"}, "macvsw: a userspace macvlan switch", ""},
		{[]string{"help"}, "macvsw: a userspace macvlan switch", ""},
		{[]string{"demo", "--help"}, "Usage: macvsw demo", "port COMMAND"},
		{[]string{"run", "--help"}, "Usage: macvsw run --config FILE", "port COMMAND"},
		{[]string{"reload", "--help"}, "Usage: macvsw reload", "run --config"},
		{[]string{"down", "--help"}, "Usage: macvsw down", "run --config"},
		{[]string{"config", "--help"}, "Usage: macvsw config COMMAND", "port COMMAND"},
		{[]string{"config", "check", "--help"}, "Usage: macvsw config check FILE", "reference [--json]"},
		{[]string{"config", "reference", "--help"}, "Usage: macvsw config reference", "check FILE"},
		{[]string{"port", "--help"}, "Usage: macvsw port COMMAND", "--tap-netns"},
		{[]string{"port", "list", "--help"}, "Usage: macvsw port list", "macaddr"},
		{[]string{"port", "show", "--help"}, "Usage: macvsw port show NAME", "macaddr"},
		{[]string{"port", "add", "--help"}, "Usage: macvsw port add NAME", "macaddr"},
		{[]string{"port", "add", "p1", "-h"}, "Usage: macvsw port add NAME", "macaddr"},
		{[]string{"port", "del", "--help"}, "Usage: macvsw port del NAME", "macaddr"},
		{[]string{"port", "set", "--help"}, "Usage: macvsw port set NAME", "--tap-netns"},
		{[]string{"port", "macaddr", "--help"}, "Usage: macvsw port macaddr NAME", "--tap-netns"},
		{[]string{"stats", "--help"}, "Usage: macvsw stats", "port COMMAND"},
		{[]string{"capture", "--help"}, "Usage: macvsw capture PORT", "port COMMAND"},
		{[]string{"version", "--help"}, "Usage: macvsw version", "port COMMAND"},
		{[]string{"help", "port", "add"}, "Usage: macvsw port add NAME", "macaddr"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, code := runBinary(t, tc.args...)
			if code != 0 || errs != "" || !strings.HasPrefix(out, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and the usage %q... on stdout only", code, out, errs, tc.want)
			}
			if n := strings.Count(out, "Usage:"); n > 1 {
				t.Errorf("%d usages printed:\n%s", n, out)
			}
			if tc.not != "" && strings.Contains(out, tc.not) {
				t.Errorf("the usage shows another command's %q:\n%s", tc.not, out)
			}
		})
	}
	// run's usage says where the config reference is.
	out, _, _ := runBinary(t, "run", "--help")
	if !strings.Contains(out, "macvsw config reference") || !strings.Contains(out, config.ReferenceURL) {
		t.Errorf("run --help does not point at the config reference:\n%s", out)
	}
}

// TestCLIUsageErrors: a usage mistake exits 2 and is printed once, on
// stderr; a bad flag value is named by the flag the user typed.
func TestCLIUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the message, on stderr exactly once
	}{
		{[]string{"stats", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"bogus"}, `macvsw: unknown command "bogus"`},
		{[]string{"port"}, "macvsw port: missing command"},
		{[]string{"port", "bogus"}, `macvsw port: unknown command "bogus"`},
		{[]string{"port", "show"}, "macvsw port show: missing NAME"},
		{[]string{"port", "set", "p1"}, "macvsw port set: nothing to change"},
		{[]string{"port", "macaddr", "p1", "add"}, "macvsw port macaddr: macaddr add needs at least one MAC"},
		{[]string{"config"}, "macvsw config: missing command"},
		{[]string{"config", "check"}, "macvsw config check: missing FILE"},
		{[]string{"config", "check", "a.yaml", "b.yaml"}, `macvsw config check: unexpected argument "b.yaml"`},
		{[]string{"version", "extra"}, `macvsw version: unexpected argument "extra"`},
		{[]string{"run"}, "macvsw run: missing --config FILE"},
		{[]string{"demo", "--bogus"}, "flag provided but not defined: -bogus"},

		// Flag values, phrased in the flags.
		{[]string{"port", "add", "p1"}, "macvsw: no port kind: give --tap-netns, --afpacket or --socket-listen/--socket-connect"},
		{[]string{"port", "add", "p1", "--mac", "x", "--tap-netns", "sb"}, `macvsw: --mac: bad MAC address "x"`},
		{[]string{"port", "add", "p1", "--mac", "01:00:5e:00:00:01", "--tap-netns", "sb"}, "macvsw: --mac: bad MAC address 01:00:5e:00:00:01: a group address"},
		{[]string{"port", "add", "p1", "--mode", "hub", "--tap-netns", "sb"}, `macvsw: --mode: unknown macvlan mode "hub"`},
		{[]string{"port", "add", "p1", "--tap-netns", "a", "--socket-listen", "/x"}, "macvsw: --tap-netns and --socket-listen/--socket-connect: give one port kind, not several"},
		{[]string{"port", "add", "p1", "--afpacket", "v", "--route", "0.0.0.0/0"}, "macvsw: --route: only with --tap-netns"},
		{[]string{"port", "add", "p1", "--tap-netns", "sb", "--route", "10.0.0.0/8,via"}, `macvsw: --route "10.0.0.0/8,via": want TO[,via=GW][,metric=N]`},
		{[]string{"port", "add", "p1", "--tap-netns", "sb", "--route", "10.0.0.0/8,via=fd00::1"}, "macvsw: --route: gateway fd00::1 and destination 10.0.0.0/8 are of different IP versions"},
		{[]string{"port", "add", "p1", "--tap-netns", "sb", "--address", "10.0.0.1"}, `macvsw: --address: bad address "10.0.0.1" (want CIDR notation`},
		{[]string{"port", "add", "p1", "--tap-netns", "a/b"}, `macvsw: --tap-netns: "a/b" is neither an absolute path nor a name in /var/run/netns`},
		{[]string{"port", "add", "bad/name", "--tap-netns", "sb"}, `macvsw: NAME: bad port name "bad/name"`},
		{[]string{"port", "add", "p1", "--socket-listen", "rel.sock"}, `macvsw: --socket-listen: "rel.sock" is not an absolute path`},
		{[]string{"port", "add", "p1", "--socket-listen", "/run/x.sock", "--socket-type", "dgram"}, "macvsw: --socket-peer: required"},
		{[]string{"port", "add", "p1", "--socket-connect", "/run/x.sock", "--socket-type", "raw"}, `macvsw: --socket-type: unknown socket type "raw"`},
		{[]string{"port", "add", "p1", "--afpacket", "v", "--afpacket-netns", "a/b"}, `macvsw: --afpacket-netns: "a/b" is neither`},
		{[]string{"port", "add", "--entry", `{"name": "p", "mac": "zz", "tap": {"netns": "x"}}`}, `macvsw: --entry: mac: bad MAC address "zz"`},
		{[]string{"port", "set", "p1", "--mac", "zz"}, `macvsw: --mac: bad MAC address "zz"`},
		{[]string{"port", "set", "p1", "--mode", "hub"}, `macvsw: --mode: unknown macvlan mode "hub"`},
		{[]string{"port", "set", "p1", "--join", "02:00:00:00:00:01"}, "macvsw: --join: 02:00:00:00:00:01 is not a multicast address"},
		{[]string{"port", "set", "p1", "--up", "--down"}, "macvsw: --up and --down: give one"},
		{[]string{"port", "set", "p1", "--allmulticast", "maybe"}, `macvsw: --allmulticast: "maybe" is not true or false`},
		{[]string{"port", "macaddr", "p1", "explode"}, `macvsw: macaddr: unknown operation "explode"`},
		{[]string{"port", "macaddr", "p1", "add", "zz"}, `macvsw: macaddr add: bad MAC address "zz"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errs, code := runBinary(t, tc.args...)
			if code != 2 || out != "" || strings.Count(errs, tc.want) != 1 {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q once on stderr", code, out, errs, tc.want)
			}
			if strings.Count(errs, "macvsw: ") > 1 && !strings.Contains(errs, "Usage:") {
				t.Errorf("an error printed more than once:\n%s", errs)
			}
		})
	}
}

// TestCLINoDaemon: a client command with no daemon behind its socket
// exits 3, saying so once.
func TestCLINoDaemon(t *testing.T) {
	for _, args := range [][]string{{"port", "list"}, {"stats"}, {"reload"}, {"port", "del", "p1", "--if-exists"}} {
		out, errs, code := runBinary(t, args...)
		if code != 3 || out != "" || strings.Count(errs, "is macvsw running?") != 1 {
			t.Errorf("macvsw %v with no daemon: exit %d, stdout %q, stderr %q; want 3, once", args, code, out, errs)
		}
	}
}

// TestCLIConfigCommands: config check (text and --json, good and bad
// files) and config reference, without a daemon.
func TestCLIConfigCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("lower: {interface: lo}\nports:\n  - {name: vm1, mode: bridge, socket: {type: stream, listen: /run/vm1.sock}}\n"), 0o600)
	os.WriteFile(bad, []byte("lower: {interface: lo}\nports:\n  - name: a\n    mac: zz\n    socket: {type: stream, listen: /run/a.sock}\n"), 0o600)

	out, errs, code := runBinary(t, "config", "check", good)
	if code != 0 || out != good+": ok (1 ports)\n" {
		t.Errorf("config check good: exit %d %q %q", code, out, errs)
	}
	out, _, code = runBinary(t, "config", "check", good, "--json")
	var res checkResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK || res.Ports != 1 {
		t.Errorf("config check --json good: exit %d %s", code, out)
	}
	out, errs, code = runBinary(t, "config", "check", bad)
	if code != 1 || strings.Count(errs, bad+`:4:5: ports[0].mac: bad MAC address "zz"`) != 1 {
		t.Errorf("config check bad: exit %d %q %q", code, out, errs)
	}
	out, _, code = runBinary(t, "config", "check", "--json", bad)
	res = checkResult{}
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.OK || len(res.Errors) != 1 ||
		res.Errors[0] != (checkError{Line: 4, Column: 5, Field: "ports[0].mac", Message: `bad MAC address "zz"`}) {
		t.Errorf("config check --json bad: exit %d %s", code, out)
	}

	out, _, code = runBinary(t, "config", "reference")
	ref, err := os.ReadFile("../../config/REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || out != string(ref) {
		t.Errorf("config reference: exit %d, and not config/REFERENCE.md (%d bytes, want %d)", code, len(out), len(ref))
	}
	out, _, code = runBinary(t, "config", "reference", "--json")
	var rj struct{ URL, Markdown string }
	if code != 0 || json.Unmarshal([]byte(out), &rj) != nil || rj.URL != config.ReferenceURL || rj.Markdown != string(ref) {
		t.Errorf("config reference --json: exit %d", code)
	}
}

// TestCLIVersion: version and its --json, with the commit.
func TestCLIVersion(t *testing.T) {
	out, _, code := runBinary(t, "version")
	if code != 0 || !strings.HasPrefix(out, "macvsw ") {
		t.Errorf("version: exit %d %q", code, out)
	}
	out, _, code = runBinary(t, "version", "--json")
	var v map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] == "" || v["commit"] == "" || !strings.HasPrefix(v["go"], "go") {
		t.Errorf("version --json: exit %d %s", code, out)
	}
}
