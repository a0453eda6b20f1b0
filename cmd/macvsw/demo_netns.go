package main

import (
	"context"
	"fmt"
	"io"
	"os"

	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/tests/netlab"
)

// demoProbes are the reachability probes of the namespace demo, between
// sandboxes 0..2 and the LAN host.
var demoProbes = []struct{ name, probe string }{
	{"A->B", "0>1"}, {"A->C", "0>2"}, {"B->C", "1>2"}, {"A->LAN", "0>host"}, {"LAN->C", "host>2"},
}

// cmdDemoNetns builds, for private, VEPA and bridge mode, the spec's lab in
// network namespaces (a LAN namespace whose bridge reflects frames back to
// the lower: a reflective relay; three sandbox namespaces), once with
// kernel macvlan devices and once with macvsw on tap ports, pings between
// everyone, and prints both answers side by side. With keep, the last
// macvsw lab stays up until ctx is cancelled.
func cmdDemoNetns(ctx context.Context, stdout, stderr io.Writer, keep, asJSON bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "macvsw-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	modes := []vswitch.Mode{vswitch.ModePrivate, vswitch.ModeVEPA, vswitch.ModeBridge}
	var rows []reachRow
	for i, mode := range modes {
		specs := []netlab.SandboxSpec{{Mode: mode.String()}, {Mode: mode.String()}, {Mode: mode.String()}}
		kernel := map[string]bool{}
		k, err := netlab.BuildKernel("mvsdemo", true, specs)
		fmt.Fprintf(stderr, "demo: %s mode: kernel macvlan, in namespaces %s-*...\n", mode, k.Lab.Prefix)
		if err == nil {
			for _, p := range demoProbes {
				if ctx.Err() != nil {
					break
				}
				kernel[p.name] = k.Reach(p.probe)
			}
		}
		if cerr := k.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("kernel lab: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m, err := netlab.BuildMacvsw("mvsdemo", self, dir, true, specs)
		fmt.Fprintf(stderr, "demo: %s mode: macvsw on tap ports, in namespaces %s-*...\n", mode, m.Lab.Prefix)
		if err != nil {
			m.Close()
			return fmt.Errorf("macvsw lab: %w", err)
		}
		for _, p := range demoProbes {
			if ctx.Err() != nil {
				break
			}
			rows = append(rows, reachRow{Mode: mode, Hairpin: true, Probe: p.name, Got: m.Reach(p.probe), Kernel: kernel[p.name]})
		}
		if keep && i == len(modes)-1 && ctx.Err() == nil {
			printReach(stdout, netnsTitle, "KERNEL MACVLAN", netnsLegend, rows)
			fmt.Fprintf(stdout, "\nThe %s-mode lab is up (--keep). Namespaces:\n  sandboxes %v\n  switch %s (macvsw runs here: macvsw port list --socket %s)\n  LAN %s, host %s (%s)\nTry: ip netns exec %s ping %s\nPress Ctrl-C to remove it.\n",
				mode, m.Sandboxes, m.Topo.SW, m.Socket, m.Topo.LAN, m.Topo.Host, netlab.HostIP4, m.Sandboxes[0], netlab.SandboxIP4(1))
			<-ctx.Done()
			return m.Close()
		}
		if err := m.Close(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if asJSON {
		return printReachJSON(stdout, "live", rows)
	}
	return printReach(stdout, netnsTitle, "KERNEL MACVLAN", netnsLegend, rows)
}

const netnsTitle = "macvsw vs kernel macvlan, three sandboxes on tap ports, LAN bridge with hairpin (reflective relay)"

const netnsLegend = `reach: the ping was answered; -: it was not, within 1 s.
HAIRPIN on: the LAN bridge sends a frame back out of the port it came in on
  (reflective relay), so VEPA siblings reach each other through it, as
  bridge-mode siblings do directly.
KERNEL MACVLAN: the same lab built with kernel macvlan devices and pinged
  the same way, just before macvsw's run.`
