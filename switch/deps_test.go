package vswitch

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/macvsw/macvsw/tests/testenv"
)

// TestImports enforces the architecture: the core touches no OS facility and
// none of our other packages (STYLE.md §1, Tailscale's deptest idea).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", ".").Output()
	if err != nil {
		testenv.Skip(t, "go list unavailable: %v", err)
	}
	var pkg struct{ Imports []string }
	if err := json.Unmarshal(out, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		switch {
		case imp == "os", imp == "syscall", imp == "net", imp == "os/exec", imp == "unsafe",
			strings.HasPrefix(imp, "golang.org/x/sys"),
			strings.HasPrefix(imp, "github.com/macvsw/macvsw/") && imp != "github.com/macvsw/macvsw/switch/counters",
			strings.HasPrefix(imp, "gvisor.dev/gvisor/pkg/tcpip/link/"),
			strings.HasPrefix(imp, "gvisor.dev/gvisor/pkg/rawfile"):
			t.Errorf("package vswitch imports %s; the core must stay OS-free", imp)
		}
	}
}

// TestCountersLeaf: the counters vocabulary is shared by every package, so
// it imports nothing but the standard library.
func TestCountersLeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{range .Imports}}{{.}} {{end}}", "./counters").Output()
	if err != nil {
		testenv.Skip(t, "go list unavailable: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		if strings.Contains(imp, ".") {
			t.Errorf("package counters imports %s; it must stay a leaf", imp)
		}
	}
}
