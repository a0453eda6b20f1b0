package vmlab

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/macvsw/macvsw/tests/testenv"
)

// QEMU is the emulator Boot runs unless Options.QEMU says otherwise.
const QEMU = "qemu-system-x86_64"

// Available reports why guests cannot be booted here (no QEMU), or nil.
// Preparing assets needs apt-get and dpkg-deb as well, and root to write
// the default cache; tests that run guests inside network namespaces need
// root anyway.
func Available() error {
	if _, err := exec.LookPath(QEMU); err != nil {
		return fmt.Errorf("needs %s (Debian package qemu-system-x86): %w", QEMU, err)
	}
	return nil
}

// Iface configures one guest network interface before the guest reports
// ready.
type Iface struct {
	// Name is the interface's name in the guest. With MAC empty it names an
	// existing interface (eth0, eth1, ... in -device order); with MAC set
	// the interface with that MAC is renamed to Name (if Name is not empty;
	// pick names like net0 that cannot clash with ethN).
	Name string
	// MAC selects the interface by hardware address (as given to
	// -device virtio-net-pci,mac=...).
	MAC string
	// Addrs are CIDR addresses to add, e.g. "10.1.0.1/24" or "fd00::1/64"
	// (duplicate address detection is off, so IPv6 ones work at once).
	Addrs []string
	// MTU, if not zero, is set before the link goes up.
	MTU int
}

// Options describes a guest.
type Options struct {
	// Name labels the guest in errors and logs and is its hostname.
	Name string
	// Assets to boot; nil means PrepareAssets(ctx).
	Assets *Assets
	// NetNS, if set, runs QEMU under `ip netns exec NetNS`, so that tap
	// devices and inet sockets QEMU opens live in that namespace. Unix
	// socket paths are filesystem paths and reach across namespaces.
	NetNS string
	// QEMUArgs are added to QEMU's command line: the guest's -netdev and
	// -device arguments. QEMU itself gets no NIC otherwise.
	QEMUArgs []string
	// ExtraFiles are passed to QEMU as file descriptors 3, 4, ... (for
	// fd= / addr.type=fd netdevs).
	ExtraFiles []*os.File
	// Ifaces are configured, in order, before the guest is ready; lo is
	// always brought up.
	Ifaces []Iface
	// Script, if set, makes a one-shot guest: /init runs it once after
	// setup, reports its output and exit status, and powers off. Wait
	// returns its Result. Without Script the guest stays up and runs
	// commands sent with Run until Poweroff (or Close).
	Script string
	// MemoryMiB is the guest's memory; default 256.
	MemoryMiB int
	// Timeout bounds the guest's whole life, from Start; QEMU is killed
	// after it. Default 10 minutes. (The ctx given to Start and Boot bounds
	// only those calls.)
	Timeout time.Duration
	// Console, if set, receives a copy of the guest's serial console
	// (kernel messages, module loading). Guest.Console keeps it too.
	Console io.Writer
	// KernelArgs are appended to the kernel command line.
	KernelArgs []string
	// QEMU is the emulator binary; default QEMU.
	QEMU string
}

// Result is what a guest command (Run, Options.Script, the setup) printed,
// stdout and stderr together, and its exit status.
type Result struct {
	Output   string
	ExitCode int
}

// Guest is a running QEMU guest.
type Guest struct {
	Name string

	opts    Options
	cmd     *exec.Cmd
	dir     string
	token   string
	ctl     net.Conn
	started time.Time

	console syncBuffer
	stderr  syncBuffer

	ready     chan struct{} // closed when the guest reported READY
	readyAt   time.Time
	setup     Result
	results   chan frameResult
	exited    chan struct{} // closed when QEMU has exited and all output is read
	exitErr   error
	readerEnd chan struct{}

	runMu  sync.Mutex // one command at a time
	nextID int
	broken error // set when a command's result was lost

	closeOnce sync.Once
	timer     *time.Timer

	mu       sync.Mutex
	script   *Result // Options.Script's result, once seen
	sawReady bool
}

type frameResult struct {
	id string
	Result
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$`)
)

// Boot starts a guest and waits until it is ready: modules loaded, lo and
// Ifaces configured, the command channel up. On failure the guest is
// stopped and cleaned up, and the error carries the console's tail.
func Boot(ctx context.Context, opts Options) (*Guest, error) {
	g, err := Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := g.WaitReady(ctx); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Start starts QEMU and returns without waiting for the guest to boot;
// WaitReady waits. Use it to boot several guests in parallel, or to start a
// QEMU that listens (server=on) before the guest that connects to it.
func Start(ctx context.Context, opts Options) (_ *Guest, err error) {
	if opts.Name == "" {
		opts.Name = "guest"
	}
	if !nameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("vmlab: bad guest name %q", opts.Name)
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 256
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.QEMU == "" {
		opts.QEMU = QEMU
	}
	if opts.Assets == nil {
		a, err := PrepareAssets(ctx)
		if err != nil {
			return nil, err
		}
		opts.Assets = a
	}
	setup, err := setupScript(opts.Ifaces)
	if err != nil {
		return nil, fmt.Errorf("vmlab: %s: %w", opts.Name, err)
	}

	var tok [6]byte
	rand.Read(tok[:])
	g := &Guest{
		Name:      opts.Name,
		opts:      opts,
		token:     hex.EncodeToString(tok[:]),
		ready:     make(chan struct{}),
		results:   make(chan frameResult, 4),
		exited:    make(chan struct{}),
		readerEnd: make(chan struct{}),
	}
	g.dir, err = os.MkdirTemp("", "vmlab-"+opts.Name+"-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	initrd := filepath.Join(g.dir, "initrd.gz")
	if err := g.writeInitrd(initrd, setup); err != nil {
		return nil, err
	}
	ctlPath := filepath.Join(g.dir, "ctl.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: ctlPath, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer ln.Close()

	kargs := append([]string{"console=ttyS0", "panic=-1", "quiet", "loglevel=4", "rdinit=/init"}, opts.KernelArgs...)
	args := []string{
		"-name", opts.Name,
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-accel", "tcg", "-machine", "pc", "-smp", "1",
		"-m", strconv.Itoa(opts.MemoryMiB),
		"-display", "none", "-nic", "none",
		"-kernel", opts.Assets.Kernel, "-initrd", initrd,
		"-append", strings.Join(kargs, " "),
		"-chardev", "stdio,id=vmlabcon,signal=off", "-serial", "chardev:vmlabcon", // ttyS0: console
		"-chardev", "socket,id=vmlabctl,path=" + ctlPath, "-serial", "chardev:vmlabctl", // ttyS1: commands
	}
	args = append(args, opts.QEMUArgs...)
	if opts.NetNS != "" {
		g.cmd = exec.Command("ip", append([]string{"netns", "exec", opts.NetNS, opts.QEMU}, args...)...)
	} else {
		g.cmd = exec.Command(opts.QEMU, args...)
	}
	var consoleW io.Writer = &g.console
	if opts.Console != nil {
		consoleW = io.MultiWriter(&g.console, opts.Console)
	}
	g.cmd.Stdout, g.cmd.Stderr = consoleW, &g.stderr
	g.cmd.ExtraFiles = opts.ExtraFiles
	// QEMU dies with this process; ip netns exec execs QEMU in place, so the
	// PID is QEMU's.
	g.started = time.Now()
	if err := testenv.StartWithParent(g.cmd); err != nil {
		return nil, fmt.Errorf("vmlab: %s: starting qemu: %w", opts.Name, err)
	}
	go func() {
		g.exitErr = g.cmd.Wait()
		close(g.exited)
	}()
	g.timer = time.AfterFunc(opts.Timeout, func() { g.cmd.Process.Kill() })

	// QEMU connects to the control socket while it starts up.
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			g.ctl = c
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		if err != nil {
			return nil, err
		}
	case <-g.exited:
		ln.Close()
		<-accepted
		return nil, g.exitError("qemu exited at start")
	case <-ctx.Done():
		ln.Close()
		<-accepted
		return nil, fmt.Errorf("vmlab: %s: waiting for qemu to start: %w", opts.Name, ctx.Err())
	}
	go g.readControl()
	return g, nil
}

// writeInitrd writes the base initramfs followed by a second archive with
// this boot's /init, setup and script.
func (g *Guest) writeInitrd(path, setup string) error {
	base, err := os.ReadFile(g.opts.Assets.Initrd)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.Write(base)
	zw := gzip.NewWriter(&buf)
	cw := newCPIO(zw)
	cw.Dir("vmlab", 0o755)
	cw.File("init", 0o755, []byte(initScript(g.token, g.opts.Name)))
	cw.File("vmlab/setup", 0o644, []byte(setup))
	if g.opts.Script != "" {
		cw.File("vmlab/script", 0o644, []byte(g.opts.Script))
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}

// initScript is the guest's /init. Its console is ttyS0; ttyS1, a unix
// socket on the host, carries a line protocol:
//
//	guest: "\n@@TOKEN BEGIN ID\n" OUTPUT "\n@@TOKEN END ID STATUS\n"
//	guest: "\n@@TOKEN READY\n"
//	host:  "run ID BASE64-SCRIPT\n" | "poweroff\n"
//
// OUTPUT is the command's raw stdout and stderr; the newline before END is
// the marker's, not the output's. Setup runs as ID "setup", Options.Script
// as ID "script". End of input on ttyS1 (the host closed it) powers off.
func initScript(token, hostname string) string {
	return `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
hostname ` + hostname + `
for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m.ko || echo "vmlab: insmod $m failed"
done
C=/dev/ttyS1
stty -F $C raw -echo
exec 3<>$C
T=@@` + token + `
frame() {
	printf '\n%s BEGIN %s\n' $T "$1" >&3
	sh "$2" </dev/null >&3 2>&3
	printf '\n%s END %s %d\n' $T "$1" $? >&3
}
ip link set lo up
frame setup /vmlab/setup
printf '\n%s READY\n' $T >&3
if [ -f /vmlab/script ]; then
	frame script /vmlab/script
else
	while read -r cmd id arg <&3; do
		case "$cmd" in
		run)
			echo "$arg" | base64 -d >/tmp/.vmlab-cmd
			frame "$id" /tmp/.vmlab-cmd
			;;
		poweroff) break ;;
		esac
	done
fi
exec 3>&-
sync
poweroff -f
`
}

// setupScript turns ifaces into shell commands, checking every value first.
func setupScript(ifaces []Iface) (string, error) {
	var b strings.Builder
	b.WriteString(`set -e
byaddr() {
	n=0
	while [ $n -lt 100 ]; do
		for d in /sys/class/net/*; do
			if [ "$(cat $d/address)" = "$1" ]; then echo ${d##*/}; return 0; fi
		done
		usleep 100000; n=$((n+1))
	done
	echo "vmlab: no interface with MAC $1" >&2; return 1
}
byname() {
	n=0
	while [ ! -e /sys/class/net/$1 ]; do
		[ $n -lt 100 ] || { echo "vmlab: no interface $1" >&2; return 1; }
		usleep 100000; n=$((n+1))
	done
	echo $1
}
`)
	for i, ifc := range ifaces {
		if ifc.Name != "" && !nameRE.MatchString(ifc.Name) {
			return "", fmt.Errorf("bad interface name %q", ifc.Name)
		}
		if ifc.MAC == "" && ifc.Name == "" {
			return "", fmt.Errorf("interface %d has neither Name nor MAC", i)
		}
		if ifc.MAC != "" {
			hw, err := net.ParseMAC(ifc.MAC)
			if err != nil || len(hw) != 6 {
				return "", fmt.Errorf("bad MAC %q", ifc.MAC)
			}
			fmt.Fprintf(&b, "d=$(byaddr %s)\n", hw)
			if ifc.Name != "" {
				fmt.Fprintf(&b, "[ $d = %s ] || ip link set dev $d name %[1]s\nd=%[1]s\n", ifc.Name)
			}
		} else {
			fmt.Fprintf(&b, "d=$(byname %s)\n", ifc.Name)
		}
		if ifc.MTU != 0 {
			fmt.Fprintf(&b, "ip link set dev $d mtu %d\n", ifc.MTU)
		}
		// busybox ip knows no nodad: turn duplicate address detection off
		// so that IPv6 addresses work at once.
		b.WriteString("echo 0 >/proc/sys/net/ipv6/conf/$d/accept_dad 2>/dev/null || true\n")
		for _, a := range ifc.Addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return "", fmt.Errorf("bad address %q: %w", a, err)
			}
			fmt.Fprintf(&b, "ip addr add %s dev $d\n", p)
		}
		b.WriteString("ip link set dev $d up\n")
	}
	return b.String(), nil
}

// readControl parses ttyS1 until QEMU closes it.
func (g *Guest) readControl() {
	defer close(g.readerEnd)
	marker := []byte("@@" + g.token + " ")
	var buf []byte
	var cur string // id of the frame being collected, "" between frames
	chunk := make([]byte, 4096)
	for {
		n, err := g.ctl.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for {
			if cur == "" {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				line := buf[:i]
				buf = buf[i+1:]
				rest, ok := bytes.CutPrefix(line, marker)
				if !ok {
					continue
				}
				f := strings.Fields(string(rest))
				switch {
				case len(f) == 1 && f[0] == "READY":
					g.mu.Lock()
					if !g.sawReady {
						g.readyAt, g.sawReady = time.Now(), true
						close(g.ready)
					}
					g.mu.Unlock()
				case len(f) == 2 && f[0] == "BEGIN":
					cur = f[1]
				}
				continue
			}
			end := append(append([]byte("\n"), marker...), "END "+cur+" "...)
			i := bytes.Index(buf, end)
			if i < 0 {
				break
			}
			j := bytes.IndexByte(buf[i+len(end):], '\n')
			if j < 0 {
				break
			}
			rc, _ := strconv.Atoi(string(buf[i+len(end) : i+len(end)+j]))
			r := frameResult{cur, Result{Output: string(buf[:i]), ExitCode: rc}}
			buf = buf[i+len(end)+j+1:]
			switch cur {
			case "setup":
				g.setup = r.Result // read after g.ready closes
			case "script":
				g.mu.Lock()
				g.script = &r.Result
				g.mu.Unlock()
			default:
				select {
				case g.results <- r:
				default: // nobody waits for it any more
				}
			}
			cur = ""
		}
		if err != nil {
			return
		}
	}
}

func (g *Guest) exitError(what string) error {
	return fmt.Errorf("vmlab: %s: %s (%v); qemu stderr: %s; console tail:\n%s",
		g.Name, what, g.exitErr, strings.TrimSpace(g.stderr.String()), tail(g.console.String(), 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// WaitReady waits until the guest is set up and accepts commands (or, with
// Options.Script, is about to run the script). A failed setup is an error
// carrying its output.
func (g *Guest) WaitReady(ctx context.Context) error {
	select {
	case <-g.ready:
		if g.setup.ExitCode != 0 {
			return fmt.Errorf("vmlab: %s: setup failed with status %d: %s", g.Name, g.setup.ExitCode, g.setup.Output)
		}
		return nil
	case <-g.exited:
		return g.exitError("qemu exited before the guest was ready")
	case <-ctx.Done():
		return fmt.Errorf("vmlab: %s: not ready after %v: %w; console tail:\n%s",
			g.Name, time.Since(g.started).Round(time.Millisecond), ctx.Err(), tail(g.console.String(), 3000))
	}
}

// BootTime is how long the guest took from QEMU's start to ready, or 0
// if it is not ready yet.
func (g *Guest) BootTime() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.sawReady {
		return 0
	}
	return g.readyAt.Sub(g.started)
}

// Run runs script with /bin/sh in the guest and returns its output and exit
// status; a non-zero status is not an error. Commands run one at a time.
// Background jobs a script starts must redirect their output (for example
// `httpd -f ... >/tmp/log 2>&1 &`), or it would mix with later replies.
// If ctx ends first the guest is considered unusable for more commands;
// bound long guest commands with busybox's `timeout` instead.
func (g *Guest) Run(ctx context.Context, script string) (Result, error) {
	if g.opts.Script != "" {
		return Result{}, fmt.Errorf("vmlab: %s: one-shot guest (Options.Script) takes no commands", g.Name)
	}
	if len(script) > 48<<10 {
		return Result{}, fmt.Errorf("vmlab: %s: script of %d bytes is too long", g.Name, len(script))
	}
	if err := g.WaitReady(ctx); err != nil {
		return Result{}, err
	}
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.broken != nil {
		return Result{}, g.broken
	}
	g.nextID++
	id := "c" + strconv.Itoa(g.nextID)
	line := "run " + id + " " + base64.StdEncoding.EncodeToString([]byte(script)) + "\n"
	g.ctl.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(g.ctl, line); err != nil {
		g.broken = fmt.Errorf("vmlab: %s: command channel: %w", g.Name, err)
		return Result{}, g.broken
	}
	for {
		select {
		case r := <-g.results:
			if r.id == id {
				return r.Result, nil
			}
		case <-g.readerEnd:
			select {
			case r := <-g.results:
				if r.id == id {
					return r.Result, nil
				}
			default:
			}
			g.broken = fmt.Errorf("vmlab: %s: guest gone while running %s", g.Name, id)
			return Result{}, g.broken
		case <-ctx.Done():
			g.broken = fmt.Errorf("vmlab: %s: command %s did not finish: %w", g.Name, id, ctx.Err())
			return Result{}, g.broken
		}
	}
}

// MustRun is Run that also fails on a non-zero exit status.
func (g *Guest) MustRun(ctx context.Context, script string) (string, error) {
	r, err := g.Run(ctx, script)
	if err != nil {
		return r.Output, err
	}
	if r.ExitCode != 0 {
		return r.Output, fmt.Errorf("vmlab: %s: %q exited with status %d: %s", g.Name, script, r.ExitCode, r.Output)
	}
	return r.Output, nil
}

// Poweroff asks the guest to power off and waits for QEMU to exit; if ctx
// ends first QEMU is killed.
func (g *Guest) Poweroff(ctx context.Context) error {
	g.runMu.Lock()
	if g.ctl != nil {
		g.ctl.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(g.ctl, "poweroff\n")
	}
	g.runMu.Unlock()
	select {
	case <-g.exited:
		return nil
	case <-ctx.Done():
		g.Kill()
		return fmt.Errorf("vmlab: %s: did not power off: %w", g.Name, ctx.Err())
	}
}

// Wait waits for QEMU to exit. For a one-shot guest (Options.Script) it
// returns the script's Result, and an error if the guest exited without
// reporting one. If ctx ends first QEMU keeps running.
func (g *Guest) Wait(ctx context.Context) (Result, error) {
	select {
	case <-g.exited:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("vmlab: %s: still running: %w", g.Name, ctx.Err())
	}
	if g.readerEnd != nil && g.ctl != nil {
		<-g.readerEnd
	}
	g.mu.Lock()
	r := g.script
	g.mu.Unlock()
	if g.opts.Script == "" {
		return Result{}, nil
	}
	if r == nil {
		return Result{}, g.exitError("guest exited without the script's result")
	}
	return *r, nil
}

// Exited is closed when QEMU has exited.
func (g *Guest) Exited() <-chan struct{} { return g.exited }

// Kill kills QEMU by PID and waits for it to exit.
func (g *Guest) Kill() error {
	if g.cmd == nil || g.cmd.Process == nil {
		return nil
	}
	select {
	case <-g.exited:
		return nil
	default:
	}
	err := g.cmd.Process.Kill()
	<-g.exited
	return err
}

// Close kills QEMU if it still runs, closes the command channel and removes
// the guest's temporary files. It is safe to call more than once.
func (g *Guest) Close() error {
	var err error
	g.closeOnce.Do(func() {
		if g.cmd != nil && g.cmd.Process != nil {
			err = g.Kill()
			g.timer.Stop()
		}
		if g.ctl != nil {
			g.ctl.Close()
			<-g.readerEnd
		}
		if g.dir != "" {
			if e := os.RemoveAll(g.dir); e != nil && err == nil {
				err = e
			}
		}
	})
	return err
}

// PID is QEMU's process id.
func (g *Guest) PID() int { return g.cmd.Process.Pid }

// Console returns the serial console's output so far.
func (g *Guest) Console() string { return g.console.String() }

// Stderr returns QEMU's own standard error so far.
func (g *Guest) Stderr() string { return g.stderr.String() }

// Dir is the guest's temporary directory, removed by Close: a place for
// the caller's unix sockets.
func (g *Guest) Dir() string { return g.dir }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
