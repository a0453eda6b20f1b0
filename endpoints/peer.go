//go:build linux

package endpoints

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
)

// NetnsRunDir is where `ip netns add` keeps named namespaces (iproute2's
// NETNS_RUN_DIR).
const NetnsRunDir = "/var/run/netns"

// SenderMAC returns the MAC that whatever sits behind interface name (in
// the namespace at netnsPath, "" for the caller's) sends with, for an
// AF_PACKET port that was given none, and says where it came from:
//
//   - for a veth, its peer's MAC: the peer is the sandbox's end. The peer
//     is found in the same namespace or in a named one (NetnsRunDir), by
//     the namespace ID the interface's namespace gives it
//     (IFLA_LINK_NETNSID, `ip link show` "link-netnsid");
//   - otherwise, or when the peer's namespace has no name, the
//     interface's own MAC.
func SenderMAC(netnsPath, name string) (net.HardwareAddr, string, error) {
	ns, err := openNetNS(netnsPath)
	if err != nil {
		return nil, "", err
	}
	defer ns.close()
	h, err := ns.handle()
	if err != nil {
		return nil, "", err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, "", fmt.Errorf("interface %q in %s: %w", name, ns, err)
	}
	own := l.Attrs().HardwareAddr
	if l.Type() != "veth" || l.Attrs().ParentIndex == 0 {
		return own, fmt.Sprintf("the MAC of %s itself", name), nil
	}
	peerIdx, nsid := l.Attrs().ParentIndex, l.Attrs().NetNsID
	if nsid < 0 {
		if p, err := h.LinkByIndex(peerIdx); err == nil {
			return p.Attrs().HardwareAddr, fmt.Sprintf("the MAC of %s's veth peer %s", name, p.Attrs().Name), nil
		}
		return own, fmt.Sprintf("the MAC of %s itself (its veth peer is not found)", name), nil
	}
	names, _ := os.ReadDir(NetnsRunDir)
	for _, e := range names {
		path := filepath.Join(NetnsRunDir, e.Name())
		mac, peer, ok := peerIn(h, path, nsid, peerIdx)
		if ok {
			return mac, fmt.Sprintf("the MAC of %s's veth peer %s in %s", name, peer, path), nil
		}
	}
	return own, fmt.Sprintf("the MAC of %s itself (its veth peer's namespace has no name in %s)", name, NetnsRunDir), nil
}

// peerIn looks for interface index idx in the namespace at path, if the
// namespace h talks to knows that namespace as nsid.
func peerIn(h *netlink.Handle, path string, nsid, idx int) (net.HardwareAddr, string, bool) {
	ns, err := openNetNS(path)
	if err != nil {
		return nil, "", false
	}
	defer ns.close()
	if id, err := h.GetNetNsIdByFd(ns.fd); err != nil || id != nsid {
		return nil, "", false
	}
	ph, err := ns.handle()
	if err != nil {
		return nil, "", false
	}
	defer ph.Close()
	p, err := ph.LinkByIndex(idx)
	if err != nil {
		return nil, "", false
	}
	return p.Attrs().HardwareAddr, p.Attrs().Name, true
}
