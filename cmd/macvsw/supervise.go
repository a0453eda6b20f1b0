package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	sdaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
)

// Supervision: what systemd (or any supervisor) sees of the daemon. The
// sd_notify protocol (sd_notify(3)) through go-systemd's daemon package:
// READY=1 once every port is up and the control socket and the metrics
// address are bound; RELOADING=1 ... READY=1 around each reload; STATUS=
// lines saying what the daemon does; STOPPING=1 on the way out. Without
// NOTIFY_SOCKET in the environment every notification is a no-op.

// The states sent with notify.
const (
	daemonReady     = sdaemon.SdNotifyReady
	daemonReloading = sdaemon.SdNotifyReloading
	daemonStopping  = sdaemon.SdNotifyStopping
)

// notify sends the given sd_notify assignments as one datagram; a failure
// is logged (once per call) and otherwise ignored: supervision must never
// stop the switch.
func notify(log *slog.Logger, states ...string) {
	if _, err := sdaemon.SdNotify(false, strings.Join(states, "\n")); err != nil {
		log.Warn("sd_notify", "state", strings.Join(states, " "), "err", err)
	}
}

// monotonicUsec is the MONOTONIC_USEC= assignment systemd wants with
// RELOADING=1 (Type=notify-reload), so it can tell this reload from an
// earlier one.
func monotonicUsec() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// status is the daemon's STATUS= line: ports, and how many pass frames.
func (d *daemon) status() string {
	ports := d.sw.Ports()
	carrier := 0
	for _, p := range ports {
		if p.Core().Running() {
			carrier++
		}
	}
	return fmt.Sprintf("running: %d ports (%d with carrier) on %s", len(ports), carrier, d.lowerName())
}

// handleReload answers POST /v1/reload: it reloads the config file, as
// SIGHUP does, and returns what changed. A reload refused whole (the file
// does not load, a section other than ports changed) is an error (400,
// 409) and changes nothing; ports it could not add, remove or change are
// listed in the answer with their errors (200), and the rest is applied.
func (a *apiServer) handleReload(http.ResponseWriter, *http.Request) (any, error) {
	if a.d.reloadFile == nil {
		return nil, &apiError{http.StatusServiceUnavailable, errors.New("this daemon has no config file to reload")}
	}
	rep, err := a.d.reloadFile()
	if err != nil && len(rep.Failed) == 0 {
		return nil, err
	}
	return rep, nil
}

// cmdReload implements `macvsw reload`.
func cmdReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw reload", `macvsw reload [--json] [--pidfile PATH]

Makes the running daemon reload its config file, as SIGHUP does, and prints
what the reload did: ports added, removed, changed in place, rebuilt (their
device re-created), and those it could not apply, with why. A reload that
changes lower, broadcast, control, metrics or log, or a file that does not
load, is refused whole and changes nothing. Exits 1 if anything was refused
or failed.

With --pidfile, sends SIGHUP to the PID in PATH instead: no answer comes
back (the outcome is in the daemon's log).`, stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	pidfile := fs.String("pidfile", "", "send SIGHUP to the PID in PATH instead of asking over the control socket")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	if *pidfile != "" {
		b, err := os.ReadFile(*pidfile)
		if err != nil {
			return fmt.Errorf("pidfile: %w", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return fmt.Errorf("pidfile %s: no PID in it (%q)", *pidfile, b)
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("SIGHUP to pid %d: %w", pid, err)
		}
		if *asJSON {
			return printJSON(stdout, map[string]any{"signalled": pid})
		}
		fmt.Fprintf(stdout, "sent SIGHUP to pid %d; the outcome is in its log\n", pid)
		return nil
	}
	var rep api.ReloadReport
	err = newClient(*socket).do(ctx, "POST", "/v1/reload", nil, &rep)
	var ae *api.Error
	if errors.As(err, &ae) {
		if *asJSON {
			printJSON(stdout, map[string]any{"refused": ae.Message})
		}
		return &exitErr{exitError, fmt.Errorf("reload refused, nothing changed: %s", ae.Message)}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		printReload(stdout, rep)
	}
	if len(rep.Failed) > 0 {
		return &exitErr{exitError, fmt.Errorf("reload: %d port(s) not applied: %s", len(rep.Failed), strings.Join(rep.Failed, ", "))}
	}
	return nil
}

// printReload prints a reload's outcome, a line per kind of change.
func printReload(w io.Writer, rep api.ReloadReport) {
	line := func(what string, names []string) {
		if len(names) > 0 {
			fmt.Fprintf(w, "%-8s %s\n", what+":", strings.Join(names, " "))
		}
	}
	line("added", rep.Added)
	line("removed", rep.Removed)
	line("changed", rep.Changed)
	line("rebuilt", rep.Rebuilt)
	failed := append([]string(nil), rep.Failed...)
	sort.Strings(failed)
	for _, name := range failed {
		fmt.Fprintf(w, "failed:  %s: %s\n", name, rep.Errors[name])
	}
	if len(rep.Added)+len(rep.Removed)+len(rep.Changed)+len(rep.Rebuilt)+len(rep.Failed) == 0 {
		fmt.Fprintln(w, "nothing changed: the running ports match the file")
	}
}
