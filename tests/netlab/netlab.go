// Package netlab builds throwaway network labs out of Linux network
// namespaces, veth pairs and bridges, with the `ip` command, for macvsw's
// integration tests, its conformance suite and `macvsw demo`.
//
// Every namespace a Lab makes carries the Lab's unique prefix, has no link
// to the host's interfaces and no default route, and is deleted by Close
// (which also stops, by PID, every process the Lab started). Links live
// inside the namespaces and die with them.
package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/macvsw/macvsw/tests/testenv"
)

// Lab is a set of namespaces sharing a unique name prefix.
type Lab struct {
	Prefix string

	mu    sync.Mutex
	ns    []string
	procs []*exec.Cmd
}

// New returns an empty lab whose names start with prefix plus a random
// suffix, so concurrent runs never collide. Keep prefix short: interface
// names are not prefixed, but namespace names show up in `ip netns`.
func New(prefix string) *Lab {
	var b [3]byte
	rand.Read(b[:])
	return &Lab{Prefix: prefix + hex.EncodeToString(b[:])}
}

// Available reports why labs cannot be built here (not root, a missing
// tool, no permission to create namespaces), or nil. A missing tool is
// named with its Debian package.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: creates network namespaces, veth pairs and tap devices")
	}
	// What every lab runs: ip and bridge to build it, sysctl to tune
	// it, ping to probe it.
	for _, t := range []struct{ cmd, pkg string }{{"ip", "iproute2"}, {"bridge", "iproute2"}, {"sysctl", "procps"}, {"ping", "iputils-ping"}} {
		if _, err := exec.LookPath(t.cmd); err != nil {
			return fmt.Errorf("needs %s (apt-get install %s): %w", t.cmd, t.pkg, err)
		}
	}
	probe := New("mvsprobe")
	defer probe.Close()
	if _, err := probe.AddNS("x"); err != nil {
		return fmt.Errorf("cannot create a network namespace: %w", err)
	}
	return nil
}

// run runs a command and returns its combined output.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// AddNS creates namespace Prefix-name with its loopback up and returns its
// full name.
func (l *Lab) AddNS(name string) (string, error) {
	full := l.Prefix + "-" + name
	if _, err := run("ip", "netns", "add", full); err != nil {
		return "", err
	}
	l.mu.Lock()
	l.ns = append(l.ns, full)
	l.mu.Unlock()
	if _, err := run("ip", "-n", full, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return full, nil
}

// DelNS deletes namespace ns (a full name AddNS returned) before Close,
// as a container runtime does when a container goes away; Close then
// leaves it alone.
func (l *Lab) DelNS(ns string) error {
	l.mu.Lock()
	i := slices.Index(l.ns, ns)
	if i >= 0 {
		l.ns = slices.Delete(l.ns, i, i+1)
	}
	l.mu.Unlock()
	if i < 0 {
		return fmt.Errorf("namespace %s is not this lab's", ns)
	}
	_, err := run("ip", "netns", "del", ns)
	return err
}

// Path returns the bind-mount path of namespace ns.
func Path(ns string) string { return "/var/run/netns/" + ns }

// IP runs `ip -n ns args...`.
func (l *Lab) IP(ns string, args ...string) error {
	_, err := run("ip", append([]string{"-n", ns}, args...)...)
	return err
}

// IPs runs several `ip -n ns` commands, each a space-separated string, and
// stops at the first error.
func (l *Lab) IPs(ns string, cmds ...string) error {
	for _, c := range cmds {
		if err := l.IP(ns, strings.Fields(c)...); err != nil {
			return err
		}
	}
	return nil
}

// Exec runs a command inside namespace ns and returns its output.
func (l *Lab) Exec(ns string, args ...string) (string, error) {
	return run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Sysctl sets key=value inside ns.
func (l *Lab) Sysctl(ns, key, value string) error {
	_, err := l.Exec(ns, "sysctl", "-q", "-w", key+"="+value)
	return err
}

// Veth creates a veth pair with end a in namespace nsA and end b in nsB,
// both up.
func (l *Lab) Veth(nsA, a, nsB, b string) error {
	tmp := "mvt" + strings.TrimPrefix(l.Prefix, "mvs")
	if len(tmp) > 12 {
		tmp = tmp[:12]
	}
	if err := l.IP(nsA, "link", "add", a, "type", "veth", "peer", "name", tmp+"p"); err != nil {
		return err
	}
	if err := l.IP(nsA, "link", "set", tmp+"p", "netns", nsB); err != nil {
		return err
	}
	if err := l.IP(nsB, "link", "set", tmp+"p", "name", b); err != nil {
		return err
	}
	if err := l.IP(nsA, "link", "set", a, "up"); err != nil {
		return err
	}
	return l.IP(nsB, "link", "set", b, "up")
}

// Start starts a long-running command inside ns; Close stops it by PID.
func (l *Lab) Start(ns string, stdout, stderr io.Writer, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := testenv.StartWithParent(cmd); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return cmd, nil
}

// Stop sends SIGTERM to cmd, waits up to timeout, then kills it. It
// returns cmd's exit error (nil for a clean exit after SIGTERM).
func Stop(cmd *exec.Cmd, timeout time.Duration) error {
	if cmd.Process == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("pid %d did not stop within %v; killed", cmd.Process.Pid, timeout)
	}
}

// Close stops every process the lab started and deletes its namespaces,
// newest first. Errors are collected, not fatal.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs, nss := l.procs, l.ns
	l.procs, l.ns = nil, nil
	l.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if procs[i].ProcessState == nil {
			if err := Stop(procs[i], 10*time.Second); err != nil && !isSignalExit(err) {
				errs = append(errs, err)
			}
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if _, err := run("ip", "netns", "del", nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isSignalExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}
