package vmlab

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Assets is a prepared guest: a Debian kernel and a base initramfs holding
// a static busybox and the kernel modules a virtio-net guest needs.
type Assets struct {
	Dir           string   // the cache entry holding the files below
	KernelVersion string   // e.g. "6.1.0-57-amd64"
	Kernel        string   // path of the kernel image (bzImage)
	Initrd        string   // path of the base initramfs (gzip'd newc cpio)
	Modules       []string // module names in load order, as /lib/modules/NAME.ko in the initramfs
}

// CacheEnv names the environment variable that overrides DefaultCacheDir.
const CacheEnv = "MACVSW_VMLAB_CACHE"

// DefaultCacheDir is where PrepareAssets keeps its entries.
const DefaultCacheDir = "/var/cache/macvsw-test/vmlab"

// assetFormat is part of a cache entry's name: bump it when the base
// initramfs's layout changes. (The /init and everything per boot live in a
// second archive that Boot writes each time, so they need no bump.)
const assetFormat = "f1"

// guestModules are the modules the guest loads (with their dependencies,
// found in each module's .modinfo), unless the kernel has them built in.
var guestModules = []string{"virtio_pci", "virtio_net", "8021q"}

// CacheDir returns the asset cache directory: $MACVSW_VMLAB_CACHE or
// DefaultCacheDir.
func CacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

var (
	assetsMu   sync.Mutex
	assetsMemo = map[string]*Assets{}
)

// PrepareAssets returns the guest kernel and base initramfs, building them
// on first use into CacheDir() and reusing them afterwards. The cache key is
// the kernel version Debian's linux-image-amd64 depends on, asked of
// apt-cache (which needs `apt-get update` to have run once) at most once a
// day; without an answer the newest complete entry in the cache is used. Building runs
// `apt-get download linux-image-VERSION busybox-static` and `dpkg-deb -x` in
// a temporary directory; nothing is installed. Concurrent callers, in this
// process or others, are serialised by a lock file in the cache directory.
func PrepareAssets(ctx context.Context) (*Assets, error) {
	dir := CacheDir()
	assetsMu.Lock()
	defer assetsMu.Unlock()
	if a := assetsMemo[dir]; a != nil {
		return a, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Asking apt costs a second or two: trust the last answer for a day.
	current := filepath.Join(dir, "current-"+assetFormat)
	if fi, err := os.Stat(current); err == nil && time.Since(fi.ModTime()) < 24*time.Hour {
		if b, err := os.ReadFile(current); err == nil {
			if a, err := loadEntry(filepath.Join(dir, strings.TrimSpace(string(b))+"-"+assetFormat)); err == nil {
				assetsMemo[dir] = a
				return a, nil
			}
		}
	}
	kver, verr := debianKernelVersion(ctx)
	if verr != nil {
		a, err := newestEntry(dir)
		if err != nil {
			return nil, fmt.Errorf("vmlab: cannot tell the kernel version (%v) and no cached assets in %s: %w", verr, dir, err)
		}
		assetsMemo[dir] = a
		return a, nil
	}
	entry := filepath.Join(dir, kver+"-"+assetFormat)
	a, err := loadEntry(entry)
	if err != nil {
		if a, err = buildEntry(ctx, dir, entry, kver); err != nil {
			return nil, fmt.Errorf("vmlab: building guest assets for kernel %s: %w", kver, err)
		}
	}
	if err := os.WriteFile(current, []byte(kver+"\n"), 0o644); err != nil {
		return nil, err
	}
	assetsMemo[dir] = a
	return a, nil
}

// lockFile takes an exclusive flock on path, polling so ctx can end the wait.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// debianKernelVersion asks apt which kernel linux-image-amd64 stands for.
func debianKernelVersion(ctx context.Context) (string, error) {
	out, err := command(ctx, "", "apt-cache", "depends", "--important", "linux-image-amd64")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return strings.TrimPrefix(f[1], "linux-image-"), nil
		}
	}
	return "", fmt.Errorf("no linux-image-* dependency in %q", out)
}

const manifestName = "assets.json"

func loadEntry(entry string) (*Assets, error) {
	b, err := os.ReadFile(filepath.Join(entry, manifestName))
	if err != nil {
		return nil, err
	}
	var a Assets
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	a.Dir = entry
	a.Kernel = filepath.Join(entry, "vmlinuz")
	a.Initrd = filepath.Join(entry, "initrd.gz")
	for _, p := range []string{a.Kernel, a.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return &a, nil
}

func newestEntry(dir string) (*Assets, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var best *Assets
	var bestTime time.Time
	for _, e := range ents {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), "-"+assetFormat) {
			continue
		}
		a, err := loadEntry(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if fi, err := e.Info(); err == nil && (best == nil || fi.ModTime().After(bestTime)) {
			best, bestTime = a, fi.ModTime()
		}
	}
	if best == nil {
		return nil, fs.ErrNotExist
	}
	return best, nil
}

// command runs name args in dir and returns its combined output.
func command(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func buildEntry(ctx context.Context, dir, entry, kver string) (*Assets, error) {
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("needs %s (Debian): %w", tool, err)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// apt-get download drops privileges to _apt when it can write here.
	os.Chmod(tmp, 0o755)
	if _, err := command(ctx, tmp, "apt-get", "download", "-q", "linux-image-"+kver, "busybox-static"); err != nil {
		return nil, err
	}
	root := filepath.Join(tmp, "root")
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 2 {
		return nil, fmt.Errorf("apt-get download left %d .deb files, want 2", len(debs))
	}
	for _, deb := range debs {
		if _, err := command(ctx, tmp, "dpkg-deb", "-x", deb, root); err != nil {
			return nil, err
		}
	}
	busybox := filepath.Join(root, "bin", "busybox")
	kernel := filepath.Join(root, "boot", "vmlinuz-"+kver)
	if _, err := os.Stat(kernel); err != nil {
		return nil, err
	}
	// The static busybox runs here too: it lists its applets, and its xz
	// applet decompresses .ko.xz modules, so no xz-utils is needed.
	list, err := command(ctx, "", busybox, "--list-full")
	if err != nil {
		return nil, err
	}
	bodies := map[string][]byte{}
	read := func(p string) ([]byte, error) {
		if b, ok := bodies[p]; ok {
			return b, nil
		}
		b, err := readModule(ctx, busybox, p)
		bodies[p] = b
		return b, err
	}
	mods, err := resolveModules(filepath.Join(root, "lib", "modules", kver), guestModules, read)
	if err != nil {
		return nil, err
	}

	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(kernel, filepath.Join(out, "vmlinuz")); err != nil {
		return nil, err
	}
	var names []string
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	cw := newCPIO(zw)
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "etc", "lib", "lib/modules", "var", "var/run", "mnt"} {
		cw.Dir(d, 0o755)
	}
	// The kernel opens /dev/console for init before init can mount devtmpfs.
	cw.CharDev("dev/console", 0o600, 5, 1)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	cw.File("bin/busybox", 0o755, bb)
	for _, p := range strings.Fields(list) {
		if p == "bin/busybox" || strings.Contains(p, "..") {
			continue
		}
		cw.Symlink(p, "/bin/busybox")
	}
	for _, m := range mods {
		body, err := read(m.path)
		if err != nil {
			return nil, err
		}
		cw.File("lib/modules/"+m.name+".ko", 0o644, body)
		names = append(names, m.name)
	}
	cw.File("lib/modules/order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	cw.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	cw.File("etc/group", 0o644, []byte("root:x:0:\n"))
	if err := cw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, "initrd.gz"), buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	man, _ := json.MarshalIndent(Assets{KernelVersion: kver, Modules: names}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, manifestName), man, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(entry) // an incomplete leftover
	if err := os.Rename(out, entry); err != nil {
		return nil, err
	}
	return loadEntry(entry)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

type module struct{ name, path string }

// modName turns a module file name into its name: dashes become
// underscores, as the kernel does.
func modName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// resolveModules returns roots and their dependencies, dependencies first,
// skipping built-in modules.
func resolveModules(moddir string, roots []string, read func(string) ([]byte, error)) ([]module, error) {
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(moddir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			files[modName(d.Name())] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[modName(l)] = true
		}
	}
	var order []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(name string) error {
		switch {
		case state[name] == 2 || builtin[name]:
			return nil
		case state[name] == 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		}
		p, ok := files[name]
		if !ok {
			return fmt.Errorf("module %s neither built in nor in %s", name, moddir)
		}
		state[name] = 1
		body, err := read(p)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(p, body)
		if err != nil {
			return err
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, module{name, p})
		return nil
	}
	for _, r := range roots {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDepends reads the depends= field of a module's .modinfo section.
func moduleDepends(path string, body []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, modName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// readModule returns a module's uncompressed ELF image. Debian 12 ships
// plain .ko files; later releases compress them (.ko.xz), which busybox's
// insmod may not read, so they are decompressed here: xz with the static
// busybox's xz applet (or xz-utils' xz), gzip in Go, zstd with zstd.
func readModule(ctx context.Context, busybox, path string) ([]byte, error) {
	var name string
	var args []string
	switch {
	case strings.HasSuffix(path, ".ko"):
		return os.ReadFile(path)
	case strings.HasSuffix(path, ".ko.gz"):
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(zr)
		return b.Bytes(), err
	case strings.HasSuffix(path, ".ko.xz"):
		name, args = "xz", []string{"-dc", path}
		if _, err := os.Stat(busybox); err == nil {
			name, args = busybox, append([]string{"xz"}, args...)
		}
	case strings.HasSuffix(path, ".ko.zst"):
		name, args = "zstd", []string{"-dc", path}
	default:
		return nil, fmt.Errorf("%s: unknown module compression", path)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decompressing %s: %w: %s", path, err, errb.String())
	}
	return out.Bytes(), nil
}
