// Package testenv says what a test needs from the machine it runs on —
// root, network namespaces, a command-line tool — and what happens when it
// is missing: the test skips with a message naming what to install, or,
// when MACVSW_TEST_REQUIRE=1 (tests/run.sh sets it when it runs as root,
// as CI does), fails with that message, so a CI run never passes by
// skipping what it was meant to run.
//
// It is imported by tests only (and by the test helpers in tests/vmlab and
// tests/runsclab); like Go's own internal/testenv, it imports nothing but
// the standard library.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"testing"
)

// RequireEnv is the environment variable that turns skips for a missing
// requirement into failures.
const RequireEnv = "MACVSW_TEST_REQUIRE"

// Required reports whether missing requirements fail tests instead of
// skipping them.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Skip skips tb with the message, or fails it when Required. Use it for
// "this machine lacks X", never for a test that chooses not to run (short
// mode, a race-detector caveat): those stay tb.Skip.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		tb.Fatalf("%s=1, and this test cannot run: %s", RequireEnv, msg)
	}
	tb.Skip(msg)
}

// NeedRoot skips (or fails) tb unless it runs as root; why says what the
// test does that needs it.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skip(tb, "needs root: %s", why)
	}
}

// Packages maps every command the tests run to the Debian package that
// provides it. tests/run.sh installs exactly these packages (a test in
// tests/ checks that the two agree).
var Packages = map[string]string{
	"ip":                 "iproute2",
	"bridge":             "iproute2",
	"ss":                 "iproute2",
	"ping":               "iputils-ping",
	"iperf3":             "iperf3",
	"ethtool":            "ethtool",
	"python3":            "python3",
	"curl":               "curl",
	"nsenter":            "util-linux",
	"setpriv":            "util-linux",
	"unshare":            "util-linux",
	"nc":                 "netcat-openbsd",
	"sysctl":             "procps",
	"pgrep":              "procps",
	"qemu-system-x86_64": "qemu-system-x86",
	"git":                "git",
}

// Missing returns the commands of tools that are not in PATH, each with
// its package: "iperf3 (apt-get install iperf3)".
func Missing(tools ...string) []string {
	var out []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			out = append(out, fmt.Sprintf("%s (apt-get install %s)", t, pkgOf(t)))
		}
	}
	return out
}

func pkgOf(tool string) string {
	if p, ok := Packages[tool]; ok {
		return p
	}
	return "the package that provides " + tool
}

// NeedTools skips (or fails) tb unless every tool is in PATH, naming the
// package of each missing one.
func NeedTools(tb testing.TB, tools ...string) {
	tb.Helper()
	if m := Missing(tools...); len(m) > 0 {
		Skip(tb, "needs %v", m)
	}
}

// PackageList returns the packages of Packages, sorted and without
// repeats.
func PackageList() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range Packages {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// StartWithParent starts cmd so that the kernel kills it (SIGKILL) when
// the test process dies, even by SIGKILL or a timeout's panic.
//
// Pdeathsig alone is not enough in Go: the kernel sends it when the
// *thread* that forked the child exits, and the Go runtime ends any thread
// whose goroutine exits while locked to it (every test helper that enters a
// namespace with runtime.LockOSThread and never comes back does that). A
// child forked from such a thread would be killed mid-test. So every start
// goes through one goroutine that locks its thread and never returns.
func StartWithParent(cmd *exec.Cmd) error {
	launcherOnce.Do(func() { go launcher() })
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	launches <- launch{cmd, errc}
	return <-errc
}

// RunWithParent is StartWithParent followed by Wait.
func RunWithParent(cmd *exec.Cmd) error {
	if err := StartWithParent(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

type launch struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	launcherOnce sync.Once
	launches     = make(chan launch)
)

func launcher() {
	runtime.LockOSThread() // never unlocked, never exits
	for l := range launches {
		l.errc <- l.cmd.Start()
	}
}
