package config

import (
	"slices"

	vswitch "github.com/macvsw/macvsw/switch"
)

// Delta is what changed between two configurations, for a reload (SIGHUP).
// Ports are matched by name; their order in the file does not matter.
type Delta struct {
	Added   []string // ports only in the new config, in its order
	Removed []string // ports only in the old config, in its order
	Changed []string // ports in both whose settings differ, in the new order

	// Sections other than ports that differ.
	Lower, Broadcast, Reassembly, Control, Metrics, Log bool
	// Allow says control.allow differs (it applies without a restart).
	Allow bool
}

// Empty reports whether nothing changed.
func (d Delta) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0 && !d.Global() && !d.Allow
}

// Global reports whether a section other than ports changed.
func (d Delta) Global() bool {
	return d.Lower || d.Broadcast || d.Reassembly || d.Control || d.Metrics || d.Log
}

// Diff compares two configurations. A port whose MAC was generated at load
// gets a new one on every load: call new.InheritMACs(old) first, or Diff
// reports it as changed.
func Diff(old, new *Config) Delta {
	d := Delta{
		Lower:      old.Lower != new.Lower,
		Broadcast:  old.Broadcast != new.Broadcast,
		Reassembly: old.Reassembly != new.Reassembly,
		Control:    old.Control.Socket != new.Control.Socket || old.Control.Group != new.Control.Group,
		Allow:      !old.Control.Allow.Equal(new.Control.Allow),
		Metrics:    old.Metrics != new.Metrics,
		Log:        old.Log != new.Log,
	}
	for i := range new.Ports {
		p := &new.Ports[i]
		switch o := old.Port(p.Name); {
		case o == nil:
			d.Added = append(d.Added, p.Name)
		case !portEqual(o, p):
			d.Changed = append(d.Changed, p.Name)
		}
	}
	for i := range old.Ports {
		if new.Port(old.Ports[i].Name) == nil {
			d.Removed = append(d.Removed, old.Ports[i].Name)
		}
	}
	return d
}

// InheritMACs keeps MACs stable across reloads: every port of c whose MAC
// was generated when c was loaded takes the MAC of old's port of the same
// name, unless another port of c already uses that address. Ports with a
// mac in the file are untouched.
func (c *Config) InheritMACs(old *Config) {
	if c.src == nil {
		return
	}
	used := map[vswitch.MAC]bool{}
	for i := range c.Ports {
		if !c.src.autoMAC[c.Ports[i].Name] {
			used[c.Ports[i].MAC] = true
		}
	}
	for i := range c.Ports {
		p := &c.Ports[i]
		if !c.src.autoMAC[p.Name] {
			continue
		}
		if o := old.Port(p.Name); o != nil && o.MAC.IsValidUnicast() && !used[o.MAC] {
			p.MAC = o.MAC
		}
		used[p.MAC] = true
	}
}

// Equal reports whether c and o hold the same settings, ports in the same
// order. Where each came from (file, line, flags) does not count.
func (c *Config) Equal(o *Config) bool {
	if c.Lower != o.Lower || c.Broadcast != o.Broadcast || c.Reassembly != o.Reassembly || c.Control.Socket != o.Control.Socket ||
		c.Control.Group != o.Control.Group || !c.Control.Allow.Equal(o.Control.Allow) ||
		c.Metrics != o.Metrics || c.Log != o.Log || len(c.Ports) != len(o.Ports) {
		return false
	}
	for i := range c.Ports {
		if !portEqual(&c.Ports[i], &o.Ports[i]) {
			return false
		}
	}
	return true
}

func portEqual(a, b *Port) bool {
	if a.Name != b.Name || a.Mode != b.Mode || a.MAC != b.MAC || a.MTU != b.MTU ||
		a.Queues != b.Queues || a.QueueLen != b.QueueLen || a.AllMulticast != b.AllMulticast ||
		!slices.Equal(a.Multicast, b.Multicast) || !slices.Equal(a.SourceMACs, b.SourceMACs) ||
		a.NoDst != b.NoDst || a.NoPromisc != b.NoPromisc || a.BCQueueLen != b.BCQueueLen ||
		a.Police != b.Police || a.SpoofCheck != b.SpoofCheck || !slices.Equal(a.AllowedIPs, b.AllowedIPs) ||
		a.BusyPoll != b.BusyPoll {
		return false
	}
	return SameDevice(a, b)
}

// SameDevice reports whether two entries describe the same device: same
// kind and the same kind settings. A port whose device changes is
// rebuilt by a reload; any other change is applied in place.
func SameDevice(a, b *Port) bool {
	switch {
	case a.Kind() != b.Kind() || a.Queues != b.Queues:
		return false
	case a.Tap != nil:
		x, y := a.Tap, b.Tap
		return x.Netns == y.Netns && x.Ifname == y.Ifname && x.Offloads == y.Offloads && x.Adopt == y.Adopt &&
			x.LoUp == y.LoUp && slices.Equal(x.Addresses, y.Addresses) && slices.Equal(x.Routes, y.Routes)
	case a.AFPacket != nil:
		return *a.AFPacket == *b.AFPacket
	case a.Socket != nil:
		return *a.Socket == *b.Socket
	}
	return true
}
