package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/switch/counters"
)

// Exit statuses of the client commands, for scripts.
const (
	exitOK        = 0
	exitError     = 1 // the daemon refused the request (a 4xx/5xx not listed below)
	exitUsage     = 2 // bad command line
	exitNoDaemon  = 3 // cannot reach the control socket
	exitNotFound  = 4 // no such port (HTTP 404)
	exitConflict  = 5 // name or MAC in use, passthru exclusivity (HTTP 409)
	exitForbidden = 6 // the daemon refused this user (HTTP 403)
)

// exitError carries an exit status out of run.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

// client talks to the daemon's control socket, turning its refusals into
// exit statuses.
type client struct{ *api.Client }

func newClient(socket string) *client { return &client{api.NewClient(socket)} }

// do sends a request and decodes a JSON answer into out (if non-nil).
func (c *client) do(ctx context.Context, method, path string, body any, out any) error {
	return exitFor(c.Do(ctx, method, path, body, out))
}

// send returns a successful response (the caller closes its body).
func (c *client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	resp, err := c.Send(ctx, method, path, body)
	return resp, exitFor(err)
}

// exitFor gives an API error the exit status the outcome deserves.
func exitFor(err error) error {
	var ae *api.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, api.ErrNoDaemon):
		return &exitErr{exitNoDaemon, fmt.Errorf("%w (is macvsw running? --socket)", err)}
	case errors.As(err, &ae):
		code := exitError
		switch ae.Status {
		case http.StatusNotFound:
			code = exitNotFound
		case http.StatusConflict:
			code = exitConflict
		case http.StatusForbidden:
			code = exitForbidden
		}
		return &exitErr{code, err}
	}
	return err
}

// clientFlags registers --socket on fs.
func clientFlags(fs *flag.FlagSet) *string {
	def := os.Getenv("MACVSW_SOCKET")
	if def == "" {
		def = config.DefaultControlSocket
	}
	return fs.String("socket", def, "control socket of the daemon (env MACVSW_SOCKET)")
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags that may follow positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func cmdPort(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `macvsw port list|show|add|del|set|macaddr ...

  macvsw port list [--json]
  macvsw port show NAME [--json]
  macvsw port add NAME [--mode M] [--mac MAC] [--mtu N] [--queues N] [--queue-len N]
                  (--tap-netns PATH [--ifname IF] [--address CIDR]... [--no-offloads] | --afpacket IF)
  macvsw port add --entry '{"name": ..., "tap": {...}}'  (a config port entry, JSON)
  macvsw port del NAME
  macvsw port set NAME [--mode M] [--mtu N] [--mac MAC] [--up|--down] [--allmulticast=BOOL]
                  [--join GROUP]... [--leave GROUP]...
  port add and set also take: [--police-pps N] [--police-bps RATE] [--storm-pps N] [--no-police]
                  [--spoofcheck=BOOL] [--allowed-ip ADDR|CIDR]...
  macvsw port macaddr NAME add|del|flush|set [MAC...]`
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "Usage: "+usage)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("macvsw port "+sub, usage, stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (list, show); with add: the port entry as JSON")
	var p struct {
		mode, mac, netns, ifname, afpacket, jsonEntry string
		mtu, queues, queueLen                         int
		addrs                                         multiFlag
		noOffloads, up, down                          bool
		allmulti                                      string
		join, leave                                   multiFlag
		policePPS, policeBPS, stormPPS, spoofcheck    string
		noPolice                                      bool
		allowed                                       multiFlag
	}
	if sub == "add" || sub == "set" {
		fs.StringVar(&p.policePPS, "police-pps", "", "limit the frames per second the port may send (e.g. 100k)")
		fs.StringVar(&p.policeBPS, "police-bps", "", "limit the bits per second the port may send (e.g. 1G)")
		fs.StringVar(&p.stormPPS, "storm-pps", "", "storm control: limit the broadcast and multicast frames per second the port may send")
		fs.BoolVar(&p.noPolice, "no-police", false, "set: remove the port's limits")
		fs.StringVar(&p.spoofcheck, "spoofcheck", "", "true: drop frames the port sends with another MAC (and, with --allowed-ip, another address)")
		fs.Var(&p.allowed, "allowed-ip", "with --spoofcheck: an address or prefix the port may send from (repeatable)")
	}
	if sub == "add" {
		fs.StringVar(&p.mode, "mode", "", "private, vepa, bridge, passthru or source (default vepa)")
		fs.StringVar(&p.mac, "mac", "", "port MAC (default random)")
		fs.IntVar(&p.mtu, "mtu", 0, "port MTU (default the lower's)")
		fs.IntVar(&p.queues, "queues", 0, "queues (default 1)")
		fs.IntVar(&p.queueLen, "queue-len", 0, "frames per queue (default 1000)")
		fs.StringVar(&p.netns, "tap-netns", "", "tap port: network namespace path")
		fs.StringVar(&p.ifname, "ifname", "", "tap port: interface name in the namespace (default the port name)")
		fs.Var(&p.addrs, "address", "tap port: address CIDR (repeatable)")
		fs.BoolVar(&p.noOffloads, "no-offloads", false, "tap port: no virtio-net offloads")
		fs.StringVar(&p.afpacket, "afpacket", "", "AF_PACKET port: existing interface")
		fs.StringVar(&p.jsonEntry, "entry", "", "the whole port entry as JSON")
	}
	if sub == "set" {
		fs.StringVar(&p.mode, "mode", "", "new mode")
		fs.StringVar(&p.mac, "mac", "", "new MAC")
		fs.IntVar(&p.mtu, "mtu", 0, "new MTU")
		fs.BoolVar(&p.up, "up", false, "bring the port up")
		fs.BoolVar(&p.down, "down", false, "take the port down")
		fs.StringVar(&p.allmulti, "allmulticast", "", "true or false")
		fs.Var(&p.join, "join", "subscribe to a multicast group MAC (repeatable; ip maddr add)")
		fs.Var(&p.leave, "leave", "unsubscribe from a group (repeatable)")
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	c := newClient(*socket)
	need := func(n int) error {
		if len(pos) < n {
			fs.Usage()
			return errUsage
		}
		return nil
	}
	switch sub {
	case "list":
		var ports []api.Port
		if err := c.do(ctx, "GET", "/v1/ports", nil, &ports); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, ports)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tINTERFACE\tMODE\tMAC\tMTU\tSTATE\tQUEUES")
		for _, v := range ports {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", v.Name, v.Kind, v.Interface, v.Mode, v.MAC, v.MTU, state(v), v.Queues)
		}
		return tw.Flush()
	case "show":
		if err := need(1); err != nil {
			return err
		}
		var v api.Port
		if err := c.do(ctx, "GET", "/v1/ports/"+url.PathEscape(pos[0]), nil, &v); err != nil {
			return err
		}
		return printJSON(stdout, v)
	case "add":
		var entry any
		if p.jsonEntry != "" {
			if err := json.Unmarshal([]byte(p.jsonEntry), &entry); err != nil {
				return &exitErr{exitUsage, fmt.Errorf("--entry: %w", err)}
			}
		} else {
			if err := need(1); err != nil {
				return err
			}
			e := map[string]any{"name": pos[0]}
			set := func(k string, v any, ok bool) {
				if ok {
					e[k] = v
				}
			}
			set("mode", p.mode, p.mode != "")
			set("mac", p.mac, p.mac != "")
			set("mtu", p.mtu, p.mtu != 0)
			set("queues", p.queues, p.queues != 0)
			set("queue_len", p.queueLen, p.queueLen != 0)
			if p.netns != "" {
				tap := map[string]any{"netns": p.netns, "offloads": !p.noOffloads}
				set := func(k string, v any, ok bool) {
					if ok {
						tap[k] = v
					}
				}
				set("ifname", p.ifname, p.ifname != "")
				set("addresses", []string(p.addrs), len(p.addrs) > 0)
				e["tap"] = tap
			}
			if p.afpacket != "" {
				e["afpacket"] = map[string]any{"interface": p.afpacket}
			}
			pol, err := policeFlags(p.policePPS, p.policeBPS, p.stormPPS)
			if err != nil {
				return err
			}
			set("police", pol, pol != nil)
			switch p.spoofcheck {
			case "":
			case "true", "false":
				e["spoofcheck"] = p.spoofcheck == "true"
			default:
				return &exitErr{exitUsage, fmt.Errorf("--spoofcheck %q: want true or false", p.spoofcheck)}
			}
			set("allowed_ips", []string(p.allowed), len(p.allowed) > 0)
			entry = e
		}
		var v api.Port
		if err := c.do(ctx, "POST", "/v1/ports", entry, &v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "port %s added (%s %s, %s)\n", v.Name, v.Kind, v.Interface, v.MAC)
		return nil
	case "del":
		if err := need(1); err != nil {
			return err
		}
		return c.do(ctx, "DELETE", "/v1/ports/"+url.PathEscape(pos[0]), nil, nil)
	case "set":
		if err := need(1); err != nil {
			return err
		}
		patch := map[string]any{}
		if p.mode != "" {
			patch["mode"] = p.mode
		}
		if p.mac != "" {
			patch["mac"] = p.mac
		}
		if p.mtu != 0 {
			patch["mtu"] = p.mtu
		}
		if p.up && p.down {
			return &exitErr{exitUsage, errors.New("--up and --down together")}
		}
		if p.up || p.down {
			patch["up"] = p.up
		}
		switch p.allmulti {
		case "":
		case "true", "false":
			patch["allmulticast"] = p.allmulti == "true"
		default:
			return &exitErr{exitUsage, fmt.Errorf("--allmulticast %q: want true or false", p.allmulti)}
		}
		if len(p.join) > 0 {
			patch["join"] = []string(p.join)
		}
		if len(p.leave) > 0 {
			patch["leave"] = []string(p.leave)
		}
		pol, err := policeFlags(p.policePPS, p.policeBPS, p.stormPPS)
		if err != nil {
			return err
		}
		switch {
		case p.noPolice && pol != nil:
			return &exitErr{exitUsage, errors.New("--no-police with a limit")}
		case p.noPolice:
			patch["police"] = map[string]any{}
		case pol != nil:
			patch["police"] = pol
		}
		switch p.spoofcheck {
		case "":
		case "true", "false":
			patch["spoofcheck"] = p.spoofcheck == "true"
		default:
			return &exitErr{exitUsage, fmt.Errorf("--spoofcheck %q: want true or false", p.spoofcheck)}
		}
		if len(p.allowed) > 0 {
			patch["allowed_ips"] = []string(p.allowed)
		}
		if len(patch) == 0 {
			fs.Usage()
			return errUsage
		}
		return c.do(ctx, "PATCH", "/v1/ports/"+url.PathEscape(pos[0]), patch, nil)
	case "macaddr":
		if err := need(2); err != nil {
			return err
		}
		macs := pos[2:]
		if macs == nil {
			macs = []string{}
		}
		return c.do(ctx, "POST", "/v1/ports/"+url.PathEscape(pos[0])+"/macaddr", map[string]any{"op": pos[1], "macs": macs}, nil)
	}
	fmt.Fprintf(stderr, "macvsw port: unknown subcommand %q\n", sub)
	return errUsage
}

// policeFlags turns the --police-pps, --police-bps and --storm-pps flags
// into a police object, nil when none is given.
func policeFlags(pps, bps, storm string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, f := range []struct{ flag, key, v string }{
		{"--police-pps", "pps", pps}, {"--police-bps", "bps", bps}, {"--storm-pps", "flood_pps", storm},
	} {
		if f.v == "" {
			continue
		}
		n, err := config.ParseRate(f.v)
		if err != nil {
			return nil, &exitErr{exitUsage, fmt.Errorf("%s: %v (want a number, e.g. 10000, 10k or 1G)", f.flag, err)}
		}
		out[f.key] = n
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func state(v api.Port) string {
	switch {
	case !v.Up:
		return "down"
	case !v.Carrier:
		return "no-carrier"
	}
	return "up"
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw stats", "macvsw stats [PORT] [--json] [--all]", stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "also print drop reasons that are zero")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	path := "/v1/stats"
	if len(pos) > 0 {
		path += "/" + url.PathEscape(pos[0])
	}
	var st counters.Snapshot
	if err := newClient(*socket).do(ctx, "GET", path, nil, &st); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	printStats(stdout, &st, len(pos) == 0, *all)
	return nil
}

// printStats prints the counters as one table per subject (the switch,
// the lower, each port), from the samples the metrics endpoint serves
// (counters.Snapshot.Visit), under the metric's name less its subject
// prefix: `port_packets_total{port="p0",direction="rx"}` is the row
// "packets rx" under "port p0". Drop reasons at zero are left out unless
// all is set; withSwitch prints the switch and the lower too.
func printStats(w io.Writer, st *counters.Snapshot, withSwitch, all bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	subject := ""
	st.Visit(func(m *counters.Metric, v float64, labels ...string) {
		subj, prefix, rest := "switch", "", labels
		switch {
		case len(m.Labels) > 0 && m.Labels[0] == "port":
			p := st.Port(labels[0])
			subj = fmt.Sprintf("port %s (%s)", labels[0], map[bool]string{true: "up", false: "down"}[p.Up])
			if p.Up && !p.Carrier {
				subj = fmt.Sprintf("port %s (up, no carrier)", labels[0])
			}
			prefix, rest = "port_", labels[1:]
		case strings.HasPrefix(m.Name, "lower_"):
			subj = fmt.Sprintf("lower %s (%s, mtu %d)", st.Lower.Interface, map[bool]string{true: "up", false: "down"}[st.Lower.Switch.Up], st.Lower.Switch.MTU)
			prefix = "lower_"
		case strings.HasPrefix(m.Name, "switch_"):
			prefix = "switch_"
		}
		if !withSwitch && !strings.HasPrefix(subj, "port ") {
			return
		}
		if !all && v == 0 && slices.Contains(m.Labels, "reason") {
			return
		}
		if subj != subject {
			fmt.Fprintf(tw, "%s\n", subj)
			subject = subj
		}
		name := strings.TrimSuffix(strings.TrimPrefix(m.Name, prefix), "_total")
		var lv []string
		for i, l := range rest {
			lv = append(lv, m.Labels[len(m.Labels)-len(rest)+i]+"="+l)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, strings.Join(lv, " "), strconv.FormatFloat(v, 'f', -1, 64))
	})
	tw.Flush()
}

func cmdCapture(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw capture", "macvsw capture PORT [-w FILE] [-c COUNT] [-G SECONDS] [-s SNAPLEN]\n\nWrites the port's frames (both directions) as pcap to FILE, or to stdout\n(never to a terminal):\n  macvsw capture p1 | tshark -r -", stderr)
	socket := clientFlags(fs)
	file := fs.String("w", "", "write to FILE instead of stdout")
	count := fs.Int("c", 0, "stop after COUNT frames")
	secs := fs.Int("G", 0, "stop after SECONDS")
	snap := fs.Int("s", 65535, "keep the first SNAPLEN bytes of each frame")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	out := stdout
	if *file != "" {
		f, err := os.Create(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	} else if isTerminal(stdout) {
		return &exitErr{exitUsage, errors.New("refusing to write pcap to a terminal: give -w FILE or pipe it (macvsw capture PORT | tshark -r -)")}
	}
	path := fmt.Sprintf("/v1/ports/%s/capture?count=%d&seconds=%d&snaplen=%d", url.PathEscape(pos[0]), *count, *secs, *snap)
	resp, err := newClient(*socket).send(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(out, resp.Body)
	if n := resp.Trailer.Get("X-Macvsw-Captured"); n != "" {
		msg := n + " packets captured"
		if d := resp.Trailer.Get("X-Macvsw-Dropped"); d != "" && d != "0" {
			msg += ", " + d + " dropped (the capture's buffer was full: write to a file, or capture less)"
		}
		fmt.Fprintln(stderr, msg)
	}
	if ctx.Err() != nil {
		return nil // interrupted: the pcap so far is complete
	}
	return err
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
