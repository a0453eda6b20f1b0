package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The control API: HTTP/JSON under /v1/ on a unix socket.
//
//	GET    /v1/ports                     list ports (?owned=1, ?container_id=, ?ifname=, ?network=: owned ones)
//	POST   /v1/ports                     add a port (body: a config port entry, JSON, and an optional "owner")
//	DELETE /v1/ports?container_id=ID     remove a container's ports (&ifname=, &network= narrow it)
//	GET    /v1/ports/{name}              show one port
//	PATCH  /v1/ports/{name}              {"mode","mtu","up","mac","allmulticast","join","leave"}
//	DELETE /v1/ports/{name}              remove a port
//	POST   /v1/ports/{name}/macaddr      {"op":"add|del|flush|set","macs":[...]}
//	GET    /v1/ports/{name}/capture      pcap stream of the port's frames
//	GET    /v1/stats, /v1/stats/{name}   counters
//	GET    /v1/config                    the running config (YAML)
//	POST   /v1/reload                    reload the config file; the answer says what changed
//	GET    /v1/version
//
// Errors are {"error": message} with a 4xx or 5xx status. The socket is
// mode 0600, or 0660 owned by control.group; every peer's credentials
// (SO_PEERCRED) are checked on accept as well.

type apiServer struct {
	d    *daemon
	down chan<- struct{}
	log  *slog.Logger
	path string
	srv  *http.Server
	gid  int // control.group's gid, -1 when none

	capMu     sync.Mutex
	capturing map[string]int // running captures per port
}

// startAPI listens on the control socket and serves until close.
func startAPI(d *daemon, c config.Control, log *slog.Logger, down chan<- struct{}) (*apiServer, error) {
	a := &apiServer{d: d, down: down, log: log, path: c.Socket, gid: -1, capturing: map[string]int{}}
	if c.Group != "" {
		g, err := user.LookupGroup(c.Group)
		if err != nil {
			if g, err = user.LookupGroupId(c.Group); err != nil {
				return nil, fmt.Errorf("control.group %q: %w", c.Group, err)
			}
		}
		a.gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.MkdirAll(filepath.Dir(c.Socket), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if conn, err := net.Dial("unix", c.Socket); err == nil {
		conn.Close()
		return nil, fmt.Errorf("control socket %s: another macvsw is listening", c.Socket)
	}
	if err := endpoints.RemoveStaleSocket(c.Socket); err != nil { // a stale socket from a crash
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", c.Socket)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if a.gid >= 0 {
		mode = 0o660
		if err := os.Chown(c.Socket, -1, a.gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	if err := os.Chmod(c.Socket, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	a.srv = &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, ConnContext: withCred}
	go a.srv.Serve(&peerListener{Listener: ln, allow: a.allowed, log: log})
	log.Info("control API listening", "socket", c.Socket, "mode", fmt.Sprintf("%04o", mode))
	return a, nil
}

func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
	_ = endpoints.RemoveStaleSocket(a.path)
}

// allowed applies the peer check: root, our own uid, or a member of
// control.group.
func (a *apiServer) allowed(cred *unix.Ucred) bool {
	if cred.Uid == 0 || int(cred.Uid) == os.Geteuid() {
		return true
	}
	if a.gid < 0 {
		return false
	}
	if int(cred.Gid) == a.gid {
		return true
	}
	return inGroups(int(cred.Pid), a.gid)
}

// inGroups reads a process's supplementary groups (SO_PEERCRED carries only
// the primary one).
func inGroups(pid, gid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
			for _, g := range strings.Fields(rest) {
				if g == strconv.Itoa(gid) {
					return true
				}
			}
		}
	}
	return false
}

// peerListener refuses connections whose peer fails allow, answering with
// a 403 so that clients see why.
type peerListener struct {
	net.Listener
	allow func(*unix.Ucred) bool
	log   *slog.Logger
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil && l.allow(cred) {
			return c, nil
		}
		l.log.Warn("control API: peer refused", "uid", credUID(cred), "err", err)
		c.SetWriteDeadline(time.Now().Add(time.Second))
		body := `{"error":"permission denied: peer is not root, the daemon's user or in control.group"}`
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		c.Close()
	}
}

func credUID(c *unix.Ucred) int {
	if c == nil {
		return -1
	}
	return int(c.Uid)
}

func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix socket")
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// apiError is an error with an HTTP status.
type apiError struct {
	status int
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Errorf(format, args...)}
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, vswitch.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, vswitch.ErrExists), errors.Is(err, vswitch.ErrAddrInUse), errors.Is(err, vswitch.ErrPassthru):
		return http.StatusConflict
	case errors.Is(err, vswitch.ErrAddrNotAvail), errors.Is(err, vswitch.ErrMTU), errors.Is(err, vswitch.ErrNotSource),
		errors.Is(err, vswitch.ErrInvalid), errors.Is(err, vswitch.ErrUnknownMode), errors.Is(err, vswitch.ErrBadMAC),
		errors.Is(err, config.ErrSyntax), errors.Is(err, config.ErrUnknownKey), errors.Is(err, config.ErrInvalidValue),
		errors.Is(err, config.ErrMissing), errors.Is(err, config.ErrConflict):
		return http.StatusBadRequest
	case errors.Is(err, config.ErrDuplicate), errors.Is(err, endpoints.ErrInterfaceExists), errors.Is(err, errDeviceBusy):
		return http.StatusConflict
	case errors.Is(err, endpoints.ErrNotNetNS), errors.Is(err, fs.ErrNotExist):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

type handler func(w http.ResponseWriter, r *http.Request) (any, error)

func (a *apiServer) wrap(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(w, r)
		if err != nil {
			status := statusOf(err)
			if status >= 500 {
				a.log.Error("control API", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeJSON(w, status, map[string]string{"error": err.Error()})
			return
		}
		if v != nil {
			writeJSON(w, http.StatusOK, v)
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decode reads a JSON body strictly: unknown fields are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

func (a *apiServer) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", a.wrap(func(http.ResponseWriter, *http.Request) (any, error) {
		return map[string]string{"version": version}, nil
	}))
	mux.HandleFunc("GET /v1/ports", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		return a.d.portViews(ownerQuery(r)), nil
	}))
	mux.HandleFunc("DELETE /v1/ports", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		o := ownerQuery(r)
		if o == nil || o.ContainerID == "" {
			return nil, badRequest("DELETE /v1/ports needs ?container_id=ID[&ifname=IF][&network=NET]")
		}
		names, err := a.d.removeOwned(*o, a.policyOf(r).name)
		if err != nil {
			return nil, err
		}
		return map[string]any{"deleted": names}, nil
	}))
	mux.HandleFunc("POST /v1/ports", a.wrap(a.addPort))
	mux.HandleFunc("GET /v1/ports/{name}", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		return a.d.portView(r.PathValue("name"))
	}))
	mux.HandleFunc("PATCH /v1/ports/{name}", a.wrap(a.setPort))
	mux.HandleFunc("DELETE /v1/ports/{name}", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		if err := a.policyOf(r).name(r.PathValue("name")); err != nil {
			return nil, err
		}
		if err := a.d.removePortLive(r.PathValue("name")); err != nil {
			return nil, err
		}
		return map[string]string{"deleted": r.PathValue("name")}, nil
	}))
	mux.HandleFunc("POST /v1/ports/{name}/macaddr", a.wrap(a.macaddr))
	mux.HandleFunc("GET /v1/ports/{name}/capture", a.capture)
	mux.HandleFunc("GET /v1/stats", a.wrap(func(http.ResponseWriter, *http.Request) (any, error) {
		return a.d.stats("")
	}))
	mux.HandleFunc("GET /v1/stats/{name}", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		return a.d.stats(r.PathValue("name"))
	}))
	mux.HandleFunc("POST /v1/down", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		if err := a.policyOf(r).rootOnly("POST /v1/down"); err != nil {
			return nil, err
		}
		select {
		case a.down <- struct{}{}:
		default:
		}
		return map[string]string{"status": "stopping: every port removed, every tap macvsw created deleted"}, nil
	}))
	mux.HandleFunc("POST /v1/reload", a.wrap(func(w http.ResponseWriter, r *http.Request) (any, error) {
		if err := a.policyOf(r).rootOnly("POST /v1/reload"); err != nil {
			return nil, err
		}
		return a.handleReload(w, r)
	}))
	mux.HandleFunc("GET /v1/events", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		return a.d.events.list(r.URL.Query().Get("port")), nil
	}))
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		b, err := a.d.runningConfig().Marshal()
		if err != nil {
			writeJSON(w, 500, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(b)
	})
	mux.HandleFunc("/", a.wrap(func(_ http.ResponseWriter, r *http.Request) (any, error) {
		return nil, &apiError{http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path)}
	}))
	return mux
}

func (a *apiServer) addPort(w http.ResponseWriter, r *http.Request) (any, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, badRequest("request body: %v", err)
	}
	if kind := r.URL.Query().Get("fd"); kind != "" {
		a.handoff(w, body, kind, a.policyOf(r))
		return nil, nil
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, badRequest("request body is not a JSON object: %v", err)
	}
	// "owner" is the API's, not a config key: whoever asks for a port
	// for a container says whose it is.
	var owner *portOwner
	if raw, ok := probe["owner"]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var o api.Owner
		if err := dec.Decode(&o); err != nil || o.ContainerID == "" || o.IfName == "" {
			return nil, badRequest("owner: want {\"container_id\": ..., \"ifname\": ..., \"network\": ... (optional)} (%v)", err)
		}
		owner = &o
		delete(probe, "owner")
		body, _ = json.Marshal(probe)
	}
	name, err := a.d.addPortLive(body, owner, a.policyOf(r).entry)
	if err != nil {
		return nil, err
	}
	return a.d.portView(name)
}

// ownerQuery reads ?container_id=ID&ifname=IF&network=NET, or ?owned=1
// for every owned port (nil when none is there).
func ownerQuery(r *http.Request) *api.Owner {
	q := r.URL.Query()
	if q.Get("container_id") == "" && q.Get("ifname") == "" && q.Get("network") == "" && q.Get("owned") == "" {
		return nil
	}
	return &api.Owner{ContainerID: q.Get("container_id"), IfName: q.Get("ifname"), Network: q.Get("network")}
}

// ownerMatches reports whether a port's owner (nil: not owned) matches the
// filter f: every non-empty field of f is equal.
func ownerMatches(f api.Owner, o *api.Owner) bool {
	return o != nil && (f.ContainerID == "" || f.ContainerID == o.ContainerID) &&
		(f.IfName == "" || f.IfName == o.IfName) && (f.Network == "" || f.Network == o.Network)
}

func (a *apiServer) setPort(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.policyOf(r).name(r.PathValue("name")); err != nil {
		return nil, err
	}
	var p api.PortPatch
	if err := decode(r, &p); err != nil {
		return nil, err
	}
	if err := a.d.setPort(r.PathValue("name"), p); err != nil {
		return nil, err
	}
	return a.d.portView(r.PathValue("name"))
}

// handoff answers POST /v1/ports?fd=KIND: it adds a port on a socket pair
// and hands the other end back on this connection, as api.AddPortFD
// expects: one byte first ('1' with the FD attached, '0' without), then
// the HTTP response.
func (a *apiServer) handoff(w http.ResponseWriter, body []byte, kind string, pol *policy) {
	var probe map[string]any
	var name string
	fd := -1
	err := json.Unmarshal(body, &probe)
	if err != nil {
		err = badRequest("request body is not a JSON object: %v", err)
	} else {
		name, fd, err = a.d.addPortHandoff(body, kind, pol.entry)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		if fd >= 0 {
			unix.Close(fd)
		}
		writeJSON(w, 500, map[string]string{"error": "connection cannot hand over an FD"})
		return
	}
	conn, _, herr := hj.Hijack()
	if herr != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return
	}
	defer conn.Close()
	uc, _ := conn.(*net.UnixConn)
	status, v := http.StatusOK, any(nil)
	if err == nil && uc != nil {
		_, _, werr := uc.WriteMsgUnix([]byte{'1'}, unix.UnixRights(fd), nil)
		unix.Close(fd)
		if werr != nil {
			a.log.Warn("hand-off: could not send the FD; removing the port", "port", name, "err", werr)
			a.d.removePortLive(name)
			return
		}
		v, err = a.d.portView(name)
	} else {
		if fd >= 0 {
			unix.Close(fd)
			a.d.removePortLive(name)
		}
		conn.Write([]byte{'0'})
	}
	if err != nil {
		status, v = statusOf(err), map[string]string{"error": err.Error()}
	}
	b, _ := json.Marshal(v)
	fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(b), b)
}

type macaddrReq struct {
	Op   string   `json:"op"`
	MACs []string `json:"macs"`
}

func (a *apiServer) macaddr(_ http.ResponseWriter, r *http.Request) (any, error) {
	if err := a.policyOf(r).name(r.PathValue("name")); err != nil {
		return nil, err
	}
	var req macaddrReq
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	op, err := vswitch.ParseSourceOp(req.Op)
	if err != nil {
		return nil, badRequest("op %q: want add, del, flush or set", req.Op)
	}
	macs := make([]vswitch.MAC, len(req.MACs))
	for i, s := range req.MACs {
		m, err := vswitch.ParseMAC(s)
		if err != nil {
			return nil, badRequest("macs[%d]: %v", i, err)
		}
		macs[i] = m
	}
	if (op == vswitch.SourceAdd || op == vswitch.SourceDel) && len(macs) == 0 {
		return nil, badRequest("op %s needs at least one MAC", req.Op)
	}
	if err := a.d.sourceMACs(r.PathValue("name"), op, macs); err != nil {
		return nil, err
	}
	return a.d.portView(r.PathValue("name"))
}

// Capture bounds: each capture buffers at most captureBuffer bytes of
// frames (truncated to its snap length) that its client has not read yet;
// what does not fit is dropped and counted. A port has at most
// maxCaptures at once.
const (
	captureBuffer = 4 << 20
	maxCaptures   = 8
	// captureSmall is the size of the recycled copies (captureBufs) that
	// frames up to it are copied into: every frame at a standard MTU, so
	// a capture allocates per frame only for super-frames.
	captureSmall = 2048
)

// captureBufs recycles the captureSmall-byte copies between the data path
// that fills them and the capture that writes them out.
var captureBufs = sync.Pool{New: func() any { return new([captureSmall]byte) }}

// capture streams the port's frames as pcap (LINKTYPE_ETHERNET) until the
// client goes away. ?count=N stops after N frames, ?seconds=N after N
// seconds, ?snaplen=N keeps the first N bytes of each frame (default
// 65535). Several captures may run on one port; each has its own bounded
// buffer. The trailers X-Macvsw-Captured and X-Macvsw-Dropped say how
// many frames were written and how many the buffer dropped.
func (a *apiServer) capture(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := a.policyOf(r).capture(name); err != nil {
		writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
		return
	}
	q := r.URL.Query()
	num := func(key string, def, lo, hi int) (int, error) {
		v := q.Get(key)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, badRequest("%s=%q: want an integer in %d..%d", key, v, lo, hi)
		}
		return n, nil
	}
	count, err1 := num("count", 0, 0, 1<<30)
	secs, err2 := num("seconds", 0, 0, 1<<20)
	snap, err3 := num("snaplen", 65535, 64, pcapSnapLen)
	if err := errors.Join(err1, err2, err3); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	a.capMu.Lock()
	if a.capturing[name] >= maxCaptures {
		a.capMu.Unlock()
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": fmt.Sprintf("port %q already has %d captures running", name, maxCaptures)})
		return
	}
	a.capturing[name]++
	a.capMu.Unlock()
	defer func() {
		a.capMu.Lock()
		if a.capturing[name]--; a.capturing[name] == 0 {
			delete(a.capturing, name)
		}
		a.capMu.Unlock()
	}()
	type rec struct {
		ts    time.Time
		orig  int
		data  []byte
		small *[captureSmall]byte // data's memory when recycled
	}
	frames := make(chan rec, 4096)
	var buffered atomic.Int64
	var dropped atomic.Uint64
	stop, err := a.d.sniff(name, func(_ bool, pkt *stack.PacketBuffer) {
		size := pkt.Size()
		n := min(size, snap)
		if buffered.Add(int64(n)) > captureBuffer {
			buffered.Add(-int64(n))
			dropped.Add(1)
			return
		}
		r := rec{ts: time.Now(), orig: size}
		if n <= captureSmall {
			r.small = captureBufs.Get().(*[captureSmall]byte)
			r.data = r.small[:n]
		} else {
			r.data = make([]byte, n)
		}
		vswitch.CopyFrame(pkt, 0, r.data)
		select {
		case frames <- r:
		default:
			buffered.Add(-int64(n))
			dropped.Add(1)
			if r.small != nil {
				captureBufs.Put(r.small)
			}
		}
	})
	if err != nil {
		writeJSON(w, statusOf(err), map[string]string{"error": err.Error()})
		return
	}
	captured := 0
	defer func() {
		stop()
		w.Header().Set("X-Macvsw-Captured", strconv.Itoa(captured))
		w.Header().Set("X-Macvsw-Dropped", strconv.FormatUint(dropped.Load(), 10))
		if d := dropped.Load(); d > 0 {
			a.log.Warn("capture dropped frames its client did not read in time", "port", name, "dropped", d, "captured", captured)
		}
	}()
	w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
	w.Header().Set("Trailer", "X-Macvsw-Captured, X-Macvsw-Dropped")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	pw := newPcapWriter(w, snap)
	if err := pw.header(); err != nil {
		return
	}
	if fl != nil {
		fl.Flush()
	}
	var timeout <-chan time.Time
	if secs > 0 {
		t := time.NewTimer(time.Duration(secs) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-timeout:
			return
		case f := <-frames:
			buffered.Add(-int64(len(f.data)))
			err := pw.record(f.ts, f.orig, f.data)
			if f.small != nil {
				captureBufs.Put(f.small)
			}
			if err != nil {
				return
			}
			captured++
			if count > 0 && captured >= count {
				return
			}
			if len(frames) == 0 && fl != nil {
				fl.Flush()
			}
		}
	}
}

// pcapWriter writes the classic libpcap format: what tcpdump, tshark and
// Wireshark read (pcap-savefile(5)).
type pcapWriter struct {
	w    io.Writer
	snap int
	buf  bytes.Buffer
}

const pcapSnapLen = 262144

func newPcapWriter(w io.Writer, snap int) *pcapWriter { return &pcapWriter{w: w, snap: snap} }

func (p *pcapWriter) header() error {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], uint32(p.snap))
	binary.LittleEndian.PutUint32(h[20:], 1) // LINKTYPE_ETHERNET
	_, err := p.w.Write(h[:])
	return err
}

// record writes one frame: data is its first bytes (at most the snap
// length), orig its whole length.
func (p *pcapWriter) record(ts time.Time, orig int, data []byte) error {
	var h [16]byte
	n := min(len(data), p.snap)
	binary.LittleEndian.PutUint32(h[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(h[4:], uint32(ts.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
	binary.LittleEndian.PutUint32(h[12:], uint32(orig))
	p.buf.Reset()
	p.buf.Write(h[:])
	p.buf.Write(data[:n])
	_, err := p.w.Write(p.buf.Bytes())
	return err
}
