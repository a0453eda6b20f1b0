package tests

import (
	"testing"

	"github.com/macvsw/macvsw/tests/netlab"
)

type sandboxSpec = netlab.SandboxSpec

// lab is a built variant owned by a test: cleaned up with the test, with
// the daemon's log shown on failure.
type lab struct {
	*netlab.Variant
	t *testing.T
}

func cleanupVariant(t *testing.T, v *netlab.Variant, err error) *lab {
	t.Helper()
	l := &lab{Variant: v, t: t}
	t.Cleanup(func() {
		if t.Failed() && v.Log != nil {
			t.Logf("config:\n%s\nmacvsw log:\n%s", v.ConfigText, v.Log.String())
		}
		if err := v.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// kernelLab builds the scenario with kernel macvlan devices.
func kernelLab(t *testing.T, hairpin bool, specs []sandboxSpec) *lab {
	v, err := netlab.BuildKernel("mvs", hairpin, specs)
	return cleanupVariant(t, v, err)
}

// macvswLab builds the scenario with the macvsw daemon.
func macvswLab(t *testing.T, hairpin bool, specs []sandboxSpec) *lab {
	v, err := netlab.BuildMacvsw("mvs", macvswBin, t.TempDir(), hairpin, specs)
	return cleanupVariant(t, v, err)
}

// stop stops the daemon and checks it exited cleanly.
func (l *lab) stop() {
	if err := l.StopDaemon(); err != nil {
		l.t.Errorf("%v\n%s", err, l.Log.String())
	}
}

type syncBuffer = netlab.SyncBuffer
