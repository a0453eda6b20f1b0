package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
)

// fakeDaemon answers the part of the control API the plugin uses, from a
// list of ports, and records the requests that change something.
type fakeDaemon struct {
	socket string

	mu      sync.Mutex
	ports   []api.Port
	deletes []string // query strings of DELETE /v1/ports
}

func newFakeDaemon(t *testing.T, ports ...api.Port) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{socket: filepath.Join(t.TempDir(), "macvsw.sock"), ports: ports}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"version": "fake"})
	})
	mux.HandleFunc("GET /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []api.Port{}
		for _, p := range f.ports {
			if p.Owner != nil && (q.Get("container_id") == "" || q.Get("container_id") == p.Owner.ContainerID) &&
				(q.Get("ifname") == "" || q.Get("ifname") == p.Owner.IfName) &&
				(q.Get("network") == "" || q.Get("network") == p.Owner.Network) {
				out = append(out, p)
			}
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("DELETE /v1/ports", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.deletes = append(f.deletes, r.URL.RawQuery)
		var names []string
		f.ports = slices.DeleteFunc(f.ports, func(p api.Port) bool {
			del := p.Owner != nil && p.Owner.ContainerID == q.Get("container_id") &&
				(q.Get("ifname") == "" || q.Get("ifname") == p.Owner.IfName) &&
				(q.Get("network") == "" || q.Get("network") == p.Owner.Network)
			if del {
				names = append(names, p.Name)
			}
			return del
		})
		json.NewEncoder(w).Encode(map[string]any{"deleted": names})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return f
}

func (f *fakeDaemon) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n []string
	for _, p := range f.ports {
		n = append(n, p.Name)
	}
	return n
}

func ownedTap(network, cid, ifname string) api.Port {
	return api.Port{Name: portName(cid, ifname), Kind: kindTap, Interface: ifname, Netns: "/var/run/netns/" + cid,
		Owner: &api.Owner{ContainerID: cid, IfName: ifname, Network: network}, MAC: "02:00:00:00:00:01", Up: true}
}

// cniCode returns err's CNI code and message, failing t if err is not a
// *types.Error.
func cniCode(t *testing.T, err error) (uint, string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("got %v (%T), want a CNI error", err, err)
	}
	return te.Code, te.Msg
}

// TestDaemonDown: every command, with nothing listening on the socket,
// gives the spec's code and says what to do; DEL of an attachment whose
// netns is gone succeeds.
func TestDaemonDown(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "nobody.sock")
	stdin := conf(fmt.Sprintf(`"socket": %q`, socket))
	want := "macvsw daemon not reachable at " + socket + ": is `macvsw run` running?"
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Netns: "/proc/self/ns/net", StdinData: stdin}

	for _, tc := range []struct {
		cmd  string
		f    func(*skel.CmdArgs) error
		code uint
	}{
		{"ADD", cmdAdd, types.ErrTryAgainLater},
		{"STATUS", cmdStatus, types.ErrPluginNotAvailable},
		{"GC", cmdGC, types.ErrTryAgainLater},
		// The netns still exists: the port would outlive this DEL.
		{"DEL", cmdDel, types.ErrTryAgainLater},
	} {
		code, msg := cniCode(t, tc.f(args))
		if code != tc.code || !strings.HasPrefix(msg, want) {
			t.Errorf("%s: code %d %q, want %d starting %q", tc.cmd, code, msg, tc.code, want)
		}
	}
	gone := *args
	gone.Netns = filepath.Join(t.TempDir(), "deleted-netns")
	if err := cmdDel(&gone); err != nil {
		t.Errorf("DEL with the daemon down and the netns gone: %v, want success", err)
	}
	gone.Netns = ""
	if err := cmdDel(&gone); err != nil {
		t.Errorf("DEL with the daemon down and no CNI_NETNS: %v, want success", err)
	}
}

// TestCheckNeedsPrevResult: CHECK without the result of ADD is a config
// error, not a crash.
func TestCheckNeedsPrevResult(t *testing.T) {
	f := newFakeDaemon(t)
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Netns: "/proc/self/ns/net",
		StdinData: conf(fmt.Sprintf(`"socket": %q`, f.socket))}
	if code, msg := cniCode(t, cmdCheck(args)); code != types.ErrInvalidNetworkConfig || !strings.Contains(msg, "prevResult") {
		t.Errorf("CHECK without prevResult: %d %q", code, msg)
	}
	// A prevResult without this interface is a CHECK failure.
	args.StdinData = conf(fmt.Sprintf(`"socket": %q, "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth1", "sandbox": "/proc/self/ns/net"}]}`, f.socket))
	if code, msg := cniCode(t, cmdCheck(args)); code != codeCheckFailed || !strings.Contains(msg, "eth0") {
		t.Errorf("CHECK with another interface in prevResult: %d %q", code, msg)
	}
	// The daemon has no port for it.
	args.StdinData = conf(fmt.Sprintf(`"socket": %q, "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/proc/self/ns/net"}]}`, f.socket))
	if code, msg := cniCode(t, cmdCheck(args)); code != codeCheckFailed || !strings.Contains(msg, "no port") {
		t.Errorf("CHECK with no port: %d %q", code, msg)
	}
}

// TestGCKeepsValidAndOtherNetworks: GC deletes this network's ports whose
// attachment is not valid, and nothing of another network's.
func TestGCKeepsValidAndOtherNetworks(t *testing.T) {
	f := newFakeDaemon(t,
		ownedTap("net1", "live", "eth0"),
		ownedTap("net1", "stale", "eth0"),
		ownedTap("net1", "live", "eth1"), // same container, an interface no longer valid
		ownedTap("net2", "other", "eth0"),
	)
	stdin := conf(fmt.Sprintf(`"socket": %q, "cni.dev/valid-attachments": [{"containerID": "live", "ifname": "eth0"}], "cni.dev/attachments": [{"containerID": "live", "ifname": "eth0"}]`, f.socket))
	if err := cmdGC(&skel.CmdArgs{StdinData: stdin}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	want := []string{portName("live", "eth0"), portName("other", "eth0")}
	if got := f.names(); !slices.Equal(got, want) {
		t.Errorf("after GC: ports %v, want %v", got, want)
	}
	for _, q := range f.deletes {
		if !strings.Contains(q, "network=net1") || !strings.Contains(q, "ifname=") {
			t.Errorf("GC deleted with %q: want it narrowed to one attachment of net1", q)
		}
	}
	// No list at all: nothing of net1 is valid.
	if err := cmdGC(&skel.CmdArgs{StdinData: conf(fmt.Sprintf(`"socket": %q`, f.socket))}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := f.names(); !slices.Equal(got, []string{portName("other", "eth0")}) {
		t.Errorf("after GC with no valid attachments: %v", got)
	}
}

// TestDelRemovesOwnedPort: DEL asks the daemon to delete the attachment's
// port, and a second DEL, with nothing left, succeeds too.
func TestDelRemovesOwnedPort(t *testing.T) {
	f := newFakeDaemon(t, ownedTap("net1", "c1", "eth0"), ownedTap("net1", "c2", "eth0"))
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: conf(fmt.Sprintf(`"socket": %q`, f.socket))}
	for i := 0; i < 2; i++ {
		if err := cmdDel(args); err != nil {
			t.Fatalf("DEL %d: %v", i+1, err)
		}
	}
	if got := f.names(); !slices.Equal(got, []string{portName("c2", "eth0")}) {
		t.Errorf("after DEL: %v", got)
	}
	if len(f.deletes) != 1 {
		t.Errorf("DELETE requests %v: want one (the second DEL found nothing)", f.deletes)
	}
}

func TestStatusUp(t *testing.T) {
	f := newFakeDaemon(t)
	if err := cmdStatus(&skel.CmdArgs{StdinData: conf(fmt.Sprintf(`"socket": %q`, f.socket))}); err != nil {
		t.Errorf("STATUS with the daemon up: %v", err)
	}
}

func TestDaemonError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code uint
		says string
	}{
		{fmt.Errorf("%w at /s: dial unix: connection refused", api.ErrNoDaemon), types.ErrTryAgainLater, "is `macvsw run` running?"},
		{&api.Error{Status: 409, Message: `port "x": MAC 02:00:00:00:00:01 already used by port "y"`}, codeRefused, "already used"},
		{context.DeadlineExceeded, types.ErrTryAgainLater, "did not answer"},
		{errors.New("unexpected EOF"), types.ErrIOFailure, "unexpected EOF"},
	} {
		e := daemonError(tc.err, "/s")
		if e.Code != tc.code || !strings.Contains(e.Msg, tc.says) {
			t.Errorf("daemonError(%v) = %d %q, want %d saying %q", tc.err, e.Code, e.Msg, tc.code, tc.says)
		}
	}
}

func TestInstall(t *testing.T) {
	src := filepath.Join(t.TempDir(), "plugin")
	dir := t.TempDir()
	for _, content := range []string{"binary v1", "binary v2"} { // a second install replaces the first
		if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := install(src, dir, "macvsw-cni", 0o755); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "macvsw-cni")
		b, err := os.ReadFile(dst)
		fi, _ := os.Stat(dst)
		if err != nil || string(b) != content || fi.Mode().Perm() != 0o755 {
			t.Errorf("installed %q mode %v (%v), want %q mode 0755", b, fi.Mode(), err, content)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("install left %d files in the directory, want 1", len(ents))
	}
	if err := install(src, filepath.Join(dir, "missing"), "macvsw-cni", 0o755); err == nil {
		t.Error("install into a missing directory succeeded")
	}
	for _, args := range [][]string{{"instal", dir}, {"install"}, {"install", dir, "only-a-conflist"}} {
		if err := runCLI(args); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("runCLI(%q): %v, want the usage", args, err)
		}
	}
	// The binary and a conflist, as an init container runs it.
	bin, conf := t.TempDir(), t.TempDir()
	list := filepath.Join(t.TempDir(), "10-macvsw.conflist")
	if err := os.WriteFile(list, []byte(`{"cniVersion": "1.1.0", "name": "macvsw", "plugins": [{"type": "macvsw-cni"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runCLI([]string{"install", bin, list, conf}); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want, _ := os.ReadFile(self)
	if got, err := os.ReadFile(filepath.Join(bin, "macvsw-cni")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("install did not copy the running binary (%v)", err)
	}
	if fi, err := os.Stat(filepath.Join(conf, "10-macvsw.conflist")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("conflist not installed 0644: %v %v", fi, err)
	}
}

// TestAddOtherNetworksPort: an ADD for an attachment whose port belongs to
// another network is a conflict, and changes nothing.
func TestAddOtherNetworksPort(t *testing.T) {
	f := newFakeDaemon(t, ownedTap("net2", "c1", "eth0"))
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", Netns: "/var/run/netns/c1", StdinData: conf(fmt.Sprintf(`"socket": %q`, f.socket))}
	if code, msg := cniCode(t, cmdAdd(args)); code != codeConflict || !strings.Contains(msg, `network "net2"`) {
		t.Errorf("ADD on net1 with net2's port: code %d %q, want 102 naming net2", code, msg)
	}
	if len(f.deletes) != 0 || len(f.names()) != 1 {
		t.Errorf("the refused ADD changed the ports: deletes %v, ports %v", f.deletes, f.names())
	}
}
