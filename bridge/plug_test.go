package bridge

import (
	"sync"
	"testing"

	vswitch "github.com/macvsw/macvsw/switch"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// batchEP records the dispatcher it is attached to and the size of every
// batch written to it.
type batchEP struct {
	*channel.Endpoint
	mu      sync.Mutex
	d       stack.NetworkDispatcher
	batches []int
}

func (e *batchEP) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.d = d
	e.mu.Unlock()
	e.Endpoint.Attach(d)
}

func (e *batchEP) WritePackets(l stack.PacketBufferList) (int, tcpip.Error) {
	e.mu.Lock()
	e.batches = append(e.batches, l.Len())
	e.mu.Unlock()
	return l.Len(), nil
}

// TestLinkBatchDispatch: a reader's batch (BeginBatch, frames, EndBatch)
// through a port link reaches the destination endpoint as one write; the
// same frames delivered one by one are one write each.
func TestLinkBatchDispatch(t *testing.T) {
	sw := vswitch.New(vswitch.Options{LowerMAC: macL})
	lower := AttachLower(sw, channel.New(64, 1500, ""), LinkOptions{})
	defer lower.Close()
	ports := map[string]*batchEP{}
	for name, mac := range map[string]vswitch.MAC{"a": macA, "b": macB} {
		p, err := sw.AddPort(vswitch.PortConfig{Name: name, MAC: mac, Mode: vswitch.ModeBridge})
		if err != nil {
			t.Fatal(err)
		}
		ep := &batchEP{Endpoint: channel.New(64, 1500, "")}
		link := AttachPort(p, ep, LinkOptions{})
		defer link.Close()
		ports[name] = ep
	}
	a, b := ports["a"], ports["b"]
	a.mu.Lock()
	d := a.d.(BatchDispatcher)
	a.mu.Unlock()
	send := func() {
		pkt := newPkt(testFrame(macB, macA, 0x0800, "x", 100))
		d.DeliverQueuePacket(0, pkt)
		pkt.DecRef()
	}
	for i := 0; i < 4; i++ {
		send()
	}
	d.BeginBatch(0)
	for i := 0; i < 5; i++ {
		send()
	}
	d.EndBatch(0)
	b.mu.Lock()
	defer b.mu.Unlock()
	want := []int{1, 1, 1, 1, 5}
	if len(b.batches) != len(want) {
		t.Fatalf("writes to b: %v, want %v", b.batches, want)
	}
	for i := range want {
		if b.batches[i] != want[i] {
			t.Fatalf("writes to b: %v, want %v", b.batches, want)
		}
	}
}
