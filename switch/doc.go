// Package vswitch is macvsw's forwarding core: Linux macvlan's private, VEPA,
// bridge, passthru and source modes, in software, over gVisor packet buffers.
//
// A Switch has one lower (the uplink toward the wire) and any number of
// Ports. Frames from the wire enter with Switch.Receive, frames a port sends
// with Switch.Transmit; both borrow the *stack.PacketBuffer and forward it by
// the rules of drivers/net/macvlan.c (BEHAVIOUR.md §2-§4):
// unicast lookup by destination MAC among up ports; floods filtered by the
// sender's mode and each port's multicast filter, recognising frames the
// external switch hairpinned back by their source MAC; source-mode copies
// (with nodst); passthru; bridge-mode direct delivery; PAUSE frames never
// flooded; IPv4 fragments to group MACs reassembled before flooding. Floods
// from the wire go through a bounded broadcast queue (bcqueuelen, bc_cutoff)
// that the caller drains with DrainBroadcast.
//
// Delivering a frame means queueing a reference to the same packet buffer on
// one of the receiver's Queues, chosen by a flow hash computed once at
// ingress (the macvtap model, BEHAVIOUR.md §6). Floods therefore share the payload,
// and the unicast path allocates nothing. Queues are bounded: a full queue
// drops and counts, so a slow port never slows the switch or its siblings.
// Every accepted frame is forwarded or counted under one DropReason.
//
// The control plane (AddPort, SetUp, SetMAC, SetMTU, SetMode, SourceMACs,
// SetLowerMTU, ...) enforces the kernel's refusals and returns *PortError
// values that wrap sentinels such as ErrAddrInUse.
//
// The package owns no file descriptors, starts no goroutines and imports no
// OS packages (a test enforces it): package bridge connects ports and the
// lower to gVisor link endpoints and runs the goroutines that drain queues.
//
// Where this core differs from the kernel, on purpose:
//   - Multicast filters are exact sets, not the kernel's 8-bit hash, so no
//     unsubscribed group leaks to a port.
//   - A full port queue counts the frame in rx_errors and queue_full but not
//     in rx_packets (the kernel counts it in both).
//   - IPv4 reassembly has a budget of its own (Options.Reassembly, the
//     kernel's 4 MiB / 3 MiB / 30 s by default) and evicts the oldest
//     datagrams past it, as kernels before 4.17 did, and each source
//     address has a share it cannot exceed (BEHAVIOUR.md §9 item 18).
//   - Frames the kernel would hand to the lower's own stack (unknown
//     unicast, unsubscribed groups) are counted as no_port / no_member; the
//     lower's stack sees them anyway through its own driver.
package vswitch
