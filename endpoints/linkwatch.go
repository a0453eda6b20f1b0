//go:build linux

package endpoints

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkState is what a link watcher knows of an interface, followed by name
// in its network namespace.
type LinkState struct {
	Exists  bool             // an interface of that name exists
	Index   int              // its ifindex (a new one after delete and re-create)
	AdminUp bool             // IFF_UP: `ip link set NAME up`
	LowerUp bool             // IFF_LOWER_UP: carrier
	MTU     uint32           // IP MTU
	MAC     net.HardwareAddr // its address
}

// Up reports whether the interface can pass frames: it exists, is admin up
// and has carrier.
func (s LinkState) Up() bool { return s.Exists && s.AdminUp && s.LowerUp }

func (s LinkState) equal(o LinkState) bool {
	return s.Exists == o.Exists && s.Index == o.Index && s.AdminUp == o.AdminUp &&
		s.LowerUp == o.LowerUp && s.MTU == o.MTU && bytes.Equal(s.MAC, o.MAC)
}

func stateOf(l netlink.Link) LinkState {
	a := l.Attrs()
	return LinkState{
		Exists:  true,
		Index:   a.Index,
		AdminUp: a.RawFlags&unix.IFF_UP != 0,
		LowerUp: a.RawFlags&unix.IFF_LOWER_UP != 0,
		MTU:     uint32(a.MTU),
		MAC:     append(net.HardwareAddr(nil), a.HardwareAddr...),
	}
}

// linkWatcher follows one interface by name through rtnetlink link
// notifications in the interface's namespace (like `ip monitor link`),
// and calls onChange with the old and new state whenever it changes: up,
// down, MTU, MAC, deleted, created again with a new ifindex. The kernel
// drops notifications when the watcher's socket overflows (ENOBUFS), which
// ends a subscription: the watcher then subscribes again and reads the
// interface's state afresh, so no change is lost for good.
//
// onChange runs on the watcher's goroutine, one call at a time, and must
// not call Close.
type linkWatcher struct {
	ns       *netNS
	name     string
	log      *slog.Logger
	onChange func(old, new LinkState)
	// bufSize, when set, is the notification socket's receive buffer
	// (tests use a small one to provoke overflows).
	bufSize int

	mu    sync.Mutex
	state LinkState

	stop chan struct{}
	wg   sync.WaitGroup
}

// resubscribeDelay spaces attempts to subscribe again after a failure.
const resubscribeDelay = 100 * time.Millisecond

// watchLink starts following name in namespace ns. It reads the current
// state before it returns.
func watchLink(ns *netNS, name string, log *slog.Logger, bufSize int, onChange func(old, new LinkState)) (*linkWatcher, error) {
	w := &linkWatcher{ns: ns, name: name, log: log, onChange: onChange, bufSize: bufSize, stop: make(chan struct{})}
	ch, done, err := w.subscribe()
	if err != nil {
		return nil, err
	}
	st, err := w.read()
	if err != nil {
		close(done)
		return nil, err
	}
	w.state = st
	w.wg.Add(1)
	go w.watchLoop(ch, done)
	return w, nil
}

// State returns the last state seen.
func (w *linkWatcher) State() LinkState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// subscribe opens a notification subscription in the namespace.
func (w *linkWatcher) subscribe() (chan netlink.LinkUpdate, chan struct{}, error) {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var errMu sync.Mutex
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case <-done:
				return // we closed it
			default:
			}
			errMu.Lock()
			defer errMu.Unlock()
			w.log.Warn("link watch: notification error, subscribing again", "interface", w.name, "err", err)
		},
		ReceiveBufferSize: w.bufSize,
	}
	if w.ns != nil && w.ns.fd >= 0 {
		h := netns.NsHandle(w.ns.fd)
		opts.Namespace = &h
	}
	if err := netlink.LinkSubscribeWithOptions(ch, done, opts); err != nil {
		return nil, nil, fmt.Errorf("watch %q: subscribe to link updates: %w", w.name, err)
	}
	return ch, done, nil
}

// read asks for the interface's current state.
func (w *linkWatcher) read() (LinkState, error) {
	h, err := w.ns.handle()
	if err != nil {
		return LinkState{}, err
	}
	defer h.Close()
	l, err := h.LinkByName(w.name)
	if err != nil {
		if _, ok := err.(netlink.LinkNotFoundError); ok {
			return LinkState{}, nil
		}
		return LinkState{}, fmt.Errorf("watch %q: %w", w.name, err)
	}
	return stateOf(l), nil
}

// watchLoop applies notifications until Close; when a subscription ends
// (overflow), it subscribes again and resynchronizes.
func (w *linkWatcher) watchLoop(ch chan netlink.LinkUpdate, done chan struct{}) {
	defer w.wg.Done()
	for {
		w.drain(ch)
		close(done)
		for range ch {
			// The subscription's goroutine ends after closing ch.
		}
		select {
		case <-w.stop:
			return
		default:
		}
		for {
			var err error
			ch, done, err = w.subscribe()
			if err == nil {
				var st LinkState
				if st, err = w.read(); err == nil {
					w.apply(st)
					break
				}
				close(done)
			}
			w.log.Warn("link watch: subscribe again", "interface", w.name, "err", err)
			select {
			case <-w.stop:
				return
			case <-time.After(resubscribeDelay):
			}
		}
	}
}

// drain applies updates until ch closes (overflow) or Close.
func (w *linkWatcher) drain(ch chan netlink.LinkUpdate) {
	for {
		select {
		case <-w.stop:
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			if u.Link == nil {
				continue
			}
			a := u.Attrs()
			cur := w.State()
			switch {
			case u.Header.Type == unix.RTM_DELLINK && a.Index == cur.Index:
				w.apply(LinkState{})
			case u.Header.Type == unix.RTM_NEWLINK && a.Name == w.name:
				w.apply(stateOf(u.Link))
			case u.Header.Type == unix.RTM_NEWLINK && a.Index == cur.Index && cur.Exists:
				// Renamed away: as good as gone.
				w.apply(LinkState{})
			}
		}
	}
}

func (w *linkWatcher) apply(st LinkState) {
	w.mu.Lock()
	old := w.state
	w.state = st
	w.mu.Unlock()
	if !old.equal(st) && w.onChange != nil {
		w.onChange(old, st)
	}
}

// Close stops following the interface and waits for the watcher. No
// onChange call runs after it returns.
func (w *linkWatcher) Close() {
	close(w.stop)
	w.wg.Wait()
}
