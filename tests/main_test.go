package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/macvsw/macvsw/tests/cnilab"
	"github.com/macvsw/macvsw/tests/netlab"
)

// macvswBin is the daemon binary built once for the netns tests.
var macvswBin string

func TestMain(m *testing.M) {
	code := func() int {
		if netlab.Available() == nil {
			dir, err := os.MkdirTemp("", "macvsw-test-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			macvswBin = filepath.Join(dir, "macvsw")
			out, err := exec.Command("go", "build", "-o", macvswBin, "../cmd/macvsw").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build macvsw: %v\n%s", err, out)
				return 1
			}
		}
		defer cnilab.Remove() // the CNI plugins, if a test built them
		return m.Run()
	}()
	os.Exit(code)
}

// requireNetns skips, at run time, when the test cannot build labs.
func requireNetns(t *testing.T) {
	t.Helper()
	if err := netlab.Available(); err != nil {
		t.Skip(err)
	}
}
