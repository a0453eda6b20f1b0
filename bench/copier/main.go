// Command copier is the naive reference that bench measures macvsw
// against: two taps, one in each of two network namespaces, and one
// goroutine per direction that reads a frame with its virtio-net header
// from one tap (blocking readv) and writes it unchanged to the other
// (writev). No switching logic, no batching, no counters: what any
// userspace switch costs at least when it moves frames between two taps
// one system call at a time.
//
//	copier -a /var/run/netns/A -b /var/run/netns/B [-ifname eth0]
//
// It creates the taps (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, TSO and checksum
// offloads on, as macvsw's tap ports) and leaves addresses and link state
// to the caller. It prints "ready" once both exist and copies until
// SIGTERM or SIGINT; the taps go with it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

const vnetHdrLen = 12 // struct virtio_net_hdr_v1

func main() {
	a := flag.String("a", "", "network namespace path of the first tap")
	b := flag.String("b", "", "network namespace path of the second tap")
	ifname := flag.String("ifname", "eth0", "name of both taps")
	flag.Parse()
	if *a == "" || *b == "" {
		fmt.Fprintln(os.Stderr, "copier: -a and -b are required")
		os.Exit(2)
	}
	fa, err := openTap(*a, *ifname)
	check(err)
	fb, err := openTap(*b, *ifname)
	check(err)
	go copyFrames(fa, fb)
	go copyFrames(fb, fa)
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "copier:", err)
		os.Exit(1)
	}
}

// copyFrames moves frames from src to dst until a read fails.
func copyFrames(src, dst int) {
	hdr := make([]byte, vnetHdrLen)
	frame := make([]byte, 65536+64)
	iov := make([][]byte, 2)
	for {
		iov[0], iov[1] = hdr, frame
		n, err := unix.Readv(src, iov)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "copier: read:", err)
			os.Exit(1)
		}
		if n <= vnetHdrLen {
			continue
		}
		iov[1] = frame[:n-vnetHdrLen]
		// A full destination drops the frame, as a tap does.
		unix.Writev(dst, iov)
	}
}

// openTap creates tap ifname inside the namespace at nsPath and returns
// its blocking queue FD.
func openTap(nsPath, ifname string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result)
	go func() {
		// The thread enters the namespace and never leaves: locked, it
		// ends with this goroutine.
		runtime.LockOSThread()
		fd, err := openTapHere(nsPath, ifname)
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

func openTapHere(nsPath, ifname string) (int, error) {
	ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("setns %s: %w", nsPath, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %s in %s: %w", ifname, nsPath, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		unix.Close(fd)
		return -1, err
	}
	off := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, off); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
