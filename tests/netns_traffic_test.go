package tests

import (
	"strings"
	"testing"

	"github.com/macvsw/macvsw/tests/netlab"
)

// avgRxFrame is the average size of the frames interface eth0 in ns
// received since the counters were last read as (bytes0, packets0).
func avgRxFrame(t *testing.T, lab *netlab.Lab, ns string, bytes0, pkts0 uint64) (float64, uint64, uint64) {
	t.Helper()
	b, err := lab.LinkStat(ns, "eth0", "rx_bytes")
	if err != nil {
		t.Fatal(err)
	}
	p, err := lab.LinkStat(ns, "eth0", "rx_packets")
	if err != nil {
		t.Fatal(err)
	}
	if p == pkts0 {
		return 0, b, p
	}
	return float64(b-bytes0) / float64(p-pkts0), b, p
}

// TestNetnsIperf moves iperf3 TCP over IPv4 and IPv6 between two tap-port
// sandboxes (bridge mode), between a sandbox and the LAN host, and from a
// sandbox on an AF_PACKET port (a veth) to a tap sandbox, and checks that
// with offloads on, TSO super-frames cross the switch unsegmented: the
// receiving tap's average frame is far above the MTU.
func TestNetnsIperf(t *testing.T) {
	requireNetns(t, "iperf3")
	if testing.Short() {
		t.Skip("moves traffic for several seconds")
	}
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}, {Mode: "bridge", Kind: "afpacket"}})
	lab := m.Lab
	for _, tc := range []struct {
		name, server, client, dst string
		v6, checkGSO              bool
	}{
		{"sandbox to sandbox v4", m.Sandboxes[1], m.Sandboxes[0], netlab.SandboxIP4(1), false, true},
		{"sandbox to sandbox v6", m.Sandboxes[1], m.Sandboxes[0], netlab.SandboxIP6(1), true, true},
		{"sandbox to LAN host v4", m.Topo.Host, m.Sandboxes[0], netlab.HostIP4, false, false},
		{"LAN host to sandbox v6", m.Sandboxes[0], m.Topo.Host, netlab.SandboxIP6(0), true, false},
		// A sandbox on a veth (as runsc sends: 64 KiB TSO frames with
		// partial checksums) to a tap sandbox: the super-frames cross whole.
		{"veth sandbox to tap sandbox v4", m.Sandboxes[1], m.Sandboxes[2], netlab.SandboxIP4(1), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, b0, p0 := avgRxFrame(t, lab, tc.server, 0, 0)
			var extra []string
			if tc.v6 {
				extra = append(extra, "-6")
			}
			r, err := lab.Iperf(tc.server, tc.client, tc.dst, 2, extra...)
			if err != nil {
				t.Fatalf("iperf3: %v\n%s", err, m.Log.String())
			}
			if r.Gbps <= 0 {
				t.Fatalf("iperf3 moved nothing: %+v", r)
			}
			avg, _, _ := avgRxFrame(t, lab, tc.server, b0, p0)
			t.Logf("%.2f Gbit/s, %d retransmits, receiver's average frame %.0f bytes", r.Gbps, r.Retransmits, avg)
			if tc.checkGSO && avg < 4000 {
				t.Errorf("receiver's average frame %.0f bytes: TSO frames were segmented on the way", avg)
			}
		})
	}
	m.stop()
}

// TestNetnsOffloadsOff sends TCP from a sandbox with offloads on (the
// kernel hands the switch TSO super-frames with partial checksums) to a
// tap port whose offloads are off: the switch must segment and checksum in
// software. The receiving kernel validates every checksum.
func TestNetnsOffloadsOff(t *testing.T) {
	requireNetns(t, "iperf3")
	m := macvswLab(t, false, []sandboxSpec{{Mode: "bridge"}, {Mode: "bridge", NoOffloads: true}})
	lab := m.Lab
	csumErrs := func() string {
		out, _ := lab.Exec(m.Sandboxes[1], "cat", "/proc/net/snmp")
		return tcpInCsumErrors(out)
	}
	before := csumErrs()
	_, b0, p0 := avgRxFrame(t, lab, m.Sandboxes[1], 0, 0)
	r, err := lab.Iperf(m.Sandboxes[1], m.Sandboxes[0], netlab.SandboxIP4(1), 2)
	if err != nil {
		t.Fatalf("iperf3: %v\n%s", err, m.Log.String())
	}
	avg, _, _ := avgRxFrame(t, lab, m.Sandboxes[1], b0, p0)
	t.Logf("%.2f Gbit/s to the no-offload port, average frame %.0f bytes", r.Gbps, avg)
	if r.Gbps <= 0 {
		t.Fatal("no traffic reached the no-offload port")
	}
	if avg > 1514 {
		t.Errorf("no-offload port received frames averaging %.0f bytes: above the MTU", avg)
	}
	if after := csumErrs(); after != before {
		t.Errorf("TCP InCsumErrors in the receiver went from %s to %s", before, after)
	}
	m.stop()
}

// tcpInCsumErrors returns the InCsumErrors column of the Tcp lines of
// /proc/net/snmp.
func tcpInCsumErrors(snmp string) string {
	var names, values []string
	for _, line := range strings.Split(snmp, "\n") {
		if !strings.HasPrefix(line, "Tcp:") {
			continue
		}
		if names == nil {
			names = strings.Fields(line)
		} else {
			values = strings.Fields(line)
		}
	}
	for i, n := range names {
		if n == "InCsumErrors" && i < len(values) {
			return values[i]
		}
	}
	return "?"
}
