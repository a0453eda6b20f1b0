// Package bridge runs macvsw's forwarding core (package vswitch) over
// gVisor link endpoints: it is the API for embedding a whole switch in a
// program, and the layer the macvsw daemon is built on.
//
// # Running a switch
//
// New starts a Switch; AttachLower gives it an uplink and AddPort a port,
// each backed by any stack.LinkEndpoint:
//
//	sw := bridge.New(bridge.Options{})
//	defer sw.Close()
//	lower, _ := endpoints.NewPacket(endpoints.PacketOptions{Interface: "eth1"})
//	sw.AttachLower(lower, bridge.LowerOptions{})
//	tap, _ := endpoints.NewTap(endpoints.TapOptions{Name: "eth0", NetNS: "/var/run/netns/web"})
//	sw.AddPort(vswitch.PortConfig{Name: "web", Mode: vswitch.ModeBridge}, tap, bridge.PortOptions{})
//
// AddNetstack puts an in-process gVisor netstack on a port instead (see
// the package example). The Switch owns the endpoints it is given and
// closes them with their port.
//
// An endpoint does more than move frames when it implements the optional
// interfaces in caps.go, and the Switch uses whatever it finds: a lower
// that reports its link (LinkNotifier) gives the switch its carrier, MTU
// and MAC, and every port's carrier follows; a lower that filters
// (Filterer) gets the unicast and multicast memberships the ports need; a
// port whose device can die queue by queue (QueueNotifier) has dead queues
// taken out of its flow-hash selection; a port's device that has its own
// MAC and MTU (DeviceConfigurer) is kept equal to the port, in both
// directions; a device that can show carrier (CarrierSetter) shows the
// port's. The reassembly timer and the broadcast queue's drainer run as
// long as the Switch does. An embedder writes no glue.
//
// Port state lives in the core: Port.Core().Config() reads it, and
// Switch.Update changes it all or nothing, on the device too.
// Switch.Stats returns every counter as a counters.Snapshot.
//
// # Links
//
// Underneath, AttachPort and AttachLower connect one endpoint to the core:
// the link is the endpoint's NetworkDispatcher, so every frame the
// endpoint receives is handed to vswitch.Switch.Transmit (or Receive, for
// the lower), and the core's queues for the port are written to the
// endpoint's WritePackets, or WriteQueue for multi-queue endpoints. The
// goroutine that queues a frame for an idle queue writes it out itself; a
// drainer goroutine per queue takes over when writes back up. With
// LinkOptions.Manual no goroutine starts and the owner calls Pump, which
// makes whole-switch tests deterministic. NewNetstackPort is the endpoint
// that gives a netstack a NIC on a port; frames from netstack are queued,
// never forwarded inline, because netstack answers ARP and ICMP inside a
// delivery.
//
// The package never opens file descriptors: package endpoints does, and
// the two meet only through gVisor's interfaces and the ones in caps.go.
package bridge
