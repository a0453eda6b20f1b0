package runsclab

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

var pinned struct {
	once sync.Once
	bin  *Binary
	err  error
}

// Pinned is BuildPinned done once per process: the first call builds (or
// finds in the cache) and every later call returns the same result. ctx
// bounds only the first call.
func Pinned(ctx context.Context) (*Binary, error) {
	pinned.once.Do(func() { pinned.bin, pinned.err = BuildPinned(ctx) })
	return pinned.bin, pinned.err
}

// RequireRunsc skips tb when not root, and otherwise returns the pinned
// runsc, failing tb (never skipping) if namespaces cannot be made or runsc
// cannot be built. The first call may build for minutes; a TestMain that
// calls Pinned first keeps that out of the test's time.
func RequireRunsc(tb testing.TB) *Binary {
	tb.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(tb, "runsc sandboxes need root: they join network namespaces and read the host's / as rootfs")
	}
	if err := netlab.Available(); err != nil {
		tb.Fatalf("root, but no network namespaces here: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bin, err := Pinned(ctx)
	if err != nil {
		tb.Fatalf("building runsc from the pinned gVisor failed: %v", err)
	}
	return bin
}

// StartTB starts a sandbox for a test and fails it on error. Cleanup closes
// the sandbox, and first, if the test failed, logs the warnings and the
// last lines of each runsc debug log (LogSummary).
func StartTB(tb testing.TB, cfg Config) *Sandbox {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("start sandbox: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("runsc debug logs of sandbox %s (%s):\n%s", s.ID, s.LogDir(), s.LogSummary())
		}
		if err := s.Close(); err != nil {
			tb.Errorf("close sandbox %s: %v", s.ID, err)
		}
	})
	return s
}
