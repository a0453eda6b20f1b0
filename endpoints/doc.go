//go:build linux

// Package endpoints holds macvsw's OS-facing link endpoints: every FD and
// syscall of the data path lives here. Each endpoint is a gVisor
// stack.LinkEndpoint (and stack.GSOEndpoint) that the bridge package makes
// a switch port, or that a netstack NIC can use directly.
//
//   - Tap (NewTap, AdoptTap): a multi-queue tun/tap device with a 12-byte
//     virtio-net header and TSO/USO/checksum offloads. NewTap creates the
//     interface in a given network namespace; AdoptTap takes FDs from a
//     broker (OpenTapQueues + SendFDs / ReceiveFDs, the uml_net pattern).
//   - Packet (NewPacket): AF_PACKET sockets on an existing netdev, in one
//     PACKET_FANOUT_HASH group that ignores our own transmissions; for the
//     lower NIC and for netdev ports (a veth into a sandbox).
//   - The virtio-net header (VnetHdr), the kernel's write validation
//     (ValidateVnetWrite, VnetHdr.Check, reasons as VnetReason), conversion
//     to and from gVisor's stack.GSO, and the software fallbacks Segment
//     (TSO/USO) and FinishChecksum for receivers without offloads.
//
// What endpoints deliver: the whole Ethernet frame as a *stack.PacketBuffer
// with no header consumed, borrowed for the duration of the call, with
// pkt.GSOOptions describing a TSO super-frame or partial checksum
// (NeedsCsum, CsumOffset, L3HdrLen = csum_start minus the link header of 14
// or 18 bytes, MSS). If the attached dispatcher implements QueueDispatcher
// it gets the receive queue index too. Endpoints never filter on MAC.
// Frames the kernel would refuse from a guest (bad virtio-net header) are
// dropped and counted per VnetReason; other drops are counted per
// DropReason; Stats returns snapshots.
//
// USO: gVisor's stack.GSO has no UDP type, so a USO super-frame received
// from a tap or socket is segmented into datagrams in software on receive
// (counted as Segmented) and delivered as plain frames; endpoints never
// emit USO. UFO (IP fragmentation offload) is neither requested nor
// emitted by the kernel to us and is dropped (unsupported_gso) if a device
// sends it.
//
// Transmit: WritePackets picks queue pkt.Hash % NumQueues (WriteQueue picks
// one explicitly), writes a virtio-net header built from pkt.GSOOptions and
// the frame's views without copying, and never blocks: a full queue drops
// and counts tx_full. When the receiver cannot take an offload (no vnet
// header, offloads off, or GSO segments above its MTU) the frame is
// flattened once and Segment/FinishChecksum run in software. Frames above
// the MTU that are not GSO are dropped (oversize).
//
// Ownership and shutdown: endpoints own their FDs (queue FDs handed to
// AdoptTap or AttachFD included) and close them in Close, which is
// idempotent; a Tap created by NewTap also deletes its interface. Readers
// run only while attached: one goroutine per queue (rxLoop) reads until the
// FD is empty, then parks on Go's netpoller (pollWaiter: a dup of the FD
// registered with epoll). We measured this against gVisor's
// rawfile.Blocking*UntilStopped, which block an OS thread in ppoll with a
// stop eventfd: parking a goroutine instead lets the thread that writes a
// frame into one tap pick up the kernel's immediate answer on another
// without an OS thread wake-up (see the README's performance section).
// Attach(nil) and Close stop the waiters (a past read deadline) and wait, so no delivery
// happens after they return. An FD error takes down only its own queue
// (QueueDead, OnQueueState callback); when all queues are dead the
// SetOnCloseAction action runs.
//
// Receive mechanism for AF_PACKET: recvmmsg batches of 8 into pooled gVisor
// views (no copy; views move into the PacketBuffer). A TPACKET_V3 ring was
// not implemented: gVisor's PacketBuffer cannot wrap ring memory, so a ring
// costs one copy per frame (as fdbased's PacketMMap does), and runsc keeps
// recvmmsg for the same reason. Measured on this 2-vCPU VM (go test -run
// '^$' -bench Netns -benchtime 2s ./endpoints/, batches of 47 frames, 0
// allocs/op with RX and TX both counted): AF_PACKET veth→veth about 108k
// received frames/s at 64 and 1514 bytes (the single receiving CPU is the
// limit; about 45% of sent frames overflow the socket); tap write → kernel
// → AF_PACKET 163k/s (64 B) and 272k/s (1514 B); AF_PACKET → kernel → tap
// readers 418k/s (64 B) and 275k/s (1514 B).
//
// This package never imports the switch or bridge packages.
package endpoints
