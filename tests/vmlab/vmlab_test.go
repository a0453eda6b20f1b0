package vmlab

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// testTimeout bounds each guest test; a boot takes 8-16 s under TCG here.
const testTimeout = 4 * time.Minute

func lab(t *testing.T) *netlab.Lab {
	t.Helper()
	Require(t)
	if err := netlab.Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	l := netlab.New("mvsvm")
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab close: %v", err)
		}
	})
	return l
}

func assets(t *testing.T, ctx context.Context) *Assets {
	t.Helper()
	t0 := time.Now()
	a, err := PrepareAssets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("assets: kernel %s, modules %v (%v)", a.KernelVersion, a.Modules, time.Since(t0).Round(time.Millisecond))
	return a
}

// waitPath waits for a unix socket a QEMU creates (server=on).
func waitPath(ctx context.Context, g *Guest, p string) error {
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never appeared: %w", p, ctx.Err())
		case <-g.Exited():
			return fmt.Errorf("qemu exited before creating %s: %s", p, g.Stderr())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func mustRun(t *testing.T, ctx context.Context, g *Guest, script string) string {
	t.Helper()
	out, err := g.MustRun(ctx, script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNetnsGuestPair connects two guests through QEMU's own stream netdev
// (one QEMU listens, server=on; the other connects, server=off), each
// QEMU in its own test namespace: they ping each other, then one fetches
// 1 MiB of random data from the other's busybox httpd and the checksums
// must match. Both guests stay up for several commands.
func TestNetnsGuestPair(t *testing.T) {
	l := lab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := assets(t, ctx)
	nsA, err := l.AddNS("a")
	if err != nil {
		t.Fatal(err)
	}
	nsB, err := l.AddNS("b")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "ab.sock")
	t0 := time.Now()
	ga := StartT(t, ctx, Options{
		Name: "ga", Assets: a, NetNS: nsA,
		QEMUArgs: []string{"-netdev", "stream,id=n0,server=on,addr.type=unix,addr.path=" + sock,
			"-device", "virtio-net-pci,netdev=n0,mac=02:76:6d:00:00:0a"},
		Ifaces: []Iface{{Name: "eth0", Addrs: []string{"10.79.0.1/24", "fd79::1/64"}}},
	})
	if err := waitPath(ctx, ga, sock); err != nil {
		t.Fatal(err)
	}
	gb := StartT(t, ctx, Options{
		Name: "gb", Assets: a, NetNS: nsB,
		QEMUArgs: []string{"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock,
			"-device", "virtio-net-pci,netdev=n0,mac=02:76:6d:00:00:0b"},
		Ifaces: []Iface{{MAC: "02:76:6d:00:00:0b", Name: "net0", Addrs: []string{"10.79.0.2/24", "fd79::2/64"}}},
	})
	for _, g := range []*Guest{ga, gb} {
		if err := g.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s booted in %v", g.Name, g.BootTime().Round(time.Millisecond))
	}
	t.Logf("both ready %v after the first start", time.Since(t0).Round(time.Millisecond))

	mustRun(t, ctx, ga, "ping -c 3 -W 3 10.79.0.2")
	mustRun(t, ctx, gb, "ping -c 3 -W 3 10.79.0.1 && ping6 -c 2 -W 3 fd79::1")

	sumA := mustRun(t, ctx, ga, `mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/blob bs=1024 count=1024 2>/dev/null
httpd -p 8080 -h /tmp/www
sha256sum /tmp/www/blob`)
	t1 := time.Now()
	sumB := mustRun(t, ctx, gb, `timeout 120 wget -q -O /tmp/blob http://10.79.0.1:8080/blob
ls -l /tmp/blob >&2
sha256sum /tmp/blob`)
	t.Logf("1 MiB over the stream netdev in %v", time.Since(t1).Round(time.Millisecond))
	ha, hb := strings.Fields(sumA), strings.Fields(sumB)
	if len(ha) == 0 || len(hb) == 0 || ha[0] != hb[len(hb)-2] {
		t.Fatalf("checksums differ: %q vs %q", sumA, sumB)
	}
	t.Logf("sha256 %s on both", ha[0])

	// A command's status and output come back exactly.
	r, err := gb.Run(ctx, "printf 'no newline'; exit 7")
	if err != nil || r.ExitCode != 7 || r.Output != "no newline" {
		t.Fatalf("Run = %+v, %v; want output %q status 7", r, err, "no newline")
	}
	for _, g := range []*Guest{ga, gb} {
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := g.Poweroff(pctx); err != nil {
			t.Error(err)
		}
		pcancel()
	}
}

// TestNetnsTap boots a one-shot guest (Options.Script) on a kernel tap in
// a test namespace; the guest pings the namespace's address on the tap.
func TestNetnsTap(t *testing.T) {
	l := lab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := assets(t, ctx)
	ns, err := l.AddNS("tap")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.IPs(ns, "tuntap add dev vmtap0 mode tap", "addr add 10.78.0.1/24 dev vmtap0", "link set vmtap0 up"); err != nil {
		t.Fatal(err)
	}
	g := StartT(t, ctx, Options{
		Name: "gtap", Assets: a, NetNS: ns,
		QEMUArgs: []string{"-netdev", "tap,id=n0,ifname=vmtap0,script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac=02:76:6d:00:01:01"},
		Ifaces: []Iface{{Name: "eth0", Addrs: []string{"10.78.0.2/24"}}},
		Script: "ping -c 3 -W 3 10.78.0.1",
	})
	r, err := g.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted in %v; guest's ping:\n%s", g.BootTime().Round(time.Millisecond), r.Output)
	if r.ExitCode != 0 || !strings.Contains(r.Output, "3 packets received") {
		t.Fatalf("ping over the tap failed (status %d)", r.ExitCode)
	}
	// The tap outlives QEMU (tuntap add made it persistent); its counters
	// show the guest's frames came through it.
	out, err := l.Exec(ns, "cat", "/sys/class/net/vmtap0/statistics/rx_packets")
	if n, _ := strconv.Atoi(strings.TrimSpace(out)); err != nil || n < 4 {
		t.Errorf("vmtap0 received %q packets (%v); want the ARP request and 3 pings at least", out, err)
	}
}

// socketpair returns QEMU's end as a file for Options.ExtraFiles and ours
// as a connection.
func socketpair(t *testing.T, typ int) (*os.File, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, typ|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	q := os.NewFile(uintptr(fds[0]), "qemu-end")
	h := os.NewFile(uintptr(fds[1]), "our-end")
	defer h.Close()
	c, err := net.FileConn(h)
	if err != nil {
		t.Fatal(err)
	}
	return q, c.(*net.UnixConn)
}

// rawRecorder keeps the first bytes read through it.
type rawRecorder struct {
	net.Conn
	mu  chan struct{}
	buf bytes.Buffer
}

func (r *rawRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	<-r.mu
	if r.buf.Len() < 4096 {
		r.buf.Write(p[:n])
	}
	r.mu <- struct{}{}
	return n, err
}

func (r *rawRecorder) bytes() []byte {
	<-r.mu
	defer func() { r.mu <- struct{}{} }()
	return append([]byte(nil), r.buf.Bytes()...)
}

// TestNetnsNetdevForms boots one guest with a NIC on each socket netdev
// form QEMU offers, each wired to a Responder here, and pings through all
// of them: -netdev stream over a unix path with QEMU as client and as
// server and over a passed fd, -netdev dgram over unix paths and over a
// passed fd, and the older -netdev socket,fd= with a stream and a datagram
// socket. On the first it checks the raw bytes (4-byte big-endian length,
// then an Ethernet ARP request with no virtio-net header). Then it closes
// the peer of both unix stream NICs and reports what QEMU does.
func TestNetnsNetdevForms(t *testing.T) {
	l := lab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := assets(t, ctx)
	ns, err := l.AddNS("forms")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p0 := filepath.Join(dir, "s0.sock") // we listen, QEMU connects
	p1 := filepath.Join(dir, "s1.sock") // QEMU listens
	d3q := filepath.Join(dir, "d3q.sock")
	d3h := filepath.Join(dir, "d3h.sock")
	ln0, err := net.ListenUnix("unix", &net.UnixAddr{Name: p0, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln0.Close()
	h3, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: d3h, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	q2, h2 := socketpair(t, syscall.SOCK_STREAM)
	q4, h4 := socketpair(t, syscall.SOCK_DGRAM)
	q5, h5 := socketpair(t, syscall.SOCK_STREAM)
	q6, h6 := socketpair(t, syscall.SOCK_DGRAM)
	forms := []string{
		"stream,server=off,addr.type=unix,addr.path=" + p0,
		"stream,server=on,addr.type=unix,addr.path=" + p1,
		"stream,addr.type=fd,addr.str=3",
		"dgram,local.type=unix,local.path=" + d3q + ",remote.type=unix,remote.path=" + d3h,
		"dgram,local.type=fd,local.str=4",
		"socket,fd=5",
		"socket,fd=6",
	}
	var args []string
	var ifs []Iface
	var script strings.Builder
	for i, f := range forms {
		mac := fmt.Sprintf("02:76:6d:00:02:%02x", i)
		args = append(args, "-netdev", fmt.Sprintf("%s,id=n%d", f, i), "-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=%s", i, mac))
		ifs = append(ifs, Iface{Name: fmt.Sprintf("net%d", i), MAC: mac, Addrs: []string{fmt.Sprintf("10.77.%d.1/24", i)}})
		fmt.Fprintf(&script, "echo == net%d; ping -c 2 -W 3 10.77.%d.2 || st=1\n", i, i)
	}
	script.WriteString("exit $st\n")
	g := StartT(t, ctx, Options{Name: "gforms", Assets: a, NetNS: ns, QEMUArgs: args, Ifaces: ifs, ExtraFiles: []*os.File{q2, q4, q5, q6}})
	for _, f := range []*os.File{q2, q4, q5, q6} {
		f.Close()
	}

	resp := make([]*Responder, len(forms))
	conns := make([]FrameConn, len(forms))
	served := make([]chan error, len(forms))
	serve := func(i int, c FrameConn) {
		resp[i] = &Responder{MAC: net.HardwareAddr{2, 0x76, 0x6d, 0, 3, byte(i)}, IP: netip.AddrFrom4([4]byte{10, 77, byte(i), 2})}
		conns[i], served[i] = c, make(chan error, 1)
		go func() { served[i] <- resp[i].Serve(c) }()
	}
	defer func() {
		for i, c := range conns {
			if c != nil {
				c.Close()
				<-served[i]
			}
		}
	}()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln0.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var raw0 *rawRecorder
	select {
	case c := <-accepted:
		raw0 = &rawRecorder{Conn: c, mu: make(chan struct{}, 1)}
		raw0.mu <- struct{}{}
		serve(0, NewStreamConn(raw0))
	case <-time.After(time.Minute):
		t.Fatal("QEMU (server=off) never connected")
	}
	if err := waitPath(ctx, g, p1); err != nil {
		t.Fatal(err)
	}
	c1, err := net.Dial("unix", p1)
	if err != nil {
		t.Fatal(err)
	}
	serve(1, NewStreamConn(c1))
	serve(2, NewStreamConn(h2))
	serve(3, NewDgramConn(h3, &net.UnixAddr{Name: d3q, Net: "unixgram"}))
	serve(4, NewDgramConn(h4, nil))
	serve(5, NewStreamConn(h5))
	serve(6, NewDgramConn(h6, nil))
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("booted with %d NICs in %v", len(forms), g.BootTime().Round(time.Millisecond))

	out, err := g.MustRun(ctx, script.String())
	if err != nil {
		t.Error(err)
	}
	for i, r := range resp {
		var arps int
		for _, f := range r.Frames() {
			req, err := ParseARPRequest(f)
			if err != nil {
				continue
			}
			arps++
			if want := (net.HardwareAddr{2, 0x76, 0x6d, 0, 2, byte(i)}); !bytes.Equal(f[0:6], []byte{255, 255, 255, 255, 255, 255}) || !bytes.Equal(req.SrcMAC, want) ||
				req.SenderIP != netip.AddrFrom4([4]byte{10, 77, byte(i), 1}) || req.Target != r.IP {
				t.Errorf("n%d: odd ARP request % x", i, f)
			}
		}
		t.Logf("n%d -netdev %s: %d frames in (%d ARP requests), %d replies out", i, forms[i], len(r.Frames()), arps, r.Sent())
		if arps == 0 || r.Sent() < 3 {
			t.Errorf("n%d: want an ARP request and replies to it and to the pings\n%s", i, out)
		}
	}

	// The raw bytes on the stream: length prefix, then the frame itself.
	b := raw0.bytes()
	var sawARP bool
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint32(b))
		if n > MaxFrame || 4+n > len(b) {
			break
		}
		f := b[4 : 4+n]
		if _, err := ParseARPRequest(f); err == nil {
			t.Logf("raw stream bytes of an ARP request: % x", b[:4+n])
			if n != 42 {
				t.Errorf("ARP request of %d bytes; a bare Ethernet ARP is 42", n)
			}
			sawARP = true
			break
		}
		b = b[4+n:]
	}
	if !sawARP {
		t.Errorf("no length-prefixed ARP request among the raw stream bytes % x", raw0.bytes()[:min(64, len(raw0.bytes()))])
	}

	// Disconnect: close our side of n0 (QEMU is the client) and n1 (QEMU is
	// the server).
	conns[0].Close()
	<-served[0]
	conns[1].Close()
	<-served[1]
	conns[0], conns[1] = nil, nil
	out, _ = g.MustRun(ctx, "sleep 1; for i in 0 1; do echo net$i carrier $(cat /sys/class/net/net$i/carrier); done; ping -c 1 -W 1 10.77.0.2 >/dev/null || echo net0 ping fails")
	t.Logf("after the peers closed:\n%s", out)
	select {
	case c := <-accepted:
		t.Logf("QEMU (server=off) reconnected by itself")
		c.Close()
	case <-time.After(5 * time.Second):
		t.Logf("QEMU (server=off) did not reconnect within 5 s (QEMU < 8.0 has no reconnect=)")
	}
	c1, err = net.Dial("unix", p1)
	if err != nil {
		t.Fatalf("QEMU (server=on) does not accept a new client: %v", err)
	}
	serve(1, NewStreamConn(c1))
	if _, err := g.MustRun(ctx, "ping -c 2 -W 3 10.77.1.2"); err != nil {
		t.Errorf("QEMU (server=on) took a new client but no traffic flows: %v", err)
	} else {
		t.Logf("QEMU (server=on) accepted a new client and traffic flows again")
	}
	if s := g.Stderr(); s != "" {
		t.Logf("qemu stderr: %s", s)
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	if err := g.Poweroff(pctx); err != nil {
		t.Error(err)
	}
}

// TestControlProtocol feeds the ttyS1 parser what a guest writes, in
// one-byte pieces.
func TestControlProtocol(t *testing.T) {
	a, b := net.Pipe()
	g := &Guest{Name: "fake", token: "t0k", ready: make(chan struct{}), results: make(chan frameResult, 4), readerEnd: make(chan struct{}), ctl: a}
	go g.readControl()
	in := "boot noise\n" +
		"\n@@t0k BEGIN setup\nsetup out\n\n@@t0k END setup 0\n" +
		"\n@@t0k READY\n" +
		"\n@@t0k BEGIN c1\nline one\n@@t0k not a marker\n\n@@t0k END c1 0\n" +
		"\n@@t0k BEGIN c2\nno newline\n@@t0k END c2 3\n"
	go func() {
		for i := range len(in) {
			b.Write([]byte{in[i]})
		}
		b.Close()
	}()
	<-g.ready
	if g.setup.Output != "setup out\n" || g.setup.ExitCode != 0 {
		t.Errorf("setup = %+v", g.setup)
	}
	want := []frameResult{{"c1", Result{"line one\n@@t0k not a marker\n", 0}}, {"c2", Result{"no newline", 3}}}
	for _, w := range want {
		if r := <-g.results; r != w {
			t.Errorf("got %+v, want %+v", r, w)
		}
	}
	<-g.readerEnd
}

// TestCPIO reads back what cpioWriter writes.
func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.Dir("bin", 0o755)
	c.File("bin/x", 0o755, []byte("hello"))
	c.Symlink("bin/y", "x")
	c.CharDev("dev/console", 0o600, 5, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	type ent struct {
		name       string
		mode, size uint64
		body       string
	}
	var got []ent
	r := buf.Bytes()
	for len(r) > 0 {
		if len(r) < 110 || string(r[:6]) != "070701" {
			t.Fatalf("bad header at % x", r[:min(len(r), 16)])
		}
		field := func(i int) uint64 {
			var v uint64
			fmt.Sscanf(string(r[6+8*i:14+8*i]), "%08x", &v)
			return v
		}
		mode, size, nsize := field(1), field(6), field(11)
		name := string(r[110 : 110+nsize-1])
		off := (110 + int(nsize) + 3) &^ 3
		body := string(r[off : off+int(size)])
		got = append(got, ent{name, mode, size, body})
		r = r[(off+int(size)+3)&^3:]
		if name == "TRAILER!!!" {
			break
		}
	}
	want := []ent{{"bin", cpioDir | 0o755, 0, ""}, {"bin/x", cpioReg | 0o755, 5, "hello"}, {"bin/y", cpioSymlink | 0o777, 1, "x"}, {"dev/console", cpioChar | 0o600, 0, ""}, {"TRAILER!!!", 0, 0, ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if len(r) != 0 {
		t.Errorf("%d bytes after the trailer", len(r))
	}
}

// TestSetupScript refuses values that would need quoting.
func TestSetupScript(t *testing.T) {
	for _, bad := range []Iface{
		{Name: "eth0; reboot"},
		{MAC: "02:00:00:00:00"},
		{Name: "eth0", Addrs: []string{"10.0.0.1"}},
		{Name: "eth0", Addrs: []string{"10.0.0.1/24 dev lo"}},
		{},
	} {
		if _, err := setupScript([]Iface{bad}); err == nil {
			t.Errorf("setupScript accepted %+v", bad)
		}
	}
	s, err := setupScript([]Iface{{Name: "net0", MAC: "02:AA:00:00:00:01", MTU: 1400, Addrs: []string{"10.0.0.1/24", "fd00::1/64"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"byaddr 02:aa:00:00:00:01", "name net0", "mtu 1400", "ip addr add 10.0.0.1/24 dev $d\n", "ip addr add fd00::1/64 dev $d\n", "accept_dad"} {
		if !strings.Contains(s, w) {
			t.Errorf("setup script lacks %q:\n%s", w, s)
		}
	}
}

// TestNetnsBootFailures: a QEMU that refuses its arguments, and a boot
// whose ctx ends first, both return errors and leave no process behind.
func TestNetnsBootFailures(t *testing.T) {
	Require(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := assets(t, ctx)

	_, err := Boot(ctx, Options{Name: "gbad", Assets: a, QEMUArgs: []string{"-netdev", "stream,id=n0,addr.type=unix,addr.path=/nonexistent/x,no-such-option=1"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-option") {
		t.Errorf("bad -netdev: err = %v; want QEMU's complaint in it", err)
	}

	g, err := Start(ctx, Options{Name: "gslow", Assets: a})
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := g.PID(), g.Dir()
	short, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = g.WaitReady(short)
	scancel()
	if err == nil {
		t.Fatal("booted in 0.5 s under TCG?")
	}
	if err := g.Close(); err != nil {
		t.Error(err)
	}
	if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
		t.Errorf("qemu pid %d still there after Close: %v", pid, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Close: %v", dir, err)
	}
}

// TestReadModule decompresses .ko.gz in Go and .ko.xz with xz-utils' xz
// (PrepareAssets uses the downloaded busybox's xz applet; this machine may
// have only xz).
func TestReadModule(t *testing.T) {
	dir := t.TempDir()
	body := bytes.Repeat([]byte("\x7fELF module body "), 100)
	plain := filepath.Join(dir, "a.ko")
	if err := os.WriteFile(plain, body, 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(body)
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "b.ko.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := []string{plain, filepath.Join(dir, "b.ko.gz")}
	if _, err := exec.LookPath("xz"); err == nil {
		xzp := filepath.Join(dir, "c.ko")
		os.WriteFile(xzp, body, 0o644)
		if out, err := exec.Command("xz", xzp).CombinedOutput(); err != nil {
			t.Fatalf("xz: %v %s", err, out)
		}
		paths = append(paths, xzp+".xz")
	} else {
		t.Log("no xz here: .ko.xz not tested")
	}
	for _, p := range paths {
		got, err := readModule(context.Background(), filepath.Join(dir, "no-busybox"), p)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes, %v", filepath.Base(p), len(got), err)
		}
	}
	if n := modName("/x/net_failover.ko.xz"); n != "net_failover" {
		t.Errorf("modName = %q", n)
	}
	if n := modName("kernel/drivers/virtio/virtio-pci.ko"); n != "virtio_pci" {
		t.Errorf("modName = %q", n)
	}
}
