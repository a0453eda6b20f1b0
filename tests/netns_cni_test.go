package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/tests/cnilab"
	"github.com/macvsw/macvsw/tests/netlab"
)

// The CNI plugin driven through libcni, the library container runtimes
// use, with host-local IPAM from containernetworking/plugins:
//
//	[ns LAN] br0 ── [ns HOST] 10.77.0.100, fd77::100 (the IPAM gateway)
//	   │
//	[ns SW]  low ── macvsw daemon (no ports of its own)
//	                  ├─ tap port ──► [ns cN] eth0 (CNI ADD, host-local address)
//	                  └─ ...
//
// Every state file lives in the test's temporary directories: host-local's
// dataDir, libcni's cache dir.

// requireCNI returns the built plugins (once per test binary), failing the
// test if they cannot be built.
func requireCNI(t *testing.T) *cnilab.Plugins {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := cnilab.Build(ctx)
	if err != nil {
		t.Fatalf("building the CNI plugins: %v", err)
	}
	return p
}

// cniLab is a LAN with a macvsw daemon that has no ports, a libcni runtime
// and a host-local data directory.
type cniLab struct {
	*lab
	plugins *cnilab.Plugins
	cni     *libcni.CNIConfig
	dataDir string
	client  *api.Client
}

// newCNILab builds the lab; tools are host commands the test runs besides
// ping.
func newCNILab(t *testing.T, tools ...string) *cniLab {
	t.Helper()
	requireNetns(t, append([]string{"ping"}, tools...)...)
	p := requireCNI(t)
	m := macvswLab(t, false, nil)
	return &cniLab{lab: m, plugins: p, cni: p.Config(t.TempDir()), dataDir: t.TempDir(), client: api.NewClient(m.Socket)}
}

// net is the lab's network, changed by mods.
func (c *cniLab) net(mods ...func(*cnilab.Net)) cnilab.Net {
	n := cnilab.Net{Socket: c.Socket, DataDir: c.dataDir}
	for _, m := range mods {
		m(&n)
	}
	return n
}

func (c *cniLab) list(n cnilab.Net) *libcni.NetworkConfigList {
	c.t.Helper()
	l, err := n.List()
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// container makes a network namespace for a container and returns its
// name and the runtime's view of it.
func (c *cniLab) container(name string) (string, *libcni.RuntimeConf) {
	c.t.Helper()
	ns, err := c.Lab.AddNS(name)
	if err != nil {
		c.t.Fatal(err)
	}
	return ns, &libcni.RuntimeConf{ContainerID: "ctr-" + ns, NetNS: netlab.Path(ns), IfName: "eth0"}
}

// add runs ADD and returns the result as 1.1.0.
func (c *cniLab) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *types100.Result {
	c.t.Helper()
	r, err := c.cni.AddNetworkList(context.Background(), l, rt)
	if err != nil {
		c.t.Fatalf("ADD %s: %v", rt.ContainerID, err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

// addr returns the result's address of one family, without its prefix.
func addr(t *testing.T, r *types100.Result, v6 bool) string {
	t.Helper()
	for _, ipc := range r.IPs {
		if (ipc.Address.IP.To4() == nil) == v6 {
			return ipc.Address.IP.String()
		}
	}
	t.Fatalf("result has no IPv6=%v address: %+v", v6, r)
	return ""
}

// owned returns the daemon's ports of a container.
func (c *cniLab) owned(cid string) []api.Port {
	c.t.Helper()
	ps, err := c.client.OwnedPorts(context.Background(), api.Owner{ContainerID: cid})
	if err != nil {
		c.t.Fatal(err)
	}
	return ps
}

// leases returns the addresses host-local has handed out on network
// name (its dataDir holds one file per address).
func (c *cniLab) leases(name string) []string {
	ents, _ := os.ReadDir(filepath.Join(c.dataDir, name))
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "10.") || strings.Contains(e.Name(), ":") {
			out = append(out, e.Name())
		}
	}
	return out
}

// hasLink reports whether ns has an interface named ifname.
func (c *cniLab) hasLink(ns, ifname string) bool {
	_, err := c.Lab.Exec(ns, "ip", "link", "show", ifname)
	return err == nil
}

// cniError returns err's CNI error code and message, failing the test if
// err is not a CNI error.
func cniError(t *testing.T, err error) (uint, string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("got %v (%T), want a CNI error", err, err)
	}
	return te.Code, te.Msg
}

// TestNetnsCNIAddCheckDel: two containers ADDed through libcni ping each
// other and the LAN host over IPv4 and IPv6 and have lo up; the "mac"
// capability sets the MAC; a repeated ADD returns the same result and
// allocates nothing; CHECK passes, then fails once an address is removed
// by hand; DEL twice succeeds and leaves no port, no interface and no
// lease.
func TestNetnsCNIAddCheckDel(t *testing.T) {
	c := newCNILab(t)
	l := c.list(c.net(func(n *cnilab.Net) { n.CapMAC = true }))
	ns1, rt1 := c.container("c1")
	ns2, rt2 := c.container("c2")
	const mac1 = "02:00:00:00:0c:01"
	rt1.CapabilityArgs = map[string]any{"mac": mac1}
	r1 := c.add(l, rt1)
	r2 := c.add(l, rt2)
	t.Logf("ADD c1: %v; c2: %v", r1.IPs, r2.IPs)

	if len(r1.Interfaces) != 1 || r1.Interfaces[0].Name != "eth0" || r1.Interfaces[0].Sandbox != rt1.NetNS || r1.Interfaces[0].Mac != mac1 {
		t.Errorf("c1's result interfaces %+v: want eth0 in %s with MAC %s", r1.Interfaces, rt1.NetNS, mac1)
	}
	if _, mac, _, flags := linkInfo(t, c.Lab, ns1, "eth0"); mac != mac1 || !strings.Contains(flags, "UP") {
		t.Errorf("c1's eth0: MAC %s flags %s, want %s and UP", mac, flags, mac1)
	}
	if _, _, _, flags := linkInfo(t, c.Lab, ns1, "lo"); !strings.Contains(flags, "UP") {
		t.Errorf("c1's lo is not up: %s", flags)
	}
	if len(r1.Routes) != 2 {
		t.Errorf("c1's routes %v: want the two default routes", r1.Routes)
	}
	for _, p := range []struct{ ns, dst string }{
		{ns1, addr(t, r2, false)}, {ns1, addr(t, r2, true)},
		{ns2, addr(t, r1, false)}, {ns2, addr(t, r1, true)},
		{ns1, netlab.HostIP4}, {ns1, netlab.HostIP6}, {ns2, netlab.HostIP4}, {ns2, netlab.HostIP6},
	} {
		if !c.Lab.Ping(p.ns, p.dst, 2*time.Second) {
			t.Errorf("%s cannot ping %s", p.ns, p.dst)
		}
	}
	// Off the subnet: through the default route's gateway (the LAN host,
	// which does not forward; the route is what is checked).
	if out, err := c.Lab.Exec(ns1, "ip", "route", "get", "192.0.2.1"); err != nil || !strings.Contains(out, "via "+netlab.HostIP4) {
		t.Errorf("c1's route to 192.0.2.1: %s %v; want via %s", out, err, netlab.HostIP4)
	}

	// A repeated ADD: the same result, nothing new.
	before := c.leases("macvsw")
	again := c.add(l, rt1)
	if addr(t, again, false) != addr(t, r1, false) || addr(t, again, true) != addr(t, r1, true) || again.Interfaces[0].Mac != mac1 {
		t.Errorf("repeated ADD: %+v %v, want %v", again.Interfaces[0], again.IPs, r1.IPs)
	}
	if after := c.leases("macvsw"); !slices.Equal(before, after) {
		t.Errorf("repeated ADD changed the leases: %v -> %v", before, after)
	}
	if n := len(c.owned(rt1.ContainerID)); n != 1 {
		t.Errorf("c1 has %d ports after a repeated ADD, want 1", n)
	}

	ctx := context.Background()
	if err := c.cni.CheckNetworkList(ctx, l, rt1); err != nil {
		t.Errorf("CHECK c1 right after ADD: %v", err)
	}
	if err := c.cni.GetStatusNetworkList(ctx, l); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	a1 := addr(t, r1, false)
	if err := c.Lab.IP(ns1, "addr", "del", a1+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	err := c.cni.CheckNetworkList(ctx, l, rt1)
	if err == nil {
		t.Fatalf("CHECK after removing %s by hand passed", a1)
	}
	if code, msg := cniError(t, err); code != 101 || !strings.Contains(msg, a1) {
		t.Errorf("CHECK after removing %s: code %d %q, want 101 naming the address", a1, code, msg)
	} else {
		t.Logf("CHECK after removing %s: %s", a1, msg)
	}
	if err := c.cni.CheckNetworkList(ctx, l, rt2); err != nil {
		t.Errorf("CHECK c2: %v", err)
	}

	for i := 1; i <= 2; i++ {
		if err := c.cni.DelNetworkList(ctx, l, rt1); err != nil {
			t.Errorf("DEL %d of c1: %v", i, err)
		}
	}
	if ps := c.owned(rt1.ContainerID); len(ps) != 0 {
		t.Errorf("c1 still has ports after DEL: %+v", ps)
	}
	if c.hasLink(ns1, "eth0") {
		t.Error("c1's eth0 is still there after DEL")
	}
	if err := c.cni.DelNetworkList(ctx, l, rt2); err != nil {
		t.Errorf("DEL c2: %v", err)
	}
	if ls := c.leases("macvsw"); len(ls) != 0 {
		t.Errorf("leases left after DEL: %v", ls)
	}
	if ps, _ := c.client.Ports(ctx); len(ps) != 0 {
		t.Errorf("ports left after DEL: %+v", ps)
	}
}

// TestNetnsCNIDelNetnsGone: the container's namespace is deleted before
// DEL (the tap goes with it): DEL succeeds, removes the daemon's port and
// releases the address.
func TestNetnsCNIDelNetnsGone(t *testing.T) {
	c := newCNILab(t)
	l := c.list(c.net())
	ns, rt := c.container("c1")
	c.add(l, rt)
	if err := c.Lab.DelNS(ns); err != nil {
		t.Fatal(err)
	}
	if err := c.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("DEL after the netns is gone: %v", err)
	}
	if ps := c.owned(rt.ContainerID); len(ps) != 0 {
		t.Errorf("ports left: %+v", ps)
	}
	if ls := c.leases("macvsw"); len(ls) != 0 {
		t.Errorf("leases left: %v", ls)
	}
	if err := c.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("second DEL: %v", err)
	}
}

// TestNetnsCNIGC: GC with one valid attachment removes the others' ports,
// taps and leases, and leaves the valid one working. The GC runs from a
// runtime with an empty cache, so the plugin's GC does the work (not
// libcni's DEL of cached attachments).
func TestNetnsCNIGC(t *testing.T) {
	c := newCNILab(t)
	l := c.list(c.net())
	var nss []string
	var rts []*libcni.RuntimeConf
	for i := range 3 {
		ns, rt := c.container(fmt.Sprintf("c%d", i))
		c.add(l, rt)
		nss, rts = append(nss, ns), append(rts, rt)
	}
	// A port of another network on the same daemon: never this GC's.
	other := c.list(c.net(func(n *cnilab.Net) { n.Name = "other"; n.Hosts = [2]int{150, 199} }))
	nsO, rtO := c.container("o")
	rtO.IfName = "eth1"
	c.add(other, rtO)

	gc := c.plugins.Config(t.TempDir())
	err := gc.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: rts[0].ContainerID, IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if n := len(c.owned(rts[0].ContainerID)); n != 1 {
		t.Errorf("the valid attachment has %d ports after GC, want 1", n)
	}
	for i := 1; i < 3; i++ {
		if ps := c.owned(rts[i].ContainerID); len(ps) != 0 {
			t.Errorf("stale attachment %d still has ports: %+v", i, ps)
		}
		if c.hasLink(nss[i], "eth0") {
			t.Errorf("stale attachment %d still has its tap", i)
		}
	}
	if ls := c.leases("macvsw"); len(ls) != 2 { // c0's IPv4 and IPv6
		t.Errorf("leases after GC: %v, want c0's two", ls)
	}
	if !c.Lab.Ping(nss[0], netlab.HostIP4, 2*time.Second) {
		t.Error("the valid attachment cannot reach the LAN host after GC")
	}
	if n := len(c.owned(rtO.ContainerID)); n != 1 || !c.Lab.Ping(nsO, netlab.HostIP4, 2*time.Second) {
		t.Errorf("the other network's attachment: %d ports after GC, or no traffic", n)
	}
}

// TestNetnsCNIDaemonDown: with the daemon stopped, ADD and STATUS give the
// CNI error that says what to do, ADD leaves nothing behind, DEL of an
// attachment whose netns exists asks to be retried and DEL after the
// netns is gone succeeds.
func TestNetnsCNIDaemonDown(t *testing.T) {
	c := newCNILab(t)
	l := c.list(c.net())
	ns1, rt1 := c.container("c1")
	c.add(l, rt1)
	ns2, rt2 := c.container("c2")
	c.stop()
	want := "macvsw daemon not reachable at " + c.Socket + ": is `macvsw run` running?"

	ctx := context.Background()
	_, err := c.cni.AddNetworkList(ctx, l, rt2)
	if code, msg := cniError(t, err); code != types.ErrTryAgainLater || !strings.HasPrefix(msg, want) {
		t.Errorf("ADD with the daemon down: code %d %q, want 11 %q", code, msg, want)
	}
	if c.hasLink(ns2, "eth0") || len(c.leases("macvsw")) != 2 {
		t.Errorf("the failed ADD left something: eth0 %v, leases %v", c.hasLink(ns2, "eth0"), c.leases("macvsw"))
	}
	err = c.cni.GetStatusNetworkList(ctx, l)
	if code, msg := cniError(t, err); code != types.ErrPluginNotAvailable || msg != want {
		t.Errorf("STATUS with the daemon down: code %d %q, want 50 %q", code, msg, want)
	}
	err = c.cni.DelNetworkList(ctx, l, rt1)
	if code, msg := cniError(t, err); code != types.ErrTryAgainLater || !strings.Contains(msg, "retried") {
		t.Errorf("DEL with the daemon down and the netns there: code %d %q, want 11 asking for a retry", code, msg)
	}
	if err := c.Lab.DelNS(ns1); err != nil {
		t.Fatal(err)
	}
	if err := c.cni.DelNetworkList(ctx, l, rt1); err != nil {
		t.Errorf("DEL with the daemon down and the netns gone: %v", err)
	}
	if ls := c.leases("macvsw"); len(ls) != 0 {
		t.Errorf("leases left: %v", ls)
	}
	// The daemon, started again, drops the port whose netns is gone.
	if err := c.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	if ps, err := c.client.Ports(ctx); err != nil || len(ps) != 0 {
		t.Errorf("ports after the restart: %+v %v, want none", ps, err)
	}
}

// TestNetnsCNIBadConfig: a bad mode (and other bad values) is a CNI error
// naming the key, before anything is made.
func TestNetnsCNIBadConfig(t *testing.T) {
	c := newCNILab(t)
	ns, rt := c.container("c1")
	for _, tc := range []struct {
		key  string
		val  any
		says string
	}{
		{"mode", "hub", `mode: unknown macvlan mode "hub"`},
		{"mtu", 9, "mtu 9"},
		{"kind", "vhost", `kind "vhost"`},
	} {
		l := c.list(c.net(func(n *cnilab.Net) { n.Extra = map[string]any{tc.key: tc.val} }))
		_, err := c.cni.AddNetworkList(context.Background(), l, rt)
		if code, msg := cniError(t, err); code != types.ErrInvalidNetworkConfig || !strings.Contains(msg, tc.says) {
			t.Errorf("%s %v: code %d %q, want 7 saying %q", tc.key, tc.val, code, msg, tc.says)
		}
	}
	if c.hasLink(ns, "eth0") || len(c.leases("macvsw")) != 0 || len(c.owned(rt.ContainerID)) != 0 {
		t.Error("a refused ADD left an interface, a lease or a port")
	}
}

// TestNetnsCNIConcurrent: an ADD while four other ADDs and DELs run at the
// same time; every one succeeds, the survivors have distinct addresses and
// reach the LAN host, and the deleted ones leave nothing.
func TestNetnsCNIConcurrent(t *testing.T) {
	c := newCNILab(t)
	l := c.list(c.net(func(n *cnilab.Net) { n.NoIPv6 = true }))
	var rts []*libcni.RuntimeConf
	var nss []string
	for i := range 5 {
		ns, rt := c.container(fmt.Sprintf("c%d", i))
		nss, rts = append(nss, ns), append(rts, rt)
	}
	c.add(l, rts[0])
	c.add(l, rts[1])
	// c0 and c1 are deleted while c2, c3 and c4 are added.
	ops := []struct {
		del bool
		rt  *libcni.RuntimeConf
	}{{true, rts[0]}, {true, rts[1]}, {false, rts[2]}, {false, rts[3]}, {false, rts[4]}}
	var wg sync.WaitGroup
	errs := make([]error, len(ops))
	start := make(chan struct{})
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if op.del {
				errs[i] = c.cni.DelNetworkList(context.Background(), l, op.rt)
			} else {
				_, errs[i] = c.cni.AddNetworkList(context.Background(), l, op.rt)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent op %d (del=%v %s): %v", i, ops[i].del, ops[i].rt.ContainerID, err)
		}
	}
	if ls := c.leases("macvsw"); len(ls) != 3 {
		t.Errorf("leases %v, want c2's, c3's and c4's", ls)
	}
	for i := range 2 {
		if len(c.owned(rts[i].ContainerID)) != 0 || c.hasLink(nss[i], "eth0") {
			t.Errorf("deleted c%d left a port or its tap", i)
		}
	}
	for i := 2; i < 5; i++ {
		if n := len(c.owned(rts[i].ContainerID)); n != 1 {
			t.Errorf("c%d has %d ports", i, n)
		}
		if !c.Lab.Ping(nss[i], netlab.HostIP4, 2*time.Second) {
			t.Errorf("c%d cannot reach the LAN host", i)
		}
	}
}

// TestNetnsCNIRestart: a CNI port survives the daemon's restarts (SIGTERM
// and SIGKILL): same tap, traffic back, CHECK passes, still owned, and
// DEL still removes it.
func TestNetnsCNIRestart(t *testing.T) {
	c := newCNILab(t)
	l := c.list(c.net())
	ns, rt := c.container("c1")
	r := c.add(l, rt)
	idx, _, _, _ := linkInfo(t, c.Lab, ns, "eth0")
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		if how == "SIGTERM" {
			c.stop()
		} else {
			c.KillDaemon()
		}
		if i, _, _, _ := linkInfo(t, c.Lab, ns, "eth0"); i != idx {
			t.Fatalf("%s: the tap went away (ifindex %d -> %d)", how, idx, i)
		}
		if err := c.StartDaemon(); err != nil {
			t.Fatal(err)
		}
		if !waitFor(5*time.Second, func() bool { return c.Lab.Ping(ns, netlab.HostIP4, time.Second) }) {
			t.Fatalf("%s: no traffic 5 s after the restart", how)
		}
		if !c.Lab.Ping(ns, netlab.HostIP6, 2*time.Second) {
			t.Errorf("%s: no IPv6 traffic after the restart", how)
		}
		if i, _, _, _ := linkInfo(t, c.Lab, ns, "eth0"); i != idx {
			t.Errorf("%s: ifindex %d -> %d: not the same tap", how, idx, i)
		}
		if err := c.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
			t.Errorf("%s: CHECK after the restart: %v", how, err)
		}
		if ps := c.owned(rt.ContainerID); len(ps) != 1 || ps[0].MAC != r.Interfaces[0].Mac {
			t.Errorf("%s: owned ports after the restart: %+v", how, ps)
		}
	}
	if err := c.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("DEL: %v", err)
	}
	if c.hasLink(ns, "eth0") || len(c.owned(rt.ContainerID)) != 0 {
		t.Error("DEL after the restarts left the tap or the port")
	}
}

// TestNetnsCNIAFPacket: kind afpacket makes a veth pair whose far end, in
// the daemon's namespace, is an AF_PACKET port: the container reaches a
// tap sibling and the LAN host, CHECK passes, and DEL removes the veth.
func TestNetnsCNIAFPacket(t *testing.T) {
	c := newCNILab(t)
	af := c.list(c.net(func(n *cnilab.Net) { n.Kind = "afpacket"; n.VethNetns = netlab.Path(c.Topo.SW) }))
	tap := c.list(c.net())
	nsA, rtA := c.container("a")
	nsT, rtT := c.container("t")
	rA := c.add(af, rtA)
	rT := c.add(tap, rtT)
	ps := c.owned(rtA.ContainerID)
	if len(ps) != 1 || ps[0].Kind != "afpacket" || ps[0].MAC != rA.Interfaces[0].Mac {
		t.Fatalf("afpacket attachment's ports %+v, result %+v", ps, rA.Interfaces)
	}
	if !c.hasLink(c.Topo.SW, ps[0].Interface) {
		t.Errorf("no veth end %s in the daemon's namespace", ps[0].Interface)
	}
	for _, dst := range []string{netlab.HostIP4, netlab.HostIP6, addr(t, rT, false), addr(t, rT, true)} {
		if !c.Lab.Ping(nsA, dst, 2*time.Second) {
			t.Errorf("afpacket container cannot ping %s", dst)
		}
	}
	if !c.Lab.Ping(nsT, addr(t, rA, false), 2*time.Second) {
		t.Error("tap container cannot ping the afpacket one")
	}
	if err := c.cni.CheckNetworkList(context.Background(), af, rtA); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := c.cni.DelNetworkList(context.Background(), af, rtA); err != nil {
		t.Errorf("DEL: %v", err)
	}
	if c.hasLink(c.Topo.SW, ps[0].Interface) || c.hasLink(nsA, "eth0") || len(c.owned(rtA.ContainerID)) != 0 {
		t.Error("DEL left the veth or the port")
	}
}

// TestNetnsCNIVersions: ADD, CHECK and DEL with spec versions 0.4.0 and
// 1.0.0 (1.1.0 is every other test's), results in each version's types.
func TestNetnsCNIVersions(t *testing.T) {
	c := newCNILab(t)
	for _, v := range []string{"0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			l := c.list(c.net(func(n *cnilab.Net) { n.CNIVersion = v; n.Name = "net" + strings.ReplaceAll(v, ".", "") }))
			ns, rt := c.container("v" + strings.ReplaceAll(v, ".", ""))
			r, err := c.cni.AddNetworkList(context.Background(), l, rt)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			switch r := r.(type) {
			case *types040.Result:
				if v != "0.4.0" || len(r.IPs) != 2 || r.IPs[0].Version == "" {
					t.Errorf("a %s config got a 0.4.0 result %+v", v, r)
				}
			case *types100.Result:
				if v != "1.0.0" || len(r.IPs) != 2 {
					t.Errorf("a %s config got a %s result %+v", v, r.CNIVersion, r)
				}
			default:
				t.Errorf("result type %T", r)
			}
			if !c.Lab.Ping(ns, netlab.HostIP4, 2*time.Second) {
				t.Error("no traffic")
			}
			if err := c.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := c.cni.DelNetworkList(context.Background(), l, rt); err != nil {
				t.Errorf("DEL: %v", err)
			}
			if c.hasLink(ns, "eth0") {
				t.Error("DEL left the tap")
			}
		})
	}
}

// TestNetnsCNITool: cnitool (built from the module's tool dependency), as
// a runtime would call the plugin: a conflist in NETCONFPATH, the "mac"
// capability through CAP_ARGS and a MAC through CNI_ARGS, add, check,
// status, del twice, gc (which removes every attachment cnitool has
// cached for the network), and status with the daemon down. cnitool's
// cache is a temporary directory; the host's /var/lib/cni is untouched.
func TestNetnsCNITool(t *testing.T) {
	c := newCNILab(t, "unshare")
	varLibCNI := func() string {
		fi, err := os.Stat("/var/lib/cni")
		if err != nil {
			return "absent"
		}
		return fmt.Sprint(fi.ModTime())
	}
	hostCache := varLibCNI()
	confDir, cacheDir := t.TempDir(), t.TempDir()
	n := c.net(func(n *cnilab.Net) { n.CapMAC = true })
	if err := os.WriteFile(filepath.Join(confDir, "10-macvsw.conflist"), n.ConfList(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tool := func(env []string, args ...string) (string, error) {
		out, _, err := c.plugins.Cnitool(ctx, cacheDir, confDir, env, args...)
		return out, err
	}

	ns1, _ := c.container("c1")
	ns2, _ := c.container("c2")
	const mac1, mac2 = "02:00:00:00:0c:07", "02:00:00:00:0c:08"
	out, err := tool([]string{`CAP_ARGS={"mac":"` + mac1 + `"}`, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web"}, "add", "macvsw", netlab.Path(ns1))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := types100.NewResult([]byte(out))
	if err != nil {
		t.Fatalf("cnitool add printed %q: %v", out, err)
	}
	res1, _ := types100.GetResult(r1)
	if len(res1.Interfaces) != 1 || res1.Interfaces[0].Mac != mac1 || len(res1.IPs) != 2 {
		t.Errorf("cnitool add result %s: want eth0 with %s and two addresses", out, mac1)
	}
	if _, err := tool([]string{"CNI_ARGS=IgnoreUnknown=1;MAC=" + mac2}, "add", "macvsw", netlab.Path(ns2)); err != nil {
		t.Fatal(err)
	}
	if _, mac, _, _ := linkInfo(t, c.Lab, ns2, "eth0"); mac != mac2 {
		t.Errorf("CNI_ARGS MAC=%s: eth0 has %s", mac2, mac)
	}
	if !c.Lab.Ping(ns1, netlab.HostIP6, 2*time.Second) || !c.Lab.Ping(ns2, addr(t, res1, false), 2*time.Second) {
		t.Error("no traffic between the cnitool containers and the LAN host")
	}
	for _, cmd := range []string{"check", "status"} {
		if _, err := tool(nil, cmd, "macvsw", netlab.Path(ns1)); err != nil {
			t.Errorf("cnitool %s: %v", cmd, err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := tool(nil, "del", "macvsw", netlab.Path(ns1)); err != nil {
			t.Errorf("cnitool del %d: %v", i+1, err)
		}
	}
	if c.hasLink(ns1, "eth0") {
		t.Error("cnitool del left the tap")
	}
	// gc: cnitool passes no valid attachments, so c2 goes too.
	if _, err := tool(nil, "gc", "macvsw", netlab.Path(ns2)); err != nil {
		t.Errorf("cnitool gc: %v", err)
	}
	if ps, _ := c.client.Ports(ctx); len(ps) != 0 || c.hasLink(ns2, "eth0") || len(c.leases("macvsw")) != 0 {
		t.Errorf("after cnitool gc: ports %+v, c2's tap %v, leases %v", ps, c.hasLink(ns2, "eth0"), c.leases("macvsw"))
	}
	c.stop()
	if _, err := tool(nil, "status", "macvsw", netlab.Path(ns1)); err == nil || !strings.Contains(err.Error(), "is `macvsw run` running?") {
		t.Errorf("cnitool status with the daemon down: %v", err)
	}
	if now := varLibCNI(); now != hostCache {
		t.Errorf("the host's /var/lib/cni changed: %s -> %s", hostCache, now)
	}
}
