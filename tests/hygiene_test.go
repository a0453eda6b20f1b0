package tests

import (
	"github.com/macvsw/macvsw/tests/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestGofmt fails when a Go file in the repository is not gofmt-clean
// (wireguard-go's format_test idea).
func TestGofmt(t *testing.T) {
	out, err := exec.Command("gofmt", "-l", "..").CombinedOutput()
	if err != nil {
		testenv.Skip(t, "gofmt (from the Go distribution) unavailable: %v: %s", err, out)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		t.Errorf("gofmt would change:\n%s", files)
	}
}

// TestBehaviourRefs: every "BEHAVIOUR.md §N" in code, tests and docs names
// a section of switch/BEHAVIOUR.md ("§2.2.3" a numbered step of §2.2), so
// the behaviour reference cited everywhere lives in this repository.
func TestBehaviourRefs(t *testing.T) {
	doc, err := os.ReadFile("../switch/BEHAVIOUR.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	steps := map[string]bool{}
	cur := ""
	for _, line := range strings.Split(string(doc), "\n") {
		if m := heading.FindStringSubmatch(line); m != nil {
			cur = strings.TrimSuffix(m[1], ".")
			sections[cur] = true
			continue
		}
		if m := step.FindStringSubmatch(line); m != nil && cur != "" {
			steps[cur+"."+m[1]] = true
		}
	}
	out, err := exec.Command("git", "-C", "..", "ls-files", "*.go", "*.md").Output()
	if err != nil {
		testenv.Skip(t, "git ls-files (apt-get install git): %v", err)
	}
	refs := 0
	for _, f := range strings.Fields(string(out)) {
		b, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(b), -1) {
			refs++
			n := strings.TrimSuffix(m[1], ".")
			if !sections[n] && !steps[n] {
				t.Errorf("%s: BEHAVIOUR.md §%s: no such section or step", f, n)
			}
		}
	}
	if refs < 20 {
		t.Errorf("found only %d references; is the pattern right?", refs)
	}
}

var (
	heading = regexp.MustCompile(`^#{2,3} ([0-9]+(?:\.[0-9]+)?\.?) `)
	step    = regexp.MustCompile(`^([0-9]+)\. `)
	ref     = regexp.MustCompile(`BEHAVIOUR\.md §([0-9]+(?:\.[0-9]+)*)`)
)

// TestReadmeEmbedding: README's embedding snippet is the body of
// bridge.Example, so it compiles and runs by construction.
func TestReadmeEmbedding(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile("../bridge/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(readme)
	i := strings.Index(sec, "## Embedding it")
	if i < 0 {
		t.Fatal("README has no embedding section")
	}
	sec = sec[i:]
	start := strings.Index(sec, "```go\n")
	end := strings.Index(sec[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatal("no Go block in the embedding section")
	}
	snippet := sec[start+6 : start+6+end]
	m := regexp.MustCompile(`(?ms)^func Example\(\) \{\n(.*?)^\}\n`).FindStringSubmatch(string(ex))
	if m == nil {
		t.Fatal("bridge/example_test.go has no Example function")
	}
	var body strings.Builder
	for _, l := range strings.SplitAfter(m[1], "\n") {
		body.WriteString(strings.TrimPrefix(l, "\t"))
	}
	if snippet != body.String() {
		t.Errorf("README's embedding snippet differs from bridge.Example's body:\n%s\n---\n%s", snippet, body.String())
	}
}

// runScriptPackages reads the package:command pairs of tests/run.sh.
func runScriptPackages(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\npackages=\((.*?)\n\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("tests/run.sh has no packages=(...) list")
	}
	pkgs := map[string]string{}
	for _, f := range strings.Fields(string(m[1])) {
		pkg, cmd, ok := strings.Cut(f, ":")
		if !ok {
			t.Fatalf("tests/run.sh: %q is not PACKAGE:COMMAND", f)
		}
		pkgs[pkg] = cmd
	}
	return pkgs
}

// TestRunScriptPackages: the test command installs exactly the packages
// the tests name when a tool is missing (tests/testenv.Packages), and
// each package's probe command is one that package provides.
func TestRunScriptPackages(t *testing.T) {
	script := runScriptPackages(t)
	var got []string
	for p, cmd := range script {
		got = append(got, p)
		if testenv.Packages[cmd] != p {
			t.Errorf("tests/run.sh probes package %s with %q, which tests/testenv says comes from %q", p, cmd, testenv.Packages[cmd])
		}
	}
	slices.Sort(got)
	if want := testenv.PackageList(); !slices.Equal(got, want) {
		t.Errorf("tests/run.sh installs %v; the tests name %v", got, want)
	}
}

// TestRunScriptMissing runs `tests/run.sh --missing` with a PATH holding
// only bash, where every package is missing, and with one where a fake of
// each probe command is installed, where none is: the script decides what
// to install by itself, on a machine that has nothing yet.
func TestRunScriptMissing(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		testenv.Skip(t, "bash: %v", err)
	}
	script := runScriptPackages(t)
	empty := t.TempDir()
	run := func(path string) []string {
		t.Helper()
		cmd := exec.Command(bash, "run.sh", "--missing")
		cmd.Env = []string{"PATH=" + path}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run.sh --missing: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	got := run(empty)
	slices.Sort(got)
	want := testenv.PackageList()
	if !slices.Equal(got, want) {
		t.Errorf("with nothing installed, run.sh --missing = %v, want %v", got, want)
	}
	full := t.TempDir()
	for _, cmd := range script {
		if err := os.WriteFile(filepath.Join(full, cmd), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got := run(full); len(got) != 0 {
		t.Errorf("with every probe command installed, run.sh --missing = %v, want nothing", got)
	}
}

// TestTestCommand: README's test command is tests/run.sh, and CI runs
// that same script.
func TestTestCommand(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile("(?m)^tests/run\\.sh +# the tests").Match(readme) {
		t.Error("README's test command is not tests/run.sh")
	}
	ci, err := os.ReadFile("../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^exec tests/run\.sh$`).Match(ci) {
		t.Errorf(".ci/run does not run tests/run.sh:\n%s", ci)
	}
}
