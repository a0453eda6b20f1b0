// Package api is the macvsw daemon's control API as Go sees it: the
// types its HTTP/JSON endpoints take and return under /v1/ on the control
// socket, and a Client for them, used by the macvsw CLI, the CNI plugin
// and any runtime that drives the daemon (`macvsw run`).
//
// Every request that changes something is checked whole and applied all
// or nothing; a refusal is an *Error with the HTTP status and the
// daemon's message. AddPortFD creates a port whose frames go through a
// socket the daemon hands back over the control socket (SCM_RIGHTS): an
// unprivileged sandbox or VM monitor gets a frame FD without ever touching
// netlink or taps.
package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/macvsw/macvsw/switch/counters"
	"golang.org/x/sys/unix"
)

// DefaultSocket is where the daemon's control API listens unless its
// config says otherwise.
const DefaultSocket = "/run/macvsw/macvsw.sock"

// Port is a port as the API shows it.
type Port struct {
	Name         string   `json:"name"`
	Kind         string   `json:"kind"`      // tap, afpacket, socket
	Interface    string   `json:"interface"` // tap or AF_PACKET interface, or socket path / "handoff"
	Netns        string   `json:"netns,omitempty"`
	Origin       string   `json:"origin"` // file or api
	Owner        *Owner   `json:"owner,omitempty"`
	Mode         string   `json:"mode"`
	MAC          string   `json:"mac"`
	MACFrom      string   `json:"mac_from,omitempty"` // where the daemon took the MAC from, when the entry gave none
	MTU          uint32   `json:"mtu"`
	Up           bool     `json:"up"`      // admin state
	Link         bool     `json:"link"`    // its device is there and up (a socket: a peer is connected)
	Carrier      bool     `json:"carrier"` // passes frames: up, link, the lower up
	Queues       int      `json:"queues"`
	AllMulticast bool     `json:"allmulticast"`
	Multicast    []string `json:"multicast,omitempty"`
	SourceMACs   []string `json:"source_macs,omitempty"`
	NoDst        bool     `json:"nodst,omitempty"`
	Police       *Police  `json:"police,omitempty"`
	SpoofCheck   bool     `json:"spoofcheck,omitempty"`
	AllowedIPs   []string `json:"allowed_ips,omitempty"`
}

// Police is a port's ingress limits (the config's ports[].police); zero
// fields are no limit.
type Police struct {
	PPS        uint64 `json:"pps,omitempty"`         // frames per second
	BPS        uint64 `json:"bps,omitempty"`         // bits per second
	Burst      uint64 `json:"burst,omitempty"`       // frames
	BurstBytes uint64 `json:"burst_bytes,omitempty"` // bytes
	FloodPPS   uint64 `json:"flood_pps,omitempty"`   // broadcast and multicast frames per second
	FloodBurst uint64 `json:"flood_burst,omitempty"` // frames
}

// Owner is who asked for a port: a container runtime's container and the
// interface name it gave it (CNI's attachment), and optionally the
// network (CNI's network name) the attachment belongs to, so that one
// network's garbage collection leaves another's ports alone.
type Owner struct {
	ContainerID string `json:"container_id"`
	IfName      string `json:"ifname"`
	Network     string `json:"network,omitempty"`
}

// PortPatch is a change to a port (PATCH /v1/ports/{name}); nil and empty
// fields are left alone.
type PortPatch struct {
	Mode         *string  `json:"mode,omitempty"`
	MTU          *uint32  `json:"mtu,omitempty"`
	Up           *bool    `json:"up,omitempty"`
	MAC          *string  `json:"mac,omitempty"`
	AllMulticast *bool    `json:"allmulticast,omitempty"`
	Join         []string `json:"join,omitempty"`  // multicast groups to subscribe (ip maddr add)
	Leave        []string `json:"leave,omitempty"` // groups to unsubscribe
	QueueLen     *int     `json:"queue_len,omitempty"`
	BCQueueLen   *int     `json:"bcqueuelen,omitempty"`
	NoDst        *bool    `json:"nodst,omitempty"`
	// Police replaces the port's limits whole ({} removes them).
	Police     *Police   `json:"police,omitempty"`
	SpoofCheck *bool     `json:"spoofcheck,omitempty"`
	AllowedIPs *[]string `json:"allowed_ips,omitempty"` // addresses or prefixes; [] clears
}

// Event is a state change the daemon reports (GET /v1/events).
type Event struct {
	Time   time.Time `json:"time"`
	Port   string    `json:"port,omitempty"`
	Type   string    `json:"type"`
	Detail string    `json:"detail,omitempty"`
}

// ReloadReport is what a reload did (POST /v1/reload), port names in the
// order the reload handled them.
type ReloadReport struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"` // updated in place: the sandbox keeps its interface
	Rebuilt []string `json:"rebuilt"` // their device changed: re-created
	Failed  []string `json:"failed"`  // not applied; tried again at the next reload
	// Allow says control.allow changed (applied at once).
	Allow bool `json:"allow_changed,omitempty"`
	// Errors says why each failed port failed.
	Errors map[string]string `json:"errors,omitempty"`
}

func (r ReloadReport) String() string {
	return fmt.Sprintf("added %v removed %v changed %v rebuilt %v failed %v", r.Added, r.Removed, r.Changed, r.Rebuilt, r.Failed)
}

// Reload makes the daemon reload its config file, as SIGHUP does, and
// returns what changed. A reload refused whole is an *Error; ports that
// could not be applied are in the report's Failed and Errors.
func (c *Client) Reload(ctx context.Context) (ReloadReport, error) {
	var r ReloadReport
	return r, c.Do(ctx, "POST", "/v1/reload", nil, &r)
}

// Handoff kinds for AddPortFD: the framing of the socket handed back.
const (
	HandoffSeqpacket = "seqpacket" // one frame per message (gVisor's fdbased, QEMU -netdev dgram with an fd)
	HandoffStream    = "stream"    // QEMU's stream framing (-netdev stream,addr.type=fd)
)

// Error is a refusal from the daemon.
type Error struct {
	Status  int    // HTTP status: 400 invalid, 403 denied, 404 no such port, 409 conflict, 500
	Message string // what the daemon said
}

func (e *Error) Error() string { return e.Message }

// ErrNoDaemon wraps every error reaching the control socket.
var ErrNoDaemon = errors.New("macvsw daemon not reachable")

// Client talks to a daemon's control socket. It is safe for concurrent
// use.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the daemon listening on socket.
func NewClient(socket string) *Client {
	return &Client{socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// Socket returns the control socket's path.
func (c *Client) Socket() string { return c.socket }

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard it; an io.Writer gets it raw).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.Send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch o := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
	default:
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	return err
}

// Send sends a request and returns a successful response, whose body the
// caller closes, or an *Error, or an error wrapping ErrNoDaemon.
func (c *Client) Send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://macvsw"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNoDaemon, c.socket, errors.Unwrap(err))
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

func readError(resp *http.Response) error {
	var e struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	return &Error{Status: resp.StatusCode, Message: e.Error}
}

// Ports lists the ports.
func (c *Client) Ports(ctx context.Context) ([]Port, error) {
	var ps []Port
	return ps, c.Do(ctx, "GET", "/v1/ports", nil, &ps)
}

// Port shows one port.
func (c *Client) Port(ctx context.Context, name string) (Port, error) {
	var p Port
	return p, c.Do(ctx, "GET", "/v1/ports/"+url.PathEscape(name), nil, &p)
}

// AddPort adds a port; entry is a config file's port entry (any value that
// marshals to it: a map, a struct with the file's keys).
func (c *Client) AddPort(ctx context.Context, entry any) (Port, error) {
	var p Port
	return p, c.Do(ctx, "POST", "/v1/ports", entry, &p)
}

// DeletePort removes a port (and the tap macvsw created for it).
func (c *Client) DeletePort(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/v1/ports/"+url.PathEscape(name), nil, nil)
}

// SetPort changes a port all or nothing, on its device too.
func (c *Client) SetPort(ctx context.Context, name string, p PortPatch) (Port, error) {
	var out Port
	return out, c.Do(ctx, "PATCH", "/v1/ports/"+url.PathEscape(name), p, &out)
}

// Stats returns every counter (of one port when name is set).
func (c *Client) Stats(ctx context.Context, name string) (counters.Snapshot, error) {
	path := "/v1/stats"
	if name != "" {
		path += "/" + url.PathEscape(name)
	}
	var st counters.Snapshot
	return st, c.Do(ctx, "GET", path, nil, &st)
}

// Events returns the recent events (of one port when port is set).
func (c *Client) Events(ctx context.Context, port string) ([]Event, error) {
	var ev []Event
	return ev, c.Do(ctx, "GET", "/v1/events?port="+url.QueryEscape(port), nil, &ev)
}

// AddPortFD adds a port whose frames go through a socket pair: the daemon
// keeps one end as the port and hands the other back, returned as a file
// the caller owns. kind is HandoffSeqpacket or HandoffStream; entry is a
// port entry without a kind (name, mode, mac, mtu, ...). Closing the last
// copy of the file takes the port's link down; deleting the port closes
// the daemon's end.
//
// Protocol: POST /v1/ports?fd=KIND on a connection of its own; before its
// HTTP response the daemon sends one byte, '1' with the FD attached
// (SCM_RIGHTS) if the port was made, '0' if not.
func (c *Client) AddPortFD(ctx context.Context, entry any, kind string) (Port, *os.File, error) {
	body, err := json.Marshal(entry)
	if err != nil {
		return Port{}, nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return Port{}, nil, fmt.Errorf("%w at %s: %v", ErrNoDaemon, c.socket, err)
	}
	conn := nc.(*net.UnixConn)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req, err := http.NewRequest("POST", "http://macvsw/v1/ports?fd="+url.QueryEscape(kind), bytes.NewReader(body))
	if err != nil {
		return Port{}, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(conn); err != nil {
		return Port{}, nil, fmt.Errorf("%w at %s: %v", ErrNoDaemon, c.socket, err)
	}
	// The one byte and its FD, read alone: a buffered read would take the
	// byte and let the kernel close the FD.
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(b[:], oob)
	var f *os.File
	if err == nil && n == 1 && b[0] == '1' {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil && len(msgs) == 1 {
			if fds, perr := unix.ParseUnixRights(&msgs[0]); perr == nil && len(fds) == 1 {
				unix.CloseOnExec(fds[0])
				f = os.NewFile(uintptr(fds[0]), "macvsw-port-"+kind)
			}
		}
	}
	resp, rerr := http.ReadResponse(bufio.NewReader(conn), req)
	if rerr != nil {
		if f != nil {
			f.Close()
		}
		if err == nil {
			err = rerr
		}
		return Port{}, nil, fmt.Errorf("macvsw hand-off: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		if f != nil {
			f.Close()
		}
		return Port{}, nil, readError(resp)
	}
	var p Port
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || f == nil {
		if f != nil {
			f.Close()
		}
		return Port{}, nil, fmt.Errorf("macvsw hand-off: no FD or no port in the answer (%v)", err)
	}
	return p, f, nil
}

// OwnedPorts lists the ports made for containers whose owner matches o:
// each non-empty field of o must be equal; the zero Owner lists every
// owned port.
func (c *Client) OwnedPorts(ctx context.Context, o Owner) ([]Port, error) {
	q := url.Values{}
	q.Set("owned", "1")
	if o.ContainerID != "" {
		q.Set("container_id", o.ContainerID)
	}
	if o.IfName != "" {
		q.Set("ifname", o.IfName)
	}
	if o.Network != "" {
		q.Set("network", o.Network)
	}
	var ps []Port
	return ps, c.Do(ctx, "GET", "/v1/ports?"+q.Encode(), nil, &ps)
}

// DeleteOwned removes the ports whose owner matches o, which must name a
// container (its IfName and Network, when set, narrow the match),
// deleting their taps, and returns their names; none is not an error.
func (c *Client) DeleteOwned(ctx context.Context, o Owner) ([]string, error) {
	if o.ContainerID == "" {
		return nil, errors.New("DeleteOwned: the owner names no container")
	}
	q := url.Values{}
	q.Set("container_id", o.ContainerID)
	if o.IfName != "" {
		q.Set("ifname", o.IfName)
	}
	if o.Network != "" {
		q.Set("network", o.Network)
	}
	var out struct {
		Deleted []string `json:"deleted"`
	}
	return out.Deleted, c.Do(ctx, "DELETE", "/v1/ports?"+q.Encode(), nil, &out)
}

// Version returns the daemon's version (a cheap liveness check).
func (c *Client) Version(ctx context.Context) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	return v.Version, c.Do(ctx, "GET", "/v1/version", nil, &v)
}
