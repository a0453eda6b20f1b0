package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
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
	Mode    vswitch.Mode `json:"mode"`
	Hairpin bool         `json:"hairpin"`
	Probe   string       `json:"probe"` // "A->B", "A->LAN", "LAN->A"
	Got     bool         `json:"macvsw"`
	Kernel  bool         `json:"kernel"`
	// Path says how a probe between two sandboxes went, measured in the
	// in-process demo: "via the LAN" when the LAN switch sent unicast
	// frames back to macvsw (hairpin), "direct" when none.
	Path string `json:"path,omitempty"`
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
func cmdDemoInMem(ctx context.Context, stdout io.Writer, asJSON bool) error {
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
	if asJSON {
		return printReachJSON(stdout, "expected", rows)
	}
	return printReach(stdout, "in-process netstacks on macvsw ports; LAN = in-memory learning switch",
		"EXPECTED (KERNEL MACVLAN)", inMemLegend, rows)
}

const inMemLegend = `reach: the probe (a TCP connection, ARP included) was answered; -: it was
  not, within 2 s.
HAIRPIN: whether the LAN switch sends a frame back out of the port it came
  in on (reflective relay, 802.1Qbg; bridge_slave hairpin on). VEPA
  siblings meet only through it; bridge-mode siblings meet directly. So
  with hairpin on, VEPA and bridge both reach, by the different paths PATH
  shows: "via the LAN" when the LAN switch reflected unicast frames between
  the two sandboxes back to macvsw, "direct" when it reflected none.
EXPECTED (KERNEL MACVLAN): what kernel macvlan answers for the same setup
  (switch/BEHAVIOUR.md §4), not a run of the kernel; as root, macvsw demo
  builds the same labs with kernel macvlan devices and runs both.`

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
	probe := func(i int) {
		p := probes[i]
		rows[i] = reachRow{Mode: mode, Hairpin: hairpin, Probe: p.name,
			Got: bridgetest.Reach(p.from, p.to, probeTimeout), Kernel: kernelExpects(mode, hairpin, p.name)}
	}
	// A->B alone first, counting the unicast frames the LAN reflects
	// meanwhile: that is the path between the two sandboxes.
	before := lan.Reflected.Load()
	probe(0)
	switch {
	case !rows[0].Got:
		rows[0].Path = "-"
	case lan.Reflected.Load() > before:
		rows[0].Path = fmt.Sprintf("via the LAN (%d frames reflected)", lan.Reflected.Load()-before)
	default:
		rows[0].Path = "direct, inside macvsw"
	}
	var wg sync.WaitGroup
	for i := 1; i < len(probes); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probe(i)
		}()
	}
	wg.Wait()
	return rows, nil
}

// printReach prints the table, with kernel as the kernel column's header
// and legend below it, and returns an error if macvsw differed from the
// kernel anywhere.
func printReach(w io.Writer, title, kernel, legend string, rows []reachRow) error {
	fmt.Fprintf(w, "%s\n\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	paths := slices.ContainsFunc(rows, func(r reachRow) bool { return r.Path != "" })
	head := []string{"MODE", "HAIRPIN", "PROBE", "MACVSW", kernel}
	if paths {
		head = append(head, "PATH")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	diff := 0
	for _, r := range rows {
		verdict := ""
		if r.Got != r.Kernel {
			verdict = "  <- differs"
			diff++
		}
		cells := []string{r.Mode.String(), onOff(r.Hairpin), r.Probe, reachMark(r.Got), reachMark(r.Kernel) + verdict}
		if paths {
			cells = append(cells, r.Path)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s\n", legend)
	if diff > 0 {
		return fmt.Errorf("%d probe(s) differ from kernel macvlan", diff)
	}
	fmt.Fprintf(w, "\nall %d probes match kernel macvlan\n", len(rows))
	return nil
}

// printReachJSON prints the rows as JSON; kernel says whether the kernel
// column was "expected" (documented answers) or "live" (a run).
func printReachJSON(w io.Writer, kernel string, rows []reachRow) error {
	diff := 0
	for _, r := range rows {
		if r.Got != r.Kernel {
			diff++
		}
	}
	if err := printJSON(w, map[string]any{"kernel": kernel, "probes": rows, "differ": diff}); err != nil {
		return err
	}
	if diff > 0 {
		return fmt.Errorf("%d probe(s) differ from kernel macvlan", diff)
	}
	return nil
}

func reachMark(b bool) string {
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
