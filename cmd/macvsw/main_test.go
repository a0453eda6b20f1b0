package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
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
	// The kernel column is documented answers, and says so; "-" has a
	// legend; the hairpin-on rows show that VEPA siblings meet through
	// the LAN, bridge siblings inside macvsw.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^MODE +HAIRPIN +PROBE +MACVSW +EXPECTED \(KERNEL MACVLAN\) +PATH$`),
		regexp.MustCompile(`(?m)^reach: .*; -: it was$`),
		regexp.MustCompile(`(?m)^vepa +on +A->B +reach +reach +via the LAN \(\d+ frames reflected\)`),
		regexp.MustCompile(`(?m)^bridge +on +A->B +reach +reach +direct, inside macvsw`),
		regexp.MustCompile(`(?m)^bridge +off +A->B +reach +reach +direct, inside macvsw`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"demo", "--inmem", "--json"}, &out, &errb); err != nil {
		t.Fatalf("demo --json: %v", err)
	}
	var res struct {
		Kernel string
		Probes []reachRow
		Differ int
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Kernel != "expected" || len(res.Probes) != 18 || res.Differ != 0 {
		t.Errorf("demo --json: %v %+v", err, res)
	}
}

// TestDemoNetns runs `macvsw demo` as root, as a newcomer would, and checks
// that it matches kernel macvlan and leaves no namespace or process behind.
func TestDemoNetns(t *testing.T) {
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	bin := macvswBinary(t)
	out, err := exec.Command(bin, "demo").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "probes match kernel macvlan") {
		t.Fatalf("macvsw demo: %v\n%s", err, out)
	}
	// The demo's own namespaces, by the prefixes it printed: other demos
	// may run on this machine meanwhile.
	prefixes := regexp.MustCompile(`in namespaces (mvsdemo[0-9a-f]+)-\*`).FindAllStringSubmatch(string(out), -1)
	if len(prefixes) != 6 {
		t.Fatalf("the demo named %d labs, want 6 (3 modes, kernel and macvsw):\n%s", len(prefixes), out)
	}
	ns, _ := exec.Command("ip", "netns", "list").Output()
	for _, p := range prefixes {
		if strings.Contains(string(ns), p[1]+"-") {
			t.Errorf("demo left namespaces %s-* behind:\n%s", p[1], ns)
		}
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
