//go:build linux

// Package endpoints holds macvsw's OS-facing link endpoints: every FD and
// syscall of the data path lives here. Each endpoint is a gVisor
// stack.LinkEndpoint (and stack.GSOEndpoint) that the bridge package makes
// a switch port, or that a netstack NIC can use directly, and implements
// the optional capabilities package bridge looks for (queue and link
// notifications, filters, carrier, device MAC and MTU, counters).
//
// Every kind is built on one multi-queue FD engine (queues.go): per queue
// an FD, its life state, counters, a reader goroutine parked on Go's
// netpoller and a writer lock; queue pick, failure handling, stats and an
// ordered Close are written once. Kinds differ only in two small
// strategies, a reader (rx.go: io_uring batches of readv, readv,
// recvmmsg, or ring.go's TPACKET_V3 ring) and a writer (tx.go: io_uring
// batches of writev, writev, sendmmsg), and in their control plane. A tap
// is a character device with no recvmmsg or sendmmsg, so its queues batch
// through a small synchronous io_uring (uring.go) and fall back to one
// system call per frame where the kernel refuses it. Readers that take
// several frames at once bracket their delivery (BatchDispatcher), so a
// switch can write each destination once per batch:
//
//   - Tap (tap.go; NewTap, AdoptTap): a multi-queue tun/tap device with a
//     12-byte virtio-net header and TSO/USO/checksum offloads. NewTap
//     creates the interface in a given network namespace; AdoptTap takes
//     FDs from a broker (OpenTapQueues + SendFDs / ReceiveFDs, the uml_net
//     pattern). It sets the device's carrier, MAC and MTU.
//   - Packet (packet.go; NewPacket): AF_PACKET sockets on an existing
//     netdev, in one PACKET_FANOUT_HASH group that ignores our own
//     transmissions; for the lower NIC and for netdev ports (a veth into a
//     sandbox, a VM's tap). It follows its interface by name (linkwatch.go)
//     and opens a fresh socket set when it comes back.
//   - The virtio-net header (vnethdr.go: VnetHdr, the kernel's write
//     validation ValidateVnetWrite with reasons as VnetReason, conversion
//     to and from gVisor's stack.GSO) and the software fallbacks
//     (segment.go: Segment for TSO/USO, FinishChecksum) for receivers
//     without offloads.
//
// What endpoints deliver: the whole Ethernet frame as a *stack.PacketBuffer
// with no header consumed, borrowed for the duration of the call, with
// pkt.GSOOptions describing a TSO super-frame or partial checksum
// (NeedsCsum, CsumOffset, L3HdrLen = csum_start minus the link header of 14
// or 18 bytes, MSS). If the attached dispatcher implements QueueDispatcher
// it gets the receive queue index too. Endpoints never filter on MAC.
// Frames the kernel would refuse from a guest (bad virtio-net header) are
// dropped and counted per VnetReason, and so are GSO frames with a
// gso_size below MinGSOSize, which the kernel takes but which would cost
// up to one segment per byte (gso_size_min); other drops are counted per
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
// flattened once and Segment/FinishChecksum run in software, never into
// more than MaxGSOSegments segments (beyond that: gso_segments). Frames above
// the MTU that are not GSO go only to a receiver that negotiated GSO (as
// the kernel, which does not check the MTU on receive); others drop them
// (oversize).
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
// With SetBusyPoll (a port's busy_poll) a reader first retries the empty
// FD for that long, yielding to the scheduler between tries.
// Attach(nil) and Close stop the waiters (a past read deadline) and wait, so no delivery
// happens after they return. An FD error takes down only its own queue
// (QueueDead, OnQueueState callback); when all queues are dead the
// SetOnCloseAction action runs.
//
// Receive mechanism for AF_PACKET (PacketOptions.Rx): recvmmsg, the
// default, or a TPACKET_V3 ring per socket (PacketRxRing). recvmmsg reads
// batches of 8 straight into pooled gVisor views, which then move into the
// PacketBuffer (no copy in user space). The ring has the kernel fill
// blocks (256 KiB, 16 per socket) that it hands over when full or after
// retire_blk_tov (1 ms, the kernel's minimum); a PacketBuffer cannot wrap
// ring memory, so each frame is copied once into a pooled view (as
// fdbased's PacketMMap does), and the block goes back after its frames are
// delivered. Measured in one run on this 2-vCPU VM (AMD EPYC, Linux 6.18,
// other jobs sharing the machine), Packet on vetha writing batches of 47
// frames by sendmmsg to Packet on vethb, medians of 6, all differences
// p<=0.004 except 1514 B rx-pps (p=0.09); cpu is the whole process's
// (sender, and the kernel's receive work in its threads, included) per
// received frame:
//
//	go test -run '^$' -bench NetnsPacket -benchtime 2s -count 6 ./endpoints/ > rx.txt
//	benchstat -col /rx rx.txt
//
//	                       recvmmsg                      ring
//	64 B    rx/s, cpu      304k, 5.2 µs, 0% drop         358k, 3.0 µs, 0% drop
//	1514 B  rx/s, cpu      276k, 6.4 µs, 2.9% drop       299k, 3.6 µs, 0% drop
//	TSO 64 KB super-frames  80k, 23.8 µs, 20% drop        97k, 15.2 µs, 5% drop
//	one 64 B frame at a time, delay    14 µs             1002 µs
//
// With the whole process on one CPU (taskset -c 1, -benchtime 1s, an
// overload where the receiver is starved) the ring won at 64 B (266k vs
// 211k/s) but lost at 1514 B (99k vs 135k/s) and TSO (3.1k vs 6.3k/s).
// The ring costs 36-44% less CPU per frame (no syscall per 8 frames, the
// kernel frees each skb as it copies it), so with sender and receiver
// sharing 2 CPUs 18% more 64 B frames and 21% more super-frames arrive.
// But it cannot hand over a frame before its block closes: at low and
// moderate rates every frame waits for the retire timer, a 1 ms floor on
// one-way delay against 14 µs, seventy times slower for the ping, ARP and
// request/response traffic a switch mostly carries, and a floor no ring
// size removes. recvmmsg therefore stays the default (PacketRxDefault);
// PacketRxRing is for bulk-only lowers where CPU per frame matters more
// than delay. Earlier tap measurements (-bench NetnsTap, batches of 47):
// tap write → kernel → AF_PACKET 163k/s (64 B) and 272k/s (1514 B);
// AF_PACKET → kernel → tap readers 418k/s (64 B) and 275k/s (1514 B).
//
// This package never imports the switch or bridge packages.
package endpoints
