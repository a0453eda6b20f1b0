package bridge

import (
	"github.com/macvsw/macvsw/switch/counters"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// Optional capabilities of endpoints. A Switch works with any
// stack.LinkEndpoint; when an endpoint also implements one of these
// interfaces, the Switch uses it. Package endpoints implements them
// (taps, AF_PACKET, socket ports); a custom endpoint implements the ones
// that make sense for it. Every callback an endpoint is given must not
// block and runs on the endpoint's goroutine.

// MultiQueue is implemented by endpoints with several queues (taps,
// AF_PACKET fanout groups). A port gets as many switch queues as the
// endpoint has, unless its config says otherwise, and each switch queue is
// written to the endpoint queue of the same index (QueueWriter).
type MultiQueue interface {
	NumQueues() int
}

// QueueNotifier is implemented by endpoints whose queues can die and come
// back (a tap queue FD that fails, a socket reopened). The Switch installs
// a callback that takes a dead queue out of the port's flow-hash
// selection and puts it back when it returns, as TUNSETQUEUE does.
type QueueNotifier interface {
	SetQueueStateFunc(f func(q int, up bool))
}

// LinkNotifier is implemented by endpoints that follow their device: an
// AF_PACKET endpoint its interface (gone, down, back, MTU, MAC), a tap
// what the sandbox does to its interface, a socket port its peer. The
// Switch installs a callback with the device's state: for the lower it
// becomes the lower's carrier, MTU and MAC; for a port, whether the port
// passes frames (vswitch.Switch.SetLinkUp) and, for a MAC or MTU the
// sandbox set, a port change (refused changes are undone on the device).
type LinkNotifier interface {
	SetLinkFunc(f func(up bool, mtu uint32, mac tcpip.LinkAddress))
}

// Filterer is implemented by lower endpoints that can receive less than
// everything (AF_PACKET without promiscuous mode): the Switch keeps their
// unicast and multicast memberships and all-multicast setting equal to
// what the ports need (BEHAVIOUR.md §1.4).
type Filterer interface {
	SetUnicastFilter(macs [][6]byte) error
	SetMulticastFilter(groups [][6]byte) error
	SetAllMulti(on bool) error
}

// CarrierSetter is implemented by endpoints whose device can show the
// port's carrier to the other side (a tap: NO-CARRIER in the sandbox while
// the port is down or the lower is).
type CarrierSetter interface {
	SetCarrier(on bool) error
}

// DeviceConfigurer is implemented by endpoints whose device has its own
// MAC and MTU that must match the port's (a tap in a sandbox; the lower,
// whose MAC a passthru port sets). The Switch applies a port's MAC and MTU
// to it when they change, and undoes the port change if the device
// refuses.
type DeviceConfigurer interface {
	SetDeviceMAC(mac tcpip.LinkAddress) error
	SetDeviceMTU(mtu uint32) error
}

// StatsReporter is implemented by endpoints with counters of their own;
// they appear in Switch.Stats.
type StatsReporter interface {
	Stats() counters.Endpoint
}
