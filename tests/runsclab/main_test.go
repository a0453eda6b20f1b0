package runsclab

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/cnilab"
)

// modHashes is the repository's go.mod and go.sum before the build, to
// show the build left them alone.
var modHashes map[string][32]byte

// TestMain builds runsc before the tests start, so a cold build (minutes)
// is not counted against -timeout's per-test alarm, which starts in
// m.Run. It is still bounded: by -timeout plus 30 s (go test kills the
// binary at -timeout plus one minute).
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() == 0 {
		modHashes = hashModFiles()
		limit := 20 * time.Minute
		if f := flag.Lookup("test.timeout"); f != nil {
			if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
				limit = d + 30*time.Second
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		bin, err := Pinned(ctx)
		cancel()
		if err != nil {
			// TestBuildPinned and every sandbox test fail with it.
			fmt.Fprintf(os.Stderr, "runsclab: runsc build failed: %v\n", err)
		} else {
			fmt.Printf("runsclab: runsc %s at %s: cached=%v, this run %v, build %v\n",
				bin.Version, bin.Path, bin.Cached, bin.Took.Round(time.Millisecond), bin.BuildTime.Round(time.Second))
		}
	}
	code := m.Run()
	cnilab.Remove() // the CNI plugins, if a test built them
	os.Exit(code)
}

// repoRoot is the directory holding the repository's go.mod.
func repoRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func hashModFiles() map[string][32]byte {
	h := map[string][32]byte{}
	root := repoRoot()
	for _, n := range []string{"go.mod", "go.sum"} {
		if b, err := os.ReadFile(filepath.Join(root, n)); err == nil {
			h[filepath.Join(root, n)] = sha256.Sum256(b)
		}
	}
	return h
}

func TestBuildPinned(t *testing.T) {
	bin := RequireRunsc(t)
	t.Logf("runsc %s at %s", bin.Version, bin.Path)
	if bin.Cached {
		t.Logf("from the cache in %v (the build that made it took %v)", bin.Took.Round(time.Millisecond), bin.BuildTime.Round(time.Second))
	} else {
		t.Logf("built in %v", bin.BuildTime.Round(time.Second))
	}
	want, err := PinnedVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if bin.Version != want || !strings.Contains(bin.Path, want) {
		t.Errorf("built %s at %s, go.mod pins %s", bin.Version, bin.Path, want)
	}
	if err := checkVersion(context.Background(), bin.Path, want); err != nil {
		t.Error(err)
	}
	for path, sum := range modHashes {
		if b, err := os.ReadFile(path); err != nil || sha256.Sum256(b) != sum {
			t.Errorf("%s changed during the runsc build", path)
		}
	}

	// Concurrent callers of a cached version all get it, waiting their
	// turn on the lock, and none rebuilds.
	var wg sync.WaitGroup
	res := make([]*Binary, 3)
	errs := make([]error, 3)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res[i], errs[i] = Build(ctx, want)
		}()
	}
	wg.Wait()
	for i := range res {
		if errs[i] != nil {
			t.Errorf("concurrent Build %d: %v", i, errs[i])
		} else if !res[i].Cached || res[i].Path != bin.Path {
			t.Errorf("concurrent Build %d: %+v, want the cached %s", i, res[i], bin.Path)
		}
	}
}

func TestBuildRejectsBadVersion(t *testing.T) {
	for _, v := range []string{"", "latest", "../../etc", "v1.2.3/../../x"} {
		if _, err := Build(context.Background(), v); err == nil {
			t.Errorf("Build(%q) succeeded", v)
		}
	}
}

// TestBuildFailureSaysWhy: a build that cannot happen fails, naming the
// step and carrying the go command's complaint. GOPROXY=off keeps it off
// the network: the version is not in the module cache, so resolving fails.
func TestBuildFailureSaysWhy(t *testing.T) {
	t.Setenv(CacheEnv, t.TempDir())
	t.Setenv("GOPROXY", "off")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const v = "v0.0.0-20000101000000-000000000000"
	_, err := Build(ctx, v)
	if err == nil {
		t.Fatal("Build of a gVisor version that cannot be fetched succeeded")
	}
	if !strings.Contains(err.Error(), "runsc build (resolve modules)") || !strings.Contains(err.Error(), "GOPROXY=off") {
		t.Errorf("the error does not say which step failed and why: %v", err)
	}
	t.Logf("%v", err)
}
