package main

import (
	"context"
	"flag"
	"io"
)

// cmdDemo runs the self-contained demo.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("macvsw demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(stderr, `Usage: macvsw demo

Builds, for private, VEPA and bridge mode, with the external switch's
reflective relay (hairpin) off and on, a switch with two sandboxes and a
host on the LAN behind the lower, probes who reaches whom over TCP, and
prints the result beside what kernel macvlan gives. Exits non-zero if any
probe differs. Needs no privileges: everything runs in this process.
`)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	return cmdDemoInMem(ctx, stdout)
}
