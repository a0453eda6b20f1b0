// Command bench measures macvsw against kernel macvlan on this machine, in
// one run, and prints macvsw ÷ kernel ratios:
//
//	go run ./bench                 # as root; about 2 minutes
//	go run ./bench -duration 10s -json out.json
//
// Each variant gets a fresh lab as in BEHAVIOUR.md §8.1 (tests/netlab) with two sandbox
// namespaces: (a) kernel macvlan bridge-mode devices, (b) macvsw bridge
// mode on tap ports (virtio-net offloads on), (c) macvsw bridge mode on
// AF_PACKET ports over veth pairs. In each it measures iperf3 TCP with 1
// and 4 streams, IPv6 TCP, UDP with 64-byte frames (packets per second
// delivered), ping RTT (avg, p50, p99 over 500 pings) and, for macvsw, the
// switch's CPU seconds during the run.
//
// It never touches the host's interfaces: everything lives in namespaces
// the lab creates and deletes.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
)

type result struct {
	Variant   string  `json:"variant"`
	TCP1Gbps  float64 `json:"tcp1_gbps"`
	TCP4Gbps  float64 `json:"tcp4_gbps"`
	TCP6Gbps  float64 `json:"tcp6_gbps"`
	UDP64PPS  float64 `json:"udp64_pps"`
	RTTAvgUs  float64 `json:"rtt_avg_us"`
	RTTP50Us  float64 `json:"rtt_p50_us"`
	RTTP99Us  float64 `json:"rtt_p99_us"`
	CPUSecs   float64 `json:"switch_cpu_s"`
	ElapsedS  float64 `json:"elapsed_s"`
	CPUDetail string  `json:"-"`
}

var (
	duration = flag.Duration("duration", 5*time.Second, "length of each iperf3 run")
	pings    = flag.Int("pings", 500, "pings for the RTT figures")
	jsonOut  = flag.String("json", "", "also write the results as JSON to this file")
	variants = flag.String("variants", "kernel,tap,afpacket", "variants to run")
	queues   = flag.Int("queues", 1, "queues per macvsw port")
	bin      = flag.String("macvsw", "", "macvsw binary (default: build ./cmd/macvsw)")
	only     = flag.String("only", "tcp1,tcp4,tcp6,udp,ping", "measurements to run")
)

func main() {
	flag.Parse()
	if err := netlab.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if *bin == "" {
		dir, err := os.MkdirTemp("", "macvsw-bench")
		check(err)
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "macvsw")
		out, err := exec.Command("go", "build", "-o", *bin, "./cmd/macvsw").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	var results []result
	for _, v := range strings.Split(*variants, ",") {
		r, err := runVariant(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", v, err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "%s: %+v\n", v, r)
		results = append(results, r)
	}
	report(results)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		check(os.WriteFile(*jsonOut, b, 0o644))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runVariant builds one lab, measures, and tears it down.
func runVariant(v string) (res result, err error) {
	res.Variant = v
	lab := netlab.New("mvb")
	defer func() {
		if cerr := lab.Close(); err == nil {
			err = cerr
		}
	}()
	topo, err := lab.BuildLAN(false)
	if err != nil {
		return res, err
	}
	if err := lab.IP(topo.SW, "link", "set", netlab.Lower, "up"); err != nil {
		return res, err
	}
	sb := make([]string, 2)
	for i := range sb {
		if sb[i], err = topo.Sandbox(i); err != nil {
			return res, err
		}
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := lab.Sysctl(sb[i], k, "0"); err != nil {
				return res, err
			}
		}
	}
	var pid int
	switch v {
	case "kernel":
		for i := range sb {
			if err := topo.KernelPort(sb[i], i, "bridge"); err != nil {
				return res, err
			}
		}
	case "tap", "afpacket":
		cfg := fmt.Sprintf("lower: {interface: %s, queues: 1}\ncontrol: {socket: /run/%s/macvsw.sock}\nlog: {level: warn}\nports:\n", netlab.Lower, lab.Prefix)
		for i := range sb {
			cfg += fmt.Sprintf("  - {name: p%d, mode: bridge, mac: %s, queues: %d, ", i, netlab.SandboxMAC(i), *queues)
			if v == "tap" {
				cfg += fmt.Sprintf("tap: {netns: %s, ifname: eth0, addresses: [%s/24, %s/64]}}\n", netlab.Path(sb[i]), netlab.SandboxIP4(i), netlab.SandboxIP6(i))
				continue
			}
			ifc := fmt.Sprintf("vp%d", i)
			if err := lab.Veth(topo.SW, ifc, sb[i], "eth0"); err != nil {
				return res, err
			}
			if err := lab.IPs(sb[i], "link set eth0 address "+netlab.SandboxMAC(i),
				"addr add "+netlab.SandboxIP4(i)+"/24 dev eth0",
				"addr add "+netlab.SandboxIP6(i)+"/64 dev eth0 nodad"); err != nil {
				return res, err
			}
			cfg += fmt.Sprintf("afpacket: {interface: %s}}\n", ifc)
		}
		path := filepath.Join(os.TempDir(), lab.Prefix+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return res, err
		}
		defer os.Remove(path)
		defer os.RemoveAll("/run/" + lab.Prefix)
		args := []string{*bin, "run", "--config", path}
		d, err := lab.Start(topo.SW, os.Stderr, os.Stderr, args...)
		if err != nil {
			return res, err
		}
		pid = d.Process.Pid
		for i := range sb {
			if err := topo.WaitLink(sb[i], "eth0", 10*time.Second); err != nil {
				return res, err
			}
		}
	default:
		return res, fmt.Errorf("unknown variant %q", v)
	}
	// Warm up ARP/ND and the flows.
	if !lab.Ping(sb[0], netlab.SandboxIP4(1), 2*time.Second) || !lab.Ping(sb[0], netlab.SandboxIP6(1), 2*time.Second) {
		return res, fmt.Errorf("sandboxes cannot reach each other")
	}
	start, cpu0 := time.Now(), cpuSeconds(pid)
	want := func(m string) bool { return strings.Contains(","+*only+",", ","+m+",") }
	if want("tcp1") {
		if res.TCP1Gbps, err = iperf(lab, sb, netlab.SandboxIP4(1), "-P", "1"); err != nil {
			return res, err
		}
	}
	if want("tcp4") {
		if res.TCP4Gbps, err = iperf(lab, sb, netlab.SandboxIP4(1), "-P", "4"); err != nil {
			return res, err
		}
	}
	if want("tcp6") {
		if res.TCP6Gbps, err = iperf(lab, sb, netlab.SandboxIP6(1), "-6"); err != nil {
			return res, err
		}
	}
	if want("udp") {
		if res.UDP64PPS, err = udp64(lab, sb); err != nil {
			return res, err
		}
	}
	if want("ping") {
		if res.RTTAvgUs, res.RTTP50Us, res.RTTP99Us, err = rtt(lab, sb[0], netlab.SandboxIP4(1)); err != nil {
			return res, err
		}
	}
	res.ElapsedS = time.Since(start).Seconds()
	if pid != 0 {
		res.CPUSecs = cpuSeconds(pid) - cpu0
	}
	return res, nil
}

// cpuSeconds returns utime+stime of pid in seconds (0 for pid 0).
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// iperf measures TCP from sandbox 0 to dst in sandbox 1, in Gbit/s.
func iperf(lab *netlab.Lab, sb []string, dst string, extra ...string) (float64, error) {
	r, err := lab.Iperf(sb[1], sb[0], dst, int(duration.Seconds()), extra...)
	return r.Gbps, err
}

// udp64 sends UDP datagrams whose Ethernet frames are 64 bytes on the wire
// (60 + FCS: 18 bytes of payload) as fast as iperf3 can, and returns the
// datagrams per second the server received.
func udp64(lab *netlab.Lab, sb []string) (float64, error) {
	r, err := lab.Iperf(sb[1], sb[0], netlab.SandboxIP4(1), int(duration.Seconds()), "-u", "-b", "0", "-l", "18")
	if err != nil {
		return 0, err
	}
	if r.Seconds == 0 {
		return 0, fmt.Errorf("iperf3 UDP: no result")
	}
	return float64(r.Packets-r.Lost) / r.Seconds, nil
}

// rtt pings and returns avg, p50 and p99 in microseconds.
func rtt(lab *netlab.Lab, ns, dst string) (avg, p50, p99 float64, err error) {
	out, err := lab.Exec(ns, "ping", "-n", "-c", fmt.Sprint(*pings), "-i", "0.005", dst)
	if err != nil {
		return 0, 0, 0, err
	}
	var v []float64
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "time="); i >= 0 {
			f := strings.Fields(line[i+5:])
			ms, err := strconv.ParseFloat(f[0], 64)
			if err == nil {
				v = append(v, ms*1000)
			}
		}
	}
	if len(v) == 0 {
		return 0, 0, 0, fmt.Errorf("no ping replies")
	}
	sort.Float64s(v)
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v)), v[len(v)/2], v[min(len(v)-1, len(v)*99/100)], nil
}

func report(rs []result) {
	var k *result
	for i := range rs {
		if rs[i].Variant == "kernel" {
			k = &rs[i]
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "metric\t"+names(rs)+"\ttarget (÷ kernel)\t")
	row := func(name string, get func(r result) float64, ratio bool, target string) {
		line := name + "\t"
		for _, r := range rs {
			x := get(r)
			cell := fmt.Sprintf("%.2f", x)
			if k != nil && r.Variant != "kernel" && get(*k) != 0 {
				if ratio {
					cell += fmt.Sprintf(" (%.2f×)", x/get(*k))
				} else {
					cell += fmt.Sprintf(" (%+.0f)", x-get(*k))
				}
			}
			line += cell + "\t"
		}
		fmt.Fprintln(tw, line+target+"\t")
	}
	row("TCP 1 stream Gbit/s", func(r result) float64 { return r.TCP1Gbps }, true, "≥ 0.55")
	row("TCP 4 streams Gbit/s", func(r result) float64 { return r.TCP4Gbps }, true, "≥ 0.40")
	row("TCP IPv6 Gbit/s", func(r result) float64 { return r.TCP6Gbps }, true, "works")
	row("UDP 64 B kpps delivered", func(r result) float64 { return r.UDP64PPS / 1000 }, true, "≥ 0.70")
	row("ping avg µs", func(r result) float64 { return r.RTTAvgUs }, false, "")
	row("ping p50 µs", func(r result) float64 { return r.RTTP50Us }, false, "≤ +120")
	row("ping p99 µs", func(r result) float64 { return r.RTTP99Us }, false, "")
	row("switch CPU s", func(r result) float64 { return r.CPUSecs }, false, "")
	tw.Flush()
}

func names(rs []result) string {
	var n []string
	for _, r := range rs {
		n = append(n, r.Variant)
	}
	return strings.Join(n, "\t")
}
