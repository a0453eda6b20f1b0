// Package vmlab boots throwaway Linux guests under QEMU (TCG, no KVM) for
// macvsw's tests: guests whose NICs are QEMU socket netdevs (-netdev
// stream, -netdev dgram) or taps, to test socket ports and AF_PACKET ports
// against a real kernel's virtio-net.
//
// # Guests
//
// PrepareAssets builds, once, a guest kernel and a base initramfs into
// CacheDir() (/var/cache/macvsw-test/vmlab, or $MACVSW_VMLAB_CACHE): it
// runs `apt-get download` for the kernel package Debian's linux-image-amd64
// depends on and for busybox-static, unpacks them with `dpkg-deb -x` in a
// temporary directory (nothing is installed), and writes a gzip'd newc
// cpio archive in Go holding the static busybox with all its applets as
// symlinks and the modules a virtio-net guest needs (virtio_pci,
// virtio_net, 8021q and their dependencies, read from each module's
// .modinfo; built-in ones are skipped). Debian 12's modules are plain .ko;
// .ko.xz ones (Debian 13) are decompressed at build time with the
// downloaded busybox's own xz applet, so xz-utils is not needed. The cache
// key is the kernel version; a second run reuses the entry at once.
//
// Boot (or Start, then WaitReady) runs qemu-system-x86_64 -accel tcg
// -machine pc -smp 1 -m 256 -nodefaults -nic none -display none
// -no-reboot, optionally under `ip netns exec NS`, with the caller's
// -netdev/-device arguments and fds (Options.ExtraFiles become fds 3, 4, ...;
// ip netns exec passes them on). A second archive per boot carries /init,
// which mounts proc, sys, devtmpfs and tmp, loads the modules, brings up lo
// and configures Options.Ifaces (found by MAC or name; addresses, MTU).
// ttyS0 is the console (Guest.Console); ttyS1 is a unix socket back to
// the test, with a line protocol: the guest says READY, then runs each
// script the test sends (Guest.Run) and returns its output and exit
// status between markers carrying a per-boot random token. Without
// Options.Script the guest stays up for any number of commands until
// Poweroff or Close; with it, /init runs the script once, reports, and
// powers off (Guest.Wait returns the result). Every guest has a lifetime
// bound (Options.Timeout, default 10 min) after which QEMU is killed;
// Close (and the cleanup of StartT/BootT) kills QEMU by PID and removes
// the guest's temporary files; QEMU also gets SIGKILL if the test process
// dies (Pdeathsig).
//
// A boot takes 8-14 s from QEMU's start to READY on this 2-core machine
// when alone, 20-31 s with four guests booting at once (the package's
// tests run in parallel: about 1 minute in all under -race); about 4 s of
// it is the guest kernel's own time. Building the assets the first time
// takes about 18 s. So boot once and Run many commands.
//
// # Requirements
//
// Tests named TestNetns... skip unless run as root with iproute2's ip and
// qemu-system-x86_64 present; CI installs Debian's qemu-system-x86
// (`apt-get install --no-install-recommends qemu-system-x86` is enough: its
// dependencies seabios, ipxe-qemu and qemu-system-data hold the BIOS, the
// virtio-net option ROM and linuxboot_dma.bin). Building the assets needs
// apt-get and dpkg-deb (always on Debian), apt lists (`apt-get update`),
// and Debian's mirror once.
//
// # QEMU facts (Debian 12's QEMU 7.2.22, observed here)
//
// Checked with `qemu-system-x86_64 -machine none -S -netdev ...` for
// option parsing, and by TestNetnsNetdevForms: one guest with a
// virtio-net-pci NIC on each form below, each wired to a Responder in the
// test that answers ARP and ICMP echo; the guest pings through every one.
//
//   - -netdev stream,server=off,addr.type=unix,addr.path=P: works; QEMU
//     connects once, at start-up. If nothing listens at P it says nothing,
//     boots anyway and never retries; the NIC just carries nothing.
//   - -netdev stream,server=on,addr.type=unix,addr.path=P: works; QEMU
//     unlinks whatever is at P (even a regular file), listens, and boots
//     the guest without waiting for a client. It removes P when it exits
//     on SIGTERM, not when killed.
//   - reconnect=N (seconds) for server=off: not in 7.2 ("Parameter
//     'reconnect' is unexpected"). It came in QEMU 8.0; 9.2 added
//     reconnect-ms and deprecated reconnect (current QEMU has only
//     reconnect-ms). 7.2 rejects reconnect-ms as well.
//   - -netdev stream,addr.type=fd,addr.str=N (server=off): works with a
//     connected AF_UNIX SOCK_STREAM socketpair end passed as fd N.
//   - -netdev dgram,local.type=unix,local.path=A,remote.type=unix,remote.path=B:
//     works; QEMU binds A and sends every frame to B.
//   - -netdev dgram,local.type=fd,local.str=N: works with a connected
//     AF_UNIX SOCK_DGRAM socketpair end (no remote= needed).
//   - -netdev socket,fd=N: works with a SOCK_STREAM socketpair end (stream
//     framing) and with a SOCK_DGRAM one (one frame per datagram); QEMU
//     picks by SO_TYPE and refuses a non-socket ("can't get socket option
//     SO_TYPE").
//
// Framing, from the bytes a guest's NIC sent: on stream sockets every frame
// is preceded by its length as a 4-byte big-endian integer; the guest's
// first ARP request arrived as 00 00 00 2a, then 42 bytes starting with
// ff ff ff ff ff ff (the destination MAC). On datagram sockets each
// datagram is one frame, with no prefix. No virtio-net header travels on
// any of these sockets: each frame starts with its Ethernet header, and is
// not padded to 60 bytes (ARP is 42, ping 98). Frames written back with the
// same framing reach the guest (the pings are answered).
//
// Disconnects: when the peer of a server=off stream closes, QEMU 7.2
// never reconnects (nothing in 5 s, and 7.2 has no reconnect=); the NIC
// silently drops what the guest sends. When the client of a server=on
// stream closes, QEMU listens again and a new client gets traffic at once.
// Either way the guest's carrier stays up (/sys/class/net/IF/carrier is 1;
// it is 1 too while no peer ever connected) and QEMU prints nothing on
// stderr: a guest cannot tell that its socket has no peer.
//
// The guest's busybox has sh, ip, ping/ping6, nc, wget, httpd, dd,
// sha256sum, md5sum, timeout, stty, base64 and the rest of Debian's
// busybox-static applets. Its nc cannot half-close, so tests move files
// with httpd and wget. Its ip has no nodad: duplicate address detection is
// turned off through /proc instead.
package vmlab
