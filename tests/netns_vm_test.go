package tests

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/vmlab"
)

// Real QEMU guests (TCG) on macvsw without a kernel tap between them and
// the switch: -netdev stream (QEMU connects to macvsw's socket, server=off)
// and -netdev dgram, and a guest on its own tap in its own namespace as an
// AF_PACKET port. Each pings the LAN host and a tap sandbox and fetches a
// file, checksummed; bridge-mode guests reach each other directly. Then a
// QEMU restart (the port comes back for the new guest) and a macvsw
// restart with QEMU as the server (server=on: macvsw reconnects; the
// guest is not restarted).
//
//	guest S ─ stream ─┐               ┌─ tap ─ sandbox 0 (10.77.0.1, HTTP)
//	guest D ─ dgram ──┤    macvsw     │
//	guest T ─ tap in vmns ─ AF_PACKET ┤ lower ── LAN ── host 10.77.0.100
//	guest C ─ stream (QEMU server=on) ┤
//	guest F ─ handed-off stream FD ───┘
//
// Guest F's QEMU gets its netdev as an FD from POST /v1/ports?fd=stream
// (addr.type=fd): no socket path, no tap.
func TestNetnsQEMUGuests(t *testing.T) {
	requireNetns(t, "python3")
	vmlab.Require(t)
	if testing.Short() {
		t.Skip("boots six QEMU guests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	assets, err := vmlab.PrepareAssets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}})
	lab, sb0 := m.Lab, m.Sandboxes[0]
	dir := filepath.Dir(m.Socket) // the lab's own directory under /run
	mac := func(i int) string { return fmt.Sprintf("02:00:00:00:02:%02x", i) }
	ip := func(i int) string { return fmt.Sprintf("10.77.0.%d", 20+i) }

	// A file to fetch, served over HTTP from the tap sandbox.
	www := filepath.Join(t.TempDir(), "www")
	os.MkdirAll(www, 0o755)
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	os.WriteFile(filepath.Join(www, "blob"), blob, 0o644)
	sum := sha256.Sum256(blob)
	want := hex.EncodeToString(sum[:])
	if _, err := lab.Start(sb0, nil, nil, "python3", "-m", "http.server", "--bind", netlab.SandboxIP4(0), "--directory", www, "8080"); err != nil {
		t.Fatal(err)
	}

	guest := func(name string, i int, netns string, args ...string) *vmlab.Guest {
		return vmlab.StartT(t, ctx, vmlab.Options{
			Name: name, Assets: assets, NetNS: netns,
			QEMUArgs: append(args, "-device", "virtio-net-pci,netdev=n0,mac="+mac(i)),
			Ifaces:   []vmlab.Iface{{Name: "net0", MAC: mac(i), Addrs: []string{ip(i) + "/24"}}},
		})
	}
	add := func(entry string) {
		t.Helper()
		if status, body := m.api("POST", "/v1/ports", entry); status != 200 {
			t.Fatalf("add port %s: %d %s", entry, status, body)
		}
	}

	// S: QEMU connects to macvsw's stream socket (server=off).
	sSock := filepath.Join(dir, "vm-s.sock")
	add(fmt.Sprintf(`{"name": "vms", "mode": "bridge", "mac": %q, "socket": {"type": "stream", "listen": %q}}`, mac(1), sSock))
	gs := guest("vms", 1, "", "-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path="+sSock)

	// D: dgram, each side binding its own path.
	dSw, dVM := filepath.Join(dir, "vm-d-sw.sock"), filepath.Join(dir, "vm-d-vm.sock")
	add(fmt.Sprintf(`{"name": "vmd", "mode": "bridge", "mac": %q, "socket": {"type": "dgram", "listen": %q, "peer": %q}}`, mac(2), dSw, dVM))
	gd := guest("vmd", 2, "", "-netdev", fmt.Sprintf("dgram,id=n0,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", dVM, dSw))

	// T: the VM's own tap in its own namespace, attached with AF_PACKET
	// where it is.
	vmns, err := lab.AddNS("vmns")
	if err != nil {
		t.Fatal(err)
	}
	gt := guest("vmt", 3, vmns, "-netdev", "tap,id=n0,ifname=vmtap0,script=no,downscript=no")

	// C: QEMU listens (server=on); macvsw connects.
	cSock := filepath.Join(dir, "vm-c.sock")
	gc := guest("vmc", 4, "", "-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path="+cSock)

	// F: a stream FD handed over by the daemon, given to QEMU as fd 3.
	_, fdF, err := api.NewClient(m.Socket).AddPortFD(ctx, map[string]any{"name": "vmf", "mode": "bridge", "mac": mac(5)}, api.HandoffStream)
	if err != nil {
		t.Fatal(err)
	}
	gf := vmlab.StartT(t, ctx, vmlab.Options{
		Name: "vmf", Assets: assets, ExtraFiles: []*os.File{fdF},
		QEMUArgs: []string{"-netdev", "stream,id=n0,server=off,addr.type=fd,addr.str=3", "-device", "virtio-net-pci,netdev=n0,mac=" + mac(5)},
		Ifaces:   []vmlab.Iface{{Name: "net0", MAC: mac(5), Addrs: []string{ip(5) + "/24"}}},
	})
	fdF.Close() // QEMU holds it now
	for _, g := range []*vmlab.Guest{gs, gd, gt, gc, gf} {
		if err := g.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := lab.IP(vmns, "link", "set", "vmtap0", "up"); err != nil {
		t.Fatal(err)
	}
	add(fmt.Sprintf(`{"name": "vmt", "mode": "bridge", "mac": %q, "afpacket": {"interface": "vmtap0", "netns": %q}}`, mac(3), netlab.Path(vmns)))
	add(fmt.Sprintf(`{"name": "vmc", "mode": "bridge", "mac": %q, "socket": {"type": "stream", "connect": %q}}`, mac(4), cSock))

	reach := func(g *vmlab.Guest, what string) {
		t.Helper()
		for _, dst := range []string{netlab.HostIP4, netlab.SandboxIP4(0)} {
			if _, err := g.MustRun(ctx, "ping -c 3 -W 2 "+dst); err != nil {
				t.Errorf("%s: %s cannot ping %s: %v", what, g.Name, dst, err)
			}
		}
		out, err := g.MustRun(ctx, fmt.Sprintf("wget -q -O /tmp/blob http://%s:8080/blob && sha256sum /tmp/blob", netlab.SandboxIP4(0)))
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("%s: %s fetching 1 MiB: %v %s (want sha256 %s)", what, g.Name, err, out, want)
		}
	}
	for _, g := range []*vmlab.Guest{gs, gd, gt, gc, gf} {
		reach(g, "first boot")
	}
	// The handed-off port loses its carrier when its QEMU exits.
	gf.Close()
	if !waitFor(5*time.Second, func() bool { return !m.port("vmf").Link }) {
		t.Errorf("the QEMU holding the handed-off FD exited, port vmf still has a link")
	}
	// Bridge-mode guests reach each other directly.
	if _, err := gs.MustRun(ctx, "ping -c 3 -W 2 "+ip(2)); err != nil {
		t.Errorf("stream guest to dgram guest: %v", err)
	}

	// QEMU restarted: the stream port comes back for the new guest.
	gs.Close()
	if !waitFor(5*time.Second, func() bool { return !m.port("vms").Link }) {
		t.Errorf("stream guest gone, port vms still has a link")
	}
	gs2 := guest("vms2", 1, "", "-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path="+sSock)
	if err := gs2.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if !m.port("vms").Link {
		t.Errorf("new stream guest connected, port vms has no link")
	}
	if _, err := gs2.MustRun(ctx, "ping -c 3 -W 2 "+netlab.SandboxIP4(0)); err != nil {
		t.Errorf("restarted stream guest cannot ping the sandbox: %v", err)
	}

	// macvsw restarted: the guest of the QEMU that listens gets its
	// network back without a restart of its own.
	m.stop()
	if err := m.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return m.port("vmc").Link }) {
		t.Fatalf("after the daemon's restart, port vmc did not reconnect: %+v\n%s", m.port("vmc"), m.Log.String())
	}
	if _, err := gc.MustRun(ctx, "ping -c 3 -W 2 "+netlab.SandboxIP4(0)); err != nil {
		t.Errorf("after macvsw restarted, guest vmc cannot ping the sandbox: %v", err)
	}
}

// TestNetnsSocketPortAbuse: garbage from a socket peer, a second
// connection and a peer that stops reading are the port's business only:
// two tap sandboxes keep talking, and every refusal is counted.
func TestNetnsSocketPortAbuse(t *testing.T) {
	requireNetns(t)
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}})
	sock := filepath.Join(filepath.Dir(m.Socket), "abuse.sock")
	if status, body := m.api("POST", "/v1/ports", fmt.Sprintf(`{"name": "vm", "mode": "bridge", "mac": "02:00:00:00:02:09", "socket": {"type": "stream", "listen": %q}}`, sock)); status != 200 {
		t.Fatalf("add: %d %s", status, body)
	}
	wait := m.udpBackground(4)
	// A zero length, then a huge one, then a short read.
	for _, garbage := range [][]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {0, 0, 0, 100, 1, 2, 3}} {
		c, err := netDialUnix(sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(garbage)
		c.Close()
		time.Sleep(100 * time.Millisecond)
	}
	// A peer that reads nothing while the sandboxes flood broadcasts its
	// way, and a second peer meanwhile.
	c, err := netDialUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c2, err := netDialUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	m.Lab.Exec(m.Sandboxes[0], "ping", "-b", "-c", "300", "-i", "0.005", "-W", "1", "10.77.0.255")
	r := wait()
	if r.Packets == 0 {
		t.Fatalf("no UDP between the two other ports")
	}
	// The two other ports lost nothing in the switch. (A machine under
	// load can still lose datagrams in the sandboxes' own sockets: iperf3
	// counts those too, so they are reported, not failed on.)
	all, err := newAPIClient(m).Stats(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"p0", "p1"} {
		p := all.Port(name)
		if p == nil {
			t.Fatalf("no stats for %s", name)
		}
		rx, tx := p.Switch.RxDrops.NonZero(), p.Switch.TxDrops.NonZero()
		ep := p.Endpoint.Total()
		if len(rx) > 0 || len(tx) > 0 || ep.RxDrops.Total() > 0 || ep.TxDrops.Total() > 0 {
			t.Errorf("port %s dropped frames while a socket peer misbehaved: switch rx %v tx %v, endpoint rx %v tx %v",
				name, rx, tx, ep.RxDrops.NonZero(), ep.TxDrops.NonZero())
		}
	}
	t.Logf("UDP between the two other ports: %d of %d lost end to end", r.Lost, r.Packets)
	st, err := newAPIClient(m).Stats(context.Background(), "vm")
	if err != nil {
		t.Fatal(err)
	}
	ep := st.Ports[0].Endpoint
	for _, r := range []string{"bad_length", "short_read", "busy"} {
		if ep.Refused.Get(r) == 0 {
			t.Errorf("refused %s not counted: %v", r, ep.Refused)
		}
	}
	t.Logf("socket port vm: refused %v, connects %d, tx drops %v", ep.Refused.NonZero(), ep.Connects, ep.Total().TxDrops.NonZero())
}

// TestNetnsHandoffFdbased: an unprivileged process (uid 65534), which
// could not create a tap, gets a port's frame FD over the control socket
// and runs a gVisor netstack on it with gVisor's fdbased endpoint
// (cmd/macvsw-fdbased), talking TCP to a tap sandbox through the switch.
func TestNetnsHandoffFdbased(t *testing.T) {
	requireNetns(t, "python3", "ss", "setpriv")
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}})
	// Let group nogroup (65534) use the control socket, for ports gv*.
	m.stop()
	text := strings.Replace(m.ConfigText, "control: {socket: "+m.Socket+"}", "control: {socket: "+m.Socket+", group: \"65534\", allow: {ports: [\"gv*\"]}}", 1)
	if err := os.WriteFile(m.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(m.Socket), 0o755)
	bin := filepath.Join(t.TempDir(), "macvsw-fdbased")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/macvsw-fdbased").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	echo := `import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 7007)); s.listen(1)
c, _ = s.accept(); c.settimeout(20)
d = b""
while len(d) < 11:
    d += c.recv(100)
c.sendall(d.upper()); c.close()`
	if _, err := m.Lab.Start(m.Sandboxes[0], nil, nil, "python3", "-c", echo); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool {
		out, _ := m.Lab.Exec(m.Sandboxes[0], "ss", "-Hltn", "sport = :7007")
		return strings.Contains(out, "7007")
	}) {
		t.Fatal("the echo server in sandbox 0 never listened")
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin,
		"--socket", m.Socket, "--name", "gv0", "--mac", "02:00:00:00:0a:01", "--address", "10.77.0.50/24",
		"--dial", "10.77.0.1:7007", "--message", "hello world")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `got "HELLO WORLD" back`) {
		t.Fatalf("macvsw-fdbased as uid 65534: %v\n%s\n%s", err, out, m.Log.String())
	}
	t.Logf("%s", out)
	// It deleted its port on exit.
	if out, _, _ := m.cli("port", "list"); strings.Contains(out, "gv0") {
		t.Errorf("the hand-off port outlived its program:\n%s", out)
	}
}

func netDialUnix(path string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}

func newAPIClient(m *lab) *api.Client { return api.NewClient(m.Socket) }
