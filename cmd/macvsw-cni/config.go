package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
	vswitch "github.com/macvsw/macvsw/switch"
)

// Port kinds the plugin makes.
const (
	kindTap      = "tap"
	kindAFPacket = "afpacket"
)

// netConf is the network configuration a runtime passes on stdin.
type netConf struct {
	types.PluginConf

	Socket    string `json:"socket,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Mode      string `json:"mode,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
	Queues    int    `json:"queues,omitempty"`
	MAC       string `json:"mac,omitempty"`
	Offloads  *bool  `json:"offloads,omitempty"`
	VethNetns string `json:"vethNetns,omitempty"`

	// RuntimeConfig carries the well-known "mac" capability
	// (CONVENTIONS.md), sent when the config says
	// "capabilities": {"mac": true}.
	RuntimeConfig struct {
		MAC string `json:"mac,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

// envArgs is what the plugin reads from CNI_ARGS. CommonArgs gives
// IgnoreUnknown=1, which runtimes such as kubelet send along with keys of
// their own.
type envArgs struct {
	types.CommonArgs
	MAC types.UnmarshallableString
}

// settings is a validated configuration, defaults applied.
type settings struct {
	conf      *netConf
	socket    string
	kind      string
	mode      string
	mac       string // "" lets the daemon (tap) or the kernel (veth) pick
	mtu       int    // 0: the lower's
	queues    int    // 0: the daemon's default
	offloads  bool
	vethNetns string // afpacket: where the switch end of the veth lives; "" the plugin's own
}

// confError is a configuration error: CNI code 7, naming the key.
func confError(format string, args ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, args...), "")
}

// decodeConf reads the configuration without checking its values: DEL and
// GC use it as it is, so that a value that became invalid never keeps an
// attachment from being removed.
func decodeConf(stdin []byte) (*netConf, error) {
	c := &netConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, confError("network config: %s: got a JSON %s, want a %s", te.Field, te.Value, te.Type)
		}
		return nil, types.NewError(types.ErrDecodingFailure, "network config is not valid JSON", err.Error())
	}
	return c, nil
}

// socketPath is the daemon's control socket: the "socket" key, or the
// default.
func (c *netConf) socketPath() string {
	if c.Socket == "" {
		return api.DefaultSocket
	}
	return c.Socket
}

// loadSettings decodes and checks the configuration and CNI_ARGS. The MAC
// comes from runtimeConfig.mac, else CNI_ARGS MAC, else the "mac" key.
func loadSettings(stdin []byte, cniArgs string) (*settings, error) {
	c, err := decodeConf(stdin)
	if err != nil {
		return nil, err
	}
	s := &settings{conf: c, socket: c.socketPath(), kind: c.Kind, mode: c.Mode, mtu: c.MTU, queues: c.Queues,
		offloads: c.Offloads == nil || *c.Offloads, vethNetns: c.VethNetns}
	if !filepath.IsAbs(s.socket) {
		return nil, confError("socket %q: want the absolute path of the macvsw control socket (default %s)", c.Socket, api.DefaultSocket)
	}
	switch s.kind {
	case "":
		s.kind = kindTap
	case kindTap, kindAFPacket:
	default:
		return nil, confError("kind %q: want %q (a tap the daemon creates in the netns) or %q (a veth pair the daemon reads with AF_PACKET)", c.Kind, kindTap, kindAFPacket)
	}
	if s.mode == "" {
		s.mode = "bridge" // as the reference macvlan plugin
	}
	if _, err := vswitch.ParseMode(s.mode); err != nil {
		return nil, confError("mode: %v", err)
	}
	// The daemon's own limits, checked here too so that a bad value is a
	// configuration error naming the key, before IPAM runs.
	if s.mtu != 0 && (s.mtu < vswitch.MinMTU || s.mtu > vswitch.MaxMTU) {
		return nil, confError("mtu %d: want %d..%d, or 0 for the lower's", s.mtu, vswitch.MinMTU, vswitch.MaxMTU)
	}
	if s.queues < 0 || s.queues > vswitch.MaxQueues {
		return nil, confError("queues %d: want 1..%d", s.queues, vswitch.MaxQueues)
	}
	if s.vethNetns != "" {
		if s.kind != kindAFPacket {
			return nil, confError("vethNetns %q: only an afpacket port has a veth (set \"kind\": %q)", s.vethNetns, kindAFPacket)
		}
		if !filepath.IsAbs(s.vethNetns) {
			return nil, confError("vethNetns %q: want the absolute path of a network namespace", s.vethNetns)
		}
	}
	if !s.offloads && s.kind == kindAFPacket {
		return nil, types.NewError(types.ErrUnsupportedField,
			`"offloads": false is for tap ports; an afpacket port takes whatever offloads its veth has (ethtool -K)`, "")
	}
	if c.MAC != "" {
		if s.mac, err = parseMAC("mac", c.MAC); err != nil {
			return nil, confError("%v", err)
		}
	}
	var ea envArgs
	if err := types.LoadArgs(cniArgs, &ea); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %v", err), "")
	}
	if ea.MAC != "" {
		if s.mac, err = parseMAC("CNI_ARGS MAC", string(ea.MAC)); err != nil {
			return nil, types.NewError(types.ErrInvalidEnvironmentVariables, err.Error(), "")
		}
	}
	if c.RuntimeConfig.MAC != "" {
		if s.mac, err = parseMAC("runtimeConfig.mac", c.RuntimeConfig.MAC); err != nil {
			return nil, confError("%v", err)
		}
	}
	if s.mode == "passthru" && s.mac != "" {
		return nil, confError("mac %s: a passthru port takes the lower's MAC and cannot have its own", s.mac)
	}
	return s, nil
}

// parseMAC checks a unicast MAC and returns it in the daemon's spelling.
func parseMAC(what, v string) (string, error) {
	m, err := vswitch.ParseMAC(v)
	if err != nil {
		return "", fmt.Errorf("%s %q: want a MAC such as 02:00:00:00:00:01", what, v)
	}
	if !m.IsValidUnicast() {
		return "", fmt.Errorf("%s %s: want a unicast, non-zero MAC", what, v)
	}
	return m.String(), nil
}

// portName is the daemon's port name for an attachment: deterministic, so
// a repeated ADD or a DEL finds the same port, and at most 15 bytes, since
// it also names an afpacket port's veth.
func portName(containerID, ifname string) string {
	h := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return "mvs" + hex.EncodeToString(h[:6])
}

// owner is the daemon's owner record for an attachment.
func owner(network, containerID, ifname string) api.Owner {
	return api.Owner{ContainerID: containerID, IfName: ifname, Network: network}
}

// ipamNeedsInterface lists IPAM plugins that work on the interface
// itself, so it must exist before they run: dhcp's daemon sends and
// receives on it.
var ipamNeedsInterface = map[string]bool{"dhcp": true}

// portEntry is the daemon's port entry (a config file's ports[] entry as
// JSON) for an attachment, with its owner. addrs and routes go on a tap
// (nil for an afpacket port, or when IPAM runs after the port is made).
func (s *settings) portEntry(name, netns, ifname string, o api.Owner, addrs []string, routes []portRoute, vethMAC string) map[string]any {
	e := map[string]any{"name": name, "mode": s.mode, "owner": o}
	if s.mtu != 0 {
		e["mtu"] = s.mtu
	}
	if s.queues != 0 {
		e["queues"] = s.queues
	}
	switch s.kind {
	case kindAFPacket:
		// The switch delivers to the port by the MAC its sandbox sends
		// with: the container end's.
		e["mac"] = vethMAC
		a := map[string]any{"interface": name}
		if s.vethNetns != "" {
			a["netns"] = s.vethNetns
		}
		e["afpacket"] = a
	default:
		if s.mac != "" {
			e["mac"] = s.mac
		}
		t := map[string]any{"netns": netns, "ifname": ifname, "offloads": s.offloads, "lo_up": true}
		if len(addrs) > 0 {
			t["addresses"] = addrs
		}
		if len(routes) > 0 {
			t["routes"] = routes
		}
		e["tap"] = t
	}
	return e
}

// portRoute is a tap.routes entry.
type portRoute struct {
	To     string `json:"to"`
	Via    string `json:"via,omitempty"`
	Metric int    `json:"metric,omitempty"`
}

// tapRoutes turns IPAM's routes into tap.routes entries: a route without a
// gateway goes via the gateway of its family (gw4, gw6; either may be
// nil), as plugins/pkg/ipam.ConfigureIface does. The daemon's routes have
// a destination, a gateway and a metric only; any other route attribute
// is refused, naming the route.
func tapRoutes(routes []*types.Route, gw4, gw6 net.IP) ([]portRoute, error) {
	var out []portRoute
	for i, r := range routes {
		if r.MTU != 0 || r.AdvMSS != 0 || r.Table != nil || r.Scope != nil {
			return nil, types.NewError(types.ErrUnsupportedField,
				fmt.Sprintf("routes[%d] %s: mtu, advmss, table and scope cannot be set on a macvsw tap's routes", i, r.Dst.String()), "")
		}
		pr := portRoute{To: r.Dst.String(), Metric: r.Priority}
		gw := r.GW
		if gw == nil {
			if r.Dst.IP.To4() != nil {
				gw = gw4
			} else {
				gw = gw6
			}
		}
		if gw != nil {
			pr.Via = gw.String()
		}
		out = append(out, pr)
	}
	return out, nil
}
