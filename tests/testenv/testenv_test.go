package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelperNeedsTool is run by TestSkipOrFail in a child process; on
// its own it does nothing.
func TestHelperNeedsTool(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		return
	}
	NeedTools(t, "macvsw-no-such-tool")
	t.Log("reached past NeedTools")
}

// TestSkipOrFail: a missing tool skips a test, naming the tool; with
// MACVSW_TEST_REQUIRE=1 it fails it instead.
func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct {
		require string
		fails   bool
		want    string
	}{
		{"", false, "--- SKIP: TestHelperNeedsTool"},
		{"0", false, "--- SKIP: TestHelperNeedsTool"},
		{"1", true, "--- FAIL: TestHelperNeedsTool"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNeedsTool$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_HELPER=1", RequireEnv+"="+tc.require)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fails || !strings.Contains(string(out), tc.want) ||
			!strings.Contains(string(out), "needs [macvsw-no-such-tool (apt-get install the package that provides macvsw-no-such-tool)]") ||
			strings.Contains(string(out), "reached past NeedTools") {
			t.Errorf("%s=%q: %v\n%s", RequireEnv, tc.require, err, out)
		}
	}
}

// TestPackageList: sorted, no repeats, every package of Packages.
func TestPackageList(t *testing.T) {
	l := PackageList()
	for i := 1; i < len(l); i++ {
		if l[i-1] >= l[i] {
			t.Errorf("PackageList not sorted and unique: %v", l)
		}
	}
	for tool, p := range Packages {
		if !strings.Contains(" "+strings.Join(l, " ")+" ", " "+p+" ") {
			t.Errorf("%s's package %s not in PackageList", tool, p)
		}
	}
}
