package main

import (
	"context"
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

func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw stats", `macvsw stats [PORT] [--json] [--all]

Prints the counters, one table per subject (the switch, the lower, each
port), under the names the metrics use; drop reasons at zero only with
--all.`, stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "also print drop reasons that are zero")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 1, ""); err != nil {
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
	fs := newFlagSet("macvsw capture", `macvsw capture PORT [-w FILE] [-c COUNT] [-G SECONDS] [-s SNAPLEN]

Writes the port's frames, both directions, as pcap to FILE or to stdout
(never to a terminal: macvsw capture p1 | tshark -r -), until COUNT frames,
SECONDS or Ctrl-C, then says how many it captured.`, stderr)
	socket := clientFlags(fs)
	file := fs.String("w", "", "write to FILE instead of stdout")
	count := fs.Int("c", 0, "stop after COUNT frames")
	secs := fs.Int("G", 0, "stop after SECONDS")
	snap := fs.Int("s", 65535, "keep the first SNAPLEN bytes of each frame")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "PORT"); err != nil {
		return err
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
