package runsclab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/testenv"
)

// DefaultArgs is the container's long-lived process when Config.Args is
// empty: bounded, so a sandbox that Close never reached (the test binary
// was killed) still goes away by itself.
var DefaultArgs = []string{"sleep", "1200"}

// Config says how to start a sandbox.
type Config struct {
	// Runsc is the runsc binary (Binary.Path). Required.
	Runsc string
	// NetNS is the network namespace the sandbox joins: a name under
	// /var/run/netns, or an absolute path. Required.
	NetNS string
	// ID is the container ID; empty picks "rl-" and random hex.
	ID string
	// Args is the container's process; empty means DefaultArgs.
	Args []string
	// Platform is runsc's --platform; empty keeps runsc's default (systrap).
	Platform string
	// Flags are more runsc global flags, such as "--gso=false".
	Flags []string
}

// Sandbox is one running runsc container. Its methods are safe for
// concurrent use.
type Sandbox struct {
	ID    string
	NetNS string // path of the network namespace
	Dir   string // bundle/, root/ (runsc --root) and logs/ (--debug-log)
	PID   int    // the sandbox process, from `runsc state`

	runsc string
	flags []string

	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

// GlobalFlags are the runsc flags every command of a sandbox gets, before
// the per-sandbox --root and --debug-log and Config.Flags:
//   - --network=sandbox: runsc's own netstack on the namespace's devices
//     (the default, spelled out);
//   - --ignore-cgroups: no cgroup is created or joined, so nothing is left
//     in the host's cgroup tree;
//   - --net-raw: keep CAP_NET_RAW so ping can open raw ICMP sockets in the
//     container (runsc exec keeps it anyway);
//   - --gofer-network-namespace=new: each gofer gets a fresh empty network
//     namespace, instead of the default "null", which bind-mounts a shared
//     one at ROOT/null-netns and leaves that mount behind after delete;
//   - --debug: debug-level logs, which name each NIC and its GSO setting.
var GlobalFlags = []string{"--network=sandbox", "--ignore-cgroups", "--net-raw", "--gofer-network-namespace=new", "--debug"}

// Start creates a sandbox as Config says and starts its process
// (`runsc run --detach`). On error nothing is left behind; the error
// carries runsc's output and the tail of its debug logs.
func Start(ctx context.Context, cfg Config) (*Sandbox, error) {
	if cfg.Runsc == "" || cfg.NetNS == "" {
		return nil, errors.New("runsclab.Start: Config.Runsc and Config.NetNS are required")
	}
	nsPath := cfg.NetNS
	if !filepath.IsAbs(nsPath) {
		nsPath = netlab.Path(nsPath)
	}
	if _, err := os.Stat(nsPath); err != nil {
		return nil, fmt.Errorf("runsclab.Start: network namespace: %w", err)
	}
	id := cfg.ID
	if id == "" {
		id = "rl-" + randHex(4)
	}
	args := cfg.Args
	if len(args) == 0 {
		args = DefaultArgs
	}
	dir, err := os.MkdirTemp("", "runsclab-"+id+"-")
	if err != nil {
		return nil, err
	}
	s := &Sandbox{ID: id, NetNS: nsPath, Dir: dir, runsc: cfg.Runsc}
	for _, d := range []string{"bundle", "root", "logs"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	s.flags = append(s.flags, GlobalFlags...)
	s.flags = append(s.flags, "--root="+filepath.Join(dir, "root"), "--debug-log="+filepath.Join(dir, "logs")+"/")
	if cfg.Platform != "" {
		s.flags = append(s.flags, "--platform="+cfg.Platform)
	}
	s.flags = append(s.flags, cfg.Flags...)

	spec, err := json.MarshalIndent(Spec(args, nsPath, id), "", "  ")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle", "config.json"), spec, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	// runsc run --detach leaves the sandbox holding the stdio it was given:
	// a file, never a pipe, or Wait would last as long as the sandbox.
	out, err := os.Create(filepath.Join(dir, "run.out"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	runCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, s.runsc, s.cmdArgs("run", "--detach", "--bundle="+filepath.Join(dir, "bundle"), id)...)
	cmd.Stdout, cmd.Stderr = out, out
	runErr := cmd.Run()
	out.Close()
	if runErr == nil {
		s.PID, runErr = s.statePID(ctx)
	}
	if runErr != nil {
		runOut, _ := os.ReadFile(filepath.Join(dir, "run.out"))
		logs := s.LogSummary()
		s.Close()
		return nil, fmt.Errorf("runsc run %s in %s: %w\n%s\n--- debug logs ---\n%s", id, nsPath, runErr, tail(string(runOut), 2000), logs)
	}
	return s, nil
}

// cmdArgs is the global flags followed by a runsc command and its args.
func (s *Sandbox) cmdArgs(args ...string) []string {
	return append(append([]string{}, s.flags...), args...)
}

// statePID reads the sandbox's PID from `runsc state`.
func (s *Sandbox) statePID(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.runsc, s.cmdArgs("state", s.ID)...).Output()
	if err != nil {
		return 0, fmt.Errorf("runsc state: %w", err)
	}
	var st struct {
		PID    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, fmt.Errorf("runsc state: %w: %s", err, out)
	}
	if st.Status != "running" {
		return st.PID, fmt.Errorf("runsc state: container is %q, not running", st.Status)
	}
	return st.PID, nil
}

// Command returns `runsc exec ID args...` for the caller to set up and run
// (stdin is empty unless set). The caller owns the process and starts it
// with testenv.StartWithParent, so it dies with the test; Exec and Spawn
// are the usual ways in.
func (s *Sandbox) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.runsc, s.cmdArgs(append([]string{"exec", s.ID}, args...)...)...)
	// runsc exec passes SIGTERM on to the process in the sandbox.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs args in the sandbox, waits, and returns the combined output.
// ctx bounds it; wrap long commands in `timeout N` too, since a process in
// the sandbox may outlive a killed runsc exec until Close.
func (s *Sandbox) Exec(ctx context.Context, args ...string) (string, error) {
	cmd := s.Command(ctx, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := testenv.RunWithParent(cmd); err != nil {
		return out.String(), fmt.Errorf("runsc exec %s: %w: %s", strings.Join(args, " "), err, tail(out.String(), 2000))
	}
	return out.String(), nil
}

// Proc is a background `runsc exec` started by Spawn.
type Proc struct {
	Cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error
}

// Spawn starts args in the sandbox in the background. Close stops what is
// still running.
func (s *Sandbox) Spawn(args ...string) (*Proc, error) {
	p := &Proc{done: make(chan struct{})}
	p.Cmd = s.Command(context.Background(), args...)
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("sandbox closed")
	}
	if err := testenv.StartWithParent(p.Cmd); err != nil {
		return nil, err
	}
	s.procs = append(s.procs, p)
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Wait waits up to timeout for p to exit and returns its output and exit
// error; on timeout p keeps running and the error says so.
func (p *Proc) Wait(timeout time.Duration) (string, error) {
	select {
	case <-p.done:
		return p.out.String(), p.err
	case <-time.After(timeout):
		return p.out.String(), fmt.Errorf("pid %d still running after %v", p.Cmd.Process.Pid, timeout)
	}
}

// Output is what p printed so far.
func (p *Proc) Output() string { return p.out.String() }

// stop ends p: SIGTERM (runsc exec forwards it), then SIGKILL by PID.
func (p *Proc) stop(timeout time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Close kills the container (`runsc kill --all ID KILL`), deletes it
// (`runsc delete --force`), stops background execs, kills by PID any
// process still running with this sandbox's --root (sandbox, gofer), and
// removes Dir. It is safe to call twice.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	procs := s.procs
	s.mu.Unlock()

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.PID != 0 {
		// Ignore kill errors: the container may have stopped by itself.
		exec.CommandContext(ctx, s.runsc, s.cmdArgs("kill", "--all", s.ID, "KILL")...).Run()
	}
	if out, err := exec.CommandContext(ctx, s.runsc, s.cmdArgs("delete", "--force", s.ID)...).CombinedOutput(); err != nil && s.PID != 0 {
		errs = append(errs, fmt.Errorf("runsc delete %s: %w: %s", s.ID, err, tail(string(out), 1000)))
	}
	for _, p := range procs {
		p.stop(5 * time.Second)
	}
	for _, pid := range s.leftoverPIDs() {
		syscall.Kill(pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("runsc left pid %d running after delete; killed", pid))
	}
	for _, m := range mountsUnder(s.Dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points below dir in this mount namespace,
// deepest first (runsc may leave some, such as ROOT/null-netns).
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			ms = append(ms, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	return ms
}

// leftoverPIDs lists processes whose command line names this sandbox's
// --root: runsc's sandbox and gofer for this container and nothing else.
func (s *Sandbox) leftoverPIDs() []int {
	mark := []byte("--root=" + filepath.Join(s.Dir, "root") + "\x00")
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cl, mark) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// LogDir is the --debug-log directory: one file per runsc command
// (runsc.log.TIME.run.txt, .boot.txt, .gofer.txt, .exec.txt...).
func (s *Sandbox) LogDir() string { return filepath.Join(s.Dir, "logs") }

// Logs returns the debug logs, each file cut to its last max bytes,
// oldest file first (0 means whole files).
func (s *Sandbox) Logs(max int) string {
	ents, _ := os.ReadDir(s.LogDir())
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(s.LogDir(), n))
		if err != nil {
			continue
		}
		text := string(data)
		if max > 0 {
			text = tail(text, max)
		}
		fmt.Fprintf(&b, "=== %s ===\n%s\n", n, text)
	}
	return b.String()
}

// glogLevelRE matches a warning, error or fatal line of runsc's text logs
// ("W1201 15:33:51.065891 1 file.go:62] ...").
var glogLevelRE = regexp.MustCompile(`^[WEF]\d{4} `)

// LogSummary is for a failed test: per debug log file, its warnings and
// errors (at most 40) and its last 30 lines.
func (s *Sandbox) LogSummary() string {
	ents, _ := os.ReadDir(s.LogDir())
	var b strings.Builder
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(s.LogDir(), e.Name()))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		var warn []string
		for _, l := range lines {
			if glogLevelRE.MatchString(l) && len(warn) < 40 {
				warn = append(warn, l)
			}
		}
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		fmt.Fprintf(&b, "=== %s: warnings and errors ===\n%s\n=== %s: last lines ===\n%s\n",
			e.Name(), strings.Join(warn, "\n"), e.Name(), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Link is what runsc made of one host device, read from its debug log.
type Link struct {
	Name      string
	MAC       string
	MTU       int
	Addresses []string
	// GSOMaxSize is the GSO size the netstack endpoint got: the device's
	// gso_max_size with host GSO, gVisor's own with software GSO, else 0.
	GSOMaxSize int
	// HostGSO means the device reported GSO (ETHTOOL_GGSO), so runsc set
	// PACKET_VNET_HDR on its AF_PACKET socket and hands the kernel
	// super-frames with a virtio-net header for the host to segment.
	HostGSO bool
	// SoftwareGSO means the device had no GSO and gVisor segments itself.
	SoftwareGSO bool
}

var (
	linkRE = regexp.MustCompile(`\{Name:(\S+) InterfaceIndex:\d+ MTU:(\d+) Addresses:\[([^\]]*)\] .*?GSOMaxSize:(\d+) GVisorGSOEnabled:(true|false) .*?LinkAddress:(\S*) `)
)

// Links parses the "Setting up network, config:" debug line that `runsc
// run` logs when it hands the namespace's devices to the sandbox, and
// returns its FDBasedLinks (loopback is not one).
func (s *Sandbox) Links() ([]Link, error) {
	files, _ := filepath.Glob(filepath.Join(s.LogDir(), "*.run.txt"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			_, cfg, ok := strings.Cut(line, "Setting up network, config: ")
			if !ok {
				continue
			}
			_, links, ok := strings.Cut(cfg, "FDBasedLinks:[")
			if !ok {
				return nil, fmt.Errorf("%s: no FDBasedLinks in %q", f, tail(line, 500))
			}
			links, _, _ = strings.Cut(links, "] XDPLinks:")
			var out []Link
			for _, m := range linkRE.FindAllStringSubmatch(links, -1) {
				mtu, _ := strconv.Atoi(m[2])
				gso, _ := strconv.Atoi(m[4])
				soft := m[5] == "true"
				out = append(out, Link{
					Name: m[1], MTU: mtu, Addresses: strings.Fields(m[3]), GSOMaxSize: gso,
					SoftwareGSO: soft, HostGSO: gso > 0 && !soft, MAC: m[6],
				})
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no \"Setting up network, config:\" line in %s/*.run.txt (runsc's log format changed?)", s.LogDir())
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
