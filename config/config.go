package config

import (
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
)

// Defaults and limits. Every default the loader applies is one of these
// constants, applied by [Defaults] and [DefaultPort] and nowhere else.
const (
	// MaxLowerQueues bounds lower.queues: one AF_PACKET fanout member per
	// queue, and more than 16 only adds contention on the ring locks
	// (endpoints.MaxPacketQueues; a test in cmd/macvsw ties the two).
	MaxLowerQueues = 16

	// MinMTU is the smallest MTU an Ethernet port may have: the IPv4
	// minimum (RFC 791), and the kernel's ETH_MIN_MTU.
	MinMTU = 68
	// MaxMTU is the largest MTU we accept: ETH_MAX_MTU, an IP datagram's
	// 16-bit total length.
	MaxMTU = 65535

	// DefaultBroadcastQueueLen is the broadcast queue length a port requests
	// when it does not say (MACVLAN_DEFAULT_BC_QUEUE_LEN in macvlan.c).
	DefaultBroadcastQueueLen = 1000
	// MaxBroadcastQueueLen bounds broadcast.queue_len and ports[].bcqueuelen
	// so a typo cannot pin gigabytes of cloned frames.
	MaxBroadcastQueueLen = 100000
	// DefaultBroadcastCutoff is the kernel's default bc_cutoff: a multicast
	// group with a single subscribing port is delivered inline.
	DefaultBroadcastCutoff = 1

	// DefaultControlSocket is where the control API listens.
	DefaultControlSocket = "/run/macvsw/macvsw.sock"
	// maxSocketPath is sizeof(sockaddr_un.sun_path) minus the NUL.
	maxSocketPath = 107

	// DefaultPortQueues is one queue per port: enough unless the guest
	// behind a tap runs multi-queue virtio-net.
	DefaultPortQueues = 1
	// MaxBusyPoll bounds ports[].busy_poll (endpoints.MaxBusyPoll).
	MaxBusyPoll = 100 * time.Millisecond
	// MaxPortQueues is the switch's limit, MAX_TAP_QUEUES.
	MaxPortQueues = vswitch.MaxQueues
	// DefaultPortQueueLen is the per-queue bound in frames, the same order
	// as a macvtap ring (TUN_READQ_SIZE 500) and a txqueuelen (1000).
	DefaultPortQueueLen = 1000
	// MaxPortQueueLen bounds ports[].queue_len.
	MaxPortQueueLen = 65536

	// MaxIfnameLen is IFNAMSIZ (16) minus the NUL.
	MaxIfnameLen = 15
)

// DefaultMode is the mode of a port that does not name one: VEPA, as in the
// kernel and ip-link(8).
const DefaultMode = vswitch.DefaultMode

// Config is a loaded, validated macvsw configuration. The zero value is not
// useful; start from [Defaults] or call [Load] or [Parse].
//
// A Config is a plain value: it is not safe for concurrent mutation, and the
// loader keeps no reference to it.
type Config struct {
	Lower      Lower
	Broadcast  Broadcast
	Reassembly Reassembly
	Control    Control
	Metrics    Metrics
	Log        Log
	Ports      []Port

	// src remembers where each field came from, for error messages from
	// Validate and CheckHost. Nil for a Config built in code.
	src *source
}

// Lower is the NIC the ports sit on (key "lower").
type Lower struct {
	Interface   string // required
	Queues      int    // 0: one per CPU, at most MaxLowerQueues; see NumQueues
	Promiscuous bool   // put the NIC in promiscuous mode; default true
	MTU         int    // 0: follow the interface
}

// NumQueues returns the number of lower queues to open: Queues, or one per
// CPU (at most MaxLowerQueues) when Queues is 0.
func (l Lower) NumQueues() int {
	if l.Queues > 0 {
		return l.Queues
	}
	return min(runtime.NumCPU(), MaxLowerQueues)
}

// Broadcast configures the shared broadcast queue (key "broadcast"; the
// kernel's bcqueuelen and bc_cutoff).
type Broadcast struct {
	// QueueLen is the lower's own request for the queue length; the switch
	// uses the largest request (see Config.BroadcastQueueLen).
	QueueLen int
	// Cutoff: a multicast group goes through the queue when more than
	// Cutoff ports subscribe to it; negative delivers every flood inline.
	Cutoff int
}

// Control is the local control API (key "control").
type Control struct {
	Socket string // absolute path of the unix socket
	Group  string // group allowed to connect; "" means root only
	// Allow is what members of Group may do (root and the daemon's own
	// user may do everything): nothing that is not listed.
	Allow Allow
}

// Allow is the control socket's allow-list for control.group members
// (key "control.allow"). Reading (ports, stats, events, the config) is
// always allowed; everything else only as listed here.
type Allow struct {
	// Ports are the port names (shell patterns, path.Match) members may
	// add, change, delete and capture.
	Ports []string
	// Netns are path prefixes a tap.netns or afpacket.netns must start
	// with (after symlinks are resolved); the daemon's own namespace is
	// never allowed.
	Netns []string
	// Interfaces are the interfaces (shell patterns) members may attach
	// as afpacket ports.
	Interfaces []string
	// Addresses are the prefixes tap addresses and routes must fall in.
	Addresses []netip.Prefix
	// SocketDirs are path prefixes for socket ports' paths.
	SocketDirs []string
	// Captures allows capturing the frames of the ports in Ports.
	Captures bool
}

// Equal reports whether two allow-lists are the same.
func (a Allow) Equal(b Allow) bool {
	return slices.Equal(a.Ports, b.Ports) && slices.Equal(a.Netns, b.Netns) && slices.Equal(a.Interfaces, b.Interfaces) &&
		slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.SocketDirs, b.SocketDirs) && a.Captures == b.Captures
}

// Metrics is the optional Prometheus endpoint (key "metrics").
type Metrics struct {
	Listen string // host:port; "" disables the endpoint
}

// LogFormat is the log output format.
type LogFormat string

// The log formats.
const (
	LogText LogFormat = "text" // slog.TextHandler
	LogJSON LogFormat = "json" // slog.JSONHandler
)

// Log configures logging (key "log").
type Log struct {
	Format LogFormat
	Level  slog.Level // one of slog.LevelDebug, Info, Warn, Error
}

// Port is one switch port (an element of "ports"). Exactly one of Tap and
// AFPacket is set.
type Port struct {
	Name string
	Mode vswitch.Mode
	// MAC is the port's address. Zero only for a passthru port, which
	// takes the lower's MAC. When the file gives none, the loader picks a
	// random locally administered unicast address.
	MAC          vswitch.MAC
	MTU          int  // 0: the lower's MTU
	Queues       int  // 1..MaxPortQueues
	QueueLen     int  // frames per queue, 1..MaxPortQueueLen
	AllMulticast bool // receive every multicast group
	// Multicast lists the groups received when AllMulticast is false.
	Multicast  []vswitch.MAC
	SourceMACs []vswitch.MAC // source mode: remotes whose frames are copied here
	NoDst      bool          // source mode: matching frames get no normal delivery
	NoPromisc  bool          // passthru: do not make the lower promiscuous
	BCQueueLen int           // this port's broadcast queue length request
	// Police limits what the port sends into the switch (key "police");
	// zero: no limits.
	Police vswitch.Police
	// SpoofCheck drops frames the port sends as someone else (key
	// "spoofcheck"); AllowedIPs are the source addresses it may use (key
	// "allowed_ips"; for a tap port, default its tap.addresses).
	SpoofCheck bool
	AllowedIPs []netip.Prefix
	// BusyPoll is how long the port's readers poll an empty queue before
	// they park (key "busy_poll", 0..MaxBusyPoll; 0: park at once). It
	// trades CPU for latency; see BEHAVIOUR.md.
	BusyPoll time.Duration

	Tap      *TapPort
	AFPacket *AFPacketPort
	Socket   *SocketPort
}

// Kind names the port's kind: "tap", "afpacket" or "socket" ("" if none).
func (p *Port) Kind() string {
	switch {
	case p.Tap != nil:
		return "tap"
	case p.AFPacket != nil:
		return "afpacket"
	case p.Socket != nil:
		return "socket"
	}
	return ""
}

// TapPort is a tap device macvsw creates in a network namespace.
type TapPort struct {
	Netns     string         // path of a named netns, e.g. /var/run/netns/NAME
	Ifname    string         // name inside the netns; default: the port name
	Addresses []netip.Prefix // addresses assigned to it, e.g. 10.0.0.2/24
	Routes    []Route        // routes through it, added with the addresses
	Offloads  bool           // virtio-net header offloads (IFF_VNET_HDR)
	// Adopt lets the port take over an existing tap of that name, which
	// macvsw then never deletes; otherwise an existing interface is an
	// error.
	Adopt bool
	// LoUp brings up lo in the namespace when macvsw creates the tap
	// (default true: a fresh namespace, and runsc, have no loopback
	// otherwise).
	LoUp bool
}

// Route is a route through a tap, as `ip route add TO via VIA metric M`.
type Route struct {
	To     netip.Prefix // destination; 0.0.0.0/0 or ::/0 for a default route
	Via    netip.Addr   // gateway; zero for an on-link route
	Metric int
}

// AFPacketPort is an existing interface attached with an AF_PACKET socket.
type AFPacketPort struct {
	Interface string
	Netns     string // path of its network namespace; "" is the daemon's
}

// SocketType is the framing of a socket port.
type SocketType string

// The socket port framings, as QEMU's -netdev names them.
const (
	SocketStream SocketType = "stream" // a 4-byte big-endian length before each frame
	SocketDgram  SocketType = "dgram"  // one frame per datagram
)

// SocketPort is a unix socket a VM or a user-mode guest connects to (or
// that macvsw connects to): QEMU's -netdev stream or dgram.
type SocketPort struct {
	Type    SocketType
	Listen  string // path macvsw listens on (stream) or binds (dgram)
	Connect string // stream: path of a listening peer (QEMU server=on)
	Peer    string // dgram: the peer's bound path
}

// SwitchConfig returns what the switch core makes of the port.
func (p *Port) SwitchConfig() vswitch.PortConfig {
	bcq := p.BCQueueLen
	pc := vswitch.PortConfig{
		Name: p.Name, Mode: p.Mode, MAC: p.MAC, MTU: uint32(max(p.MTU, 0)),
		Queues: p.Queues, QueueLen: p.QueueLen, AllMulti: vswitch.Bool(p.AllMulticast),
		Groups: p.Multicast, SourceMACs: p.SourceMACs, NoDst: p.NoDst, NoPromisc: p.NoPromisc,
		BroadcastQueueLen: &bcq, SpoofCheck: p.SpoofCheck, AllowedIPs: p.AllowedIPs,
	}
	if !p.Police.IsZero() {
		pol := p.Police
		pc.Police = &pol
	}
	if p.SpoofCheck && len(p.AllowedIPs) == 0 && p.Tap != nil {
		// The tap's own addresses, as hosts.
		for _, a := range p.Tap.Addresses {
			pc.AllowedIPs = append(pc.AllowedIPs, netip.PrefixFrom(a.Addr(), a.Addr().BitLen()))
		}
	}
	return pc
}

// PortOf returns the config entry of a port the switch runs, without its
// kind (Tap, AFPacket), which the switch does not know. A passthru port's
// MAC is left out: it is the lower's.
func PortOf(pc vswitch.PortConfig) Port {
	p := Port{
		Name: pc.Name, Mode: pc.Mode, MAC: pc.MAC, MTU: int(pc.MTU), Queues: pc.Queues, QueueLen: pc.QueueLen,
		AllMulticast: pc.AllMulti == nil || *pc.AllMulti, Multicast: pc.Groups, SourceMACs: pc.SourceMACs,
		NoDst: pc.NoDst, NoPromisc: pc.NoPromisc, BCQueueLen: DefaultBroadcastQueueLen,
		SpoofCheck: pc.SpoofCheck, AllowedIPs: pc.AllowedIPs,
	}
	if pc.Police != nil {
		p.Police = *pc.Police
	}
	if pc.BroadcastQueueLen != nil {
		p.BCQueueLen = *pc.BroadcastQueueLen
	}
	if p.Mode == vswitch.ModePassthru {
		p.MAC = vswitch.MAC{}
	}
	return p
}

// Defaults returns the configuration an empty file would give, except that
// Lower.Interface, which has no default, is empty, and there are no ports.
func Defaults() *Config {
	return &Config{
		Lower: Lower{
			Queues:      0,
			Promiscuous: true,
			MTU:         0,
		},
		Broadcast: Broadcast{
			QueueLen: DefaultBroadcastQueueLen,
			Cutoff:   DefaultBroadcastCutoff,
		},
		Reassembly: defaultReassembly(),
		Control:    Control{Socket: DefaultControlSocket},
		Log:        Log{Format: LogText, Level: slog.LevelInfo},
	}
}

// DefaultPort returns a port with every default applied and nothing else:
// no name, no MAC (the loader generates one) and no port kind.
func DefaultPort() Port {
	return Port{
		Mode:         DefaultMode,
		Queues:       DefaultPortQueues,
		QueueLen:     DefaultPortQueueLen,
		AllMulticast: true,
		BCQueueLen:   DefaultBroadcastQueueLen,
	}
}

// defaultTap returns a tap port's defaults; Ifname is filled with the port
// name by the loader when the file gives none.
func defaultTap() TapPort { return TapPort{Offloads: true, LoUp: true} }

// BroadcastQueueLen returns the broadcast queue length the switch uses: the
// largest of Broadcast.QueueLen and every port's BCQueueLen, as the kernel's
// bc_queue_len_used is the maximum of all requests.
func (c *Config) BroadcastQueueLen() int {
	n := c.Broadcast.QueueLen
	for i := range c.Ports {
		n = max(n, c.Ports[i].BCQueueLen)
	}
	return n
}

// Port returns the port named name, or nil.
func (c *Config) Port(name string) *Port {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// Log levels and formats: one function pair each maps names to values.

func parseLogFormat(s string) (LogFormat, bool) {
	switch f := LogFormat(s); f {
	case LogText, LogJSON:
		return f, true
	}
	return "", false
}

func parseLogLevel(s string) (slog.Level, bool) {
	switch s {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

func logLevelString(l slog.Level) (string, bool) {
	switch l {
	case slog.LevelDebug:
		return "debug", true
	case slog.LevelInfo:
		return "info", true
	case slog.LevelWarn:
		return "warn", true
	case slog.LevelError:
		return "error", true
	}
	return "", false
}
