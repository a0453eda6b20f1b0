// Package bridge connects macvsw's forwarding core (package vswitch) to
// gVisor's link layer.
//
//   - AttachPort makes any stack.LinkEndpoint a switch port: the link is the
//     endpoint's NetworkDispatcher, so every frame the endpoint receives is
//     handed to Switch.Transmit, and one goroutine per port queue drains
//     the switch's queue into the endpoint's WritePackets (or WriteQueue,
//     for multi-queue endpoints such as taps).
//   - AttachLower does the same for the uplink: frames from it go to
//     Switch.Receive, the lower's queues drain into it, and one goroutine
//     drains the broadcast queue.
//   - NewNetstackPort gives an in-process gVisor netstack a NIC on a switch
//     port. Frames from netstack are queued, never forwarded inline, because
//     netstack answers ARP and ICMP synchronously inside a delivery.
//
// Links own their goroutines: Close stops them and waits. With
// Options.Manual no goroutine is started and the owner calls Pump, which
// makes whole-switch tests deterministic.
//
// The package keeps no state of its own beyond links; it never opens file
// descriptors (package endpoints does).
package bridge
