package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	vswitch "github.com/macvsw/macvsw/switch"
)

// `macvsw port ...`: one function per subcommand, each with its own flags
// and usage.

const portUsage = `macvsw port COMMAND [flags]

Commands:
  list              the ports: kind, netns, interface, mode, MAC, MTU, state, carrier, queues
  show NAME         one port, with its groups, source MACs, netns and owner
  add NAME ...      add a port (tap, AF_PACKET or socket)
  del NAME          remove a port (a tap macvsw created is deleted)
  set NAME ...      change a port: mode, MTU, MAC, up/down, multicast
  macaddr NAME OP [MAC...]
                    a source-mode port's MAC list (OP: add, del, flush, set)

Run "macvsw port COMMAND --help" for a command's flags.`

func cmdPort(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "macvsw port: missing command\n\nUsage: %s\n", portUsage)
		return errUsage
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "Usage: %s\n", portUsage)
		return flag.ErrHelp
	case "list":
		return portList(ctx, rest, stdout, stderr)
	case "show":
		return portShow(ctx, rest, stdout, stderr)
	case "add":
		return portAdd(ctx, rest, stdout, stderr)
	case "del":
		return portDel(ctx, rest, stdout, stderr)
	case "set":
		return portSet(ctx, rest, stdout, stderr)
	case "macaddr":
		return portMacaddr(ctx, rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "macvsw port: unknown command %q\n\nUsage: %s\n", sub, portUsage)
		return errUsage
	}
}

func portList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw port list", "macvsw port list [--json]\n\nLists the ports, one a line, as `ip -br link` lists interfaces.", stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the ports as JSON")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
		return err
	}
	var ports []api.Port
	if err := newClient(*socket).do(ctx, "GET", "/v1/ports", nil, &ports); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, ports)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tNETNS\tINTERFACE\tMODE\tMAC\tMTU\tSTATE\tCARRIER\tQUEUES")
	for _, v := range ports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n", v.Name, orDash(v.Kind), netnsName(v.Netns), orDash(v.Interface),
			v.Mode, v.MAC, v.MTU, upDown(v.Up), yesNo(v.Carrier), v.Queues)
	}
	return tw.Flush()
}

// netnsName shows a namespace as ip netns names it: NAME for
// /var/run/netns/NAME, the path otherwise, "-" for the daemon's own.
func netnsName(path string) string {
	if path == "" {
		return "-"
	}
	if name, ok := strings.CutPrefix(path, config.NetnsDir+"/"); ok && !strings.Contains(name, "/") {
		return name
	}
	return path
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func upDown(b bool) string {
	if b {
		return "up"
	}
	return "down"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func portShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw port show", "macvsw port show NAME [--json]\n\nShows one port: its device, mode, addresses, state, multicast groups, source MACs and owner.", stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the port as JSON")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "NAME"); err != nil {
		return err
	}
	var v api.Port
	if err := newClient(*socket).do(ctx, "GET", "/v1/ports/"+url.PathEscape(pos[0]), nil, &v); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	printPort(stdout, v)
	return nil
}

// printPort prints a port as `macvsw port show` does.
func printPort(w io.Writer, v api.Port) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t"+format+"\n", append([]any{k}, args...)...)
	}
	fmt.Fprintf(tw, "port %s\n", v.Name)
	row("kind", "%s", orDash(v.Kind))
	row("netns", "%s", netnsName(v.Netns))
	row("interface", "%s", orDash(v.Interface))
	row("origin", "%s", orDash(v.Origin))
	if v.Owner != nil {
		row("owner", "container %s, interface %s", v.Owner.ContainerID, v.Owner.IfName)
	} else {
		row("owner", "-")
	}
	row("mode", "%s", v.Mode)
	if v.MACFrom != "" {
		row("mac", "%s (%s)", v.MAC, v.MACFrom)
	} else {
		row("mac", "%s", v.MAC)
	}
	row("mtu", "%d", v.MTU)
	row("state", "%s, link %s, carrier %s", upDown(v.Up), upDown(v.Link), yesNo(v.Carrier))
	row("queues", "%d", v.Queues)
	row("allmulticast", "%s", yesNo(v.AllMulticast))
	row("groups", "%s", orDash(strings.Join(v.Multicast, " ")))
	if v.Mode == "source" || len(v.SourceMACs) > 0 {
		row("source_macs", "%s", orDash(strings.Join(v.SourceMACs, " ")))
		row("nodst", "%s", yesNo(v.NoDst))
	}
	if pol := v.Police; pol != nil {
		row("police", "pps %d (burst %d), bps %d (burst %d bytes), flood_pps %d (burst %d)",
			pol.PPS, pol.Burst, pol.BPS, pol.BurstBytes, pol.FloodPPS, pol.FloodBurst)
	} else {
		row("police", "-")
	}
	row("spoofcheck", "%s", yesNo(v.SpoofCheck))
	if v.SpoofCheck {
		row("allowed_ips", "%s", orDash(strings.Join(v.AllowedIPs, " ")))
	}
	tw.Flush()
}

// portAddFlags are `port add`'s flags; entry turns them into a config
// port entry.
type portAddFlags struct {
	mode, mac, jsonEntry                        string
	mtu, queues, queueLen                       int
	netns, ifname                               string
	addrs, routes                               multiFlag
	noOffloads, adopt, noLoUp                   bool
	afpacket, afpacketNetns                     string
	sockListen, sockConnect, sockType, sockPeer string
	mayExist, asJSON                            bool
	given                                       map[string]bool
	sec                                         securityFlags
}

// securityFlags are the policing and anti-spoofing flags of port add and
// port set.
type securityFlags struct {
	pps, bps, storm, spoofcheck string
	noPolice                    bool
	allowed                     multiFlag
}

func (sf *securityFlags) register(fs *flag.FlagSet, set bool) {
	fs.StringVar(&sf.pps, "police-pps", "", "limit the frames per second the port may send (e.g. 100k)")
	fs.StringVar(&sf.bps, "police-bps", "", "limit the bits per second the port may send (e.g. 1G)")
	fs.StringVar(&sf.storm, "storm-pps", "", "storm control: limit the broadcast and multicast frames per second the port may send")
	if set {
		fs.BoolVar(&sf.noPolice, "no-police", false, "remove the port's limits")
	}
	fs.StringVar(&sf.spoofcheck, "spoofcheck", "", "true: drop frames the port sends with another MAC (and another address: --allowed-ip, or a tap's own)")
	fs.Var(&sf.allowed, "allowed-ip", "with --spoofcheck: an address or prefix the port may send from (repeatable)")
}

// police returns the police object the flags give, nil when none.
func (sf *securityFlags) police() (*api.Police, error) {
	var p api.Police
	some := false
	for _, f := range []struct {
		flag, v string
		dst     *uint64
	}{{"--police-pps", sf.pps, &p.PPS}, {"--police-bps", sf.bps, &p.BPS}, {"--storm-pps", sf.storm, &p.FloodPPS}} {
		if f.v == "" {
			continue
		}
		n, err := config.ParseRate(f.v)
		if err != nil {
			return nil, flagError("%s: %v (want a number, e.g. 10000, 10k or 1G)", f.flag, err)
		}
		*f.dst, some = n, true
	}
	switch {
	case sf.noPolice && some:
		return nil, flagError("--no-police with a limit: give one or the other")
	case sf.noPolice:
		return &api.Police{}, nil
	case some:
		return &p, nil
	}
	return nil, nil
}

func (sf *securityFlags) spoof() (*bool, error) {
	if sf.spoofcheck == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(sf.spoofcheck)
	if err != nil {
		return nil, flagError("--spoofcheck: %q is not true or false", sf.spoofcheck)
	}
	return &b, nil
}

// addTo puts the flags into a port entry.
func (sf *securityFlags) addTo(e map[string]any) error {
	pol, err := sf.police()
	if err != nil {
		return err
	}
	if pol != nil {
		e["police"] = pol
	}
	sp, err := sf.spoof()
	if err != nil {
		return err
	}
	if sp != nil {
		e["spoofcheck"] = *sp
	}
	if len(sf.allowed) > 0 {
		e["allowed_ips"] = []string(sf.allowed)
	}
	return nil
}

// addToPatch puts the flags into a change.
func (sf *securityFlags) addToPatch(p *api.PortPatch) error {
	pol, err := sf.police()
	if err != nil {
		return err
	}
	p.Police = pol
	if p.SpoofCheck, err = sf.spoof(); err != nil {
		return err
	}
	if len(sf.allowed) > 0 {
		ips := []string(sf.allowed)
		p.AllowedIPs = &ips
	}
	return nil
}

const portAddUsage = `macvsw port add NAME [--mode M] [--mac MAC] [--mtu N] [--queues N] [--queue-len N] KIND [--may-exist] [--json]
       macvsw port add --entry JSON [--may-exist] [--json]

Adds a port; KIND is one of:
  --tap-netns NETNS [--ifname IF] [--address CIDR]... [--route TO[,via=GW][,metric=N]]...
                    [--no-offloads] [--adopt] [--no-lo-up]
                    a tap macvsw creates in the network namespace NETNS (a name in
                    /var/run/netns, as ip netns names it, or a path such as /proc/PID/ns/net)
  --afpacket IF [--afpacket-netns NETNS]
                    an existing interface, read with AF_PACKET (a veth to a sandbox, a VM's
                    tap); without --mac the port takes the MAC of IF's veth peer, or IF's own
  --socket-listen PATH | --socket-connect PATH [--socket-type stream|dgram] [--socket-peer PATH]
                    a unix socket for QEMU's -netdev stream (listen or connect) or dgram
                    (listen with --socket-peer)

Policing and anti-spoofing (also on port set): [--police-pps N] [--police-bps RATE]
[--storm-pps N] [--spoofcheck=BOOL] [--allowed-ip ADDR|CIDR]...

--entry takes the whole port as JSON, a config file's port entry
(macvsw config reference).`

func portAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw port add", portAddUsage, stderr)
	socket := clientFlags(fs)
	var f portAddFlags
	fs.StringVar(&f.mode, "mode", "", "private, vepa, bridge, passthru or source (default vepa)")
	fs.StringVar(&f.mac, "mac", "", "the port's MAC (default: random; AF_PACKET: the sender's)")
	fs.IntVar(&f.mtu, "mtu", 0, "the port's MTU (default the lower's)")
	fs.IntVar(&f.queues, "queues", 0, "queues, 1..256 (default 1)")
	fs.IntVar(&f.queueLen, "queue-len", 0, "frames per queue (default 1000)")
	fs.StringVar(&f.netns, "tap-netns", "", "tap port: the network namespace, NAME or a path")
	fs.StringVar(&f.ifname, "ifname", "", "tap port: the interface name in the namespace (default the port name)")
	fs.Var(&f.addrs, "address", "tap port: an address, CIDR (repeatable)")
	fs.Var(&f.routes, "route", "tap port: a route, TO[,via=GW][,metric=N] (repeatable; TO 0.0.0.0/0 is a default route)")
	fs.BoolVar(&f.noOffloads, "no-offloads", false, "tap port: no virtio-net offloads")
	fs.BoolVar(&f.adopt, "adopt", false, "tap port: take over an existing tap of that name (never deleted)")
	fs.BoolVar(&f.noLoUp, "no-lo-up", false, "tap port: leave lo in the namespace as it is")
	fs.StringVar(&f.afpacket, "afpacket", "", "AF_PACKET port: the existing interface")
	fs.StringVar(&f.afpacketNetns, "afpacket-netns", "", "AF_PACKET port: the interface's namespace, NAME or a path (default the daemon's)")
	fs.StringVar(&f.sockListen, "socket-listen", "", "socket port: listen (stream) or bind (dgram) on PATH")
	fs.StringVar(&f.sockConnect, "socket-connect", "", "socket port: connect to a QEMU listening on PATH (stream)")
	fs.StringVar(&f.sockType, "socket-type", "stream", "socket port: stream or dgram")
	fs.StringVar(&f.sockPeer, "socket-peer", "", "socket port, dgram: the path the guest binds")
	fs.StringVar(&f.jsonEntry, "entry", "", "the whole port entry as JSON")
	fs.BoolVar(&f.mayExist, "may-exist", false, "a port of that name made the same way is not an error")
	fs.BoolVar(&f.asJSON, "json", false, "print the port as JSON")
	f.sec.register(fs, false)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	f.given = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.given[fl.Name] = true })
	var entry map[string]any
	if f.jsonEntry != "" {
		if err := wantArgs(fs, pos, 0, 0, ""); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(f.jsonEntry), &entry); err != nil {
			return flagError("--entry: not a JSON object: %v", err)
		}
	} else {
		if err := wantArgs(fs, pos, 1, 1, "NAME"); err != nil {
			return err
		}
		if entry, err = f.entry(pos[0]); err != nil {
			return err
		}
	}
	// Check the entry here as the daemon will, so a mistake is named by
	// the flag that made it.
	b, _ := json.Marshal(entry)
	pc, err := config.ParsePort("flags", b)
	if err != nil {
		return f.explain(err)
	}
	c := newClient(*socket)
	if f.mayExist {
		var have api.Port
		err := c.do(ctx, "GET", "/v1/ports/"+url.PathEscape(pc.Name), nil, &have)
		var ee *exitErr
		switch {
		case err == nil:
			if diff := sameAs(have, pc, f.given); diff != "" {
				return &exitErr{exitConflict, fmt.Errorf("port %s exists, made differently: %s", pc.Name, diff)}
			}
			return f.report(stdout, have, "exists")
		case !errors.As(err, &ee) || ee.code != exitNotFound:
			return err
		}
	}
	var v api.Port
	if err := c.do(ctx, "POST", "/v1/ports", entry, &v); err != nil {
		return err
	}
	return f.report(stdout, v, "added")
}

// report prints the port `port add` added or found.
func (f *portAddFlags) report(w io.Writer, v api.Port, what string) error {
	if f.asJSON {
		return printJSON(w, v)
	}
	where := v.Interface
	if v.Netns != "" {
		where += " in " + netnsName(v.Netns)
	}
	fmt.Fprintf(w, "port %s %s (%s %s, mode %s, MAC %s)\n", v.Name, what, v.Kind, where, v.Mode, v.MAC)
	if v.MACFrom != "" {
		fmt.Fprintf(w, "no --mac given: the port took %s; give --mac if the sandbox sends with another\n", v.MACFrom)
	}
	return nil
}

// entry turns the flags into a config port entry, refusing flags that do
// not go with the port's kind.
func (f *portAddFlags) entry(name string) (map[string]any, error) {
	e := map[string]any{"name": name}
	set := func(m map[string]any, k string, v any, ok bool) {
		if ok {
			m[k] = v
		}
	}
	set(e, "mode", f.mode, f.given["mode"])
	set(e, "mac", f.mac, f.given["mac"])
	set(e, "mtu", f.mtu, f.given["mtu"])
	set(e, "queues", f.queues, f.given["queues"])
	set(e, "queue_len", f.queueLen, f.given["queue-len"])
	if err := f.sec.addTo(e); err != nil {
		return nil, err
	}
	var kinds []string
	if f.given["tap-netns"] {
		kinds = append(kinds, "--tap-netns")
	}
	if f.given["afpacket"] {
		kinds = append(kinds, "--afpacket")
	}
	if f.given["socket-listen"] || f.given["socket-connect"] {
		kinds = append(kinds, "--socket-listen/--socket-connect")
	}
	switch {
	case len(kinds) == 0:
		return nil, flagError("no port kind: give --tap-netns, --afpacket or --socket-listen/--socket-connect")
	case len(kinds) > 1:
		return nil, flagError("%s: give one port kind, not several", strings.Join(kinds, " and "))
	}
	only := func(kind string, flags ...string) error {
		for _, fl := range flags {
			if f.given[fl] {
				return flagError("--%s: only with %s", fl, kind)
			}
		}
		return nil
	}
	if !f.given["tap-netns"] {
		if err := only("--tap-netns", "ifname", "address", "route", "no-offloads", "adopt", "no-lo-up"); err != nil {
			return nil, err
		}
	}
	if !f.given["afpacket"] {
		if err := only("--afpacket", "afpacket-netns"); err != nil {
			return nil, err
		}
	}
	if kinds[0] != "--socket-listen/--socket-connect" {
		if err := only("--socket-listen or --socket-connect", "socket-type", "socket-peer"); err != nil {
			return nil, err
		}
	}
	switch kinds[0] {
	case "--tap-netns":
		tap := map[string]any{"netns": f.netns, "offloads": !f.noOffloads, "adopt": f.adopt, "lo_up": !f.noLoUp}
		set(tap, "ifname", f.ifname, f.given["ifname"])
		set(tap, "addresses", []string(f.addrs), len(f.addrs) > 0)
		var routes []map[string]any
		for _, r := range f.routes {
			rt, err := parseRoute(r)
			if err != nil {
				return nil, err
			}
			routes = append(routes, rt)
		}
		set(tap, "routes", routes, len(routes) > 0)
		e["tap"] = tap
	case "--afpacket":
		a := map[string]any{"interface": f.afpacket}
		set(a, "netns", f.afpacketNetns, f.given["afpacket-netns"])
		e["afpacket"] = a
	default:
		s := map[string]any{"type": f.sockType}
		set(s, "listen", f.sockListen, f.given["socket-listen"])
		set(s, "connect", f.sockConnect, f.given["socket-connect"])
		set(s, "peer", f.sockPeer, f.given["socket-peer"])
		e["socket"] = s
	}
	return e, nil
}

// parseRoute reads --route TO[,via=GW][,metric=N] into a config route
// entry; the values themselves are checked with the rest of the entry.
func parseRoute(s string) (map[string]any, error) {
	parts := strings.Split(s, ",")
	r := map[string]any{"to": parts[0]}
	bad := func() error {
		return flagError("--route %q: want TO[,via=GW][,metric=N], e.g. 0.0.0.0/0,via=10.0.0.1", s)
	}
	if parts[0] == "" {
		return nil, bad()
	}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case !ok || v == "" || r[k] != nil:
			return nil, bad()
		case k == "via":
			r["via"] = v
		case k == "metric":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, flagError("--route %q: metric %q is not a number", s, v)
			}
			r["metric"] = n
		default:
			return nil, bad()
		}
	}
	return r, nil
}

// entryFlags maps a port entry's keys to the flags of `port add` that set
// them; a key in a list ("tap.addresses[2]") maps by its list.
var entryFlags = map[string]string{
	"name": "NAME", "mode": "--mode", "mac": "--mac", "mtu": "--mtu", "queues": "--queues", "queue_len": "--queue-len",
	"tap.netns": "--tap-netns", "tap.ifname": "--ifname", "tap.addresses": "--address", "tap.routes": "--route",
	"afpacket.interface": "--afpacket", "afpacket.netns": "--afpacket-netns",
	"socket": "--socket-listen/--socket-connect", "socket.type": "--socket-type", "socket.listen": "--socket-listen",
	"socket.connect": "--socket-connect", "socket.peer": "--socket-peer",
}

var listIndex = regexp.MustCompile(`\[\d+\].*$`)

// explain rewords ParsePort's errors about the entry the flags made in
// the flags' terms: "--mac: bad MAC address "x"" rather than
// "flags:1:30: mac: ...". Errors about an --entry stay in its keys.
func (f *portAddFlags) explain(err error) error {
	var fes []*config.FieldError
	var fe *config.FieldError
	for _, e := range flatten(err) {
		if errors.As(e, &fe) {
			fes = append(fes, fe)
		}
	}
	if len(fes) == 0 {
		return flagError("%v", err)
	}
	var msgs []string
	for _, fe := range fes {
		if f.jsonEntry != "" {
			where := fe.Field
			if where == "" {
				where = "the entry"
			}
			msgs = append(msgs, fmt.Sprintf("--entry: %s: %v", where, fe.Err))
			continue
		}
		key := listIndex.ReplaceAllString(fe.Field, "")
		name, ok := entryFlags[key]
		if !ok {
			name = fe.Field
		}
		if name == "" {
			msgs = append(msgs, fe.Err.Error())
		} else {
			msgs = append(msgs, fmt.Sprintf("%s: %v", name, fe.Err))
		}
	}
	return flagError("%s", strings.Join(msgs, "\n"))
}

// sameAs compares a running port with the one `port add --may-exist`
// asks for: kind and device, and mode and MAC when given. It returns what
// differs, or "".
func sameAs(have api.Port, want config.Port, given map[string]bool) string {
	var d []string
	differs := func(what, h, w string) {
		if h != w {
			d = append(d, fmt.Sprintf("%s %s, not %s", what, orDash(h), orDash(w)))
		}
	}
	differs("kind", have.Kind, want.Kind())
	switch {
	case want.Tap != nil:
		differs("netns", have.Netns, want.Tap.Netns)
		differs("interface", have.Interface, want.Tap.Ifname)
	case want.AFPacket != nil:
		differs("netns", have.Netns, want.AFPacket.Netns)
		differs("interface", have.Interface, want.AFPacket.Interface)
	case want.Socket != nil:
		path := want.Socket.Listen
		if path == "" {
			path = want.Socket.Connect
		}
		differs("socket", have.Interface, path)
	}
	if given["mode"] {
		differs("mode", have.Mode, want.Mode.String())
	}
	if given["mac"] {
		differs("mac", have.MAC, want.MAC.String())
	}
	return strings.Join(d, "; ")
}

func portDel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw port del", "macvsw port del NAME [--if-exists] [--json]\n\nRemoves a port; a tap macvsw created for it is deleted, an adopted one left alone.", stderr)
	socket := clientFlags(fs)
	ifExists := fs.Bool("if-exists", false, "no such port is not an error")
	asJSON := fs.Bool("json", false, `print {"deleted": NAME} (null with --if-exists and no such port)`)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "NAME"); err != nil {
		return err
	}
	err = newClient(*socket).do(ctx, "DELETE", "/v1/ports/"+url.PathEscape(pos[0]), nil, nil)
	var deleted any = pos[0]
	var ee *exitErr
	if *ifExists && errors.As(err, &ee) && ee.code == exitNotFound {
		err, deleted = nil, nil
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, map[string]any{"deleted": deleted})
	}
	return nil
}

func portSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw port set", `macvsw port set NAME [--mode M] [--mtu N] [--mac MAC] [--up|--down] [--allmulticast=BOOL]
                       [--join GROUP]... [--leave GROUP]... [--json]
                       [--police-pps N] [--police-bps RATE] [--storm-pps N] [--no-police]
                       [--spoofcheck=BOOL] [--allowed-ip ADDR|CIDR]...

Changes a port all or nothing, on its device too (its tap's MAC and MTU in
the sandbox); --join and --leave change its multicast subscriptions, as
ip maddr add/del do.`, stderr)
	socket := clientFlags(fs)
	mode := fs.String("mode", "", "new mode: private, vepa, bridge, passthru or source")
	mac := fs.String("mac", "", "new MAC")
	mtu := fs.Int("mtu", 0, "new MTU")
	up := fs.Bool("up", false, "bring the port up")
	down := fs.Bool("down", false, "take the port down")
	allmulti := fs.String("allmulticast", "", "true or false: receive every multicast group")
	var join, leave multiFlag
	fs.Var(&join, "join", "subscribe to a multicast group MAC (repeatable)")
	fs.Var(&leave, "leave", "unsubscribe from a group (repeatable)")
	asJSON := fs.Bool("json", false, "print the port as JSON after the change")
	var sec securityFlags
	sec.register(fs, true)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 1, 1, "NAME"); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var patch api.PortPatch
	if given["mode"] {
		if _, err := vswitch.ParseMode(*mode); err != nil {
			return flagError("--mode: %v", err)
		}
		patch.Mode = mode
	}
	if given["mac"] {
		if _, err := vswitch.ParseMAC(*mac); err != nil {
			return flagError("--mac: bad MAC address %q", *mac)
		}
		patch.MAC = mac
	}
	if given["mtu"] {
		if *mtu < config.MinMTU || *mtu > config.MaxMTU {
			return flagError("--mtu: %d out of range (want %d..%d)", *mtu, config.MinMTU, config.MaxMTU)
		}
		m := uint32(*mtu)
		patch.MTU = &m
	}
	switch {
	case *up && *down:
		return flagError("--up and --down: give one")
	case given["up"] || given["down"]:
		u := *up && !*down
		patch.Up = &u
	}
	if given["allmulticast"] {
		b, err := strconv.ParseBool(*allmulti)
		if err != nil {
			return flagError("--allmulticast: %q is not true or false", *allmulti)
		}
		patch.AllMulticast = &b
	}
	for _, l := range []struct {
		name string
		in   multiFlag
		out  *[]string
	}{{"--join", join, &patch.Join}, {"--leave", leave, &patch.Leave}} {
		for _, g := range l.in {
			m, err := vswitch.ParseMAC(g)
			if err != nil {
				return flagError("%s: bad MAC address %q", l.name, g)
			}
			if !m.IsGroup() {
				return flagError("%s: %s is not a multicast address (the low bit of the first byte must be 1)", l.name, g)
			}
			*l.out = append(*l.out, g)
		}
	}
	if err := sec.addToPatch(&patch); err != nil {
		return err
	}
	if reflect.ValueOf(patch).IsZero() {
		return usageFail(fs, "nothing to change")
	}
	var v api.Port
	if err := newClient(*socket).do(ctx, "PATCH", "/v1/ports/"+url.PathEscape(pos[0]), patch, &v); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	return nil
}

func portMacaddr(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("macvsw port macaddr", `macvsw port macaddr NAME add|del|flush|set [MAC...] [--json]

Changes a source-mode port's list of remote MACs, as ip link set NAME type
macvlan macaddr add|del|flush|set does: frames from these MACs are copied
to the port.`, stderr)
	socket := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the port as JSON after the change")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, pos, 2, -1, "NAME and an operation (add, del, flush or set)"); err != nil {
		return err
	}
	op, macs := pos[1], pos[2:]
	if _, err := vswitch.ParseSourceOp(op); err != nil {
		return flagError("macaddr: unknown operation %q (want add, del, flush or set)", op)
	}
	for _, m := range macs {
		if _, err := vswitch.ParseMAC(m); err != nil {
			return flagError("macaddr %s: bad MAC address %q", op, m)
		}
	}
	if (op == "add" || op == "del") && len(macs) == 0 {
		return usageFail(fs, "macaddr %s needs at least one MAC", op)
	}
	if macs == nil {
		macs = []string{}
	}
	var v api.Port
	if err := newClient(*socket).do(ctx, "POST", "/v1/ports/"+url.PathEscape(pos[0])+"/macaddr", map[string]any{"op": op, "macs": macs}, &v); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	return nil
}
