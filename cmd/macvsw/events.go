package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/macvsw/macvsw/bridge"
)

// eventLogSize is how many events the daemon keeps for GET /v1/events.
const eventLogSize = 512

// eventLog keeps the last events the switch and the daemon reported (a
// port's device gone or back, the lower down or up, a refused change, a
// reload), for operators and tests; each is logged too.
type eventLog struct {
	log *slog.Logger

	mu   sync.Mutex
	ring []bridge.Event
	next uint64 // sequence number of the next event
}

func newEventLog(log *slog.Logger) *eventLog { return &eventLog{log: log} }

func (l *eventLog) add(e bridge.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.Lock()
	if len(l.ring) == eventLogSize {
		copy(l.ring, l.ring[1:])
		l.ring = l.ring[:eventLogSize-1]
	}
	l.ring = append(l.ring, e)
	l.next++
	l.mu.Unlock()
	l.log.Info("event", "type", e.Type, "port", e.Port, "detail", e.Detail)
}

// list returns the kept events, oldest first, of one port when port is
// set.
func (l *eventLog) list(port string) []bridge.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []bridge.Event{}
	for _, e := range l.ring {
		if port == "" || e.Port == port {
			out = append(out, e)
		}
	}
	return out
}
