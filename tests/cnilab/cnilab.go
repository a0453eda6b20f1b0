// Package cnilab runs macvsw's CNI plugin as container runtimes do, for
// the integration tests and the runsc benchmark.
//
// Build compiles cmd/macvsw-cni and, from the module's tool dependencies
// (go.mod's tool block, so their versions are go.sum's), the reference
// plugins host-local, static and loopback and cnitool, into one temporary
// directory: the CNI_PATH. Net writes a network configuration list whose
// IPAM state lives where the caller says (a temporary directory); Config
// is a libcni runtime whose cache is a temporary directory; Cnitool runs
// cnitool, whose cache is always /var/lib/cni, in a private mount
// namespace where that path is a temporary directory. Nothing here reads
// or writes the host's /etc/cni or /var/lib/cni.
package cnilab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/macvsw/macvsw/tests/netlab"
)

// Plugin is the macvsw plugin's type (and binary name).
const Plugin = "macvsw-cni"

// ToolPackages are the reference binaries built next to the plugin.
var ToolPackages = []string{
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/containernetworking/plugins/plugins/ipam/static",
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/cni/cnitool",
}

// Plugins is a built CNI_PATH.
type Plugins struct {
	Dir  string        // CNI_PATH: macvsw-cni, host-local, static, loopback, cnitool
	Took time.Duration // how long the build took
}

var built struct {
	once sync.Once
	p    *Plugins
	err  error
}

// Build builds the plugins once per process (later calls return the
// first result); ctx bounds the first call. Remove deletes them.
func Build(ctx context.Context) (*Plugins, error) {
	built.once.Do(func() { built.p, built.err = build(ctx) })
	return built.p, built.err
}

// Remove deletes what Build built, if anything.
func Remove() {
	if built.p != nil {
		os.RemoveAll(built.p.Dir)
	}
}

func build(ctx context.Context) (*Plugins, error) {
	start := time.Now()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "macvsw-cni-path-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"build", "-o", dir + "/", "./cmd/macvsw-cni"}, ToolPackages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), root, err, out)
	}
	return &Plugins{Dir: dir, Took: time.Since(start)}, nil
}

// Config returns a libcni runtime that finds the plugins in p.Dir and
// keeps its cache (the results of ADD, which DEL, CHECK and GC read) in
// cacheDir.
func (p *Plugins) Config(cacheDir string) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{p.Dir}, cacheDir, nil)
}

// Net is a macvsw network with host-local IPAM on netlab's LAN: IPv4
// 10.77.0.0/24 (addresses .50 to .99 unless Hosts says otherwise) and
// IPv6 fd77::/64 (the same numbers, in hex digits: ::50 to ::99), the LAN
// host as gateway, and default routes through it.
type Net struct {
	Name       string // network name; default "macvsw"
	CNIVersion string // default "1.1.0"
	Socket     string // the daemon's control socket
	DataDir    string // host-local's state; required
	Kind       string // "", "tap" or "afpacket"
	VethNetns  string // afpacket: where the daemon's end of the veth goes
	Mode       string // "" is the plugin's default (bridge)
	NoIPv6     bool   // IPv4 only
	// Hosts is the first and last host number IPAM hands out (default
	// 50 and 99, at most 254): networks sharing the LAN need their own.
	Hosts [2]int
	// CapMAC declares the "mac" capability, so runtimeConfig.mac (CAP_ARGS
	// for cnitool, CapabilityArgs for libcni) reaches the plugin.
	CapMAC bool
	// Extra are more keys of the plugin's entry, overriding the others.
	Extra map[string]any
}

// Plugin returns the macvsw plugin's entry of the list.
func (n Net) Plugin() map[string]any {
	first, last := n.Hosts[0], n.Hosts[1]
	if first == 0 {
		first, last = 50, 99
	}
	ranges := [][]map[string]string{{{"subnet": netlab.Subnet4, "rangeStart": fmt.Sprintf("10.77.0.%d", first),
		"rangeEnd": fmt.Sprintf("10.77.0.%d", last), "gateway": netlab.HostIP4}}}
	routes := []map[string]string{{"dst": "0.0.0.0/0"}}
	if !n.NoIPv6 {
		ranges = append(ranges, []map[string]string{{"subnet": "fd77::/64", "rangeStart": fmt.Sprintf("fd77::%d", first),
			"rangeEnd": fmt.Sprintf("fd77::%d", last), "gateway": netlab.HostIP6}})
		routes = append(routes, map[string]string{"dst": "::/0"})
	}
	p := map[string]any{
		"type":   Plugin,
		"socket": n.Socket,
		"ipam":   map[string]any{"type": "host-local", "dataDir": n.DataDir, "ranges": ranges, "routes": routes},
	}
	if n.Kind != "" {
		p["kind"] = n.Kind
	}
	if n.VethNetns != "" {
		p["vethNetns"] = n.VethNetns
	}
	if n.Mode != "" {
		p["mode"] = n.Mode
	}
	if n.CapMAC {
		p["capabilities"] = map[string]bool{"mac": true}
	}
	for k, v := range n.Extra {
		p[k] = v
	}
	return p
}

// ConfList returns the network configuration list (a .conflist file's
// bytes).
func (n Net) ConfList() []byte {
	name, v := n.Name, n.CNIVersion
	if name == "" {
		name = "macvsw"
	}
	if v == "" {
		v = "1.1.0"
	}
	b, err := json.MarshalIndent(map[string]any{"cniVersion": v, "name": name, "plugins": []any{n.Plugin()}}, "", "  ")
	if err != nil {
		panic(err) // maps of strings and plain values always marshal
	}
	return b
}

// List parses ConfList for libcni.
func (n Net) List() (*libcni.NetworkConfigList, error) {
	return libcni.ConfListFromBytes(n.ConfList())
}

// Cnitool runs `cnitool args...` as a runtime would: CNI_PATH is p.Dir,
// NETCONFPATH confDir, plus env ("CNI_ARGS=...", "CAP_ARGS=..."). cnitool
// always caches in /var/lib/cni, so it runs in a private mount namespace
// (unshare) with a tmpfs on /var/lib and cacheDir bound on /var/lib/cni:
// the host's /var/lib is never written. It returns stdout and stderr.
func (p *Plugins) Cnitool(ctx context.Context, cacheDir, confDir string, env []string, args ...string) (string, string, error) {
	script := `mount --make-rprivate / && mount -t tmpfs -o size=1m macvsw-cnitool /var/lib && mkdir /var/lib/cni && mount --bind "$1" /var/lib/cni && shift && exec "$@"`
	argv := append([]string{"--mount", "sh", "-c", script, "sh", cacheDir, filepath.Join(p.Dir, "cnitool")}, args...)
	cmd := exec.CommandContext(ctx, "unshare", argv...)
	cmd.Env = append(os.Environ(), "CNI_PATH="+p.Dir, "NETCONFPATH="+confDir)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return "", "", fmt.Errorf("cnitool %s: %w", strings.Join(args, " "), err)
	}
	if err != nil {
		err = fmt.Errorf("cnitool %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), stderr.String(), err
}
