package vmlab

import (
	"context"
	"testing"

	"github.com/macvsw/macvsw/tests/testenv"
)

// Require skips t unless guests can run here the way the package's tests
// run them: as root (network namespaces, tap devices, the asset cache),
// with iproute2's ip and qemu-system-x86_64. CI installs qemu-system-x86;
// under MACVSW_TEST_REQUIRE=1 a missing requirement fails t instead.
func Require(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "vmlab: network namespaces, tap devices, the asset cache in "+DefaultCacheDir)
	testenv.NeedTools(t, "ip")
	if err := Available(); err != nil {
		testenv.Skip(t, "vmlab: %v", err)
	}
}

// StartT is Start for tests: the guest is closed when t ends (QEMU killed
// by PID, temporary files removed) and, if t failed, its console and
// QEMU's stderr are logged first. Errors are fatal.
func StartT(t testing.TB, ctx context.Context, opts Options) *Guest {
	t.Helper()
	g, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vmlab: %s console:\n%s\nqemu stderr:\n%s", g.Name, tail(g.Console(), 8000), g.Stderr())
		}
		g.Close()
	})
	return g
}

// BootT is Boot for tests, with StartT's cleanup.
func BootT(t testing.TB, ctx context.Context, opts Options) *Guest {
	t.Helper()
	g := StartT(t, ctx, opts)
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}
