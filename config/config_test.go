package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
)

// fieldErrors flattens an error from Parse into its FieldErrors.
func fieldErrors(t testing.TB, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		var fe *FieldError
		switch x := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		default:
			if !errors.As(err, &fe) {
				t.Fatalf("error %q (%T) is not a *FieldError", err, err)
			}
			out = append(out, fe)
		}
	}
	walk(err)
	return out
}

var classes = []error{ErrSyntax, ErrUnknownKey, ErrInvalidValue, ErrDuplicate, ErrMissing, ErrConflict}

// classOf returns the one class err belongs to.
func classOf(t testing.TB, err error) error {
	t.Helper()
	var found []error
	for _, c := range classes {
		if errors.Is(err, c) {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("error %q is in classes %v, want exactly one", err, found)
	}
	return found[0]
}

// Each case has exactly one error. want is its exact "file:line:col:
// field: " prefix.
var errorTests = []struct {
	name  string
	yaml  string
	class error
	want  string
	also  error // a cause errors.Is must also find, if any
}{
	// Syntax.
	// Syntax errors point at the mistake: the bracket never closed, the
	// tab, the line whose indentation is wrong (yaml.v3 itself names the
	// line where the enclosing mapping or list starts).
	{"syntax/unclosed flow", "lower: {interface: eth0\nports: []\n", ErrSyntax, "t.yaml:1:8: syntax error: did not find expected ',' or '}' (the '{' here is never closed)", nil},
	{"syntax/tab indent", "lower:\n\tinterface: eth0\n", ErrSyntax, "t.yaml:2:1: syntax error: found character that cannot start any token (YAML indents with spaces, not tabs)", nil},
	{"syntax/bad list", "lower: {interface: eth0}\nports:\n  - name: [a\n", ErrSyntax, "t.yaml:3:11: syntax error: did not find expected ',' or ']' (the '[' here is never closed)", nil},
	{"syntax/two documents", "lower: {interface: eth0}\n---\nlower: {interface: eth1}\n", ErrSyntax, "t.yaml:2:1: syntax error: more than one document", nil},
	{"syntax/key dedented in a port", "lower:\n  interface: lo\nports:\n  - name: a\n    mac: 02:00:00:00:00:01\n  mode: bridge\n    tap: {netns: /x}\n",
		ErrSyntax, "t.yaml:6:3: syntax error: did not find expected '-' indicator (check this line's indentation against the lines above)", nil},
	{"syntax/key over-indented", "lower:\n  interface: lo\nports:\n  - name: a\n    mac: 02:00:00:00:00:01\n     mode: bridge\n",
		ErrSyntax, "t.yaml:6:6: syntax error: mapping values are not allowed in this context (check this line's indentation", nil},
	{"syntax/nested key dedented", "lower:\n  interface: lo\nports:\n  - name: a\n    tap:\n      netns: /x\n     ifname: eth0\n  - name: b\n",
		ErrSyntax, "t.yaml:7:6: syntax error: did not find expected key (check this line's indentation", nil},
	{"syntax/lower key dedented", "lower:\n  interface: lo\n queues: 2\nports: []\n", ErrSyntax, "t.yaml:3:2: syntax error: did not find expected key", nil},
	{"syntax/unclosed quote", "lower:\n  interface: \"lo\nports: []\n", ErrSyntax, "t.yaml:2:3: syntax error: ", nil},
	{"syntax/no line from yaml", "a: b: c\n", ErrSyntax, "t.yaml:1:1: syntax error: mapping values are not allowed", nil},

	// Unknown keys.
	{"unknown/top level", "lower: {interface: eth0}\nlowr: {interface: eth0}\n", ErrUnknownKey, "t.yaml:2:1: lowr: unknown key (want lower, broadcast", nil},
	{"unknown/in lower", "lower:\n  interface: eth0\n  speed: 10\n", ErrUnknownKey, "t.yaml:3:3: lower.speed: ", nil},
	{"unknown/in port", `lower: {interface: eth0}
ports:
  - name: p0
    colour: blue
    tap: {netns: /var/run/netns/a}
`, ErrUnknownKey, "t.yaml:4:5: ports[0].colour: ", nil},
	{"unknown/in tap", `lower: {interface: eth0}
ports:
  - name: p0
    tap:
      netns: /var/run/netns/a
      ip: 10.0.0.1
`, ErrUnknownKey, "t.yaml:6:7: ports[0].tap.ip: ", nil},
	{"unknown/merge key", `lower: &l {interface: eth0}
ports:
  - name: p0
    <<: *l
    tap: {netns: /var/run/netns/a}
`, ErrUnknownKey, "t.yaml:4:5: ports[0].<<: ", nil},

	// Types and values.
	{"type/queues string", "lower: {interface: eth0, queues: four}\n", ErrInvalidValue, `t.yaml:1:26: lower.queues: want an integer, got string "four"`, nil},
	{"type/bool", "lower: {interface: eth0, promiscuous: yes}\n", ErrInvalidValue, "t.yaml:1:26: lower.promiscuous: want true or false", nil},
	{"type/section not mapping", "lower: eth0\n", ErrInvalidValue, "t.yaml:1:1: lower: want a mapping", nil},
	{"type/ports not list", "lower: {interface: eth0}\nports: {name: p0}\n", ErrInvalidValue, "t.yaml:2:1: ports: want a list", nil},
	{"type/null scalar", "lower: {interface: eth0, mtu: }\n", ErrMissing, "t.yaml:1:26: lower.mtu: want an integer, got null", nil},
	{"bad queues/lower", "lower: {interface: eth0, queues: 17}\n", ErrInvalidValue, "t.yaml:1:26: lower.queues: 17 out of range (want 0..16", nil},
	{"bad queues/port zero", `lower: {interface: eth0}
ports:
  - name: p0
    queues: 0
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].queues: 0 out of range (want 1..256)", nil},
	{"bad queues/port too many", `lower: {interface: eth0}
ports:
  - name: p0
    queues: 257
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].queues: 257 out of range (want 1..256)", nil},
	{"bad queue_len", `lower: {interface: eth0}
ports:
  - name: p0
    queue_len: 65537
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].queue_len: ", nil},
	{"bad lower mtu", "lower: {interface: eth0, mtu: 40}\n", ErrInvalidValue, "t.yaml:1:26: lower.mtu: 40 out of range", nil},
	{"bad broadcast queue_len", "lower: {interface: eth0}\nbroadcast:\n  queue_len: 100001\n", ErrInvalidValue, "t.yaml:3:3: broadcast.queue_len: ", nil},
	{"bad mode", `lower: {interface: eth0}
ports:
  - name: p0
    mode: hairpin
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, `t.yaml:4:5: ports[0].mode: unknown macvlan mode "hairpin"`, vswitch.ErrUnknownMode},
	{"bad MAC", `lower: {interface: eth0}
ports:
  - name: p0
    mac: zz:00:00:00:00:01
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, `t.yaml:4:5: ports[0].mac: bad MAC address "zz:00:00:00:00:01"`, vswitch.ErrBadMAC},
	{"group MAC", `lower: {interface: eth0}
ports:
  - name: p0
    mac: 01:00:5e:00:00:01
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].mac: bad MAC address 01:00:5e:00:00:01: a group address", nil},
	{"zero MAC", `lower: {interface: eth0}
ports:
  - name: p0
    mac: "00:00:00:00:00:00"
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].mac: bad MAC address 00:00:00:00:00:00: all zeros", nil},
	{"bad name/too long", `lower: {interface: eth0}
ports:
  - name: abcdefghijklmnop
    tap: {netns: /var/run/netns/a, ifname: eth0}
`, ErrInvalidValue, "t.yaml:3:5: ports[0].name: ", nil},
	{"bad name/chars", `lower: {interface: eth0}
ports:
  - name: "p 0"
    tap: {netns: /var/run/netns/a, ifname: eth0}
`, ErrInvalidValue, "t.yaml:3:5: ports[0].name: ", nil},
	{"bad multicast entry", `lower: {interface: eth0}
ports:
  - name: p0
    allmulticast: false
    multicast:
      - 01:00:5e:00:00:01
      - 02:00:00:00:00:01
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:7:9: ports[0].multicast[1]: 02:00:00:00:00:01 is not a multicast address", nil},
	{"bad tap ifname", `lower: {interface: eth0}
ports:
  - name: p0
    tap: {netns: /var/run/netns/a, ifname: this-name-is-too-long}
`, ErrInvalidValue, "t.yaml:4:36: ports[0].tap.ifname: ", nil},
	{"bad tap netns relative", `lower: {interface: eth0}
ports:
  - name: p0
    tap: {netns: netns/a}
`, ErrInvalidValue, `t.yaml:4:11: ports[0].tap.netns: "netns/a" is neither an absolute path nor a name in /var/run/netns`, nil},
	{"bad address", `lower: {interface: eth0}
ports:
  - name: p0
    tap:
      netns: /var/run/netns/a
      addresses: [10.0.0.2/24, 10.0.0.300/24]
`, ErrInvalidValue, `t.yaml:6:32: ports[0].tap.addresses[1]: bad address "10.0.0.300/24"`, nil},
	{"bad control socket", "lower: {interface: eth0}\ncontrol: {socket: macvsw.sock}\n", ErrInvalidValue, "t.yaml:2:11: control.socket: ", nil},
	{"bad metrics listen", "lower: {interface: eth0}\nmetrics: {listen: localhost}\n", ErrInvalidValue, "t.yaml:2:11: metrics.listen: ", nil},
	{"bad metrics port", "lower: {interface: eth0}\nmetrics: {listen: \":http\"}\n", ErrInvalidValue, "t.yaml:2:11: metrics.listen: ", nil},
	{"bad log format", "lower: {interface: eth0}\nlog:\n  format: xml\n", ErrInvalidValue, `t.yaml:3:3: log.format: unknown log format "xml"`, nil},
	{"bad log level", "lower: {interface: eth0}\nlog:\n  level: trace\n", ErrInvalidValue, `t.yaml:3:3: log.level: unknown log level "trace"`, nil},

	// Duplicates.
	{"duplicate key", "lower: {interface: eth0}\nlower: {interface: eth1}\n", ErrDuplicate, "t.yaml:2:1: lower: key repeated (first at line 1)", nil},
	{"duplicate name", `lower: {interface: eth0}
ports:
  - name: p0
    tap: {netns: /var/run/netns/a, ifname: a}
  - name: p0
    tap: {netns: /var/run/netns/b, ifname: b}
`, ErrDuplicate, `t.yaml:5:5: ports[1].name: port name "p0" already used by ports[0] (line 3)`, nil},
	{"duplicate MAC", `lower: {interface: eth0}
ports:
  - name: p0
    mac: 02:00:00:00:00:01
    tap: {netns: /var/run/netns/a}
  - name: p1
    mac: 02:00:00:00:00:01
    tap: {netns: /var/run/netns/b}
`, ErrDuplicate, `t.yaml:7:5: ports[1].mac: MAC 02:00:00:00:00:01 already used by port "p0" (line 4)`, nil},
	{"duplicate afpacket interface", `lower: {interface: eth0}
ports:
  - name: p0
    afpacket: {interface: veth0}
  - name: p1
    afpacket: {interface: veth0}
`, ErrDuplicate, "t.yaml:6:16: ports[1].afpacket.interface: ", nil},
	{"duplicate tap ifname in netns", `lower: {interface: eth0}
ports:
  - name: p0
    tap: {netns: /var/run/netns/a, ifname: eth0}
  - name: p1
    tap: {netns: /var/run/netns/a, ifname: eth0}
`, ErrDuplicate, "t.yaml:6:36: ports[1].tap.ifname: ", nil},
	{"duplicate source MAC", `lower: {interface: eth0}
ports:
  - name: p0
    mode: source
    source_macs: [52:54:00:00:00:01, 52:54:00:00:00:01]
    afpacket: {interface: veth0}
`, ErrDuplicate, "t.yaml:5:38: ports[0].source_macs[1]: ", nil},

	// Missing values.
	{"missing lower", "ports: []\n", ErrMissing, "t.yaml:1:1: lower.interface: required", nil},
	{"missing lower interface", "lower:\n  queues: 2\n", ErrMissing, "t.yaml:1:1: lower.interface: required", nil},
	{"missing name", `lower: {interface: eth0}
ports:
  - mode: bridge
    tap: {netns: /var/run/netns/a, ifname: eth0}
`, ErrMissing, "t.yaml:3:5: ports[0].name: required", nil},
	{"missing port kind", `lower: {interface: eth0}
ports:
  - name: p0
`, ErrMissing, "t.yaml:3:5: ports[0]: no port kind: set tap, afpacket or socket", nil},
	{"missing tap netns", `lower: {interface: eth0}
ports:
  - name: p0
    tap: {ifname: eth0}
`, ErrMissing, "t.yaml:4:5: ports[0].tap.netns: required", nil},
	{"missing afpacket interface", `lower: {interface: eth0}
ports:
  - name: p0
    afpacket:
`, ErrMissing, "t.yaml:4:5: ports[0].afpacket.interface: required", nil},

	// Conflicts and rules between fields.
	{"MTU above lower", `lower: {interface: eth0, mtu: 1500}
ports:
  - name: p0
    mtu: 9000
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].mtu: 9000 above lower.mtu 1500 (want 68..1500", nil},
	{"passthru with siblings", `lower: {interface: eth0}
ports:
  - name: p0
    mode: passthru
    tap: {netns: /var/run/netns/a}
  - name: p1
    tap: {netns: /var/run/netns/b}
`, ErrConflict, `t.yaml:6:5: ports[1].mode: port "p0" (line 4) is in passthru mode, which must be the only port`, nil},
	{"passthru with mac", `lower: {interface: eth0}
ports:
  - name: p0
    mode: passthru
    mac: 02:00:00:00:00:01
    tap: {netns: /var/run/netns/a}
`, ErrConflict, "t.yaml:5:5: ports[0].mac: a passthru port takes the lower's MAC", nil},
	{"both tap and afpacket", `lower: {interface: eth0}
ports:
  - name: p0
    tap: {netns: /var/run/netns/a}
    afpacket: {interface: veth0}
`, ErrConflict, "t.yaml:3:5: ports[0]: a port is one of tap, afpacket or socket, not several", nil},
	{"source_macs on vepa", `lower: {interface: eth0}
ports:
  - name: p0
    source_macs: [52:54:00:00:00:01]
    tap: {netns: /var/run/netns/a}
`, ErrConflict, "t.yaml:4:5: ports[0].source_macs: only allowed in source mode (mode is vepa)", nil},
	{"nodst on bridge", `lower: {interface: eth0}
ports:
  - name: p0
    mode: bridge
    nodst: true
    tap: {netns: /var/run/netns/a}
`, ErrConflict, "t.yaml:5:5: ports[0].nodst: only allowed in source mode (mode is bridge)", nil},
	{"nopromisc on vepa", `lower: {interface: eth0}
ports:
  - name: p0
    nopromisc: true
    tap: {netns: /var/run/netns/a}
`, ErrConflict, "t.yaml:4:5: ports[0].nopromisc: only allowed in passthru mode", nil},
	{"allowed_ips without spoofcheck", `lower: {interface: eth0}
ports:
  - name: p0
    allowed_ips: [10.0.0.2]
    tap: {netns: /var/run/netns/a}
`, ErrConflict, "t.yaml:4:5: ports[0].allowed_ips: needs spoofcheck: true", nil},
	{"bad allowed_ips", `lower: {interface: eth0}
ports:
  - name: p0
    spoofcheck: true
    allowed_ips: [10.0.0.300]
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, `t.yaml:5:19: ports[0].allowed_ips[0]: bad address "10.0.0.300"`, nil},
	{"busy_poll too long", `lower: {interface: eth0}
ports:
  - name: p0
    busy_poll: 1s
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, "t.yaml:4:5: ports[0].busy_poll: 1s is outside 0..100ms", nil},
	{"busy_poll not a duration", `lower: {interface: eth0}
ports:
  - name: p0
    busy_poll: fast
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, `t.yaml:4:5: ports[0].busy_poll: bad duration "fast"`, nil},
	{"bad rate", `lower: {interface: eth0}
ports:
  - name: p0
    police: {pps: 10x}
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, `t.yaml:4:14: ports[0].police.pps: bad count "10x" (want a number of frames per second, e.g. 10000 or 10k)`, nil},
	{"rate too high", `lower: {interface: eth0}
ports:
  - name: p0
    police: {bps: 2T}
    tap: {netns: /var/run/netns/a}
`, ErrInvalidValue, `t.yaml:4:14: ports[0].police.bps: 2000000000000 above the maximum 1000000000000`, nil},
	{"allow without a group", `lower: {interface: eth0}
control: {allow: {ports: [a]}}
`, ErrConflict, "t.yaml:2:11: control.allow: needs control.group", nil},
	{"allow bad pattern", `lower: {interface: eth0}
control: {group: g, allow: {ports: ["a["]}}
`, ErrInvalidValue, `t.yaml:2:37: control.allow.ports[0]: bad pattern "a["`, nil},
	{"allow relative netns", `lower: {interface: eth0}
control: {group: g, allow: {netns: [netns/]}}
`, ErrInvalidValue, `t.yaml:2:37: control.allow.netns[0]: "netns/" is not an absolute path below /`, nil},
	{"afpacket on the lower", `lower: {interface: eth0}
ports:
  - name: p0
    afpacket: {interface: eth0}
`, ErrConflict, `t.yaml:4:16: ports[0].afpacket.interface: "eth0" is lower.interface`, nil},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range errorTests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse = %+v, nil; want error %q…", c, tt.want)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("Parse error %q: not errors.Is %v", err, tt.class)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Errorf("Parse error %q: not errors.Is %v", err, tt.also)
			}
			fes := fieldErrors(t, err)
			if len(fes) != 1 {
				t.Fatalf("Parse error has %d errors, want 1:\n%v", len(fes), err)
			}
			if got := fes[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("Parse error = %q, want prefix %q", got, tt.want)
			}
			if got := classOf(t, fes[0]); got != tt.class {
				t.Errorf("class = %v, want %v", got, tt.class)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	const in = `lower: {interface: eth0, mtu: 1500}
ports:
  - name: p0
    mac: zz
    mtu: 9000
    tap: {netns: /var/run/netns/a}
  - name: p0
    mode: hairpin
    tap: {netns: /var/run/netns/b}
  - name: p2
    bogus: 1
`
	_, err := Parse("m.yaml", []byte(in))
	if err == nil {
		t.Fatal("Parse = nil error, want several")
	}
	var got []string
	for _, fe := range fieldErrors(t, err) {
		got = append(got, fmt.Sprintf("%s:%d:%d: %s:", fe.File, fe.Line, fe.Column, fe.Field))
	}
	want := []string{
		"m.yaml:4:5: ports[0].mac:",
		"m.yaml:5:5: ports[0].mtu:",
		"m.yaml:7:5: ports[1].name:",
		"m.yaml:8:5: ports[1].mode:",
		"m.yaml:10:5: ports[2]:", // no port kind
		"m.yaml:11:5: ports[2].bogus:",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Parse errors:\n%s\nwant locations:\n%s", err, strings.Join(want, "\n"))
	}
	for _, class := range []error{ErrInvalidValue, ErrDuplicate, ErrMissing, ErrUnknownKey} {
		if !errors.Is(err, class) {
			t.Errorf("joined error is not errors.Is %v", class)
		}
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("lower: {interface: eth0}\nm: &m [")
	for i := range 2000 {
		fmt.Fprintf(&b, "01:00:5e:00:%02x:%02x,", i>>8, i&0xff)
	}
	b.WriteString("]\np: &p {name: a, allmulticast: false, multicast: *m, tap: {netns: /n}}\nports: [")
	b.WriteString(strings.Repeat("*p,", 2000))
	b.WriteString("]\n")
	// 4 million values without the budget; about 50000 with it.
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), "too many values after alias expansion") {
		t.Errorf("Parse(alias bomb) = %.300v…, want too many values", err)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	inner := classErrorf(ErrInvalidValue, "bad")
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 12, Column: 5, Field: "ports[1].mac", Err: inner}, "a.yaml:12:5: ports[1].mac: bad"},
		{FieldError{File: "a.yaml", Line: 3, Err: inner}, "a.yaml:3: bad"},
		{FieldError{File: "a.yaml", Field: "lower", Err: inner}, "a.yaml: lower: bad"},
		{FieldError{Field: "lower.mtu", Err: inner}, "lower.mtu: bad"},
		{FieldError{Line: 2, Column: 1, Err: inner}, "line 2:1: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(&tt.e, ErrInvalidValue) {
			t.Errorf("%q: not errors.Is ErrInvalidValue", tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("lower: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if !errors.Is(err, ErrMissing) || !strings.HasPrefix(err.Error(), path+":1:1: lower.interface: ") {
		t.Errorf("Load(%s) = %v, want %s:1:1: lower.interface: … (ErrMissing)", path, err, path)
	}
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(%s) = %v, want fs.ErrNotExist naming the file", missing, err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Lower.Interface = "eth0"
	p := DefaultPort()
	p.Name = "p0"
	p.MAC = c.Ports[0].MAC // random; checked below
	p.Tap = &TapPort{Netns: "/var/run/netns/p0", Ifname: "p0", Offloads: true, LoUp: true}
	want.Ports = []Port{p}
	if !c.Equal(want) {
		t.Errorf("Load(minimal.yaml) =\n%s\nwant\n%s", mustMarshal(t, c), mustMarshal(t, want))
	}

	// The documented values, spelled out once more.
	d := Defaults()
	if d.Lower.Queues != 0 || !d.Lower.Promiscuous || d.Lower.MTU != 0 ||
		d.Broadcast.QueueLen != 1000 || d.Broadcast.Cutoff != 1 ||
		d.Control.Socket != "/run/macvsw/macvsw.sock" || d.Control.Group != "" ||
		d.Metrics.Listen != "" || d.Log.Format != LogText || d.Log.Level != slog.LevelInfo {
		t.Errorf("Defaults() = %+v", d)
	}
	dp := DefaultPort()
	if dp.Mode != vswitch.ModeVEPA || dp.Queues != 1 || dp.QueueLen != 1000 || !dp.AllMulticast ||
		dp.BCQueueLen != 1000 || dp.MTU != 0 || dp.Tap != nil || dp.AFPacket != nil {
		t.Errorf("DefaultPort() = %+v", dp)
	}
	if n := d.Lower.NumQueues(); n < 1 || n > MaxLowerQueues {
		t.Errorf("NumQueues() = %d, want 1..%d", n, MaxLowerQueues)
	}
}

func TestGeneratedMACs(t *testing.T) {
	var b strings.Builder
	b.WriteString("lower: {interface: eth0}\nports:\n")
	const n = 64
	for i := range n {
		// Port 0 claims an address; the generator must avoid it.
		if i == 0 {
			b.WriteString("  - {name: p0, mac: 02:00:00:00:00:01, socket: {type: stream, listen: /run/v0}}\n")
			continue
		}
		b.WriteString(fmt.Sprintf("  - {name: p%d, socket: {type: stream, listen: /run/v%d}}\n", i, i))
	}
	c, err := Parse("t.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[vswitch.MAC]bool{}
	for _, p := range c.Ports {
		m := p.MAC
		if !m.IsValidUnicast() || m[0]&0x02 == 0 {
			t.Errorf("port %s: MAC %s is not a locally administered unicast address", p.Name, m)
		}
		if seen[m] {
			t.Errorf("port %s: MAC %s used twice", p.Name, m)
		}
		seen[m] = true
	}

	// A source with one MAC only runs dry: an error, not a loop.
	c2, err := parse("t.yaml", []byte("lower: {interface: eth0}\nports:\n"+
		"  - {name: a, socket: {type: stream, listen: /run/v0}}\n  - {name: b, socket: {type: stream, listen: /run/v1}}\n"),
		bytes.NewReader([]byte{0, 0, 0, 0, 0, 1}))
	if err == nil {
		t.Errorf("parse with an exhausted random source = %v, want an error", c2.Ports)
	}
	c3, err := parse("t.yaml", []byte("lower: {interface: eth0}\nports:\n"+
		"  - {name: a, socket: {type: stream, listen: /run/v0}}\n  - {name: b, socket: {type: stream, listen: /run/v1}}\n"),
		// A source that repeats itself: the generator retries.
		bytes.NewReader([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2}))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c3.Ports[0].MAC.String(), c3.Ports[1].MAC.String(); a != "02:00:00:00:00:01" || b != "02:00:00:00:00:02" {
		t.Errorf("generated MACs = %s, %s; want 02:00:00:00:00:01, 02:00:00:00:00:02", a, b)
	}
}

func TestExample(t *testing.T) {
	c, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mac := func(s string) vswitch.MAC {
		m, err := vswitch.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	want := &Config{
		Lower:      Lower{Interface: "eth0", Queues: 4, Promiscuous: true, MTU: 9000},
		Broadcast:  Broadcast{QueueLen: 2000, Cutoff: -1},
		Reassembly: Reassembly{High: 8 << 20, Low: 6 << 20, Timeout: 20 * time.Second, MaxPerSource: 512 << 10},
		Control: Control{Socket: "/run/macvsw/macvsw.sock", Group: "netadmin", Allow: Allow{
			Ports: []string{"sb-*"}, Netns: []string{"/var/run/netns/sb-"}, Interfaces: []string{"vsb*"},
			Addresses:  []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")},
			SocketDirs: []string{"/run/macvsw/vm/"}, Captures: true,
		}},
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		Log:     Log{Format: LogJSON, Level: slog.LevelDebug},
		Ports: []Port{{
			Name: "vm1", Mode: vswitch.ModeBridge, MAC: mac("02:00:00:00:00:01"),
			MTU: 1500, Queues: 4, QueueLen: 2048, AllMulticast: false,
			Multicast:  []vswitch.MAC{mac("01:00:5e:00:00:01"), mac("33:33:00:00:00:01")},
			BCQueueLen: 500,
			Tap: &TapPort{Netns: "/var/run/netns/vm1", Ifname: "eth0", Offloads: true, LoUp: true,
				Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("fd00::2/64")}},
		}, {
			Name: "vm2", Mode: vswitch.ModeBridge, MAC: c.Ports[1].MAC,
			Queues: 1, QueueLen: 1000, AllMulticast: true, BCQueueLen: 1000,
			Police:     vswitch.Police{PPS: 100_000, BPS: 1_000_000_000, FloodPPS: 1000},
			SpoofCheck: true,
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.3/32"), netip.MustParsePrefix("fd00::3/128"), netip.MustParsePrefix("10.1.0.0/24")},
			Tap:        &TapPort{Netns: "/var/run/netns/vm2", Ifname: "vm2", Offloads: true, LoUp: true},
		}, {
			Name: "isolated", Mode: vswitch.ModePrivate, MAC: mac("02:00:00:00:00:03"),
			Queues: 1, QueueLen: 1000, AllMulticast: true, BCQueueLen: 1000,
			Tap: &TapPort{Netns: "/var/run/netns/isolated", Ifname: "isolated", Offloads: false, LoUp: true},
		}, {
			Name: "capture", Mode: vswitch.ModeSource, MAC: mac("02:00:00:00:00:04"),
			Queues: 1, QueueLen: 1000, AllMulticast: true, BCQueueLen: 1000,
			SourceMACs: []vswitch.MAC{mac("52:54:00:12:34:56")},
			AFPacket:   &AFPacketPort{Interface: "veth-cap"},
		}},
	}
	if !c.Equal(want) {
		t.Errorf("Load(example.yaml) =\n%s\nwant\n%s", mustMarshal(t, c), mustMarshal(t, want))
	}
	if got := c.BroadcastQueueLen(); got != 2000 {
		t.Errorf("BroadcastQueueLen() = %d, want 2000", got)
	}
	if p := c.Port("capture"); p == nil || p.AFPacket == nil {
		t.Errorf("Port(capture) = %+v", p)
	}
}

func mustMarshal(t testing.TB, c *Config) []byte {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("testdata/*.yaml: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			out := mustMarshal(t, c)
			c2, err := Parse("marshalled.yaml", out)
			if err != nil {
				t.Fatalf("Parse(Marshal()) = %v\n%s", err, out)
			}
			if !c2.Equal(c) {
				t.Errorf("Parse(Marshal(c)) != c\nfirst:\n%s\nsecond:\n%s", out, mustMarshal(t, c2))
			}
			if out2 := mustMarshal(t, c2); !bytes.Equal(out, out2) {
				t.Errorf("Marshal is not stable:\n%s\nthen\n%s", out, out2)
			}
		})
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := Defaults()
	c.Lower.Interface = "eth0"
	p := DefaultPort()
	p.Name = "p0"
	p.MAC = vswitch.MAC{0x02, 0, 0, 0, 0, 1}
	p.AFPacket = &AFPacketPort{Interface: "veth0"}
	c.Ports = append(c.Ports, p)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	c.Ports = append(c.Ports, c.Ports[0])
	c.Ports[1].Name = "p1"
	c.Ports[1].AFPacket = &AFPacketPort{Interface: "veth1"}
	c.Ports[1].Mode = 3
	err := c.Validate()
	fes := fieldErrors(t, err)
	var got []string
	for _, fe := range fes {
		got = append(got, fe.Error())
	}
	want := []string{
		"ports[1].mode: Mode(3) is not a mode (want private, vepa, bridge, passthru or source)",
		`ports[1].mac: MAC 02:00:00:00:00:01 already used by port "p0" (the kernel refuses to bring the second port up: EADDRINUSE)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := c.Marshal(); err == nil {
		t.Errorf("Marshal with an invalid mode = nil error")
	}
}

// fakeHost knows which namespaces and interfaces exist.
type fakeHost struct {
	exists map[string]bool
	broken map[string]error
}

func (h fakeHost) NetNS(path string) error { return h.lookup(path) }

func (h fakeHost) Interface(netns, name string) error { return h.lookup(netns + "/" + name) }

func (h fakeHost) lookup(k string) error {
	if err := h.broken[k]; err != nil {
		return err
	}
	if h.exists[k] {
		return nil
	}
	return &fs.PathError{Op: "lookup", Path: k, Err: fs.ErrNotExist}
}

func TestCheckHost(t *testing.T) {
	const in = `lower: {interface: eth0}
ports:
  - name: a
    tap: {netns: /var/run/netns/a}
  - name: b
    tap:
      netns: /var/run/netns/b
  - name: c
    afpacket: {interface: veth-c}
`
	c, err := Parse("t.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	h := fakeHost{exists: map[string]bool{"/var/run/netns/a": true, "/eth0": true},
		broken: map[string]error{"/veth-c": fs.ErrPermission}}
	err = c.CheckHost(h)
	fes := fieldErrors(t, err)
	if len(fes) != 2 {
		t.Fatalf("CheckHost = %v, want 2 errors", err)
	}
	if got, want := fes[0].Error(), "t.yaml:7:7: ports[1].tap.netns: network namespace /var/run/netns/b does not exist"; !strings.HasPrefix(got, want) {
		t.Errorf("CheckHost error = %q, want prefix %q", got, want)
	}
	if !errors.Is(fes[0], ErrMissing) || !errors.Is(fes[0], fs.ErrNotExist) {
		t.Errorf("missing netns: %v is not ErrMissing and fs.ErrNotExist", fes[0])
	}
	if got, want := fes[1].Error(), "t.yaml:9:16: ports[2].afpacket.interface: "; !strings.HasPrefix(got, want) || !errors.Is(fes[1], ErrInvalidValue) {
		t.Errorf("CheckHost error = %q, want prefix %q (ErrInvalidValue)", got, want)
	}

	h.exists["/var/run/netns/b"] = true
	delete(h.broken, "/veth-c")
	h.exists["/veth-c"] = true
	if err := c.CheckHost(h); err != nil {
		t.Errorf("CheckHost with everything present = %v", err)
	}
}

func TestDiff(t *testing.T) {
	const old = `lower: {interface: eth0}
ports:
  - {name: keep, tap: {netns: /var/run/netns/v0}}
  - {name: change, mac: 02:00:00:00:00:02, afpacket: {interface: v1}}
  - {name: gone, afpacket: {interface: v2}}
`
	const new = `lower: {interface: eth0}
log: {level: debug}
ports:
  - {name: new, afpacket: {interface: v3}}
  - {name: change, mac: 02:00:00:00:00:02, mode: bridge, afpacket: {interface: v1}}
  - {name: keep, tap: {netns: /var/run/netns/v0}}
`
	a, err := Parse("old.yaml", []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("new.yaml", []byte(new))
	if err != nil {
		t.Fatal(err)
	}

	// Without InheritMACs, "keep" gets a new random MAC and so changes.
	if d := Diff(a, b); !slices.Contains(d.Changed, "keep") {
		t.Errorf("Diff before InheritMACs: Changed = %v, want keep in it", d.Changed)
	}
	b.InheritMACs(a)
	d := Diff(a, b)
	want := Delta{Added: []string{"new"}, Removed: []string{"gone"}, Changed: []string{"change"}, Log: true}
	if !slices.Equal(d.Added, want.Added) || !slices.Equal(d.Removed, want.Removed) ||
		!slices.Equal(d.Changed, want.Changed) || d.Lower || d.Broadcast || d.Control || d.Metrics || !d.Log {
		t.Errorf("Diff = %+v, want %+v", d, want)
	}
	if !d.Global() || d.Empty() {
		t.Errorf("Diff = %+v: Global() = %v, Empty() = %v; want true, false", d, d.Global(), d.Empty())
	}
	if d := Diff(a, a); !d.Empty() {
		t.Errorf("Diff(a, a) = %+v, want empty", d)
	}

	// The running config (Marshal) reloaded from the file keeps its MACs.
	running, err := Parse("running.yaml", mustMarshal(t, a))
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := Parse("old.yaml", []byte(old))
	if err != nil {
		t.Fatal(err)
	}
	reloaded.InheritMACs(running)
	if d := Diff(running, reloaded); !d.Empty() {
		t.Errorf("Diff(running, reloaded) = %+v, want empty", d)
	}
}

func TestFlags(t *testing.T) {
	const file = `lower: {interface: eth0}
log: {format: text, level: info}
metrics: {listen: "127.0.0.1:9464"}
ports:
  - {name: p0, afpacket: {interface: eth1}}
`
	tests := []struct {
		argv  []string
		check func(c *Config) bool
		class error  // nil: success
		want  string // error prefix
	}{
		{argv: nil, check: func(c *Config) bool {
			return c.Lower.Interface == "eth0" && c.Log.Format == LogText && c.Metrics.Listen == "127.0.0.1:9464"
		}},
		{argv: []string{"-lower", "eth2"}, check: func(c *Config) bool { return c.Lower.Interface == "eth2" }},
		{argv: []string{"-log-format=json", "-log-level=warn"}, check: func(c *Config) bool {
			return c.Log.Format == LogJSON && c.Log.Level == slog.LevelWarn && c.Lower.Interface == "eth0"
		}},
		{argv: []string{"-metrics-listen="}, check: func(c *Config) bool { return c.Metrics.Listen == "" }},
		{argv: []string{"-log-format", "xml"}, class: ErrInvalidValue, want: `flag -log-format: log.format: unknown log format "xml"`},
		{argv: []string{"-log-level", "loud"}, class: ErrInvalidValue, want: `flag -log-level: log.level: unknown log level "loud"`},
		{argv: []string{"-lower", "a/b"}, class: ErrInvalidValue, want: "flag -lower: lower.interface: bad interface name"},
		{argv: []string{"-metrics-listen", "nowhere"}, class: ErrInvalidValue, want: "flag -metrics-listen: metrics.listen: "},
		// The flag breaks a rule with a field from the file: the error
		// points at the file's field.
		{argv: []string{"-lower", "eth1"}, class: ErrConflict, want: `t.yaml:5:27: ports[0].afpacket.interface: "eth1" is lower.interface`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.argv, " "), func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(file))
			if err != nil {
				t.Fatal(err)
			}
			fs := flag.NewFlagSet("macvsw", flag.ContinueOnError)
			o := RegisterFlags(fs)
			if err := fs.Parse(tt.argv); err != nil {
				t.Fatal(err)
			}
			err = o.Apply(c)
			if tt.class == nil {
				if err != nil {
					t.Fatalf("Apply = %v", err)
				}
				if !tt.check(c) {
					t.Errorf("after %v: config =\n%s", tt.argv, mustMarshal(t, c))
				}
				return
			}
			if !errors.Is(err, tt.class) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Apply = %v, want prefix %q (%v)", err, tt.want, tt.class)
			}
			if fes := fieldErrors(t, err); len(fes) != 1 {
				t.Errorf("Apply: %d errors, want 1: %v", len(fes), err)
			}
		})
	}
}

// FuzzParse checks invariants, not outputs: Parse never panics; every error
// is a located *FieldError of exactly one class; and whatever parses
// survives Marshal and Parse unchanged. Seeds: testdata/*.yaml, the error
// table, and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tt := range errorTests {
		f.Add([]byte(tt.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			for _, fe := range fieldErrors(t, err) {
				classOf(t, fe)
				if fe.File != "f.yaml" {
					t.Errorf("error %q does not name the file", fe)
				}
			}
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed config: %v", err)
		}
		c2, err := Parse("f2.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal()) = %v\n%s", err, out)
		}
		if !c2.Equal(c) {
			t.Fatalf("Parse(Marshal(c)) != c:\n%s\nthen\n%s", out, mustMarshal(t, c2))
		}
	})
}

// TestParsePort: one entry, as the API gets it, with errors at the
// entry's own keys; the switch's rules apply, those between ports do not.
func TestParsePort(t *testing.T) {
	p, err := ParsePort("request", []byte(`{"name": "p1", "mode": "bridge", "tap": {"netns": "/var/run/netns/x"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "p1" || p.Mode != vswitch.ModeBridge || !p.MAC.IsZero() || p.Tap == nil || p.Tap.Ifname != "p1" || !p.AllMulticast {
		t.Errorf("ParsePort = %+v", p)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"name": "p1", "mac": "zz", "afpacket": {"interface": "v"}}`, `request:1:16: mac: bad MAC address "zz"`},
		{`{"name": "p1", "nodst": true, "afpacket": {"interface": "v"}}`, `request:1:16: nodst: operation needs source mode`},
		{`{"name": "p1"}`, `request:1:1: no port kind`},
		{`{"name": "p1", "tap": {"netns": "rel/x"}}`, `request:1:24: tap.netns: "rel/x" is neither an absolute path nor a name in /var/run/netns`},
		{`[1, 2]`, `request:1:1: want a mapping`},
		{``, `request:1:1: empty port entry`},
	} {
		_, err := ParsePort("request", []byte(tc.in))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ParsePort(%s) = %v, want %q...", tc.in, err, tc.want)
		}
	}
}

// TestNetnsNames: a netns given as a bare name is the named namespace in
// /var/run/netns, as ip -n NAME has it, in the file and in API entries;
// the running config writes the path.
func TestNetnsNames(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`lower: {interface: eth0}
ports:
  - {name: a, tap: {netns: web}}
  - {name: b, afpacket: {interface: vm0, netns: vm1}}
  - {name: c, tap: {netns: /proc/1/ns/net}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{c.Ports[0].Tap.Netns, c.Ports[1].AFPacket.Netns, c.Ports[2].Tap.Netns}; !slices.Equal(got, []string{"/var/run/netns/web", "/var/run/netns/vm1", "/proc/1/ns/net"}) {
		t.Errorf("netns = %q", got)
	}
	out, err := c.Marshal()
	if err != nil || !strings.Contains(string(out), "netns: /var/run/netns/web") {
		t.Errorf("Marshal = %v\n%s", err, out)
	}
	p, err := ParsePort("request", []byte(`{"name": "p", "tap": {"netns": "sb1"}}`))
	if err != nil || p.Tap.Netns != "/var/run/netns/sb1" {
		t.Errorf("ParsePort netns = %+v, %v", p.Tap, err)
	}
	for _, in := range []string{"", "/x", "a/b", ".", ".."} {
		if got := NetnsPath(in); got != in {
			t.Errorf("NetnsPath(%q) = %q, want it unchanged", in, got)
		}
	}
}

// TestAFPacketMACLeftToTheDaemon: an afpacket port without a mac gets no
// random one: the daemon gives it the MAC its interface's far end sends
// with (a random one would pass no unicast to the sandbox).
func TestAFPacketMACLeftToTheDaemon(t *testing.T) {
	c, err := Parse("t.yaml", []byte("lower: {interface: eth0}\nports:\n  - {name: a, afpacket: {interface: v0}}\n  - {name: b, afpacket: {interface: v1}}\n  - {name: c, tap: {netns: x}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Ports[0].MAC.IsZero() || !c.Ports[1].MAC.IsZero() || c.Ports[2].MAC.IsZero() {
		t.Errorf("MACs = %v %v %v; want afpacket ports without, the tap port with a generated one", c.Ports[0].MAC, c.Ports[1].MAC, c.Ports[2].MAC)
	}
}

func TestParsePortIfname(t *testing.T) {
	p, err := ParsePort("request", []byte(`{"name": "p2", "tap": {"netns": "/var/run/netns/x", "ifname": "eth0"}}`))
	if err != nil || p.Tap.Ifname != "eth0" {
		t.Errorf("ParsePort = %+v, %v; want ifname eth0", p.Tap, err)
	}
}

func TestMarshalPortRoundTrip(t *testing.T) {
	in := `{"name": "p1", "mode": "source", "mac": "02:00:00:00:00:07", "mtu": 1400, "source_macs": ["02:00:00:00:00:09"],
		"nodst": true, "allmulticast": false, "multicast": ["01:00:5e:00:00:01"], "busy_poll": "50us",
		"tap": {"netns": "/var/run/netns/x", "ifname": "eth0", "addresses": ["10.0.0.2/24"], "adopt": true,
		"routes": [{"to": "0.0.0.0/0", "via": "10.0.0.1", "metric": 5}]}}`
	p, err := ParsePort("request", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalPort(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParsePort("state", b)
	if err != nil {
		t.Fatalf("ParsePort(MarshalPort) = %v\n%s", err, b)
	}
	if !portEqual(&p, &q) || q.BusyPoll != 50*time.Microsecond {
		t.Errorf("round trip:\n%+v\n%+v\n%s", p, q, b)
	}
}
