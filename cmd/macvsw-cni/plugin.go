package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
)

// opTimeout bounds each command's talk with the daemon.
const opTimeout = 2 * time.Minute

// The order of an ADD, and what a failure at each step undoes:
//
//	1. the daemon answers; a port already made for (container, ifname)
//	   is a repeated ADD: answer from it, change nothing
//	2. CNI_NETNS is a container's netns and has no CNI_IFNAME yet
//	3. tap: IPAM (ExecAdd)                        undo: IPAM DEL
//	4. afpacket: the veth pair                    undo: delete it
//	5. the port, owned by the attachment           undo: delete it
//	6. IPAM if not run yet, then the plugin puts
//	   the addresses on the interface itself
//	7. wait for IPv6 DAD; print the result

func cmdAdd(args *skel.CmdArgs) (err error) {
	s, err := loadSettings(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c := api.NewClient(s.socket)
	o := owner(s.conf.Name, args.ContainerID, args.IfName)
	name := portName(args.ContainerID, args.IfName)

	have, err := c.OwnedPorts(ctx, api.Owner{ContainerID: args.ContainerID, IfName: args.IfName})
	if err != nil {
		return daemonError(err, s.socket)
	}
	if len(have) > 0 {
		return repeatAdd(s, args, have[0])
	}
	if err := checkNetns(args.Netns); err != nil {
		return err
	}
	switch exists, err := linkExists(args.Netns, args.IfName); {
	case err != nil:
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	case exists:
		return types.NewError(codeConflict, fmt.Sprintf("%s already has an interface %s (not made by macvsw for container %s): pick another CNI_IFNAME", args.Netns, args.IfName, args.ContainerID), "")
	}

	var ipamRes *current.Result
	ipamDone := false
	defer func() {
		if err != nil && ipamDone {
			if derr := ipam.ExecDel(s.conf.IPAM.Type, args.StdinData); derr != nil {
				fmt.Fprintf(os.Stderr, "macvsw-cni: undoing IPAM after a failed ADD: %v\n", derr)
			}
		}
	}()
	runIPAM := func() error {
		r, err := execIPAM(s.conf.IPAM.Type, args.StdinData)
		ipamRes, ipamDone = r, err == nil
		return err
	}
	ipamFirst := s.conf.IPAM.Type != "" && s.kind == kindTap && !ipamNeedsInterface[s.conf.IPAM.Type]
	if ipamFirst {
		if err := runIPAM(); err != nil {
			return err
		}
	}

	var addrs []string
	var routes []portRoute
	hasIPv6 := false
	if ipamFirst {
		var gw4, gw6 net.IP
		for _, ipc := range ipamRes.IPs {
			addrs = append(addrs, ipc.Address.String())
			hasIPv6 = hasIPv6 || ipc.Address.IP.To4() == nil
			if ipc.Address.IP.To4() != nil && gw4 == nil {
				gw4 = ipc.Gateway
			} else if ipc.Address.IP.To4() == nil && gw6 == nil {
				gw6 = ipc.Gateway
			}
		}
		if routes, err = tapRoutes(ipamRes.Routes, gw4, gw6); err != nil {
			return err
		}
	}

	vethMAC := ""
	if s.kind == kindAFPacket {
		if vethMAC, err = makeVeth(s.vethNetns, name, args.Netns, args.IfName, s.mac); err != nil {
			return types.NewError(types.ErrIOFailure, err.Error(), "")
		}
		defer func() {
			if err != nil {
				if derr := deleteVeth(s.vethNetns, name); derr != nil {
					fmt.Fprintf(os.Stderr, "macvsw-cni: undoing the veth after a failed ADD: %v\n", derr)
				}
			}
		}()
	}
	// Undone from here on even if the answer to the request is lost: the
	// port may exist although AddPort failed.
	defer func() {
		if err != nil {
			if _, derr := c.DeleteOwned(context.Background(), o); derr != nil {
				fmt.Fprintf(os.Stderr, "macvsw-cni: undoing the port after a failed ADD: %v\n", derr)
			}
		}
	}()
	p, err := c.AddPort(ctx, s.portEntry(name, args.Netns, args.IfName, o, addrs, routes, vethMAC))
	if err != nil {
		e := daemonError(err, s.socket)
		if s.kind == kindAFPacket && e.Code == codeRefused && s.vethNetns == "" && strings.Contains(e.Msg, name) {
			e.Details += "; an afpacket port's veth is made in the plugin's network namespace: if the daemon runs in another, set vethNetns to it"
		}
		return e
	}
	if s.kind == kindAFPacket {
		if err := setVethMTU(s.vethNetns, name, args.Netns, args.IfName, int(p.MTU)); err != nil {
			return types.NewError(types.ErrIOFailure, err.Error(), "")
		}
	}
	if s.conf.IPAM.Type != "" && !ipamFirst {
		if err := runIPAM(); err != nil {
			return err
		}
		if err := configureIface(args.Netns, args.IfName, ipamRes); err != nil {
			return types.NewError(types.ErrIOFailure, fmt.Sprintf("put IPAM's addresses on %s in %s: %v", args.IfName, args.Netns, err), "")
		}
	} else if hasIPv6 {
		if err := settle(args.Netns, args.IfName); err != nil {
			return types.NewError(types.ErrIOFailure, fmt.Sprintf("IPv6 addresses of %s in %s: %v", args.IfName, args.Netns, err), "")
		}
	}

	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	res.Interfaces = []*current.Interface{{Name: args.IfName, Mac: p.MAC, Mtu: int(p.MTU), Sandbox: args.Netns}}
	if s.kind == kindAFPacket {
		// The switch's end of the veth: created by this attachment, in
		// no sandbox.
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: name, Mtu: int(p.MTU)})
	}
	if ipamRes != nil {
		for _, ipc := range ipamRes.IPs {
			cc := *ipc
			cc.Interface = current.Int(0)
			res.IPs = append(res.IPs, &cc)
		}
		res.Routes = ipamRes.Routes
		res.DNS = ipamRes.DNS
	}
	return printResult(s.conf, res)
}

// repeatAdd answers an ADD for an attachment whose port exists: the same
// result, read from the port and its interface, if it is in the same
// namespace; a conflict otherwise. It changes nothing (IPAM is not run
// again: host-local refuses a second allocation for the same container).
func repeatAdd(s *settings, args *skel.CmdArgs, p api.Port) error {
	if p.Owner != nil && p.Owner.Network != s.conf.Name {
		return types.NewError(codeConflict, fmt.Sprintf("container %s interface %s already has port %s on network %q, not %q: DEL it there first", args.ContainerID, args.IfName, p.Name, p.Owner.Network, s.conf.Name), "")
	}
	ifNetns := p.Netns
	if p.Kind == kindAFPacket {
		ifNetns = args.Netns
	}
	if p.Kind == kindTap && p.Netns != args.Netns {
		return types.NewError(codeConflict, fmt.Sprintf("container %s interface %s already has port %s in %s, not in CNI_NETNS %s: DEL it first", args.ContainerID, args.IfName, p.Name, p.Netns, args.Netns), "")
	}
	st, err := readLink(ifNetns, args.IfName)
	if err != nil {
		return types.NewError(codeConflict, fmt.Sprintf("container %s interface %s has port %s, but: %v: DEL it first", args.ContainerID, args.IfName, p.Name, err), "")
	}
	if !strings.EqualFold(st.MAC, p.MAC) {
		return types.NewError(codeConflict, fmt.Sprintf("container %s interface %s: %s in %s has MAC %s, its port %s has %s: DEL it first", args.ContainerID, args.IfName, args.IfName, ifNetns, st.MAC, p.Name, p.MAC), "")
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: st.IPs, Routes: st.Routes}
	res.Interfaces = []*current.Interface{{Name: args.IfName, Mac: p.MAC, Mtu: int(p.MTU), Sandbox: args.Netns}}
	if p.Kind == kindAFPacket {
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: p.Name, Mtu: int(p.MTU)})
	}
	return printResult(s.conf, res)
}

// execIPAM runs the IPAM plugin's ADD and converts its result.
func execIPAM(plugin string, stdin []byte) (*current.Result, error) {
	r, err := ipam.ExecAdd(plugin, stdin)
	if err != nil {
		return nil, err
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("IPAM plugin %s's result: %v", plugin, err), "")
	}
	if len(res.IPs) == 0 {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("IPAM plugin %s gave no address", plugin), "")
	}
	return res, nil
}

// printResult prints res in the configuration's version, after a
// previous plugin's result if there is one (a chained plugin passes it
// on), and the configuration's DNS when IPAM gave none.
func printResult(conf *netConf, res *current.Result) error {
	if !conf.DNS.IsEmpty() {
		res.DNS = conf.DNS
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
		}
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
		}
		off := len(prev.Interfaces)
		for _, ipc := range res.IPs {
			if ipc.Interface != nil {
				ipc.Interface = current.Int(*ipc.Interface + off)
			}
		}
		prev.Interfaces = append(prev.Interfaces, res.Interfaces...)
		prev.IPs = append(prev.IPs, res.IPs...)
		prev.Routes = append(prev.Routes, res.Routes...)
		if prev.DNS.IsEmpty() {
			prev.DNS = res.DNS
		}
		res = prev
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// cmdDel removes the attachment: IPAM first, whatever else happens, then
// the port (and an afpacket port's veth). What is already gone is fine.
// The configuration is only decoded, not checked: a value that became
// invalid must not keep an attachment alive.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := decodeConf(args.StdinData)
	if err != nil {
		return err
	}
	socket := conf.socketPath()
	var ipamErr error
	if conf.IPAM.Type != "" {
		ipamErr = ipam.ExecDel(conf.IPAM.Type, args.StdinData)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c := api.NewClient(socket)
	o := api.Owner{ContainerID: args.ContainerID, IfName: args.IfName}
	ports, err := c.OwnedPorts(ctx, o)
	if err != nil {
		if errors.Is(err, api.ErrNoDaemon) && netnsGone(args.Netns) {
			// The daemon drops a port whose netns is gone when it
			// starts: nothing is left behind.
			return joinErrors(ipamErr, delLeftoverVeth(conf, args))
		}
		e := daemonError(err, socket)
		if e.Code == types.ErrTryAgainLater {
			released := ""
			if conf.IPAM.Type != "" && ipamErr == nil {
				released = "IPAM released; "
			}
			e.Msg += " (" + released + "the port stays until DEL is retried with the daemon up, or CNI_NETNS is deleted)"
		}
		return e
	}
	var errs []error
	if len(ports) > 0 {
		if _, err := c.DeleteOwned(ctx, o); err != nil {
			errs = append(errs, daemonError(err, socket))
		}
	}
	for _, p := range ports {
		if p.Kind == kindAFPacket {
			errs = append(errs, deleteVeth(p.Netns, p.Interface))
		}
	}
	if len(ports) == 0 {
		errs = append(errs, delLeftoverVeth(conf, args))
	}
	return joinErrors(append([]error{ipamErr}, errs...)...)
}

// delLeftoverVeth deletes an afpacket attachment's veth when the daemon
// has no port for it (an ADD that stopped half-way, a daemon that lost its
// state).
func delLeftoverVeth(conf *netConf, args *skel.CmdArgs) error {
	if conf.Kind != kindAFPacket {
		return nil
	}
	return deleteVeth(conf.VethNetns, portName(args.ContainerID, args.IfName))
}

// cmdCheck compares the attachment with the result the runtime holds
// (prevResult): the daemon's port exists, is up and has the result's MAC;
// the interface in the netns is up with that MAC, the port's MTU, and the
// result's addresses and routes.
func cmdCheck(args *skel.CmdArgs) error {
	s, err := loadSettings(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if s.conf.IPAM.Type != "" {
		if err := ipam.ExecCheck(s.conf.IPAM.Type, args.StdinData); err != nil {
			return err
		}
	}
	if s.conf.RawPrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult (the result of ADD)", "")
	}
	if err := version.ParsePrevResult(&s.conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	prev, err := current.NewResultFromResult(s.conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	idx := -1
	for i, ifc := range prev.Interfaces {
		if ifc.Name == args.IfName && ifc.Sandbox == args.Netns {
			idx = i
		}
	}
	if idx < 0 {
		return types.NewError(codeCheckFailed, fmt.Sprintf("prevResult has no interface %s in %s", args.IfName, args.Netns), "")
	}
	want := prev.Interfaces[idx]
	failed := func(format string, a ...any) error {
		return types.NewError(codeCheckFailed, fmt.Sprintf("container %s interface %s: ", args.ContainerID, args.IfName)+fmt.Sprintf(format, a...), "")
	}

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ports, err := api.NewClient(s.socket).OwnedPorts(ctx, api.Owner{ContainerID: args.ContainerID, IfName: args.IfName})
	if err != nil {
		return daemonError(err, s.socket)
	}
	if len(ports) == 0 {
		return failed("macvsw has no port for it (DEL and ADD again)")
	}
	p := ports[0]
	switch {
	case !p.Up:
		return failed("macvsw port %s is set down", p.Name)
	case !p.Link:
		return failed("macvsw port %s has no link: its device is gone or down", p.Name)
	case !p.Carrier:
		return failed("macvsw port %s has no carrier: the switch's lower interface is down", p.Name)
	case want.Mac != "" && !strings.EqualFold(want.Mac, p.MAC):
		return failed("macvsw port %s has MAC %s, the result says %s", p.Name, p.MAC, want.Mac)
	}
	st, err := readLink(args.Netns, args.IfName)
	if err != nil {
		return failed("%v", err)
	}
	switch {
	case !st.Up:
		return failed("set down in %s", args.Netns)
	case !strings.EqualFold(st.MAC, p.MAC):
		return failed("MAC %s in %s, its port has %s", st.MAC, args.Netns, p.MAC)
	case st.MTU != int(p.MTU):
		return failed("MTU %d in %s, its port has %d", st.MTU, args.Netns, p.MTU)
	case s.mtu != 0 && st.MTU != s.mtu:
		return failed("MTU %d in %s, the network config says %d", st.MTU, args.Netns, s.mtu)
	}
	var ips []*current.IPConfig
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface == idx {
			ips = append(ips, ipc)
		}
	}
	if err := validateLink(args.Netns, args.IfName, ips, prev.Routes); err != nil {
		return failed("%v", err)
	}
	return nil
}

// cmdStatus reports whether an ADD could be served: the daemon answers
// (code 50 otherwise), and so does the IPAM plugin.
func cmdStatus(args *skel.CmdArgs) error {
	s, err := loadSettings(args.StdinData, "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := api.NewClient(s.socket).Version(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, unreachableMsg(s.socket), err.Error())
	}
	if s.conf.IPAM.Type != "" {
		return ipam.ExecStatus(s.conf.IPAM.Type, args.StdinData)
	}
	return nil
}

// cmdGC removes the ports of this network whose attachment is not in
// cni.dev/valid-attachments (an absent list means none is valid), with an
// afpacket port's veth, and passes GC on to the IPAM plugin. It keeps
// going after an error and reports them all.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := decodeConf(args.StdinData)
	if err != nil {
		return err
	}
	socket := conf.socketPath()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	valid := map[api.Owner]bool{}
	for _, a := range conf.ValidAttachments {
		valid[owner(conf.Name, a.ContainerID, a.IfName)] = true
	}
	var errs []error
	c := api.NewClient(socket)
	ports, err := c.OwnedPorts(ctx, api.Owner{Network: conf.Name})
	if err != nil {
		errs = append(errs, daemonError(err, socket))
	}
	for _, p := range ports {
		if p.Owner == nil || valid[*p.Owner] {
			continue
		}
		if _, err := c.DeleteOwned(ctx, *p.Owner); err != nil {
			errs = append(errs, fmt.Errorf("port %s of container %s: %w", p.Name, p.Owner.ContainerID, daemonError(err, socket)))
			continue
		}
		if p.Kind == kindAFPacket {
			errs = append(errs, deleteVeth(p.Netns, p.Interface))
		}
	}
	if conf.IPAM.Type != "" {
		if err := invoke.DelegateGC(ctx, conf.IPAM.Type, args.StdinData, nil); err != nil {
			errs = append(errs, fmt.Errorf("IPAM plugin %s: %w", conf.IPAM.Type, err))
		}
	}
	return joinErrors(errs...)
}
