package runsclab

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/macvsw/macvsw/endpoints"
	"github.com/macvsw/macvsw/tests/netlab"
)

// wireStats counts what crossed a tapWire in one direction.
type wireStats struct {
	frames, bytes   atomic.Uint64
	maxFrame        atomic.Uint64 // largest frame, virtio-net header excluded
	gso, needsCsum  atomic.Uint64 // frames whose header says GSO / partial checksum
	dropped, errors atomic.Uint64
	firstErr        atomic.Pointer[string]
}

func (s *wireStats) fail(err error) {
	s.errors.Add(1)
	msg := err.Error()
	s.firstErr.CompareAndSwap(nil, &msg)
}

func (s *wireStats) String() string {
	first := ""
	if p := s.firstErr.Load(); p != nil {
		first = " (first: " + *p + ")"
	}
	return fmt.Sprintf("%d frames, %d bytes, largest %d, %d GSO, %d NEEDS_CSUM, %d I/O errors%s",
		s.frames.Load(), s.bytes.Load(), s.maxFrame.Load(), s.gso.Load(), s.needsCsum.Load(), s.errors.Load(), first)
}

// tapWire is a cable between two taps: it copies every frame read from one
// tap's queue FD to the other's, virtio-net header and all (both taps have
// the same header size and offloads), and counts them. It stands in for a
// switch port so a runsc sandbox can sit on a plain kernel tap.
type tapWire struct {
	a, b   *os.File
	ab, ba wireStats
	wg     sync.WaitGroup
}

// newTapWire opens tap dev in nsA and in nsB (IFF_VNET_HDR, 10-byte
// header) and, if offloads, asks the kernel for checksum and TSO offloads
// on both (TUNSETOFFLOAD), as macvsw's tap ports do: the kernel then hands
// the reader super-frames instead of segmenting them first.
func newTapWire(nsA, nsB, dev string, offloads bool) (*tapWire, error) {
	open := func(ns string) (*os.File, error) {
		fds, _, err := endpoints.OpenTapQueues(netlab.Path(ns), dev, 1, true)
		if err != nil {
			return nil, err
		}
		off := 0
		if offloads {
			off = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN
		}
		if err := unix.IoctlSetInt(fds[0], unix.TUNSETOFFLOAD, off); err != nil {
			unix.Close(fds[0])
			return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
		// Non-blocking: os.File parks reads on the netpoller, and Close
		// wakes them.
		return os.NewFile(uintptr(fds[0]), ns+"/"+dev), nil
	}
	w := &tapWire{}
	var err error
	if w.a, err = open(nsA); err != nil {
		return nil, err
	}
	if w.b, err = open(nsB); err != nil {
		w.a.Close()
		return nil, err
	}
	w.wg.Add(2)
	go w.copy(w.a, w.b, &w.ab)
	go w.copy(w.b, w.a, &w.ba)
	return w, nil
}

func (w *tapWire) copy(from, to *os.File, st *wireStats) {
	defer w.wg.Done()
	buf := make([]byte, endpoints.VnetHdrSize+65536+256)
	for {
		n, err := from.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			st.fail(fmt.Errorf("read: %w", err))
			continue
		}
		h, ok := endpoints.ParseVnetHdr(buf[:n])
		if !ok {
			st.dropped.Add(1)
			continue
		}
		frame := uint64(n - endpoints.VnetHdrSize)
		st.frames.Add(1)
		st.bytes.Add(frame)
		for {
			m := st.maxFrame.Load()
			if frame <= m || st.maxFrame.CompareAndSwap(m, frame) {
				break
			}
		}
		if h.IsGSO() {
			st.gso.Add(1)
		}
		if h.NeedsCsum() {
			st.needsCsum.Add(1)
		}
		if _, err := to.Write(buf[:n]); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			st.fail(fmt.Errorf("write %d bytes: %w", n, err))
		}
	}
}

// Close closes both taps (which deletes them) and waits for the copiers.
func (w *tapWire) Close() {
	w.a.Close()
	w.b.Close()
	w.wg.Wait()
}

// TestNetnsRunscTap: a sandbox whose namespace holds a kernel tap (no
// veth): the tap's other side is this test, wired to a tap in the peer
// namespace. Ping, nc both ways and a 2 s iperf3 each way must work, with
// the taps asking for offloads (like macvsw's ports) and without. It logs
// what runsc chose for the tap (host GSO with PACKET_VNET_HDR or not) and
// what the wire saw: super-frames (GSO) reach the port only when it took
// offloads.
func TestNetnsRunscTap(t *testing.T) {
	for _, offloads := range []bool{true, false} {
		t.Run(fmt.Sprintf("offloads=%v", offloads), func(t *testing.T) {
			bin, lab := newLab(t)
			sb, err := lab.AddNS("sb")
			if err != nil {
				t.Fatal(err)
			}
			peer, err := lab.AddNS("peer")
			if err != nil {
				t.Fatal(err)
			}
			w, err := newTapWire(sb, peer, "eth0", offloads)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Close) // after the sandbox's cleanup, before the lab's
			if err := lab.IP(sb, "link", "set", "eth0", "address", netlab.SandboxMAC(0)); err != nil {
				t.Fatal(err)
			}
			address(t, lab, sb, "eth0", sbIP4, sbIP6)
			address(t, lab, peer, "eth0", peerIP4, peerIP6)
			if out, err := lab.Exec(sb, "ethtool", "-k", "eth0"); err == nil {
				for _, l := range []string{"generic-segmentation-offload", "tcp-segmentation-offload", "tx-checksumming"} {
					t.Logf("tap ethtool: %s", grepLine(out, l))
				}
			}

			s := StartTB(t, Config{Runsc: bin.Path, NetNS: sb})
			l := describeNIC(t, s, lab, sb, netlab.SandboxMAC(0))
			t.Logf("tap: runsc host GSO (PACKET_VNET_HDR) %v, software GSO %v, gso max %d", l.HostGSO, l.SoftwareGSO, l.GSOMaxSize)
			checkReach(t, s, lab, peer)
			up := iperf(t, s, lab, peer, peerIP4, 2, false)
			t.Logf("tap iperf3 sandbox -> peer: %.2f Gbit/s, %d retransmits", up.Gbps, up.Retransmits)
			down := iperf(t, s, lab, peer, peerIP4, 2, true)
			t.Logf("tap iperf3 peer -> sandbox: %.2f Gbit/s, %d retransmits", down.Gbps, down.Retransmits)
			t.Logf("wire sandbox -> peer: %s", &w.ab)
			t.Logf("wire peer -> sandbox: %s", &w.ba)
			if up.Gbps <= 0 || down.Gbps <= 0 {
				t.Errorf("no throughput: up %+v down %+v", up, down)
			}
			if !offloads && (w.ab.gso.Load() != 0 || w.ba.gso.Load() != 0) {
				t.Errorf("GSO frames reached a tap without offloads")
			}
		})
	}
}

func grepLine(out, sub string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return sub + ": ?"
}
