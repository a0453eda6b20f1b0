//go:build linux

package endpoints

import (
	"bytes"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetNS runs fn on an OS thread that has joined the network namespace at
// path (a /var/run/netns/NAME bind mount or /proc/PID/ns/net); an empty path
// runs fn in the caller's namespace. File descriptors that fn opens (tap
// queues, sockets) stay in that namespace for their lifetime, whichever
// thread uses them later.
//
// As CNI's pkg/ns does, fn runs on a fresh goroutine with its thread locked;
// if the thread cannot return to the original namespace it is left locked,
// so the runtime destroys it instead of reusing it.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %q: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %q: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("return from netns %q: %w (after %v)", path, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netlinkHandle returns a netlink handle for the namespace at path (the
// caller's for ""), and the namespace handle (netns.None() for "") that the
// caller must Close.
func netlinkHandle(path string) (*netlink.Handle, netns.NsHandle, error) {
	if path == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, netns.None(), fmt.Errorf("netlink handle: %w", err)
		}
		return h, netns.None(), nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, netns.None(), fmt.Errorf("open netns %q: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, netns.None(), fmt.Errorf("netlink handle in %q: %w", path, err)
	}
	return h, ns, nil
}

// setLinkAttrs sets the MAC (when mac is not nil) and the MTU (when not 0)
// of interface name in the namespace at netnsPath, like `ip -n NS link set
// NAME address MAC mtu MTU`.
func setLinkAttrs(netnsPath, name string, mac net.HardwareAddr, mtu uint32) error {
	h, ns, err := netlinkHandle(netnsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %q: %w", name, err)
	}
	if mac != nil && !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		if err := h.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("set %q address %s: %w", name, mac, err)
		}
	}
	if mtu != 0 && link.Attrs().MTU != int(mtu) {
		if err := h.LinkSetMTU(link, int(mtu)); err != nil {
			return fmt.Errorf("set %q mtu %d: %w", name, mtu, err)
		}
	}
	return nil
}
