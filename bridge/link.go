package bridge

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/switch/counters"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// DefaultBatch is how many frames one WritePackets call carries: gVisor's
// fdbased sends up to 47 per sendmmsg; a power of two near it is as good.
const DefaultBatch = 64

// LinkOptions configures a link. The zero value is sensible.
type LinkOptions struct {
	// Batch is the most frames handed to the endpoint in one write.
	Batch int
	// Manual starts no goroutines: the owner calls Pump.
	Manual bool
	// Logger receives link state changes; nil discards.
	Logger *slog.Logger
}

func (o *LinkOptions) defaults() {
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// QueueWriter is implemented by multi-queue endpoints (taps, AF_PACKET
// sockets): WriteQueue writes the frames to queue q. A link uses it when the
// endpoint has one, so the queue the switch chose is the queue written.
type QueueWriter interface {
	WriteQueue(q int, pkts stack.PacketBufferList) (int, tcpip.Error)
}

// QueueDispatcher is what a link gives its endpoint as NetworkDispatcher:
// multi-queue endpoints call DeliverQueuePacket with the queue a frame was
// read from. It borrows pkt, which holds the whole Ethernet frame.
type QueueDispatcher interface {
	stack.NetworkDispatcher
	DeliverQueuePacket(queue int, pkt *stack.PacketBuffer)
}

// BatchDispatcher is a QueueDispatcher that an endpoint's reader may tell
// where a batch of frames read together starts and ends (BeginBatch and
// EndBatch around their DeliverQueuePacket calls, on the queue's receive
// goroutine). A link's dispatchers are BatchDispatchers: the switch holds
// the writes a batch causes until it ends, so each destination takes the
// batch in one write. The endpoints package's readers use it.
type BatchDispatcher interface {
	QueueDispatcher
	BeginBatch(queue int)
	EndBatch(queue int)
}

// queueSource is the switch side of a link: a set of queues to drain.
type queueSource interface {
	NumQueues() int
	Queue(i int) *vswitch.Queue
}

// Sniffer sees every frame that passes a port link while it is set: toPort
// frames the switch delivers to the endpoint, the others frames the
// endpoint sent into the switch. It borrows pkt, runs on the data path and
// must not block (copy and queue, or drop and count).
type Sniffer func(toPort bool, pkt *stack.PacketBuffer)

// sniffers is a port link's set of sniffers: copy on write, read without a
// lock on the data path.
type sniffers struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*Sniffer]
}

// add installs s and returns the function that removes it.
func (ss *sniffers) add(s Sniffer) (remove func()) {
	p := &s
	ss.mu.Lock()
	var cur []*Sniffer
	if l := ss.list.Load(); l != nil {
		cur = *l
	}
	next := append(slices.Clone(cur), p)
	ss.list.Store(&next)
	ss.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			ss.mu.Lock()
			defer ss.mu.Unlock()
			next := slices.DeleteFunc(slices.Clone(*ss.list.Load()), func(q *Sniffer) bool { return q == p })
			if len(next) == 0 {
				ss.list.Store(nil)
				return
			}
			ss.list.Store(&next)
		})
	}
}

// each calls every sniffer for each of pkts.
func (ss *sniffers) each(toPort bool, pkts ...*stack.PacketBuffer) {
	if l := ss.list.Load(); l != nil {
		for _, pkt := range pkts {
			for _, f := range *l {
				(*f)(toPort, pkt)
			}
		}
	}
}

// drainer moves frames from a switch queue set to an endpoint.
type drainer struct {
	sniff sniffers

	ep    stack.LinkEndpoint
	qw    QueueWriter
	src   queueSource
	batch int

	stop chan struct{}
	wg   sync.WaitGroup

	written     atomic.Uint64
	writeErrors atomic.Uint64

	pumpMu sync.Mutex
	list   stack.PacketBufferList // Pump's scratch, guarded by pumpMu
}

func newDrainer(ep stack.LinkEndpoint, src queueSource, opts LinkOptions) *drainer {
	d := &drainer{ep: ep, src: src, batch: opts.Batch, stop: make(chan struct{})}
	d.qw, _ = ep.(QueueWriter)
	return d
}

// start installs a writer on every queue, so the goroutine that queues a
// frame for an idle queue writes it to the endpoint at once, and starts one
// goroutine per queue that takes over when writes back up.
func (d *drainer) start() {
	for i := 0; i < d.src.NumQueues(); i++ {
		i := i
		d.src.Queue(i).SetWriter(func(l *stack.PacketBufferList) { d.write(i, *l) }, d.batch)
		d.wg.Add(1)
		go d.drainLoop(d.src.Queue(i))
	}
}

// drainLoop writes out queue q whenever frames wait in it that no producer
// is writing, until the link is closed or the queue is (its port removed).
func (d *drainer) drainLoop(q *vswitch.Queue) {
	defer d.wg.Done()
	for {
		q.Drain()
		if q.Closed() {
			return
		}
		select {
		case <-q.Ready():
		case <-d.stop:
			return
		}
	}
}

// write hands a batch to the endpoint; the caller keeps (and releases) the
// references.
func (d *drainer) write(queue int, list stack.PacketBufferList) {
	d.sniff.each(true, list.AsSlice()...)
	var n int
	var err tcpip.Error
	if d.qw != nil {
		n, err = d.qw.WriteQueue(queue, list)
	} else {
		n, err = d.ep.WritePackets(list)
	}
	_ = err // the endpoint counts its own reasons; we count what it refused
	d.written.Add(uint64(n))
	if rest := list.Len() - n; rest > 0 {
		d.writeErrors.Add(uint64(rest))
	}
}

// pump drains every queue once, synchronously.
func (d *drainer) pump() int {
	d.pumpMu.Lock()
	defer d.pumpMu.Unlock()
	total := 0
	for i := 0; i < d.src.NumQueues(); i++ {
		q := d.src.Queue(i)
		for q.Dequeue(&d.list, d.batch) > 0 {
			total += d.list.Len()
			d.write(i, d.list)
			d.list.Reset()
		}
	}
	return total
}

// close removes the writers (waiting for writes in progress) and stops the
// goroutines; afterwards the endpoint is never written again.
func (d *drainer) close() {
	for i := 0; i < d.src.NumQueues(); i++ {
		d.src.Queue(i).SetWriter(nil, 0)
	}
	close(d.stop)
	d.wg.Wait()
}

func (d *drainer) stats() counters.Link {
	return counters.Link{Written: d.written.Load(), WriteErrors: d.writeErrors.Load()}
}

// PortLink attaches a link endpoint to a switch port.
type PortLink struct {
	sw   *vswitch.Switch
	port *vswitch.Port
	ep   stack.LinkEndpoint
	d    *drainer
	once sync.Once
}

var _ BatchDispatcher = (*portDispatcher)(nil)

// portDispatcher is the endpoint's dispatcher: what it receives, the port
// sends into the switch.
type portDispatcher struct {
	plugs
	sw    *vswitch.Switch
	port  *vswitch.Port
	sniff *sniffers
}

// plugs holds a dispatcher's per-queue switch plugs: a reader that
// delivers a batch (BeginBatch, frames, EndBatch) has the switch hold the
// writes its frames cause until the batch ends, so each destination gets
// them in one write. Queue i's plug is touched only by queue i's receive
// goroutine.
type plugs struct {
	p [vswitch.MaxQueues + 1]*vswitch.Plug // by queue + 1 (-1: no queue)
}

// BeginBatch implements endpoints.BatchDispatcher.
func (ps *plugs) BeginBatch(queue int) {
	if i := queue + 1; i >= 0 && i < len(ps.p) {
		if ps.p[i] == nil {
			ps.p[i] = new(vswitch.Plug)
		}
		ps.p[i].Begin()
	}
}

// EndBatch implements endpoints.BatchDispatcher.
func (ps *plugs) EndBatch(queue int) {
	if pl := ps.plug(queue); pl != nil {
		pl.End()
	}
}

// plug returns queue's plug (nil when it has none; a Plug not begun
// holds nothing).
func (ps *plugs) plug(queue int) *vswitch.Plug {
	if i := queue + 1; i >= 0 && i < len(ps.p) {
		return ps.p[i]
	}
	return nil
}

// DeliverNetworkPacket implements stack.NetworkDispatcher. It borrows pkt.
func (d *portDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.DeliverQueuePacket(-1, pkt)
}

// DeliverQueuePacket implements QueueDispatcher. It borrows pkt.
func (d *portDispatcher) DeliverQueuePacket(queue int, pkt *stack.PacketBuffer) {
	d.sniff.each(false, pkt)
	pl := d.plug(queue)
	d.sw.TransmitPlugged(d.port, pkt, queue, pl)
	if w := d.port.Throttle(); w > 0 {
		// The port is far over its limit: pace its reader, but not the
		// frames it already sent.
		if pl != nil {
			pl.Flush()
		}
		time.Sleep(w)
	}
}

// DeliverLinkPacket implements stack.NetworkDispatcher; a switch port has no
// packet sockets of its own.
func (*portDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// AttachPort connects ep to port p: frames ep receives enter the switch as
// sent by p, and frames the switch delivers to p are written to ep. The
// endpoint must hand the dispatcher whole Ethernet frames (its link header
// may be consumed or not: the switch reads the raw bytes). The link does not
// own ep; Close detaches it.
func AttachPort(p *vswitch.Port, ep stack.LinkEndpoint, opts LinkOptions) *PortLink {
	opts.defaults()
	l := &PortLink{sw: p.Switch(), port: p, ep: ep, d: newDrainer(ep, p, opts)}
	ep.Attach(&portDispatcher{sw: l.sw, port: p, sniff: &l.d.sniff})
	if !opts.Manual {
		l.d.start()
	}
	return l
}

// Port returns the switch port.
func (l *PortLink) Port() *vswitch.Port { return l.port }

// Pump synchronously writes every frame waiting in the port's queues to the
// endpoint and returns how many it took (Manual links).
func (l *PortLink) Pump() int { return l.d.pump() }

// Stats returns what the link handed to its endpoint.
func (l *PortLink) Stats() counters.Link { return l.d.stats() }

// AddSniffer starts copying the port's frames to s, next to any other
// sniffer, and returns the function that stops it. When that returns, s
// is no longer called by new frames; a call already in progress may
// still finish.
func (l *PortLink) AddSniffer(s Sniffer) (remove func()) { return l.d.sniff.add(s) }

// Close detaches the endpoint (no more frames from it) and stops the
// drainers. Frames still queued stay in the port's queues until the port is
// removed. Idempotent.
func (l *PortLink) Close() {
	l.once.Do(func() {
		l.ep.Attach(nil)
		l.d.close()
	})
}

// LowerLink attaches a link endpoint as the switch's lower.
type LowerLink struct {
	sw   *vswitch.Switch
	ep   stack.LinkEndpoint
	d    *drainer
	once sync.Once
	stop chan struct{}
	wg   sync.WaitGroup
	opts LinkOptions
}

var _ BatchDispatcher = (*lowerDispatcher)(nil)

type lowerDispatcher struct {
	plugs
	sw *vswitch.Switch
}

// DeliverNetworkPacket implements stack.NetworkDispatcher. It borrows pkt.
func (d *lowerDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.sw.Receive(pkt, -1)
}

// DeliverQueuePacket implements QueueDispatcher. It borrows pkt.
func (d *lowerDispatcher) DeliverQueuePacket(queue int, pkt *stack.PacketBuffer) {
	d.sw.ReceivePlugged(pkt, queue, d.plug(queue))
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (*lowerDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// AttachLower connects ep as the switch's uplink: frames ep receives enter
// with Switch.Receive, frames for the wire are written to ep, and a goroutine
// drains the broadcast queue. The link does not own ep.
func AttachLower(sw *vswitch.Switch, ep stack.LinkEndpoint, opts LinkOptions) *LowerLink {
	opts.defaults()
	l := &LowerLink{sw: sw, ep: ep, d: newDrainer(ep, sw.Lower(), opts), stop: make(chan struct{}), opts: opts}
	ep.Attach(&lowerDispatcher{sw: sw})
	if !opts.Manual {
		l.d.start()
		l.wg.Add(1)
		go l.broadcastLoop()
	}
	return l
}

// broadcastLoop drains the broadcast queue (the kernel's bc work item).
func (l *LowerLink) broadcastLoop() {
	defer l.wg.Done()
	for {
		for l.sw.DrainBroadcast(l.opts.Batch) > 0 {
		}
		select {
		case <-l.sw.BroadcastReady():
		case <-l.stop:
			return
		}
	}
}

// Pump synchronously writes every frame queued for the wire to the endpoint
// and returns how many it took. It does not drain the broadcast queue
// (call Switch.DrainBroadcast).
func (l *LowerLink) Pump() int { return l.d.pump() }

// Stats returns what the link handed to its endpoint.
func (l *LowerLink) Stats() counters.Link { return l.d.stats() }

// Close detaches the endpoint and stops the goroutines. Idempotent.
func (l *LowerLink) Close() {
	l.once.Do(func() {
		l.ep.Attach(nil)
		close(l.stop)
		l.wg.Wait()
		l.d.close()
	})
}

// QueueStateFunc returns a callback for an endpoint's queue events
// (endpoints' OnQueueState): a queue that goes down is detached from the
// port's flow-hash selection, so frames go to the live queues, and it is
// attached again when it comes back, as TUNSETQUEUE does on a macvtap.
// Events for queues the port does not have are ignored.
func QueueStateFunc(p *vswitch.Port) func(q int, up bool) {
	sw := p.Switch()
	return func(q int, up bool) {
		if q < 0 || q >= p.NumQueues() {
			return
		}
		if up {
			_ = sw.AttachQueue(p, q) // already attached: nothing to do
		} else {
			_ = sw.DetachQueue(p, q) // already detached: nothing to do
		}
	}
}
