package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/endpoints"
	"golang.org/x/sys/unix"
)

// The daemon's state on disk, in its state directory (the directory of
// its control socket):
//
//   - macvsw.lock, held (flock) while a daemon runs, with its PID: a
//     second daemon on the same directory stops before touching anything;
//   - ports.json, the ports it runs and the devices it created, rewritten
//     on every change, so that a restart after SIGTERM or SIGKILL re-attaches
//     to its own taps (never re-creating them, never re-adding addresses or
//     routes) and restores the ports added through the API.
//
// A second lock, in lowerLockDir and named by the lower's namespace and
// interface, stops two daemons with different state directories from
// sharing a lower.

// lowerLockDir holds the per-lower locks (tmpfs, cleared at boot).
var lowerLockDir = "/run/lock/macvsw"

// errAnotherDaemon is returned when a lock is held by another daemon.
var errAnotherDaemon = errors.New("another macvsw is running")

// stateVersion is ports.json's format.
const stateVersion = 1

// stateFile is ports.json.
type stateFile struct {
	Version int         `json:"version"`
	Ports   []statePort `json:"ports"`
}

// Port origins: who added a port, and so what may remove it.
const (
	originFile = "file" // the config file: a reload makes them match it
	originAPI  = "api"  // POST /v1/ports: kept until DELETE
)

// statePort is one running port.
type statePort struct {
	Name   string `json:"name"`
	Origin string `json:"origin"`
	// Entry is the port's config entry (YAML) for ports not in the file,
	// which a restart restores.
	Entry  string      `json:"entry,omitempty"`
	Owner  *portOwner  `json:"owner,omitempty"`
	Device stateDevice `json:"device"`
}

// portOwner is whoever asked for a port through the API with an owner
// (a container runtime: the container and its interface).
// It is the API's owner as it is: the state file keeps the API's JSON.
type portOwner = api.Owner

// stateDevice is a port's device as created.
type stateDevice struct {
	Kind    string            `json:"kind"`
	Netns   string            `json:"netns,omitempty"`
	NetnsID endpoints.NetNSID `json:"netns_id"`
	Ifname  string            `json:"ifname,omitempty"`
	Ifindex int               `json:"ifindex,omitempty"`
	// Created says macvsw created the device: it may attach to it again
	// and must delete it with the port. An adopted device is neither.
	Created bool `json:"created"`
}

// stateDir is the daemon's locked state directory.
type stateDir struct {
	dir       string
	lock      *os.File
	lowerLock *os.File
}

// lockFile takes an exclusive flock on path without waiting, and writes
// our PID into it; holder names the PID found when another holds it.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		pid := strings.TrimSpace(string(b[:n]))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("%w (pid %s holds %s)", errAnotherDaemon, pid, path)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// openStateDir creates and locks dir, and the lower's lock, before the
// daemon touches anything.
func openStateDir(dir, lower string) (*stateDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := lockFile(filepath.Join(dir, "macvsw.lock"))
	if err != nil {
		return nil, err
	}
	sd := &stateDir{dir: dir, lock: lock}
	ns, err := endpoints.CurrentNetNS()
	if err != nil {
		sd.close()
		return nil, err
	}
	if err := os.MkdirAll(lowerLockDir, 0o755); err != nil {
		sd.close()
		return nil, fmt.Errorf("lower lock: %w", err)
	}
	sd.lowerLock, err = lockFile(filepath.Join(lowerLockDir, fmt.Sprintf("lower-%d-%s.lock", ns.Ino, lower)))
	if err != nil {
		sd.close()
		return nil, fmt.Errorf("lower %s: %w", lower, err)
	}
	return sd, nil
}

func (sd *stateDir) path() string { return filepath.Join(sd.dir, "ports.json") }

// load reads ports.json; a missing file is an empty state.
func (sd *stateDir) load() (stateFile, error) {
	return readState(sd.path())
}

func readState(path string) (stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return stateFile{}, fmt.Errorf("state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return stateFile{}, fmt.Errorf("state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	return st, nil
}

// save replaces ports.json atomically (write, fsync, rename).
func (sd *stateDir) save(st stateFile) error {
	st.Version = stateVersion
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := sd.path() + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("state: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, sd.path()); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// remove deletes ports.json (after a cleanup).
func (sd *stateDir) remove() { os.Remove(sd.path()) }

// close releases the locks. The lower's lock file goes too: it is named
// by a namespace that may not outlive us.
func (sd *stateDir) close() {
	if sd.lowerLock != nil {
		os.Remove(sd.lowerLock.Name())
		sd.lowerLock.Close()
	}
	if sd.lock != nil {
		sd.lock.Close()
	}
}

// destroyRecorded deletes a device the state says macvsw created, without
// its endpoint (the port is gone from the config while the daemon was
// down), checking that the namespace and the interface are still the ones
// recorded.
func destroyRecorded(d stateDevice) error {
	if !d.Created || d.Kind != "tap" {
		return nil
	}
	return endpoints.DeleteTap(d.Netns, d.NetnsID, d.Ifname, d.Ifindex)
}

// cmdDown implements `macvsw down`: ask the running daemon to remove every
// port and delete the taps it created, then exit; with no daemon running,
// do the same from its state directory.
func cmdDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw down", `macvsw down [--json]

Removes every port and deletes every tap macvsw created, then stops the
daemon. With no daemon running, deletes what its state directory (the
socket's directory) records.`, stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, `print {"stopped": BOOL, "deleted": [taps]}`)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	c := newClient(*socket)
	err = c.do(ctx, "POST", "/v1/down", nil, nil)
	var ee *exitErr
	switch {
	case err == nil:
		for i := 0; i < 100; i++ { // wait for it to finish (10 s)
			if _, err := os.Stat(*socket); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if *asJSON {
			return printJSON(stdout, map[string]any{"stopped": true, "deleted": nil})
		}
		fmt.Fprintln(stdout, "macvsw stopped; its ports and taps are removed")
		return nil
	case !errors.As(err, &ee) || ee.code != exitNoDaemon:
		return err
	}
	dir := filepath.Dir(*socket)
	lock, err := lockFile(filepath.Join(dir, "macvsw.lock"))
	if err != nil {
		return fmt.Errorf("state directory %s: %w, but its control socket does not answer", dir, err)
	}
	defer lock.Close()
	st, err := readState(filepath.Join(dir, "ports.json"))
	if err != nil {
		return err
	}
	var errs []error
	deleted := []string{}
	for _, sp := range st.Ports {
		if err := destroyRecorded(sp.Device); err != nil {
			errs = append(errs, fmt.Errorf("port %q: %w", sp.Name, err))
			continue
		}
		if sp.Device.Created {
			deleted = append(deleted, fmt.Sprintf("%s in %s", sp.Device.Ifname, sp.Device.Netns))
			if !*asJSON {
				fmt.Fprintf(stdout, "deleted tap %s in %s (port %s)\n", sp.Device.Ifname, sp.Device.Netns, sp.Name)
			}
		}
	}
	if len(errs) == 0 {
		os.Remove(filepath.Join(dir, "ports.json"))
	}
	if *asJSON {
		if err := printJSON(stdout, map[string]any{"stopped": false, "deleted": deleted}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
