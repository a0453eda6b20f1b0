// Command macvsw-cni is a CNI plugin (type "macvsw-cni") that attaches
// containers to a running macvsw switch: for each attachment it asks the
// daemon, over its control socket, for a port owned by the container, in
// the container's network namespace, named CNI_IFNAME.
//
// It is run by container runtimes (containerd, CRI-O, Podman's CNI
// backend, cnitool), never by hand, with the CNI protocol: the command in
// CNI_COMMAND, the network configuration on stdin, the result or a CNI
// error object on stdout. It speaks spec versions 0.4.0, 1.0.0 and 1.1.0
// and implements ADD, DEL, CHECK, STATUS, GC and VERSION.
//
// Network configuration keys (all optional; unknown keys are ignored, as
// CNI conventions require; a bad value is a CNI error naming the key):
//
//	socket     the daemon's control socket (default /run/macvsw/macvsw.sock)
//	kind       "tap" (default): a tap the daemon creates in the netns;
//	           "afpacket": a veth pair, CNI_IFNAME in the netns and the
//	           other end, which the daemon reads with AF_PACKET, in
//	           vethNetns (default: the plugin's own network namespace,
//	           which must then be the daemon's)
//	mode       private, vepa, bridge (default), passthru or source
//	mtu        the interface's MTU (default: the lower's)
//	queues     port queues, 1..256 (tap queues or AF_PACKET sockets)
//	mac        the interface's MAC; also CNI_ARGS MAC=... and the "mac"
//	           capability (runtimeConfig.mac), which win in that order
//	offloads   virtio-net header offloads on a tap port (default true)
//	ipam       delegated to an IPAM plugin (host-local, static, dhcp, ...)
//	dns        copied into the result
//
// Addresses and routes from IPAM go to the daemon with the port (its
// tap.addresses and tap.routes), so the daemon puts them on the tap and
// puts them back if it ever has to create the tap again; lo is brought up
// in the netns (runsc has no loopback otherwise). A route without a
// gateway goes via the gateway IPAM gave for its family, so host-local's
// {"dst": "0.0.0.0/0"} is the default route. IPAM plugins that need the
// interface to exist first (dhcp) are run after the port is made, and the
// plugin then puts their addresses on the interface itself, as it does
// for afpacket ports.
//
// DEL removes the port (and an afpacket port's veth) and releases IPAM; it
// succeeds when the netns, the port or the daemon's record is already
// gone. When the daemon cannot be reached, DEL still releases IPAM; it
// then succeeds if the netns is gone (the daemon drops a port whose netns
// is gone when it starts again, so nothing leaks) and fails with code 11
// (try again later) if the netns still exists, since the port would
// otherwise be restored by the daemon with nobody to delete it.
//
// Run with arguments and no CNI_COMMAND, it is a small installer:
// `macvsw-cni install BINDIR [CONFLIST CONFDIR]` copies itself to
// BINDIR/macvsw-cni, and a network configuration into CONFDIR (temporary
// files renamed into place, so a runtime never reads half a file): what a
// Kubernetes init container does with the host's /opt/cni/bin and
// /etc/cni/net.d.
//
// Error codes: the spec's (4 bad environment, 7 bad configuration, 11
// daemon not reachable, 50 STATUS: daemon not reachable) and the
// plugin's own: 100 the daemon refused the request (its message
// follows), 101 CHECK found a difference, 102 the attachment conflicts
// with what is already there.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// version is set at link time (-ldflags "-X main.pluginVersion=...").
var pluginVersion = "dev"

func init() {
	// Namespace switches (plugins/pkg/ns) happen on locked threads; keep
	// the main goroutine on its own, as the reference plugins do.
	runtime.LockOSThread()
}

func main() {
	if len(os.Args) > 1 && os.Getenv("CNI_COMMAND") == "" {
		if err := runCLI(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "macvsw-cni:", err)
			os.Exit(1)
		}
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), "CNI plugin macvsw-cni "+pluginVersion+": ports on a macvsw userspace switch")
}
