package netlab

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// IperfResult is what the iperf3 client reports at the end of a run.
type IperfResult struct {
	Gbps        float64 // receiver's rate
	Retransmits int     // TCP
	Seconds     float64 // UDP: measured duration
	Packets     int     // UDP: datagrams sent
	Lost        int     // UDP: datagrams the server did not get
}

// Iperf runs an iperf3 server in serverNS (one test, then it exits) and a
// client in clientNS toward dst for secs seconds with extra client flags,
// and returns the client's summary.
func (l *Lab) Iperf(serverNS, clientNS, dst string, secs int, extra ...string) (IperfResult, error) {
	srv, err := l.Start(serverNS, nil, nil, "iperf3", "-s", "-1")
	if err != nil {
		return IperfResult{}, err
	}
	defer Stop(srv, 5*time.Second)
	// Connect once the server listens (a loaded machine can take seconds
	// to start it), not after a fixed pause.
	if err := l.WaitListening(serverNS, iperfPort, 20*time.Second); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 server: %w", err)
	}
	// Bounded in time: an iperf3 client whose server went away can spin
	// forever (seen under a 64-byte UDP flood).
	args := append([]string{"timeout", "-k", "5", fmt.Sprint(secs + 30), "iperf3", "-J", "-c", dst, "-t", fmt.Sprint(secs)}, extra...)
	out, err := l.Exec(clientNS, args...)
	if err != nil {
		return IperfResult{}, err
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			Sum struct {
				Seconds       float64 `json:"seconds"`
				Packets       int     `json:"packets"`
				LostPackets   int     `json:"lost_packets"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 output: %w", err)
	}
	res := IperfResult{
		Gbps:        r.End.SumReceived.BitsPerSecond / 1e9,
		Retransmits: r.End.SumSent.Retransmits,
		Seconds:     r.End.Sum.Seconds,
		Packets:     r.End.Sum.Packets,
		Lost:        r.End.Sum.LostPackets,
	}
	if res.Gbps == 0 {
		res.Gbps = r.End.Sum.BitsPerSecond / 1e9
	}
	return res, nil
}

// iperfPort is iperf3's default server port.
const iperfPort = 5201

// WaitListening waits until a TCP socket listens on port in ns (`ss
// -Hltn`), at most timeout.
func (l *Lab) WaitListening(ns string, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := l.Exec(ns, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on TCP port %d in %s after %v (%v)", port, ns, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LinkStat reads /sys/class/net/IFNAME/statistics/NAME inside ns.
func (l *Lab) LinkStat(ns, ifname, name string) (uint64, error) {
	out, err := l.Exec(ns, "cat", "/sys/class/net/"+ifname+"/statistics/"+name)
	if err != nil {
		return 0, err
	}
	var v uint64
	_, err = fmt.Sscanf(out, "%d", &v)
	return v, err
}
