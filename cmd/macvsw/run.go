package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
)

// cmdRun runs the switch in the foreground until SIGINT or SIGTERM; SIGHUP
// reloads the config file.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Signals first: a SIGHUP that comes while we start is a reload to do
	// once started, never the end of the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := flag.NewFlagSet("macvsw run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML; see config/REFERENCE.md)")
	cleanup := fs.Bool("cleanup", false, "on exit, remove every port and delete the taps macvsw created (default: leave them for the next start)")
	over := config.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: macvsw run --config FILE [flags]\n\nRuns the switch in the foreground; logs go to stderr.\n"+
			"SIGTERM/SIGINT stop it and leave the ports' taps in place (no carrier) for the next start; SIGHUP reloads FILE.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
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
		// At start every name in the file must be there; a reload instead
		// reports the ports it could not add and tries them again later.
		err = cfg.CheckHost(host{})
	}
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log)
	if path := os.Getenv("MACVSW_CPUPROFILE"); path != "" {
		// A debugging aid for performance work: profile the whole run.
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	d, err := startDaemon(cfg, log)
	if err != nil {
		return err
	}
	down := make(chan struct{}, 1) // `macvsw down`: clean up and exit
	defer func() {
		select {
		case <-down:
			*cleanup = true
		default:
		}
		d.shutdown(*cleanup)
	}()
	api, err := startAPI(d, cfg.Control, log, down)
	if err != nil {
		return err
	}
	defer api.close()
	if cfg.Metrics.Listen != "" {
		stopMetrics, err := startMetrics(d, cfg.Metrics.Listen, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	// Reloads run on their own goroutine, one at a time; the signal loop
	// only asks for them, so SIGTERM is heard during a slow reload.
	reloads := make(chan struct{}, 1)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for range reloads {
			next, err := load()
			if err != nil {
				log.Error("reload: config rejected; still running the old one", "err", err)
				continue
			}
			if _, err := d.reload(next); err != nil {
				log.Error("reload", "err", err)
			}
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

// cmdConfig implements "macvsw config check FILE".
func cmdConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: macvsw config check FILE\n\nValidates FILE and checks that the interfaces and namespaces it names exist.")
		if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
			return flag.ErrHelp
		}
		return errUsage
	}
	cfg, err := config.Load(args[1])
	if err != nil {
		return err
	}
	if err := cfg.CheckHost(host{}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d ports)\n", args[1], len(cfg.Ports))
	return nil
}
