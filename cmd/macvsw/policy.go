package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/macvsw/macvsw/config"
)

// Who may do what on the control socket. Root and the daemon's own user
// may do everything; a member of control.group may read everything and
// do only what control.allow lists. Every refusal is a 403 that names the
// rule.

type credKey struct{}

// withCred stores the connection's peer credentials in its context
// (http.Server.ConnContext).
func withCred(ctx context.Context, c net.Conn) context.Context {
	cred, err := peerCred(c)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, credKey{}, cred)
}

// policy is what the caller of one request may do.
type policy struct {
	full  bool // root or the daemon's user: no limits
	allow config.Allow
	uid   int
}

// policyOf returns the request's caller's policy. A request whose peer is
// unknown gets an empty allow-list (the listener only accepts known
// peers).
func (a *apiServer) policyOf(r *http.Request) *policy {
	cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
	if cred != nil && (cred.Uid == 0 || int(cred.Uid) == os.Geteuid()) {
		return &policy{full: true, uid: int(cred.Uid)}
	}
	p := &policy{allow: a.d.allowList(), uid: -1}
	if cred != nil {
		p.uid = int(cred.Uid)
	}
	return p
}

func forbidden(rule, format string, args ...any) error {
	return &apiError{http.StatusForbidden, fmt.Errorf("permission denied by control.allow.%s: %s", rule, fmt.Sprintf(format, args...))}
}

// rootOnly refuses what only root may do.
func (p *policy) rootOnly(what string) error {
	if p.full {
		return nil
	}
	return &apiError{http.StatusForbidden, fmt.Errorf("permission denied: %s is for root only (caller uid %d)", what, p.uid)}
}

// name checks that the caller may touch the port called name.
func (p *policy) name(name string) error {
	if p.full {
		return nil
	}
	for _, pat := range p.allow.Ports {
		if ok, _ := path.Match(pat, name); ok {
			return nil
		}
	}
	return forbidden("ports", "port %q matches none of %q", name, p.allow.Ports)
}

// capture checks that the caller may capture the port's frames.
func (p *policy) capture(name string) error {
	if p.full {
		return nil
	}
	if !p.allow.Captures {
		return forbidden("captures", "captures are not allowed")
	}
	return p.name(name)
}

// entry checks a port the caller asks for: its name, and everything its
// device would touch.
func (p *policy) entry(e *config.Port) error {
	if p.full {
		return nil
	}
	if err := p.name(e.Name); err != nil {
		return err
	}
	if t := e.Tap; t != nil {
		if err := p.netns(t.Netns); err != nil {
			return err
		}
		for _, a := range t.Addresses {
			if !p.covers(a) {
				return forbidden("addresses", "tap address %v is not inside any of %v", a, p.allow.Addresses)
			}
		}
		for _, r := range t.Routes {
			if r.To.Bits() != 0 && !p.covers(r.To) {
				return forbidden("addresses", "route to %v is not inside any of %v", r.To, p.allow.Addresses)
			}
			if r.Via.IsValid() && !p.covers(netip.PrefixFrom(r.Via, r.Via.BitLen())) {
				return forbidden("addresses", "gateway %v is not inside any of %v", r.Via, p.allow.Addresses)
			}
		}
	}
	if a := e.AFPacket; a != nil {
		ok := false
		for _, pat := range p.allow.Interfaces {
			if m, _ := path.Match(pat, a.Interface); m {
				ok = true
			}
		}
		if !ok {
			return forbidden("interfaces", "interface %q matches none of %q", a.Interface, p.allow.Interfaces)
		}
		if a.Netns != "" {
			if err := p.netns(a.Netns); err != nil {
				return err
			}
		}
	}
	if so := e.Socket; so != nil {
		for _, sp := range []string{so.Listen, so.Connect, so.Peer} {
			if sp != "" && !underAny(sp, p.allow.SocketDirs) {
				return forbidden("socket_dirs", "%s is not under any of %q", sp, p.allow.SocketDirs)
			}
		}
	}
	return nil
}

// covers reports whether an allowed prefix contains a.
func (p *policy) covers(a netip.Prefix) bool {
	for _, al := range p.allow.Addresses {
		if al.Contains(a.Addr()) && a.Bits() >= al.Bits() {
			return true
		}
	}
	return false
}

// netns checks a namespace path: under an allowed prefix, and neither
// the daemon's own namespace nor the host's (that of PID 1), whatever
// name they are given.
func (p *policy) netns(ns string) error {
	if !underAny(ns, p.allow.Netns) {
		return forbidden("netns", "%s is not under any of %q", ns, p.allow.Netns)
	}
	var st unix.Stat_t
	if unix.Stat(ns, &st) != nil {
		return nil // not there: the port's own checks say so
	}
	for _, own := range []struct{ path, what string }{
		{"/proc/self/ns/net", "the daemon's own network namespace"},
		{"/proc/1/ns/net", "the host's network namespace (PID 1's)"},
	} {
		var o unix.Stat_t
		if unix.Stat(own.path, &o) == nil && st.Dev == o.Dev && st.Ino == o.Ino {
			return forbidden("netns", "%s is %s", ns, own.what)
		}
	}
	return nil
}

// underAny reports whether p, with symlinks resolved, starts with one of
// the prefixes (resolved too). Prefixes are plain string prefixes:
// "/run/netns/sb-" allows /run/netns/sb-1; "/run/netns/" a whole
// directory.
func underAny(p string, prefixes []string) bool {
	rp := resolve(p)
	for _, pre := range prefixes {
		if strings.HasPrefix(rp, resolve(pre)) {
			return true
		}
	}
	return false
}

// resolve cleans p and resolves the symlinks of its longest existing
// parent (/var/run is a symlink to /run on most systems), keeping a
// trailing slash.
func resolve(p string) string {
	slash := strings.HasSuffix(p, "/")
	p = filepath.Clean(p)
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			p = filepath.Join(r, rest)
			break
		}
		dir, base := filepath.Split(cur)
		if dir == "" || dir == "/" || cur == "/" {
			break
		}
		rest = filepath.Join(base, rest)
		cur = filepath.Clean(dir)
	}
	if slash && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}
