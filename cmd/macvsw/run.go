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
)

// cmdRun runs the switch in the foreground until SIGINT or SIGTERM; SIGHUP
// reloads the config file.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("macvsw run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML; see config/REFERENCE.md)")
	over := config.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: macvsw run --config FILE [flags]\n\nRuns the switch in the foreground; logs go to stderr.\nSIGTERM/SIGINT shut down (taps it created are removed); SIGHUP reloads FILE.\n\n")
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
		if err := over.Apply(cfg); err != nil {
			return nil, err
		}
		return cfg, cfg.CheckHost()
	}
	cfg, err := load()
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
	defer d.close()
	api, err := startAPI(d, cfg.Control, log)
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return nil
		case <-hup:
			next, err := load()
			if err != nil {
				log.Error("reload: config rejected; still running the old one", "err", err)
				continue
			}
			if _, err := d.reload(next); err != nil {
				log.Error("reload", "err", err)
			}
		}
	}
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
	if err := cfg.CheckHost(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d ports)\n", args[1], len(cfg.Ports))
	return nil
}
