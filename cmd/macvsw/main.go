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
	"syscall"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `macvsw: a userspace macvlan switch

Usage:
  macvsw demo                   show the modes at work in a throwaway lab
  macvsw run --config FILE      run the switch in the foreground
  macvsw down                   remove every port and the taps macvsw created; stop
  macvsw config check FILE      validate a config file
  macvsw port ...               list, show, add, delete and change ports
  macvsw stats [PORT] [--json]  counters, per port and queue, every drop reason
  macvsw capture PORT [-w FILE] pcap of a port's frames (stdout by default)
  macvsw version [--json]       print the version

Client commands talk to the daemon's control socket (--socket, env
MACVSW_SOCKET). Exit status: 0 ok, 1 error, 2 usage, 3 no daemon, 4 no such
port, 5 conflict, 6 permission denied.

Run "macvsw COMMAND --help" for a command's flags.
`

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ee *exitErr
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.As(err, &ee):
		fmt.Fprintln(os.Stderr, "macvsw:", err)
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "macvsw:", err)
		os.Exit(1)
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
		if len(args) > 1 && args[1] == "--json" {
			return printJSON(stdout, map[string]string{"version": version, "go": runtime.Version()})
		}
		fmt.Fprintln(stdout, "macvsw", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "macvsw: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}
