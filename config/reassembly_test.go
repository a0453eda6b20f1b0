package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
)

func TestReassemblyParse(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       Reassembly
	}{
		{"absent: the kernel's defaults", "", Reassembly{High: 4 << 20, Low: 3 << 20, Timeout: 30 * time.Second}},
		{"empty section", "reassembly:\n", Reassembly{High: 4 << 20, Low: 3 << 20, Timeout: 30 * time.Second}},
		{"units and seconds", "reassembly: {high: 16MiB, low: 12MiB, timeout: 10, max_per_source: 2MiB}",
			Reassembly{High: 16 << 20, Low: 12 << 20, Timeout: 10 * time.Second, MaxPerSource: 2 << 20}},
		{"bytes and a duration", "reassembly: {high: 1048576, low: 0, timeout: 1m30s, max_per_source: 131072}",
			Reassembly{High: 1 << 20, Low: 0, Timeout: 90 * time.Second, MaxPerSource: 128 << 10}},
		{"KiB, GiB", "reassembly: {high: 1GiB, low: 512KiB}", Reassembly{High: 1 << 30, Low: 512 << 10, Timeout: 30 * time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte("lower: {interface: eth0}\n"+tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if c.Reassembly != tt.want {
				t.Errorf("Reassembly = %+v, want %+v", c.Reassembly, tt.want)
			}
		})
	}
}

func TestReassemblyErrors(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		class      error
		want       string
	}{
		{"high too small", "reassembly: {high: 64KiB, low: 0}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.high: 65536 out of range (want 524288..1073741824 bytes)"},
		{"high too large", "reassembly: {high: 2GiB}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.high: 2147483648 out of range"},
		{"low above high", "reassembly: {high: 1MiB, low: 2MiB}", ErrInvalidValue,
			"t.yaml:2:26: reassembly.low: 2097152 out of range (want 0..1048576, at most reassembly.high)"},
		{"low above the default high", "reassembly: {low: 8MiB}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.low: 8388608 out of range (want 0..4194304"},
		{"per source above high", "reassembly: {max_per_source: 8MiB}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.max_per_source: 8388608 out of range (want 131072..4194304"},
		{"per source too small", "reassembly: {max_per_source: 1000}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.max_per_source: 1000 out of range"},
		{"timeout too short", "reassembly: {timeout: 100ms}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.timeout: 100ms out of range (want 1s..2m0s)"},
		{"timeout too long", "reassembly: {timeout: 300}", ErrInvalidValue,
			"t.yaml:2:14: reassembly.timeout: 5m0s out of range"},
		{"bad size", "reassembly: {high: 4MB}", ErrInvalidValue,
			`t.yaml:2:14: reassembly.high: bad size "4MB" (want bytes, such as 4194304, or a number with KiB, MiB or GiB`},
		{"negative size", "reassembly: {high: -1}", ErrInvalidValue, `t.yaml:2:14: reassembly.high: bad size "-1"`},
		{"bad duration", "reassembly: {timeout: soon}", ErrInvalidValue,
			`t.yaml:2:14: reassembly.timeout: bad duration "soon" (want seconds, such as 30, or a duration such as 30s or 1m30s)`},
		{"a list", "reassembly: [high]", ErrInvalidValue, "t.yaml:2:1: reassembly: want a mapping, got a list"},
		{"unknown key", "reassembly: {hi: 1MiB}", ErrUnknownKey,
			"t.yaml:2:14: reassembly.hi: unknown key (want high, low, timeout or max_per_source)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte("lower: {interface: eth0}\n"+tt.yaml+"\n"))
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			fes := fieldErrors(t, err)
			if len(fes) != 1 {
				t.Fatalf("%d errors, want 1:\n%v", len(fes), err)
			}
			if got := fes[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("error = %q, want prefix %q", got, tt.want)
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("error %q is not %v", err, tt.class)
			}
		})
	}
}

// What the daemon hands the switch: the same bounds, low 0 as "evict
// everything", and the core reads them back as given.
func TestReassemblySwitch(t *testing.T) {
	got := Defaults().Reassembly.Switch().WithDefaults()
	want := vswitch.Reassembly{}.WithDefaults()
	if got != want {
		t.Errorf("default Switch() = %+v, want the core's defaults %+v", got, want)
	}
	r := Reassembly{High: 2 << 20, Low: 0, Timeout: 5 * time.Second, MaxPerSource: 256 << 10}
	if got, want := r.Switch().WithDefaults(), (vswitch.Reassembly{High: 2 << 20, Low: 1, Timeout: 5 * time.Second, MaxPerSource: 256 << 10}); got != want {
		t.Errorf("Switch() = %+v, want %+v", got, want)
	}
}

func TestReassemblyDiff(t *testing.T) {
	a, b := Defaults(), Defaults()
	a.Lower.Interface, b.Lower.Interface = "eth0", "eth0"
	b.Reassembly.Timeout = 10 * time.Second
	if d := Diff(a, b); !d.Reassembly || !d.Global() || d.Lower {
		t.Errorf("Diff = %+v, want Reassembly only", d)
	}
	if a.Equal(b) {
		t.Error("Equal ignores reassembly")
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("m.yaml", out)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(b) {
		t.Errorf("Parse(Marshal()) lost reassembly:\n%s", out)
	}
}
