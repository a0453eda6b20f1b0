package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGofmt fails when a Go file in the repository is not gofmt-clean
// (wireguard-go's format_test idea).
func TestGofmt(t *testing.T) {
	out, err := exec.Command("gofmt", "-l", "..").CombinedOutput()
	if err != nil {
		t.Skipf("gofmt unavailable: %v: %s", err, out)
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
		t.Skipf("git ls-files: %v", err)
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
