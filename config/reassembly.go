package config

import (
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	vswitch "github.com/macvsw/macvsw/switch"
)

// Bounds of the reassembly section. The defaults are the kernel's
// (vswitch.DefaultReassembly*).
const (
	// MinReassemblyHigh leaves room for a few largest datagrams (65535
	// bytes) in ordinary fragments, and a quarter of it for one source.
	MinReassemblyHigh = 512 << 10
	// MaxReassemblyHigh bounds reassembly.high so a typo cannot let
	// fragments pin gigabytes.
	MaxReassemblyHigh = 1 << 30
	// MinReassemblyPerSource lets one source complete a largest datagram
	// in ordinary fragments.
	MinReassemblyPerSource = 128 << 10
	// MinReassemblyTimeout and MaxReassemblyTimeout bound
	// reassembly.timeout. The upper bound is TCP's MSL (RFC 793): a
	// datagram must be gone before its IP ID can come round again, as
	// ip_fragment.c insists.
	MinReassemblyTimeout = time.Second
	MaxReassemblyTimeout = 2 * time.Minute
)

// Reassembly bounds the reassembly of IPv4 fragments sent to group MACs
// (key "reassembly"; the kernel's ipfrag_high_thresh, ipfrag_low_thresh
// and ipfrag_time; vswitch.Reassembly, BEHAVIOUR.md §9 item 18).
type Reassembly struct {
	High         int           // bytes held at most; above it the oldest datagrams are evicted
	Low          int           // bytes eviction brings it down to; 0 evicts everything
	Timeout      time.Duration // a datagram's time to complete, from its first fragment
	MaxPerSource int           // bytes one source address may hold; 0 means a quarter of High
}

// defaultReassembly is the kernel's.
func defaultReassembly() Reassembly {
	return Reassembly{
		High:    vswitch.DefaultReassemblyHigh,
		Low:     vswitch.DefaultReassemblyLow,
		Timeout: vswitch.DefaultReassemblyTimeout,
	}
}

// Switch returns the switch core's reassembly bounds.
func (r Reassembly) Switch() vswitch.Reassembly {
	low := r.Low
	if low == 0 {
		low = 1 // the core reads 0 as its default; nothing fits in 1 byte
	}
	return vswitch.Reassembly{High: r.High, Low: low, Timeout: r.Timeout, MaxPerSource: r.MaxPerSource}
}

func (d *decoder) reassembly(v *yaml.Node, p string, r *Reassembly) {
	d.mapping(v, p, []field{
		{"high", d.size(&r.High)},
		{"low", d.size(&r.Low)},
		{"timeout", d.duration(&r.Timeout)},
		{"max_per_source", d.size(&r.MaxPerSource)},
	})
}

func (r Reassembly) validate(k *checker) {
	k.inRange("reassembly.high", r.High, MinReassemblyHigh, MaxReassemblyHigh, " bytes")
	if r.Low < 0 || r.Low > r.High {
		k.fail("reassembly.low", ErrInvalidValue, "%d out of range (want 0..%d, at most reassembly.high)", r.Low, r.High)
	}
	if r.MaxPerSource != 0 && (r.MaxPerSource < MinReassemblyPerSource || r.MaxPerSource > r.High) {
		k.fail("reassembly.max_per_source", ErrInvalidValue, "%d out of range (want %d..%d, at most reassembly.high; or 0 for a quarter of it)",
			r.MaxPerSource, MinReassemblyPerSource, r.High)
	}
	if r.Timeout < MinReassemblyTimeout || r.Timeout > MaxReassemblyTimeout {
		k.fail("reassembly.timeout", ErrInvalidValue, "%v out of range (want %v..%v)", r.Timeout, MinReassemblyTimeout, MaxReassemblyTimeout)
	}
}

// fileReassembly is the section as Marshal writes it: sizes in bytes, the
// timeout as a Go duration.
type fileReassembly struct {
	High         int    `yaml:"high"`
	Low          int    `yaml:"low"`
	Timeout      string `yaml:"timeout"`
	MaxPerSource int    `yaml:"max_per_source"`
}

func (r Reassembly) file() fileReassembly {
	return fileReassembly{High: r.High, Low: r.Low, Timeout: r.Timeout.String(), MaxPerSource: r.MaxPerSource}
}

// sizeUnits are the suffixes a size may carry.
var sizeUnits = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}}

// size decodes a size in bytes: an integer, or a number with a binary unit
// (512KiB, 4MiB, 1GiB).
func (d *decoder) size(dst *int) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		s, ok := d.scalar(v, path, "a size such as 4MiB or 4194304")
		if !ok {
			return
		}
		n, ok := parseSize(s)
		if !ok {
			d.fail(path, classErrorf(ErrInvalidValue, "bad size %q (want bytes, such as 4194304, or a number with KiB, MiB or GiB, such as 4MiB)", s))
			return
		}
		*dst = n
	}
}

func parseSize(s string) (int, bool) {
	shift := uint(0)
	for _, u := range sizeUnits {
		if t, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = strings.TrimSpace(t), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, false
	}
	return int(n << shift), true
}

// duration decodes a duration: a Go duration string (30s, 1m30s, 500ms)
// or an integer number of seconds, as the kernel's ipfrag_time.
func (d *decoder) duration(dst *time.Duration) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		s, ok := d.scalar(v, path, "a duration such as 30s")
		if !ok {
			return
		}
		if n, err := strconv.ParseInt(s, 10, 32); err == nil {
			*dst = time.Duration(n) * time.Second
			return
		}
		t, err := time.ParseDuration(s)
		if err != nil {
			d.fail(path, classErrorf(ErrInvalidValue, "bad duration %q (want seconds, such as 30, or a duration such as 30s or 1m30s)", s))
			return
		}
		*dst = t
	}
}
