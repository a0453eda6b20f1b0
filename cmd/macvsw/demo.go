package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/macvsw/macvsw/tests/netlab"
)

// cmdDemo runs the self-contained demo.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("macvsw demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	inmem := fs.Bool("inmem", false, "run the in-process demo even as root")
	keep := fs.Bool("keep", false, "leave the last namespace lab up until Ctrl-C")
	fs.Usage = func() {
		io.WriteString(stderr, `Usage: macvsw demo [--inmem] [--keep]

As root: builds, for private, VEPA and bridge mode, a lab in network
namespaces (a LAN namespace whose bridge reflects frames back to the lower,
a host on it, three sandbox namespaces), first with kernel macvlan devices
and then with macvsw serving tap ports, pings between everyone, and prints
both answers side by side. It never touches the host's interfaces and
removes everything on exit, also on Ctrl-C; --keep leaves the last lab up
until Ctrl-C.

Without root (or with --inmem): the same question in this process, with
gVisor netstacks as sandboxes, an in-memory LAN with hairpin off and on,
and kernel macvlan's documented answers beside it.

Exits non-zero if any probe differs from kernel macvlan.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *inmem || netlab.Available() != nil {
		if *keep {
			return fmt.Errorf("--keep needs the namespace demo (root): %v", netlab.Available())
		}
		return cmdDemoInMem(ctx, stdout)
	}
	return cmdDemoNetns(ctx, stdout, stderr, *keep)
}
