package main

import (
	"fmt"
	"net"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Socket ports: QEMU's -netdev stream and dgram on unix sockets the config
// names, and socket pairs handed over the control socket.

// openSocket opens a socket port's endpoint from its config entry.
func (d *daemon) openSocket(pc config.Port) (stack.LinkEndpoint, stateDevice, error) {
	so := pc.Socket
	path := so.Listen
	if path == "" {
		path = so.Connect
	}
	if other := d.deviceUser("socket", endpoints.NetNSID{}, path); other != "" {
		return nil, stateDevice{}, fmt.Errorf("socket %s: %w: port %q uses it", path, errDeviceBusy, other)
	}
	kind := endpoints.SocketStream
	if so.Type == config.SocketDgram {
		kind = endpoints.SocketDgram
	}
	mac, mtu := pc.MAC, uint32(pc.MTU)
	if mtu == 0 {
		_, mtu, _ = d.sw.Core().LowerState()
	}
	s, err := endpoints.NewSocket(endpoints.SocketOptions{
		Kind: kind, Listen: so.Listen, Connect: so.Connect, Peer: so.Peer,
		MAC: net.HardwareAddr(mac[:]), MTU: mtu, Logger: d.log,
	})
	if err != nil {
		return nil, stateDevice{}, err
	}
	return s, stateDevice{Kind: "socket", Ifname: path}, nil
}

// addPortHandoff adds a port on a fresh socket pair of the given framing
// and returns the other end for the caller to hand over. Such a port
// lives as long as the daemon and its peer: it is not restored after a
// restart (its socket is gone).
func (d *daemon) addPortHandoff(entry []byte, kind string, check func(*config.Port) error) (string, int, error) {
	pc, err := config.ParseHandoffPort("request", entry)
	if err != nil {
		return "", -1, err
	}
	if err := check(&pc); err != nil {
		return "", -1, err
	}
	typ, sk := unix.SOCK_SEQPACKET, endpoints.SocketSeqpacket
	switch kind {
	case api.HandoffSeqpacket:
	case api.HandoffStream:
		typ, sk = unix.SOCK_STREAM, endpoints.SocketStream
	default:
		return "", -1, badRequest("fd=%q: want %s or %s", kind, api.HandoffSeqpacket, api.HandoffStream)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	mac, mtu := pc.MAC, uint32(pc.MTU)
	if mtu == 0 {
		_, mtu, _ = d.sw.Core().LowerState()
	}
	var hw net.HardwareAddr
	if !mac.IsZero() {
		hw = mac[:]
	}
	ep, err := endpoints.NewSocketFD(fds[0], sk, hw, mtu, d.log)
	if err != nil {
		unix.Close(fds[1])
		return "", -1, err
	}
	d.ctlMu.Lock()
	defer d.ctlMu.Unlock()
	if d.sw.Port(pc.Name) != nil {
		ep.Close()
		unix.Close(fds[1])
		return "", -1, fmt.Errorf("port %q: %w", pc.Name, errPortExists)
	}
	if err := d.addEndpoint(pc, originAPI, nil, ep, stateDevice{Kind: "handoff", Ifname: kind}); err != nil {
		ep.Close()
		unix.Close(fds[1])
		return "", -1, err
	}
	if err := d.saveState(); err != nil {
		d.log.Warn("saving the state", "err", err)
	}
	return pc.Name, fds[1], nil
}
