//go:build linux

package endpoints

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSID identifies a network namespace: the device and inode of its
// nsfs file, what `stat -L /proc/self/ns/net` shows. Two paths name the
// same namespace exactly when their IDs are equal; a namespace deleted and
// created again under the same name has a new ID.
type NetNSID struct {
	Dev, Ino uint64
}

// String formats the ID as "net:[INO]", like readlink /proc/PID/ns/net.
func (id NetNSID) String() string { return fmt.Sprintf("net:[%d]", id.Ino) }

// ErrNotNetNS is returned for a path that exists but is not a network
// namespace (a regular file, a FIFO, another kind of namespace).
var ErrNotNetNS = errors.New("not a network namespace")

// nsGetNSType is NS_GET_NSTYPE, _IO(0xb7, 0x3) (include/uapi/linux/nsfs.h).
const nsGetNSType = 0xb703

// netNS is a network namespace held open by an endpoint: every netlink
// call and every setns goes through this FD, never through the path
// again, so a namespace deleted and created again under the same name (or
// a /proc/PID path whose PID was reused) is never mistaken for ours. The
// zero value, and one with path "", is the caller's namespace.
type netNS struct {
	path string
	fd   int // -1: the caller's namespace
	id   NetNSID
}

// openNetNS opens and checks the namespace at path ("" for the caller's).
// The open cannot block (O_NONBLOCK: a FIFO is refused, never waited on)
// and NS_GET_NSTYPE must say CLONE_NEWNET.
func openNetNS(path string) (*netNS, error) {
	if path == "" {
		return &netNS{fd: -1}, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open netns %q: %w", path, err)
	}
	t, err := unix.IoctlRetInt(fd, nsGetNSType)
	if err != nil || t != unix.CLONE_NEWNET {
		unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("namespace type %#x", t)
		}
		return nil, fmt.Errorf("netns %q: %w (%v)", path, ErrNotNetNS, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns %q: %w", path, err)
	}
	return &netNS{path: path, fd: fd, id: NetNSID{Dev: st.Dev, Ino: st.Ino}}, nil
}

// LookupNetNS checks that path names a network namespace, without
// blocking on anything else (a FIFO, a device), and returns its ID.
func LookupNetNS(path string) (NetNSID, error) {
	n, err := openNetNS(path)
	if err != nil {
		return NetNSID{}, err
	}
	defer n.close()
	if path == "" {
		return CurrentNetNS()
	}
	return n.id, nil
}

// CurrentNetNS returns the ID of the calling thread's namespace.
func CurrentNetNS() (NetNSID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return NetNSID{}, fmt.Errorf("current netns: %w", err)
	}
	return NetNSID{Dev: st.Dev, Ino: st.Ino}, nil
}

func (n *netNS) close() {
	if n != nil && n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
}

// String names the namespace for messages: its path, or "the daemon's".
func (n *netNS) String() string {
	if n.path == "" {
		return "the current netns"
	}
	return n.path
}

// stillThere reports whether the path still names the namespace we hold:
// false once it was deleted (ip netns del), or its process exited (a
// /proc/PID/ns/net path), or a new namespace took its name.
func (n *netNS) stillThere() bool {
	if n.path == "" {
		return true
	}
	var st unix.Stat_t
	if err := unix.Stat(n.path, &st); err != nil {
		return false
	}
	return NetNSID{Dev: st.Dev, Ino: st.Ino} == n.id
}

// do runs fn on an OS thread that has joined the namespace. File
// descriptors that fn opens (tap queues, sockets) stay in that namespace
// for their lifetime, whichever thread uses them later.
//
// As CNI's pkg/ns does, fn runs on a fresh goroutine with its thread locked;
// if the thread cannot return to the original namespace it is left locked,
// so the runtime destroys it instead of reusing it.
func (n *netNS) do(fn func() error) error {
	if n == nil || n.fd < 0 {
		return fn()
	}
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
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("return from netns %s: %w (after %v)", n, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// handle returns a netlink handle in the namespace; the caller closes it.
func (n *netNS) handle() (*netlink.Handle, error) {
	if n == nil || n.fd < 0 {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return h, nil
	}
	h, err := netlink.NewHandleAt(netns.NsHandle(n.fd))
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", n, err)
	}
	return h, nil
}

// setLinkAttrs sets the MAC (when mac is not nil) and the MTU (when not 0)
// of the interface with index ifindex (or, when 0, named name), like `ip -n
// NS link set NAME address MAC mtu MTU`.
func (n *netNS) setLinkAttrs(name string, ifindex int, mac net.HardwareAddr, mtu uint32) error {
	h, err := n.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := n.link(h, name, ifindex)
	if err != nil {
		return err
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

// link finds the interface by index (when not 0, and then checks its
// name) or by name.
func (n *netNS) link(h *netlink.Handle, name string, ifindex int) (netlink.Link, error) {
	if ifindex == 0 {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("find %q in %s: %w", name, n, err)
		}
		return l, nil
	}
	l, err := h.LinkByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("find %q (ifindex %d) in %s: %w", name, ifindex, n, err)
	}
	if l.Attrs().Name != name {
		return nil, fmt.Errorf("find %q in %s: ifindex %d is now %q", name, n, ifindex, l.Attrs().Name)
	}
	return l, nil
}

// LookupInterface checks that an interface of that name exists in the
// namespace at netnsPath ("" for the caller's), asking netlink there (not
// /sys/class/net, which only `ip netns exec` remounts), and returns its
// index. A missing interface is an error wrapping fs.ErrNotExist.
func LookupInterface(netnsPath, name string) (int, error) {
	ns, err := openNetNS(netnsPath)
	if err != nil {
		return 0, err
	}
	defer ns.close()
	h, err := ns.handle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return 0, fmt.Errorf("interface %q in %s: %w", name, ns, fs.ErrNotExist)
		}
		return 0, fmt.Errorf("interface %q in %s: %w", name, ns, err)
	}
	return l.Attrs().Index, nil
}

// DeleteTap deletes the tap interface name with index ifindex in the
// namespace at netnsPath, if that path still names namespace id and the
// interface is still that one: what a daemon that recorded a tap it
// created does when it cleans up without the endpoint. A namespace or
// interface that is gone is not an error; one that changed is.
func DeleteTap(netnsPath string, id NetNSID, name string, ifindex int) error {
	ns, err := openNetNS(netnsPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer ns.close()
	if netnsPath != "" && ns.id != id {
		return fmt.Errorf("tap %q: netns %s is now %v, not %v: not touching another namespace", name, netnsPath, ns.id, id)
	}
	h, err := ns.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByIndex(ifindex)
	if err != nil {
		return nil // gone
	}
	if l.Attrs().Name != name || l.Type() != "tuntap" {
		return fmt.Errorf("tap %q: ifindex %d in %s is now %q (%s): not touching it", name, ifindex, ns, l.Attrs().Name, l.Type())
	}
	return h.LinkDel(l)
}
