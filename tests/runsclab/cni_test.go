package runsclab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/macvsw/macvsw/tests/cnilab"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// echoServer accepts one TCP connection on [addr]:port and echoes what it
// reads until the client half-closes (python3 from the host's /, which
// is the sandbox's rootfs).
const echoServer = `
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(1)
s.settimeout(30)
c, peer = s.accept()
c.settimeout(30)
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
    n += len(d)
c.close()
print("echoed", n, "bytes to", peer[0])
`

// echoClient connects to [addr]:port (retrying while the server starts),
// sends size bytes, half-closes, and checks that the same bytes come back.
const echoClient = `
import socket, sys, time
addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
msg = bytes((i * 7 + i // 251) % 256 for i in range(size))
for i in range(100):
    try:
        c = socket.create_connection((addr, port), timeout=30)
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("no server at [%s]:%d" % (addr, port))
c.sendall(msg)
c.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    d = c.recv(65536)
    if not d:
        break
    got += d
if bytes(got) != msg:
    sys.exit("echo differs: sent %d bytes, got %d" % (len(msg), len(got)))
print("echo ok", len(got), "bytes")
`

// echo runs the echo server in srv on [addr]:port and the client in cli,
// with size bytes.
func echo(t *testing.T, srv, cli *Sandbox, addr string, port, size int) {
	t.Helper()
	p, err := srv.Spawn("timeout", "40", "python3", "-c", echoServer, addr, fmt.Sprint(port))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cli.Exec(ctxT(t, 60*time.Second), "timeout", "50", "python3", "-c", echoClient, addr, fmt.Sprint(port), fmt.Sprint(size))
	if err != nil || !strings.Contains(out, "echo ok") {
		t.Errorf("TCP echo %s -> %s [%s]:%d: %v %s", cli.ID, srv.ID, addr, port, err, out)
	}
	sout, err := p.Wait(40 * time.Second)
	if err != nil || !strings.Contains(sout, fmt.Sprintf("echoed %d bytes", size)) {
		t.Errorf("echo server in %s: %v %s", srv.ID, err, sout)
	} else {
		t.Logf("TCP echo %s -> %s over [%s]:%d: %s", cli.ID, srv.ID, addr, port, strings.TrimSpace(sout))
	}
}

// ipOf returns the result's address of one family.
func ipOf(t *testing.T, r *types100.Result, v6 bool) string {
	t.Helper()
	for _, ipc := range r.IPs {
		if (ipc.Address.IP.To4() == nil) == v6 {
			return ipc.Address.IP.String()
		}
	}
	t.Fatalf("no IPv6=%v address in %+v", v6, r.IPs)
	return ""
}

// TestNetnsRunscCNI: two runsc sandboxes on macvsw ports made by the CNI
// plugin (through libcni, host-local IPAM), as a runtime with a runsc
// RuntimeClass would: sandbox "tap" on a tap port the daemon creates in
// its namespace, sandbox "afp" on an afpacket port (a veth the plugin
// makes; the daemon reads its far end with AF_PACKET, runsc reads the near
// end with PACKET_VNET_HDR and host GSO, offloads left on). They ping each
// other and the LAN host over IPv4 and IPv6, echo 256 KiB over TCP both
// ways, and each runs a 2 s iperf3 to the LAN host over IPv4 and IPv6.
//
//	[ns HOST] 10.77.0.100 ── LAN ── low [ns SW] macvsw ─┬─ tap ─────► [ns tap] runsc
//	                                              mvs… ─┴─ veth ────► [ns afp] runsc
func TestNetnsRunscCNI(t *testing.T) {
	bin := RequireRunsc(t)
	// The sandboxes run the host's ping, iperf3 and python3.
	if m := testenv.Missing("ping", "iperf3", "python3"); len(m) > 0 {
		t.Fatalf("the sandbox runs host tools that are missing: %v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	plugins, err := cnilab.Build(ctx)
	if err != nil {
		t.Fatalf("building the CNI plugins: %v", err)
	}
	macvsw, err := netlab.BuildBinary(repoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := netlab.BuildMacvsw("mvsrc", macvsw, t.TempDir(), false, nil)
	t.Cleanup(func() {
		if t.Failed() && v.Log != nil {
			t.Logf("macvsw log:\n%s", v.Log.String())
		}
		if err := v.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	lab := v.Lab
	rt := plugins.Config(t.TempDir())
	dataDir := t.TempDir()
	nets := map[string]cnilab.Net{
		"tap": {Socket: v.Socket, DataDir: dataDir},
		"afp": {Socket: v.Socket, DataDir: dataDir, Kind: "afpacket", VethNetns: netlab.Path(v.Topo.SW)},
	}
	var b [3]byte
	rand.Read(b[:])
	results := map[string]*types100.Result{}
	sandboxes := map[string]*Sandbox{}
	for _, name := range []string{"tap", "afp"} {
		ns, err := lab.AddNS(name)
		if err != nil {
			t.Fatal(err)
		}
		list, err := nets[name].List()
		if err != nil {
			t.Fatal(err)
		}
		rc := &libcni.RuntimeConf{ContainerID: "rl-cni-" + name + "-" + hex.EncodeToString(b[:]), NetNS: netlab.Path(ns), IfName: "eth0"}
		r, err := rt.AddNetworkList(ctx, list, rc)
		if err != nil {
			t.Fatalf("CNI ADD %s: %v", name, err)
		}
		t.Cleanup(func() {
			if err := rt.DelNetworkList(context.Background(), list, rc); err != nil {
				t.Errorf("CNI DEL %s: %v", name, err)
			}
		})
		if results[name], err = types100.NewResultFromResult(r); err != nil {
			t.Fatal(err)
		}
		t.Logf("CNI ADD %s: %s %v", name, results[name].Interfaces[0].Mac, results[name].IPs)
		s := StartTB(t, Config{Runsc: bin.Path, NetNS: ns, ID: rc.ContainerID})
		sandboxes[name] = s
		links, err := s.Links()
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 1 || links[0].Name != "eth0" || !strings.EqualFold(links[0].MAC, results[name].Interfaces[0].Mac) {
			t.Fatalf("runsc in %s took %+v, want eth0 with %s", name, links, results[name].Interfaces[0].Mac)
		}
		t.Logf("runsc %s: eth0 host GSO (PACKET_VNET_HDR) %v, software GSO %v, gso max %d, addresses %v",
			name, links[0].HostGSO, links[0].SoftwareGSO, links[0].GSOMaxSize, links[0].Addresses)
		if name == "afp" && !links[0].HostGSO {
			t.Errorf("runsc on the afpacket port's veth did not use host GSO: %+v", links[0])
		}
	}
	tap, afp := sandboxes["tap"], sandboxes["afp"]

	for _, p := range []struct {
		from *Sandbox
		dst  string
	}{
		{tap, ipOf(t, results["afp"], false)}, {tap, ipOf(t, results["afp"], true)},
		{afp, ipOf(t, results["tap"], false)}, {afp, ipOf(t, results["tap"], true)},
		{tap, netlab.HostIP4}, {tap, netlab.HostIP6}, {afp, netlab.HostIP4}, {afp, netlab.HostIP6},
	} {
		out, err := p.from.Exec(ctxT(t, 30*time.Second), "ping", "-c", "3", "-i", "0.2", "-W", "2", p.dst)
		if err != nil {
			t.Errorf("%s: ping %s: %v", p.from.ID, p.dst, err)
			continue
		}
		t.Logf("%s: ping %s: %s", p.from.ID, p.dst, pingSummary(out))
	}

	const size = 256 << 10
	echo(t, tap, afp, ipOf(t, results["tap"], false), 7001, size)
	echo(t, afp, tap, ipOf(t, results["afp"], false), 7002, size)
	echo(t, tap, afp, ipOf(t, results["tap"], true), 7003, size)
	echo(t, afp, tap, ipOf(t, results["afp"], true), 7004, size)

	for _, name := range []string{"tap", "afp"} {
		for _, dst := range []string{netlab.HostIP4, netlab.HostIP6} {
			r := iperf(t, sandboxes[name], lab, v.Topo.Host, dst, 2, false)
			t.Logf("iperf3 %s -> LAN host %s: %.2f Gbit/s, %d retransmits", name, dst, r.Gbps, r.Retransmits)
			if r.Gbps <= 0 {
				t.Errorf("iperf3 %s -> %s: no throughput", name, dst)
			}
		}
	}
}
