package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	"golang.org/x/sys/unix"
)

// errLogged marks an error `run` has already logged, in the configured
// format: main exits 1 without printing it again.
var errLogged = errors.New("logged")

const runUsage = `macvsw run --config FILE [--pidfile PATH] [--cleanup] [flags]

Runs the switch in the foreground; logs go to stderr, in log.format (or
--log-format). Start-up, in order: the config is loaded and checked
against the host, the metrics address is bound, the state directory
locked, the lower and every port brought up, the pidfile written and the
control socket bound; only then is "macvsw running" logged and systemd
told READY=1 (sd_notify, when NOTIFY_SOCKET is set, as with Type=notify).
Any failure is logged, in the configured format, and exits 1 after undoing
what was made.

SIGHUP or "macvsw reload" reloads FILE (systemd: RELOADING=1, then
READY=1); SIGTERM/SIGINT stop the daemon and leave the ports' taps in
place (no carrier) for the next start.

The config file's reference: macvsw config reference, or
` + config.ReferenceURL

// cmdRun runs the switch in the foreground until SIGINT or SIGTERM; SIGHUP
// and POST /v1/reload reload the config file.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Signals first: a SIGHUP that comes while we start is a reload to do
	// once started, never the end of the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := newFlagSet("macvsw run", runUsage, stderr)
	path := fs.String("config", "", "config file (YAML; macvsw config reference)")
	pidfile := fs.String("pidfile", "", "write the daemon's PID to PATH once it runs; removed on exit")
	cleanup := fs.Bool("cleanup", false, "on exit, remove every port and delete the taps macvsw created (default: leave them for the next start)")
	realtime := fs.Int("realtime", 0, "run every thread SCHED_RR at this priority (1-99; 0: the normal scheduler); see README, Performance")
	syscallIO := fs.Bool("syscall-io", false, "tap queues read and write one frame per system call instead of io_uring batches (default: io_uring where the kernel allows it)")
	over := config.RegisterFlags(fs)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *path == "" {
		return usageFail(fs, "missing --config FILE")
	}
	if *realtime < 0 || *realtime > 99 {
		return usageFail(fs, "--realtime %d: want 0 (off) or a priority in 1..99", *realtime)
	}

	// Until the file is read, log in the format the command line asks
	// for, so that even a config error comes out as the operator's log
	// pipeline expects.
	logCfg := config.Defaults().Log
	if f := fs.Lookup("log-format"); f != nil && f.Value.String() == string(config.LogJSON) {
		logCfg.Format = config.LogJSON
	}
	log := newLogger(stderr, logCfg)
	fatal := func(err error) error {
		log.Error("macvsw cannot run", "err", err)
		notify(log, "STATUS=failed: "+oneLine(err))
		return fmt.Errorf("%w: %v", errLogged, err)
	}

	load := func() (*config.Config, error) {
		cfg, err := config.Load(*path)
		if err != nil {
			return nil, err
		}
		return cfg, over.Apply(cfg)
	}
	cfg, err := load()
	if err == nil {
		log = newLogger(stderr, cfg.Log)
		// At start every name in the file must be there; a reload instead
		// reports the ports it could not add and tries them again later.
		err = cfg.CheckHost(host{})
	}
	if err != nil {
		return fatal(err)
	}
	if *realtime > 0 {
		n, err := setRealtime(*realtime)
		if err != nil {
			return fatal(fmt.Errorf("--realtime: %w", err))
		}
		log.Info("real-time scheduling", "policy", "SCHED_RR", "priority", *realtime, "threads", n)
	}
	if path := os.Getenv("MACVSW_CPUPROFILE"); path != "" {
		// A debugging aid for performance work: profile the whole run.
		f, err := os.Create(path)
		if err != nil {
			return fatal(fmt.Errorf("cpu profile: %w", err))
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fatal(fmt.Errorf("cpu profile: %w", err))
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}

	// Bind what can fail cheaply before touching the host: a metrics
	// address in use stops the start before any tap is made.
	var metrics *metricsServer
	if cfg.Metrics.Listen != "" {
		if metrics, err = listenMetrics(cfg.Metrics.Listen); err != nil {
			return fatal(err)
		}
		defer metrics.close()
	}
	notify(log, "STATUS=starting: lower "+cfg.Lower.Interface)
	d, err := startDaemon(cfg, log, daemonOptions{syscallIO: *syscallIO})
	if err != nil {
		return fatal(err)
	}
	down := make(chan struct{}, 1) // `macvsw down`: clean up and exit
	defer func() {
		select {
		case <-down:
			*cleanup = true
		default:
		}
		notify(log, daemonStopping, "STATUS=stopping")
		d.shutdown(*cleanup)
	}()
	if *pidfile != "" {
		if err := writePidfile(*pidfile); err != nil {
			return fatal(err)
		}
		defer removePidfile(*pidfile)
	}

	// Reloads come from SIGHUP and from POST /v1/reload, one at a time.
	var reloadMu sync.Mutex
	d.reloadFile = func() (api.ReloadReport, error) {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		notify(log, daemonReloading, monotonicUsec(), "STATUS=reloading "+*path)
		defer func() { notify(log, daemonReady, "STATUS="+d.status()) }()
		next, err := load()
		if err != nil {
			log.Error("reload: config rejected; still running the old one", "err", err)
			return api.ReloadReport{}, badRequest("config rejected, still running the old one: %v", err)
		}
		rep, err := d.reload(next)
		if err != nil {
			log.Error("reload", "err", err)
		}
		return rep, err
	}

	a, err := startAPI(d, cfg.Control, log, down)
	if err != nil {
		return fatal(err)
	}
	defer a.close()
	if metrics != nil {
		if err := metrics.serve(d, log); err != nil {
			return fatal(err)
		}
	}
	attrs := []any{"lower", cfg.Lower.Interface, "ports", len(d.sw.Ports()), "queues", cfg.Lower.NumQueues(),
		"socket", cfg.Control.Socket, "state", d.state.dir, "pid", os.Getpid()}
	if metrics != nil {
		attrs = append(attrs, "metrics", metrics.addr())
	}
	log.Info("macvsw running", attrs...)
	notify(log, daemonReady, "STATUS="+d.status())

	// The signal loop only asks for reloads, so SIGTERM is heard during a
	// slow one.
	reloads := make(chan struct{}, 1)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for range reloads {
			d.reloadFile()
		}
	}()
	defer func() { close(reloads); <-reloadDone }()
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", "cleanup", *cleanup)
			return nil
		case <-down:
			down <- struct{}{} // for the deferred shutdown
			log.Info("shutting down: macvsw down", "cleanup", true)
			return nil
		case <-hup:
			select {
			case reloads <- struct{}{}:
			default: // one is already waiting
			}
		}
	}
}

// oneLine joins a multi-line error (several config errors) for STATUS=.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// writePidfile writes our PID to path (atomically: a reader never sees a
// partial file).
func writePidfile(path string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pidfile: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pidfile: %w", err)
	}
	return nil
}

// removePidfile removes path if it still holds our PID.
func removePidfile(path string) {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// host answers config.CheckHost through netlink in the right namespace.
type host struct{}

func (host) NetNS(path string) error {
	_, err := endpoints.LookupNetNS(path)
	return err
}

func (host) Interface(netns, name string) error {
	_, err := endpoints.LookupInterface(netns, name)
	return err
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

const configUsage = `macvsw config COMMAND

Commands:
  check FILE [--json]   validate FILE and check that the interfaces and
                        namespaces it names exist (through netlink, in the
                        namespaces themselves)
  reference [--json]    print the config file's reference: every key, its
                        type, default and meaning (config/REFERENCE.md)

Run "macvsw config COMMAND --help" for a command's flags.`

// cmdConfig implements `macvsw config check|reference`.
func cmdConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "macvsw config: missing command\n\nUsage: %s\n", configUsage)
		return errUsage
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "Usage: %s\n", configUsage)
		return flag.ErrHelp
	case "check":
		return configCheck(rest, stdout, stderr)
	case "reference":
		return configReference(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "macvsw config: unknown command %q\n\nUsage: %s\n", sub, configUsage)
		return errUsage
	}
}

// checkResult is `config check --json`'s output.
type checkResult struct {
	File   string       `json:"file"`
	OK     bool         `json:"ok"`
	Ports  int          `json:"ports"`
	Errors []checkError `json:"errors,omitempty"`
}

type checkError struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func configCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw config check", `macvsw config check FILE [--json]

Validates FILE as macvsw run would load it and checks, through netlink in
the namespaces themselves, that the lower, the afpacket interfaces and the
namespaces it names exist (run it where the daemon will run: under
nsenter --net=..., ip netns exec or systemd's NetworkNamespacePath= alike).
Errors name file:line:column and the key.`, stderr)
	asJSON := fs.Bool("json", false, `print {"file", "ok", "ports", "errors": [{"line", "column", "field", "message"}]}`)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "FILE"); err != nil {
		return err
	}
	file := pos[0]
	cfg, err := config.Load(file)
	if err == nil {
		err = cfg.CheckHost(host{})
	}
	if !*asJSON {
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok (%d ports)\n", file, len(cfg.Ports))
		return nil
	}
	res := checkResult{File: file, OK: err == nil}
	if err == nil {
		res.Ports = len(cfg.Ports)
	}
	for _, e := range flatten(err) {
		var fe *config.FieldError
		if errors.As(e, &fe) {
			res.Errors = append(res.Errors, checkError{Line: fe.Line, Column: fe.Column, Field: fe.Field, Message: fe.Err.Error()})
		} else {
			res.Errors = append(res.Errors, checkError{Message: e.Error()})
		}
	}
	if perr := printJSON(stdout, res); perr != nil {
		return perr
	}
	if err != nil {
		return &exitErr{exitError, fmt.Errorf("%s: %d error(s)", file, len(res.Errors))}
	}
	return nil
}

// flatten lists the errors joined in err (errors.Join), or err itself.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func configReference(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw config reference", "macvsw config reference [--json]\n\nPrints the config file's reference (Markdown): every key, its type, default\nand meaning. Online: "+config.ReferenceURL, stderr)
	asJSON := fs.Bool("json", false, `print {"url", "markdown"}`)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, map[string]string{"url": config.ReferenceURL, "markdown": config.Reference})
	}
	_, err = io.WriteString(stdout, config.Reference)
	return err
}

// setRealtime puts every thread of the process under SCHED_RR at prio and
// returns how many it set. Threads the runtime starts later inherit the
// policy from the thread that creates them, which is then one of these;
// the walk runs until a pass finds no thread left to set, so a thread
// born during a pass is not missed.
//
// Why: the switch's readers are woken by the sandboxes' frames. Under the
// normal scheduler a woken reader waits for a CPU that the sandboxes'
// own processes hold; SCHED_RR runs it at once (BEHAVIOUR.md and README,
// Performance, give the figures). The kernel's RT throttling
// (sched_rt_runtime_us) still leaves the rest of the machine 5 % of
// each CPU if the switch is saturated.
func setRealtime(prio int) (int, error) {
	set := map[int]bool{}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_RR, Priority: uint32(prio)}
	for pass := 0; pass < 10; pass++ {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return len(set), err
		}
		fresh := 0
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || set[tid] {
				continue
			}
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
				if err == unix.ESRCH {
					continue // the thread exited
				}
				return len(set), fmt.Errorf("sched_setattr thread %d SCHED_RR %d: %w", tid, prio, err)
			}
			set[tid] = true
			fresh++
		}
		if fresh == 0 {
			return len(set), nil
		}
	}
	return len(set), nil
}
