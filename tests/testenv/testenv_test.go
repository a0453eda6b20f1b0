package testenv

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestStartWithParentSurvivesThreadExits: a child forked by a thread that
// then exits (a goroutine locked to it returned) gets its Pdeathsig and
// dies: the hazard. A child started by StartWithParent lives on through
// the same thread exits.
func TestStartWithParentSurvivesThreadExits(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep(1)")
	}
	ours := exec.Command("sleep", "30")
	if err := StartWithParent(ours); err != nil {
		t.Fatal(err)
	}
	defer ours.Process.Kill()

	// The runtime wedges the main thread instead of ending it, so fork
	// from a locked goroutine that is not on it.
	var direct *exec.Cmd
	for direct == nil {
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		errc := make(chan error)
		go func() {
			runtime.LockOSThread() // the thread ends with this goroutine
			if syscall.Gettid() == syscall.Getpid() {
				errc <- errMainThread
				return
			}
			errc <- cmd.Start()
		}()
		switch err := <-errc; err {
		case nil:
			direct = cmd
		case errMainThread:
		default:
			t.Fatal(err)
		}
	}
	defer direct.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- direct.Wait() }()
	select {
	case err := <-exited:
		t.Logf("child forked from a thread that ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("child forked from a thread that ended still runs: the hazard this guards against is gone")
	}
	var ws syscall.WaitStatus
	if pid, err := syscall.Wait4(ours.Process.Pid, &ws, syscall.WNOHANG, nil); err != nil || pid != 0 {
		t.Fatalf("child started by StartWithParent died with a thread: wait4 = %d, %v, status %v", pid, err, ws)
	}
}

var errMainThread = errors.New("on the main thread")
