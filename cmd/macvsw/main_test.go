package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

func TestDemoInMem(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo probes 18 paths, some until they time out")
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"demo", "--inmem"}, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "all 18 probes match kernel macvlan") {
		t.Errorf("demo output:\n%s", out.String())
	}
}

// TestDemoNetns runs `macvsw demo` as root, as a newcomer would, and checks
// that it matches kernel macvlan and leaves no namespace or process behind.
func TestDemoNetns(t *testing.T) {
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	bin := filepath.Join(t.TempDir(), "macvsw")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "demo").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "probes match kernel macvlan") {
		t.Fatalf("macvsw demo: %v\n%s", err, out)
	}
	ns, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(ns), "mvsdemo") {
		t.Errorf("demo left namespaces behind:\n%s", ns)
	}
	if ps, _ := exec.Command("pgrep", "-f", bin).Output(); len(ps) > 0 {
		t.Errorf("demo left processes behind: %s", ps)
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), nil, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("no args: %v, want usage error", err)
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("unknown command: %v, want usage error", err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "macvsw ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}
