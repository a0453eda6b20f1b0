package main

import (
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/macvsw/macvsw/config"
)

func TestPolicy(t *testing.T) {
	dir := t.TempDir()
	// A symlinked directory, as /var/run is to /run.
	real := filepath.Join(dir, "run")
	os.MkdirAll(filepath.Join(real, "netns"), 0o755)
	link := filepath.Join(dir, "varrun")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"sb-1", "other"} {
		os.WriteFile(filepath.Join(real, "netns", n), nil, 0o644)
	}
	p := &policy{allow: config.Allow{
		Ports:      []string{"sb-*"},
		Netns:      []string{link + "/netns/sb-", "/proc/"},
		Interfaces: []string{"vsb?"},
		Addresses:  []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24"), netip.MustParsePrefix("fd77::/64")},
		SocketDirs: []string{filepath.Join(dir, "vm") + "/"},
	}}
	pfx := netip.MustParsePrefix
	tap := func(name, ns string, addrs ...string) *config.Port {
		t := &config.TapPort{Netns: ns}
		for _, a := range addrs {
			t.Addresses = append(t.Addresses, pfx(a))
		}
		return &config.Port{Name: name, Tap: t}
	}
	withRoute := func(e *config.Port, to, via string) *config.Port {
		r := config.Route{To: pfx(to)}
		if via != "" {
			r.Via = netip.MustParseAddr(via)
		}
		e.Tap.Routes = append(e.Tap.Routes, r)
		return e
	}
	ok := filepath.Join(real, "netns", "sb-1") // the resolved path of an allowed prefix
	cases := []struct {
		name string
		e    *config.Port
		rule string // "" allowed
	}{
		{"allowed", tap("sb-1", ok, "10.77.0.5/24", "fd77::5/64"), ""},
		{"through the symlink", tap("sb-1", link+"/netns/sb-1"), ""},
		{"name", tap("web", ok), "ports"},
		{"netns outside", tap("sb-1", filepath.Join(real, "netns", "other")), "netns"},
		{"netns escaping with ..", tap("sb-1", link+"/netns/sb-1/../other"), "netns"},
		{"the host's netns", tap("sb-1", "/proc/1/ns/net"), "netns"},
		{"the daemon's netns", tap("sb-1", "/proc/self/ns/net"), "netns"},
		{"address outside", tap("sb-1", ok, "10.78.0.5/24"), "addresses"},
		{"address wider than allowed", tap("sb-1", ok, "10.77.0.5/1"), "addresses"},
		{"default route via an allowed gateway", withRoute(tap("sb-1", ok), "0.0.0.0/0", "10.77.0.1"), ""},
		{"route to outside", withRoute(tap("sb-1", ok), "192.168.0.0/16", ""), "addresses"},
		{"route via outside", withRoute(tap("sb-1", ok), "::/0", "fd78::1"), "addresses"},
		{"afpacket allowed", &config.Port{Name: "sb-2", AFPacket: &config.AFPacketPort{Interface: "vsb1"}}, ""},
		{"afpacket interface", &config.Port{Name: "sb-2", AFPacket: &config.AFPacketPort{Interface: "eth0"}}, "interfaces"},
		{"afpacket netns", &config.Port{Name: "sb-2", AFPacket: &config.AFPacketPort{Interface: "vsb1", Netns: "/etc"}}, "netns"},
		{"socket allowed", &config.Port{Name: "sb-3", Socket: &config.SocketPort{Type: config.SocketStream, Listen: filepath.Join(dir, "vm", "a.sock")}}, ""},
		{"socket outside", &config.Port{Name: "sb-3", Socket: &config.SocketPort{Type: config.SocketDgram, Listen: filepath.Join(dir, "vm", "a.sock"), Peer: "/etc/shadow"}}, "socket_dirs"},
		{"hand-off", &config.Port{Name: "sb-4"}, ""},
	}
	for _, c := range cases {
		if c.name == "the host's netns" {
			if _, err := os.Stat("/proc/1/ns/net"); err != nil {
				// Nothing can open it here, the daemon neither.
				t.Logf("%s: not checked: %v", c.name, err)
				continue
			}
		}
		err := p.entry(c.e)
		var ae *apiError
		switch {
		case c.rule == "" && err != nil:
			t.Errorf("%s: %v, want allowed", c.name, err)
		case c.rule != "" && (!errors.As(err, &ae) || ae.status != http.StatusForbidden || !strings.Contains(err.Error(), "control.allow."+c.rule)):
			t.Errorf("%s: %v, want a 403 naming control.allow.%s", c.name, err, c.rule)
		}
		if err := (&policy{full: true}).entry(c.e); err != nil {
			t.Errorf("%s: root refused: %v", c.name, err)
		}
	}
	if err := p.capture("sb-1"); err == nil || !strings.Contains(err.Error(), "captures") {
		t.Errorf("capture without captures: %v", err)
	}
	p.allow.Captures = true
	if err := p.capture("sb-1"); err != nil {
		t.Errorf("capture allowed: %v", err)
	}
	if err := p.capture("web"); err == nil {
		t.Errorf("capture of a port outside the list allowed")
	}
	if err := p.rootOnly("POST /v1/down"); err == nil {
		t.Errorf("rootOnly allowed a member")
	}
	if err := (&policy{}).name("anything"); err == nil {
		t.Errorf("an empty allow-list allowed a port name")
	}
}
