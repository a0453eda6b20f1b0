package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/macvsw/macvsw/tests/cnilab"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
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

// requireNetns skips, at run time, when the test cannot build labs (and
// fails under MACVSW_TEST_REQUIRE=1), and likewise for each tool the test
// runs besides the lab's own (ip, bridge, sysctl, ping).
func requireNetns(t *testing.T, tools ...string) {
	t.Helper()
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	testenv.NeedTools(t, tools...)
}
