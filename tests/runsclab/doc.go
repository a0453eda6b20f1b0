// Package runsclab runs gVisor's runsc sandboxes in network namespaces
// for macvsw's integration tests.
//
// Build (build.go) compiles runsc from exactly the gvisor.dev/gvisor
// version pinned in the repository's go.mod, in a throwaway module so the
// repository's go.mod is never touched, with CGO_ENABLED=0 (with cgo the
// binary builds but no sandbox starts), and caches it under
// $MACVSW_RUNSC_CACHE (default /var/cache/macvsw-test/runsc) as
// <version>/runsc. Concurrent builders serialize on a lock file and publish
// the binary by rename, so a half-written binary is never seen.
//
// Start (sandbox.go) runs one container whose rootfs is the host's /,
// read-only, with /proc, /dev and /tmp of its own, in an existing network
// namespace (OCI linux.namespaces "network" with a path). runsc takes every
// interface there that is up and has an address: it copies the MAC, MTU,
// addresses and routes into its netstack, removes the addresses from the
// host side, and reads and writes frames through an AF_PACKET socket, with
// PACKET_VNET_HDR and host GSO when the device reports GSO (veth, tap and
// macvlan all do). Exec runs commands inside with `runsc exec`. Close
// kills and deletes the container and removes its files; each sandbox has
// its own runsc --root, bundle and --debug-log directory.
//
// Everything here needs root. Namespaces come from the netlab package.
package runsclab
