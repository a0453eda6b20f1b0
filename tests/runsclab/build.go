package runsclab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// GVisorModule is the module runsc is built from.
const GVisorModule = "gvisor.dev/gvisor"

// DefaultCacheDir is where built binaries are kept unless MACVSW_RUNSC_CACHE
// says otherwise.
const DefaultCacheDir = "/var/cache/macvsw-test/runsc"

// CacheEnv names the environment variable that overrides DefaultCacheDir.
const CacheEnv = "MACVSW_RUNSC_CACHE"

// Binary is a runsc binary built from one gVisor version.
type Binary struct {
	Path    string // absolute path of the executable
	Version string // gvisor.dev/gvisor module version it was built from
	// Cached is true when the binary was already in the cache (built by an
	// earlier run or by a concurrent builder this call waited for).
	Cached bool
	// Took is how long this call took: the build for a fresh binary, the
	// lookup (and any wait for the lock) for a cached one.
	Took time.Duration
	// BuildTime is how long the build that made the binary took, as
	// recorded in the cache next to it (0 if unknown).
	BuildTime time.Duration
}

// buildInfo is <cache>/<version>/build.json.
type buildInfo struct {
	Version   string    `json:"version"`
	GoVersion string    `json:"go_version"`
	Seconds   float64   `json:"build_seconds"`
	BuiltAt   time.Time `json:"built_at"`
}

// CacheDir returns the cache root: $MACVSW_RUNSC_CACHE, or DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

// versionRE accepts module versions (semver and pseudo-versions) and nothing
// that could climb out of the cache directory.
var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]*$`)

// goTool returns the go command: the one on PATH (`go test` puts its own
// GOROOT/bin first), else /usr/local/go/bin/go.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/local/go/bin/go"); err == nil {
		return "/usr/local/go/bin/go", nil
	}
	return "", errors.New("no go command on PATH or in /usr/local/go/bin")
}

// PinnedVersion returns the gvisor.dev/gvisor version that the main module
// around the current directory requires (`go list -m gvisor.dev/gvisor`).
// It refuses a module with a replace directive for gVisor, since the
// version would then not say what is built.
func PinnedVersion(ctx context.Context) (string, error) {
	gobin, err := goTool()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gobin, "list", "-m", "-f", "{{.Version}}|{{with .Replace}}{{.Path}}@{{.Version}}{{end}}", GVisorModule)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w: %s", GVisorModule, err, strings.TrimSpace(stderr.String()))
	}
	v, repl, _ := strings.Cut(strings.TrimSpace(string(out)), "|")
	if repl != "" {
		return "", fmt.Errorf("go.mod replaces %s with %s; cannot build runsc from a pinned version", GVisorModule, repl)
	}
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("go list -m %s: unexpected version %q", GVisorModule, v)
	}
	return v, nil
}

// BuildPinned is Build of PinnedVersion.
func BuildPinned(ctx context.Context) (*Binary, error) {
	v, err := PinnedVersion(ctx)
	if err != nil {
		return nil, err
	}
	return Build(ctx, v)
}

// Build returns runsc built from gvisor.dev/gvisor at version, from the
// cache (CacheDir()/version/runsc) when it is there and answers --version
// with that version, else built now: in a temporary module that requires
// exactly that version, with CGO_ENABLED=0, -trimpath, and the version
// stamped into runsc's --version. Builders of the same version, in this
// process or others, take turns on a lock file; the binary is written under
// a temporary name and renamed into place. ctx bounds the wait and the
// build. Errors say which step failed and carry the go command's output.
func Build(ctx context.Context, version string) (*Binary, error) {
	start := time.Now()
	if !versionRE.MatchString(version) {
		return nil, fmt.Errorf("runsc build: bad gVisor version %q", version)
	}
	dir := filepath.Join(CacheDir(), version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runsc build: cache directory: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("runsc build: lock %s: %w", dir, err)
	}
	defer unlock()

	// Under the lock nobody else is building this version: what a killed
	// builder left (its module directory, a half-written binary) can go.
	if stale, _ := filepath.Glob(filepath.Join(dir, "module-*")); len(stale) > 0 {
		for _, p := range stale {
			os.RemoveAll(p)
		}
	}
	if stale, _ := filepath.Glob(filepath.Join(dir, "runsc.tmp-*")); len(stale) > 0 {
		for _, p := range stale {
			os.Remove(p)
		}
	}

	bin := &Binary{Path: filepath.Join(dir, "runsc"), Version: version}
	if _, err := os.Stat(bin.Path); err == nil {
		if err := checkVersion(ctx, bin.Path, version); err == nil {
			bin.Cached = true
			bin.Took = time.Since(start)
			bin.BuildTime = readBuildInfo(dir).duration()
			return bin, nil
		}
		// Corrupt or foreign: rebuild it.
		if err := os.Remove(bin.Path); err != nil {
			return nil, fmt.Errorf("runsc build: remove bad cached binary: %w", err)
		}
	}

	buildStart := time.Now()
	goVersion, err := buildRunsc(ctx, dir, version, bin.Path)
	if err != nil {
		return nil, err
	}
	bin.BuildTime = time.Since(buildStart)
	bin.Took = time.Since(start)
	info := buildInfo{Version: version, GoVersion: goVersion, Seconds: bin.BuildTime.Seconds(), BuiltAt: time.Now().UTC()}
	if b, err := json.MarshalIndent(info, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "build.json"), append(b, '\n'), 0o644)
	}
	return bin, nil
}

// buildRunsc builds runsc at version into dst via a temporary module in
// dir and returns `go version`'s output.
func buildRunsc(ctx context.Context, dir, version, dst string) (string, error) {
	gobin, err := goTool()
	if err != nil {
		return "", fmt.Errorf("runsc build: %w", err)
	}
	mod, err := os.MkdirTemp(dir, "module-")
	if err != nil {
		return "", fmt.Errorf("runsc build: %w", err)
	}
	defer os.RemoveAll(mod)

	gomod := "module macvsw.test/runscbuild\n\ngo 1.26\n\nrequire " + GVisorModule + " " + version + "\n"
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", fmt.Errorf("runsc build: %w", err)
	}
	// The environment of the build: ours, minus anything that would change
	// what is built (a workspace, vendoring, -race in GOFLAGS, cgo, a cross
	// target), plus the settings runsc needs.
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GOFLAGS", "GOWORK", "CGO_ENABLED", "GOOS", "GOARCH", "GO111MODULE":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "CGO_ENABLED=0", "GOWORK=off", "GO111MODULE=on", "GOFLAGS=-mod=mod")

	run := func(step string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, gobin, args...)
		cmd.Dir = mod
		cmd.Env = env
		cmd.WaitDelay = 10 * time.Second
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return "", fmt.Errorf("runsc build (%s): go %s: %w\n%s", step, strings.Join(args, " "), err, tail(out.String(), 4000))
		}
		return out.String(), nil
	}

	goVersion, err := run("go version", "version")
	if err != nil {
		return "", err
	}
	// `go get` of the package (not just the module) adds the requirements
	// runsc's imports need at gVisor's own versions.
	if _, err := run("resolve modules", "get", GVisorModule+"/runsc@"+version); err != nil {
		return "", err
	}
	got, err := run("check version", "list", "-m", "-f", "{{.Version}}", GVisorModule)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(got) != version {
		return "", fmt.Errorf("runsc build: the build module resolved %s to %s, not %s", GVisorModule, strings.TrimSpace(got), version)
	}
	tmp := dst + ".tmp-" + randHex(4)
	defer os.Remove(tmp)
	if _, err := run("compile", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-X "+GVisorModule+"/runsc/version.version="+version,
		"-o", tmp, GVisorModule+"/runsc"); err != nil {
		return "", err
	}
	if err := checkVersion(ctx, tmp, version); err != nil {
		return "", fmt.Errorf("runsc build: the new binary: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("runsc build: %w", err)
	}
	return strings.TrimSpace(goVersion), nil
}

// checkVersion runs `path --version` and checks it names version.
func checkVersion(ctx context.Context, path, version string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", path, err, tail(string(out), 500))
	}
	if !strings.Contains(string(out), "runsc version "+version+"\n") {
		return fmt.Errorf("%s --version says %q, want version %s", path, strings.TrimSpace(string(out)), version)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can end
// the wait, and returns the unlock.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another builder: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func readBuildInfo(dir string) buildInfo {
	var bi buildInfo
	if b, err := os.ReadFile(filepath.Join(dir, "build.json")); err == nil {
		_ = json.Unmarshal(b, &bi)
	}
	return bi
}

func (bi buildInfo) duration() time.Duration {
	return time.Duration(bi.Seconds * float64(time.Second))
}

// tail returns the last n bytes of s, marked if cut.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
