// Command macvsw is the userspace macvlan switch: `macvsw demo` shows the
// modes at work, `macvsw run --config FILE` runs the switch.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/macvsw/macvsw/config"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `macvsw: a userspace macvlan switch

Usage:
  macvsw demo                   show the modes at work in a throwaway lab
  macvsw run --config FILE      run the switch in the foreground
  macvsw reload                 make the running daemon reload its config file
  macvsw down                   remove every port and the taps macvsw created; stop
  macvsw config check FILE      validate a config file and the host objects it names
  macvsw config reference       every config key, its type, default and meaning
  macvsw port ...               list, show, add, delete and change ports
  macvsw stats [PORT]           counters, per port and queue, every drop reason
  macvsw capture PORT [-w FILE] pcap of a port's frames (stdout by default)
  macvsw version                print the version

Client commands talk to the daemon's control socket (--socket, env
MACVSW_SOCKET). Every command that prints takes --json. Exit status: 0 ok,
1 error, 2 usage, 3 no daemon, 4 no such port, 5 conflict, 6 permission
denied.

Run "macvsw COMMAND --help" for a command's flags ("macvsw help COMMAND"
too). The config reference: macvsw config reference, or
` + config.ReferenceURL + `
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee *exitErr
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage): // already printed
		os.Exit(exitUsage)
	case errors.Is(err, errLogged): // already logged, in the configured format
		os.Exit(exitError)
	case errors.As(err, &ee):
		fmt.Fprintln(os.Stderr, "macvsw:", err)
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "macvsw:", err)
		os.Exit(exitError)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "reload":
		return cmdReload(ctx, args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "port":
		return cmdPort(ctx, args[1:], stdout, stderr)
	case "down":
		return cmdDown(ctx, args[1:], stdout, stderr)
	case "stats":
		return cmdStats(ctx, args[1:], stdout, stderr)
	case "capture":
		return cmdCapture(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" && args[1] != "help" {
			// macvsw help COMMAND [SUB] = macvsw COMMAND [SUB] --help
			return run(ctx, append(args[1:], "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	}
	fmt.Fprintf(stderr, "macvsw: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// cmdVersion implements `macvsw version`.
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw version", "macvsw version [--json]\n\nPrints macvsw's version, the commit it was built from and the Go version.", stderr)
	asJSON := fs.Bool("json", false, `print {"version", "commit", "go"}`)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, map[string]string{"version": version, "commit": buildCommit(), "go": runtime.Version()})
	}
	fmt.Fprintln(stdout, "macvsw", version)
	return nil
}

// commit is the commit macvsw was built from, set at link time (-ldflags
// "-X main.commit=..."); empty means: ask the build info (go build records
// vcs.revision when it builds from a git checkout).
var commit = ""

// buildCommit returns the commit macvsw was built from, "unknown" when
// nobody recorded it.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}
