package main

import (
	"context"
	"io"

	"github.com/macvsw/macvsw/tests/netlab"
)

// cmdDemo runs the self-contained demo.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw demo", `macvsw demo [--inmem] [--keep] [--json]

As root: builds, for private, VEPA and bridge mode, a lab in network
namespaces (a LAN namespace whose bridge reflects frames back to the lower,
a host on it, three sandbox namespaces), first with kernel macvlan devices
and then with macvsw serving tap ports, pings between everyone, and prints
both answers side by side. It never touches the host's interfaces and
removes everything on exit, also on Ctrl-C; --keep leaves the last lab up
until Ctrl-C.

Without root (or with --inmem): the same question in this process, with
gVisor netstacks as sandboxes and an in-memory LAN with hairpin off and on;
beside macvsw's answers, the answers kernel macvlan gives
(switch/BEHAVIOUR.md §4), and the path each sandbox-to-sandbox probe took.

Exits non-zero if any probe differs from kernel macvlan.`, stderr)
	inmem := fs.Bool("inmem", false, "run the in-process demo even as root")
	keep := fs.Bool("keep", false, "leave the last namespace lab up until Ctrl-C")
	asJSON := fs.Bool("json", false, "print the probes as JSON")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *inmem || netlab.Available() != nil {
		if *keep {
			return flagError("--keep needs the namespace demo (root): %v", netlab.Available())
		}
		return cmdDemoInMem(ctx, stdout, *asJSON)
	}
	return cmdDemoNetns(ctx, stdout, stderr, *keep, *asJSON)
}
