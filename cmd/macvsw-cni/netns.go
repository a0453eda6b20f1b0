package main

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Everything the plugin does inside a namespace happens either through a
// netlink handle opened in it (netlink.NewHandleAt, no thread switch) or
// in plugins/pkg/ns's Do, which runs on a locked thread of its own.

// dadTimeout bounds the wait for IPv6 duplicate address detection, as
// plugins/pkg/ipam.ConfigureIface does.
const dadTimeout = 5 * time.Second

// checkNetns checks that CNI_NETNS is a network namespace other than the
// plugin's own: a port is never put in the runtime's (the host's)
// namespace, where CNI_IFNAME could be a real interface's name.
func checkNetns(path string) *types.Error {
	n, err := ns.GetNS(path)
	if err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %s: %v", path, err), "")
	}
	defer n.Close()
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(int(n.Fd()), &theirs); err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %s: %v", path, err), "")
	}
	if err := unix.Stat("/proc/self/ns/net", &ours); err == nil && theirs.Dev == ours.Dev && theirs.Ino == ours.Ino {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_NETNS %s is the runtime's own network namespace: macvsw-cni puts ports only in a container's", path), "")
	}
	return nil
}

// netnsGone reports whether a DEL's CNI_NETNS no longer names a network
// namespace (or was not given).
func netnsGone(path string) bool {
	if path == "" {
		return true
	}
	err := ns.IsNSorErr(path)
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	return errors.As(err, &notExist) || errors.As(err, &notNS)
}

// handleAt opens a netlink handle in the namespace at path ("" is the
// plugin's own); close it with the returned function.
func handleAt(path string) (*netlink.Handle, func(), error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, nil, err
		}
		return h, h.Close, nil
	}
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		return nil, nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		nsh.Close()
		return nil, nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, func() { h.Close(); nsh.Close() }, nil
}

// linkExists reports whether the namespace at path has an interface named
// ifname.
func linkExists(path, ifname string) (bool, error) {
	h, closeH, err := handleAt(path)
	if err != nil {
		return false, err
	}
	defer closeH()
	_, err = h.LinkByName(ifname)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("interface %s in %s: %w", ifname, path, err)
	}
	return true, nil
}

// makeVeth creates an afpacket port's veth pair: end name in vethNetns ("":
// the plugin's own namespace), up, and end ifname in the container's
// namespace, up, with mac when set. It returns the container end's MAC.
// On error nothing is left.
//
// Like `ip link add NAME type veth peer name TMP netns CONTAINER; ip -n
// CONTAINER link set TMP name IFNAME address MAC up; ip link set NAME up`.
func makeVeth(vethNetns, name, containerNetns, ifname, mac string) (string, error) {
	h, closeH, err := handleAt(vethNetns)
	if err != nil {
		return "", err
	}
	defer closeH()
	cns, err := netns.GetFromPath(containerNetns)
	if err != nil {
		return "", fmt.Errorf("CNI_NETNS %s: %w", containerNetns, err)
	}
	defer cns.Close()
	hc, err := netlink.NewHandleAt(cns)
	if err != nil {
		return "", fmt.Errorf("netlink in %s: %w", containerNetns, err)
	}
	defer hc.Close()

	tmp := "mvc" + strings.TrimPrefix(name, "mvs") // unique like name, never CNI_IFNAME
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: tmp, PeerNamespace: netlink.NsFd(cns)}
	if err := h.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("create veth %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			if l, err := h.LinkByName(name); err == nil {
				h.LinkDel(l)
			}
		}
	}()
	peer, err := hc.LinkByName(tmp)
	if err != nil {
		return "", fmt.Errorf("veth %s's container end: %w", name, err)
	}
	if err := hc.LinkSetName(peer, ifname); err != nil {
		return "", fmt.Errorf("rename %s to %s in %s: %w", tmp, ifname, containerNetns, err)
	}
	if mac != "" {
		hw, _ := net.ParseMAC(mac)
		if err := hc.LinkSetHardwareAddr(peer, hw); err != nil {
			return "", fmt.Errorf("set %s address %s: %w", ifname, mac, err)
		}
	}
	if err := hc.LinkSetUp(peer); err != nil {
		return "", fmt.Errorf("set %s up: %w", ifname, err)
	}
	if lo, err := hc.LinkByName("lo"); err == nil {
		if err := hc.LinkSetUp(lo); err != nil {
			return "", fmt.Errorf("set lo up in %s: %w", containerNetns, err)
		}
	}
	host, err := h.LinkByName(name)
	if err != nil {
		return "", fmt.Errorf("veth %s: %w", name, err)
	}
	if err := h.LinkSetUp(host); err != nil {
		return "", fmt.Errorf("set %s up: %w", name, err)
	}
	peer, err = hc.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("%s in %s: %w", ifname, containerNetns, err)
	}
	ok = true
	return peer.Attrs().HardwareAddr.String(), nil
}

// setVethMTU gives both ends of an afpacket port's veth the port's MTU.
func setVethMTU(vethNetns, name, containerNetns, ifname string, mtu int) error {
	for _, e := range [][2]string{{vethNetns, name}, {containerNetns, ifname}} {
		h, closeH, err := handleAt(e[0])
		if err != nil {
			return err
		}
		l, err := h.LinkByName(e[1])
		if err == nil && l.Attrs().MTU != mtu {
			err = h.LinkSetMTU(l, mtu)
		}
		closeH()
		if err != nil {
			return fmt.Errorf("set %s mtu %d: %w", e[1], mtu, err)
		}
	}
	return nil
}

// deleteVeth deletes an afpacket port's veth by its switch-side end (the
// container end goes with it). A missing namespace or interface is not an
// error; an interface of that name that is not a veth is left alone.
func deleteVeth(vethNetns, name string) error {
	if vethNetns != "" && netnsGone(vethNetns) {
		return nil
	}
	h, closeH, err := handleAt(vethNetns)
	if err != nil {
		return err
	}
	defer closeH()
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		return nil
	case err != nil:
		return fmt.Errorf("veth %s: %w", name, err)
	case l.Type() != "veth":
		return nil
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// settle waits, inside the namespace, until the interface's IPv6
// addresses have passed duplicate address detection, so the container
// can use them once ADD returns.
func settle(path, ifname string) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error {
		return ip.SettleAddresses(ifname, dadTimeout)
	})
}

// configureIface puts IPAM's addresses and routes on the interface inside
// the namespace (plugins/pkg/ipam.ConfigureIface: it also enables IPv6
// where needed, brings the link up and waits for DAD).
func configureIface(path, ifname string, res *current.Result) error {
	r := *res
	r.Interfaces = []*current.Interface{{Name: ifname}}
	r.IPs = nil
	for _, c := range res.IPs {
		cc := *c
		cc.Interface = current.Int(0)
		r.IPs = append(r.IPs, &cc)
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error {
		return ipam.ConfigureIface(ifname, &r)
	})
}

// linkState is an interface as seen in its namespace.
type linkState struct {
	MAC    string
	MTU    int
	Up     bool
	IPs    []*current.IPConfig // global addresses, with the default route's gateway of their family
	Routes []*types.Route      // routes through it that were added, not made by the kernel
}

// readLink reads an interface, its addresses and its routes in the
// namespace at path.
func readLink(path, ifname string) (*linkState, error) {
	var st linkState
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		l, err := netlinksafe.LinkByName(ifname)
		if err != nil {
			return err
		}
		a := l.Attrs()
		st.MAC, st.MTU, st.Up = a.HardwareAddr.String(), a.MTU, a.Flags&net.FlagUp != 0
		routes, err := netlinksafe.RouteList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		var gw4, gw6 net.IP
		for _, r := range routes {
			if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || r.Table != unix.RT_TABLE_MAIN {
				continue
			}
			dst := r.Dst
			if dst == nil {
				if r.Family == netlink.FAMILY_V6 {
					dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
					if gw6 == nil {
						gw6 = r.Gw
					}
				} else {
					dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
					if gw4 == nil {
						gw4 = r.Gw
					}
				}
			}
			if dst.IP.IsLinkLocalUnicast() || dst.IP.IsMulticast() {
				continue
			}
			st.Routes = append(st.Routes, &types.Route{Dst: *dst, GW: r.Gw, Priority: r.Priority})
		}
		addrs, err := netlinksafe.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, ad := range addrs {
			if ad.Scope != unix.RT_SCOPE_UNIVERSE {
				continue
			}
			c := &current.IPConfig{Interface: current.Int(0), Address: *ad.IPNet}
			if ad.IP.To4() != nil {
				c.Gateway = gw4
			} else {
				c.Gateway = gw6
			}
			st.IPs = append(st.IPs, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("interface %s in %s: %w", ifname, path, err)
	}
	return &st, nil
}

// validateLink checks, inside the namespace, that the interface carries
// the addresses and the routes of a result (plugins/pkg/ip's checks, the
// ones the reference plugins' CHECK uses).
func validateLink(path, ifname string, ips []*current.IPConfig, routes []*types.Route) error {
	return ns.WithNetNSPath(path, func(ns.NetNS) error {
		if err := ip.ValidateExpectedInterfaceIPs(ifname, ips); err != nil {
			return err
		}
		return ip.ValidateExpectedRoute(routes)
	})
}
