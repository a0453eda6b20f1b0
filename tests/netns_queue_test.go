package tests

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/macvsw/macvsw/bridge"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
	"github.com/macvsw/macvsw/tests/netlab"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
)

const udpSender = `
import socket, sys
dst, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 20000 + i))
    s.sendto(tag.encode(), (dst, 5555))
    s.close()
`

// udpReceiver counts the distinct flows (source ports) that delivered
// the tag, printing the count each time it grows, and exits once it has
// n. It never times out by itself: the test decides how long to wait,
// from when the sender is done, so a slow start on a loaded machine
// cannot pass for lost frames.
const udpReceiver = `
import socket, sys
n, tag = int(sys.argv[1]), sys.argv[2].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 5555))
seen = set()
print("ready", flush=True)
while len(seen) < n:
    d, a = s.recvfrom(100)
    if d == tag and a[1] not in seen:
        seen.add(a[1])
        print(len(seen), flush=True)
`

// flowsSettle bounds the wait, after the sender is done, for datagrams
// still in flight through the switch; it passes only when frames are lost.
const flowsSettle = 10 * time.Second

// flows sends n UDP datagrams from n source ports in ns from to dst in ns
// to, and returns how many distinct flows arrived: all of them as soon as
// they are in, or what arrived within settle after the sender finished.
func flows(t *testing.T, lab *netlab.Lab, from, to, dst string, n int, tag string, settle time.Duration) int {
	t.Helper()
	var out syncBuffer
	rcv, err := lab.Start(to, &out, &out, "python3", "-c", udpReceiver, fmt.Sprint(n), tag)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { rcv.Wait(); close(done) }()
	// However flows ends (t.Fatal included), the receiver is gone and
	// waited for before it returns: the lab never waits for it twice.
	defer func() {
		select {
		case <-done:
		default:
			rcv.Process.Kill()
			<-done
		}
	}()
	if !waitFor(30*time.Second, func() bool { return strings.HasPrefix(out.String(), "ready\n") }) {
		t.Fatalf("receiver not ready after 30 s: %q", out.String())
	}
	if _, err := lab.Exec(from, "python3", "-c", udpSender, dst, fmt.Sprint(n), tag); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(settle):
		rcv.Process.Kill()
		<-done
	}
	got := 0
	for _, l := range strings.Fields(strings.TrimPrefix(out.String(), "ready\n")) {
		fmt.Sscanf(l, "%d", &got)
	}
	return got
}

// TestNetnsQueueFDLoss runs the switch in process with a 4-queue tap port
// whose FDs the test opened (as a broker would), kills one queue FD under
// the endpoint, and checks that the other queues and the other port keep
// forwarding every flow, and that a new FD brings the queue back.
//
//	[ns A] eth0 (4 queues) ── macvsw (bridge) ── eth0 [ns B]
func TestNetnsQueueFDLoss(t *testing.T) {
	requireNetns(t, "python3")
	lab := netlab.New("mvs")
	t.Cleanup(func() { lab.Close() })
	nsA, err := lab.AddNS("qa")
	if err != nil {
		t.Fatal(err)
	}
	nsB, err := lab.AddNS("qb")
	if err != nil {
		t.Fatal(err)
	}
	macA, macB := netlab.SandboxMAC(0), netlab.SandboxMAC(1)
	fds, _, err := endpoints.OpenTapQueues(netlab.Path(nsA), "eth0", 4, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.IPs(nsA, "link set eth0 address "+macA, "addr add "+netlab.SandboxIP4(0)+"/24 dev eth0",
		"link set eth0 up", "neigh add "+netlab.SandboxIP4(1)+" lladdr "+macB+" dev eth0 nud permanent"); err != nil {
		t.Fatal(err)
	}
	var events sync.Map // queue -> last state
	var onQueue atomic.Pointer[func(int, bool)]
	hwA, _ := net.ParseMAC(macA)
	tapA, err := endpoints.AdoptTap(fds, endpoints.TapOptions{MAC: hwA, MTU: 1500, OnQueueState: func(q int, up bool) {
		if f := onQueue.Load(); f != nil {
			(*f)(q, up)
		}
		events.Store(q, up)
	}})
	if err != nil {
		t.Fatal(err)
	}
	hwB, _ := net.ParseMAC(macB)
	tapB, err := endpoints.NewTap(endpoints.TapOptions{Name: "eth0", NetNS: netlab.Path(nsB), MAC: hwB, MTU: 1500,
		Addresses: []string{netlab.SandboxIP4(1) + "/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.IPs(nsB, "neigh add "+netlab.SandboxIP4(0)+" lladdr "+macA+" dev eth0 nud permanent"); err != nil {
		t.Fatal(err)
	}

	sw := vswitch.New(vswitch.Options{LowerMAC: vswitch.MAC{2, 0, 0, 0, 0, 0x10}})
	wire := channel.New(16, 1500, "")
	lower := bridge.AttachLower(sw, wire, bridge.LinkOptions{})
	var vmA, vmB vswitch.MAC
	copy(vmA[:], hwA)
	copy(vmB[:], hwB)
	pA, err := sw.AddPort(vswitch.PortConfig{Name: "a", Mode: vswitch.ModeBridge, MAC: vmA, Queues: 4})
	if err != nil {
		t.Fatal(err)
	}
	pB, err := sw.AddPort(vswitch.PortConfig{Name: "b", Mode: vswitch.ModeBridge, MAC: vmB})
	if err != nil {
		t.Fatal(err)
	}
	qs := bridge.QueueStateFunc(pA)
	onQueue.Store(&qs)
	linkA := bridge.AttachPort(pA, tapA, bridge.LinkOptions{})
	linkB := bridge.AttachPort(pB, tapB, bridge.LinkOptions{})
	t.Cleanup(func() {
		linkA.Close()
		linkB.Close()
		tapA.Close()
		tapB.Close()
		lower.Close()
		sw.Close()
		wire.Close()
	})

	const n = 40
	ipA, ipB := netlab.SandboxIP4(0), netlab.SandboxIP4(1)
	if got := flows(t, lab, nsB, nsA, ipA, n, "before", flowsSettle); got != n {
		t.Fatalf("before: %d of %d flows B->A", got, n)
	}
	perQueue := func() []uint64 {
		var v []uint64
		for _, q := range pA.Stats().Queues {
			v = append(v, q.Packets)
		}
		return v
	}
	before := perQueue()
	if before[1] == 0 {
		t.Fatalf("no flow of %d used queue 1 (%v): the test proves nothing", n, before)
	}

	// Queue 1's FD is replaced by /dev/null under the endpoint, which still
	// owns the FD number: the tap queue is gone, the endpoint sees a
	// failing FD.
	devnull, err := unix.Open("/dev/null", unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup3(devnull, fds[1], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(devnull)
	// The endpoint notices on its next read or write of that queue; nudge
	// it with traffic until it does.
	for i := 0; ; i++ {
		if up, ok := events.Load(1); ok && !up.(bool) {
			break
		}
		if i == 50 {
			t.Fatal("queue 1's failure was never reported")
		}
		flows(t, lab, nsA, nsB, ipB, 8, fmt.Sprintf("nudge%d", i), time.Second)
	}
	// Frames queued for queue 1 until its failure was reported are its;
	// from then on it must get none.
	before = perQueue()
	if got := flows(t, lab, nsB, nsA, ipA, n, "after", flowsSettle); got != n {
		t.Errorf("after losing queue 1: %d of %d flows B->A", got, n)
	}
	if got := flows(t, lab, nsA, nsB, ipB, n, "back", flowsSettle); got != n {
		t.Errorf("after losing queue 1: %d of %d flows A->B", got, n)
	}
	after := perQueue()
	if after[1] != before[1] {
		t.Errorf("detached queue 1 still got frames: %v -> %v", before, after)
	}

	// A new FD for the same tap brings a queue back.
	nfds, _, err := endpoints.OpenTapQueues(netlab.Path(nsA), "eth0", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	q, err := tapA.AttachFD(nfds[0])
	if err != nil {
		t.Fatal(err)
	}
	if up, _ := events.Load(q); up != true {
		t.Errorf("queue %d not reported up after AttachFD", q)
	}
	if got := flows(t, lab, nsB, nsA, ipA, n, "again", flowsSettle); got != n {
		t.Errorf("after AttachFD: %d of %d flows B->A", got, n)
	}
	if s := tapA.Stats(); s.Queues[q].State != endpoints.QueueUp.String() {
		t.Errorf("queue %d state %v", q, s.Queues[q].State)
	}
}
