package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/macvsw/macvsw/bridge/bridgetest"
	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// probeTimeout bounds one reachability probe in the demos.
const probeTimeout = 2 * time.Second

// reachRow is one line of a demo's table.
type reachRow struct {
	mode    vswitch.Mode
	hairpin bool
	probe   string // "A->B", "A->LAN", "LAN->A"
	got     bool
	kernel  bool
}

// kernelExpects is what kernel macvlan gives for a probe between two
// sandboxes A and B in the same mode, or between A and a LAN host, per
// BEHAVIOUR.md §4. A TCP connection needs ARP: a broadcast from A,
// a unicast reply.
func kernelExpects(mode vswitch.Mode, hairpin bool, probe string) bool {
	if probe != "A->B" {
		return true // §4.4: every mode reaches the wire and hears from it
	}
	switch mode {
	case vswitch.ModeBridge:
		return true // §4.1/§4.2: direct, hairpin or not
	case vswitch.ModeVEPA:
		return hairpin // §4.1/§4.2: only through the external switch
	default:
		return false // private: A's ARP broadcast never reaches B (§4.1)
	}
}

// cmdDemoInMem builds, for private, VEPA and bridge mode with the external
// switch's hairpin off and on, a switch with two netstack sandboxes and a
// LAN host, all in this process, and probes who reaches whom.
func cmdDemoInMem(ctx context.Context, stdout io.Writer) error {
	var rows []reachRow
	for _, mode := range []vswitch.Mode{vswitch.ModePrivate, vswitch.ModeVEPA, vswitch.ModeBridge} {
		for _, hairpin := range []bool{false, true} {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := inMemScenario(mode, hairpin)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
	}
	return printReach(stdout, "in-process netstacks on macvsw ports; LAN = in-memory learning switch", rows)
}

func inMemScenario(mode vswitch.Mode, hairpin bool) ([]reachRow, error) {
	sw := vswitch.New(vswitch.Options{LowerMAC: vswitch.MAC{2, 0, 0, 0, 0, 0x10}})
	defer sw.Close()
	lan := bridgetest.NewLAN(sw)
	defer lan.Close()
	lan.Hairpin.Store(hairpin)
	var stacks []*stack.Stack
	defer func() {
		for _, s := range stacks {
			s.Destroy()
		}
	}()
	for i, last := range []byte{1, 2} {
		p, err := sw.AddPort(vswitch.PortConfig{Name: string(rune('A' + i)), Mode: mode})
		if err != nil {
			return nil, err
		}
		s, err := bridgetest.NewPortStack(p, last)
		if err != nil {
			return nil, err
		}
		stacks = append(stacks, s)
	}
	host, err := lan.AddHost(vswitch.MAC{2, 0, 0, 0, 2, 200}, 200)
	if err != nil {
		return nil, err
	}
	for i, s := range append(append([]*stack.Stack(nil), stacks...), host) {
		ln, err := bridgetest.Echo(s, []byte{1, 2, 200}[i])
		if err != nil {
			return nil, err
		}
		defer ln.Close()
	}
	probes := []struct {
		name string
		from *stack.Stack
		to   byte
	}{{"A->B", stacks[0], 2}, {"A->LAN", stacks[0], 200}, {"LAN->A", host, 1}}
	rows := make([]reachRow, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows[i] = reachRow{mode: mode, hairpin: hairpin, probe: p.name,
				got: bridgetest.Reach(p.from, p.to, probeTimeout), kernel: kernelExpects(mode, hairpin, p.name)}
		}()
	}
	wg.Wait()
	return rows, nil
}

// printReach prints the table and returns an error if macvsw differed from
// the kernel anywhere.
func printReach(w io.Writer, title string, rows []reachRow) error {
	fmt.Fprintf(w, "%s\n\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tHAIRPIN\tPROBE\tMACVSW\tKERNEL MACVLAN\t")
	diff := 0
	for _, r := range rows {
		verdict := ""
		if r.got != r.kernel {
			verdict = "  <- differs"
			diff++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s%s\t\n", r.mode, onOff(r.hairpin), r.probe, yesNo(r.got), yesNo(r.kernel), verdict)
	}
	tw.Flush()
	if diff > 0 {
		return fmt.Errorf("%d probe(s) differ from kernel macvlan", diff)
	}
	fmt.Fprintf(w, "\nall %d probes match kernel macvlan\n", len(rows))
	return nil
}

func yesNo(b bool) string {
	if b {
		return "reach"
	}
	return "-"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
