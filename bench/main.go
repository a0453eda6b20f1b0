// Command bench measures macvsw against kernel macvlan and two references
// on this machine, in one run, and prints each figure's median over the
// rounds with its ratio to kernel macvlan's median:
//
//	go run ./bench                          # as root; about 8 minutes
//	go run ./bench -rounds 1 -duration 3s   # a quick look
//	go run ./bench -variants kernel,tap,tap-poll -json out.json
//	go run ./bench -base /tmp/macvsw-old -variants kernel,tap-base,tap
//
// Variants, each on a fresh lab (tests/netlab, BEHAVIOUR.md §8.1) with four
// sandbox namespaces:
//
//	kernel    kernel macvlan, bridge mode, one device per sandbox
//	bridge    a Linux bridge with a veth pair per sandbox
//	copier    bench/copier: two taps and a blocking readv/writev loop per
//	          direction, no switching logic (sandboxes 0 and 1 only)
//	tap       macvsw, bridge mode, tap ports with virtio-net offloads
//	tap-poll  the same with busy_poll (-busy-poll) on every port
//	tap-rt    tap with the daemon's threads SCHED_RR (run --realtime 10)
//	afpacket  macvsw, bridge mode, AF_PACKET ports over veth pairs
//	tap-base  tap with the binary given by -base, to compare two builds
//
// Measurements (sandbox 0 sends to sandbox 1): iperf3 TCP with 1 and 4
// streams and over IPv6, and from sandbox 0 to the LAN host through the
// lower (variants with a lower); UDP with 64-byte frames as fast as iperf3 sends
// them, counted where they were offered (the sender), where they crossed
// to the receiver's interface, and where the receiving application got
// them, with the sender interface's drops (a tap drops what its reader
// does not take in time) and the switch's own drop counters apart; ping
// RTT p50 and p99, idle, while a TCP stream runs from sandbox 2 to 3, and
// while sandbox 2 floods broadcasts (macvsw: with storm control on its
// port, 1000/s; p99 over 1000 pings).
// CPU: the switch process's CPU time (macvsw or the copier) and the whole
// machine's (/proc/stat, every CPU, idle excluded), per Gbit during the
// 1-stream TCP run and per datagram delivered during the UDP run.
//
// Only ratios from one run mean anything: the machine's speed varies from
// run to run, its load from minute to minute. Nothing leaves the lab's
// namespaces.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/tests/netlab"
)

// result is one variant's figures from one round. Zero means not measured.
type result struct {
	Variant   string  `json:"variant"`
	TCP1Gbps  float64 `json:"tcp1_gbps"`
	TCP4Gbps  float64 `json:"tcp4_gbps"`
	TCP6Gbps  float64 `json:"tcp6_gbps"`
	LANGbps   float64 `json:"tcp_lan_gbps"`
	UDPOffer  float64 `json:"udp64_offered_pps"`
	UDPCross  float64 `json:"udp64_crossed_pps"`
	UDPApp    float64 `json:"udp64_delivered_pps"`
	UDPSndDrp float64 `json:"udp64_sender_drops_pps"`
	UDPSwDrp  float64 `json:"udp64_switch_drops_pps"`
	UDPRcvDrp float64 `json:"udp64_receiver_socket_drops_pps"`
	RTTP50    float64 `json:"rtt_p50_us"`
	RTTP99    float64 `json:"rtt_p99_us"`
	LoadP50   float64 `json:"loaded_rtt_p50_us"`
	LoadP99   float64 `json:"loaded_rtt_p99_us"`
	StormP50  float64 `json:"storm_rtt_p50_us"`
	StormP99  float64 `json:"storm_rtt_p99_us"`
	SwCPUGbit float64 `json:"switch_cpu_ms_per_gbit"`
	CPUGbit   float64 `json:"machine_cpu_ms_per_gbit"`
	SwCPUPkt  float64 `json:"switch_cpu_us_per_pkt"`
	CPUPkt    float64 `json:"machine_cpu_us_per_pkt"`
}

var (
	duration = flag.Duration("duration", 5*time.Second, "length of each iperf3 run")
	pings    = flag.Int("pings", 500, "pings for each RTT figure (5 ms apart)")
	rounds   = flag.Int("rounds", 3, "rounds; every figure is the median over them")
	jsonOut  = flag.String("json", "", "also write every round's results as JSON to this file")
	variants = flag.String("variants", "kernel,bridge,copier,tap,tap-rt", "variants to run, in this order each round")
	queues   = flag.Int("queues", 1, "queues per macvsw port")
	busyPoll = flag.Duration("busy-poll", 50*time.Microsecond, "busy_poll of every port in the tap-poll variant")
	bin      = flag.String("macvsw", "", "macvsw binary (default: build ./cmd/macvsw)")
	baseBin  = flag.String("base", "", "a second macvsw binary (an older build) for the variant tap-base: before and after in one run")
	copierB  = flag.String("copier", "", "copier binary (default: build ./bench/copier)")
	only     = flag.String("only", "tcp1,tcp4,tcp6,lan,udp,ping,loadping,storm", "measurements to run")
)

const sandboxes = 4

// rawScript is netlab's raw frame sender, written at start.
var rawScript string

func main() {
	flag.Parse()
	if err := netlab.Available(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "macvsw-bench")
	check(err)
	defer os.RemoveAll(dir)
	build(bin, dir, "macvsw", "./cmd/macvsw")
	build(copierB, dir, "copier", "./bench/copier")
	rawScript, err = netlab.RawSenderScript(dir)
	check(err)

	vs := strings.Split(*variants, ",")
	all := make(map[string][]result)
	var flat []result
	for r := 0; r < *rounds; r++ {
		for _, v := range vs {
			res, err := runVariant(v)
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench %s (round %d): %v\n", v, r+1, err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "round %d %s: %+v\n", r+1, v, res)
			all[v] = append(all[v], res)
			flat = append(flat, res)
		}
	}
	var med []result
	for _, v := range vs {
		med = append(med, median(v, all[v]))
	}
	report(med)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(flat, "", "  ")
		check(os.WriteFile(*jsonOut, b, 0o644))
	}
}

func build(path *string, dir, name, pkg string) {
	if *path != "" {
		return
	}
	*path = filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", *path, pkg).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
		os.Exit(1)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// variant is a lab wired for one variant.
type variant struct {
	lab    *netlab.Lab
	sb     []string
	pid    int         // the switch process (macvsw, copier), or 0
	client *api.Client // macvsw's control API, or nil
	pairs  int         // sandboxes that can reach each other: 0..pairs-1
	host   string      // the LAN host's namespace
	lan    bool        // sandbox 0 reaches the LAN host through the lower
}

// runVariant builds one lab, measures, and tears it down.
func runVariant(name string) (res result, err error) {
	res.Variant = name
	lab := netlab.New("mvb")
	defer func() {
		if cerr := lab.Close(); err == nil {
			err = cerr
		}
	}()
	v, err := setup(lab, name)
	if err != nil {
		return res, err
	}
	sb := v.sb
	for i := 1; i < v.pairs; i++ {
		if !lab.Ping(sb[i-1], netlab.SandboxIP4(i), 2*time.Second) {
			return res, fmt.Errorf("sandbox %d cannot reach sandbox %d", i-1, i)
		}
	}
	if !lab.Ping(sb[0], netlab.SandboxIP6(1), 2*time.Second) {
		return res, fmt.Errorf("sandboxes cannot reach each other over IPv6")
	}
	want := func(m string) bool { return strings.Contains(","+*only+",", ","+m+",") }
	if want("tcp1") {
		c0 := v.cpu()
		if res.TCP1Gbps, err = iperf(lab, sb, netlab.SandboxIP4(1), "-P", "1"); err != nil {
			return res, err
		}
		sw, all := v.cpu().since(c0)
		if gbit := res.TCP1Gbps * duration.Seconds(); gbit > 0 {
			res.SwCPUGbit, res.CPUGbit = sw*1e3/gbit, all*1e3/gbit
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
	if want("lan") && v.lan {
		r, err := lab.Iperf(v.host, sb[0], netlab.HostIP4, int(duration.Seconds()))
		if err != nil {
			return res, err
		}
		res.LANGbps = r.Gbps
	}
	if want("udp") {
		err := udp64(v, &res)
		if err != nil {
			// iperf3 itself sometimes loses its control connection
			// under the flood; one more try, said out loud.
			fmt.Fprintf(os.Stderr, "bench %s: UDP: %v; trying once more\n", name, err)
			err = udp64(v, &res)
		}
		if err != nil {
			return res, err
		}
	}
	if want("ping") {
		if res.RTTP50, res.RTTP99, err = rtt(lab, sb[0], netlab.SandboxIP4(1), *pings); err != nil {
			return res, err
		}
	}
	if want("storm") && v.pairs >= 4 {
		if res.StormP50, res.StormP99, err = stormRTT(v); err != nil {
			return res, err
		}
	}
	if want("loadping") && v.pairs >= 4 {
		if res.LoadP50, res.LoadP99, err = loadedRTT(lab, sb); err != nil {
			return res, err
		}
	}
	return res, nil
}

// setup builds the lab for variant name: sandboxes with eth0 up and their
// addresses, and the switch between them.
func setup(lab *netlab.Lab, name string) (*variant, error) {
	topo, err := lab.BuildLAN(false)
	if err != nil {
		return nil, err
	}
	if err := lab.IP(topo.SW, "link", "set", netlab.Lower, "up"); err != nil {
		return nil, err
	}
	v := &variant{lab: lab, sb: make([]string, sandboxes), pairs: sandboxes, host: topo.Host}
	for i := range v.sb {
		if v.sb[i], err = topo.Sandbox(i); err != nil {
			return nil, err
		}
		for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
			if err := lab.Sysctl(v.sb[i], k, "0"); err != nil {
				return nil, err
			}
		}
	}
	// address gives sandbox i's eth0 its MAC and addresses and sets it up.
	address := func(i int) error {
		return lab.IPs(v.sb[i], "link set eth0 address "+netlab.SandboxMAC(i),
			"addr add "+netlab.SandboxIP4(i)+"/24 dev eth0",
			"addr add "+netlab.SandboxIP6(i)+"/64 dev eth0 nodad",
			"link set eth0 up")
	}
	switch name {
	case "kernel":
		v.lan = true
		for i := range v.sb {
			if err := topo.KernelPort(v.sb[i], i, "bridge"); err != nil {
				return nil, err
			}
		}
	case "bridge":
		if err := lab.IPs(topo.SW, "link add br0 type bridge stp_state 0 forward_delay 0", "link set br0 up"); err != nil {
			return nil, err
		}
		for i := range v.sb {
			vb := fmt.Sprintf("vb%d", i)
			if err := lab.Veth(topo.SW, vb, v.sb[i], "eth0"); err != nil {
				return nil, err
			}
			if err := lab.IP(topo.SW, "link", "set", vb, "master", "br0"); err != nil {
				return nil, err
			}
			if err := address(i); err != nil {
				return nil, err
			}
		}
	case "copier":
		v.pairs = 2
		out := &lineWaiter{ready: make(chan struct{})}
		cmd, err := lab.Start(topo.SW, out, os.Stderr, *copierB, "-a", netlab.Path(v.sb[0]), "-b", netlab.Path(v.sb[1]))
		if err != nil {
			return nil, err
		}
		select {
		case <-out.ready:
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("copier not ready after 10s")
		}
		v.pid = cmd.Process.Pid
		for i := 0; i < 2; i++ {
			if err := address(i); err != nil {
				return nil, err
			}
		}
	case "tap", "tap-poll", "tap-base", "tap-rt", "afpacket":
		v.lan = true
		cfg := fmt.Sprintf("lower: {interface: %s, queues: 1}\ncontrol: {socket: /run/%s/macvsw.sock}\nlog: {level: warn}\nports:\n", netlab.Lower, lab.Prefix)
		for i := range v.sb {
			cfg += fmt.Sprintf("  - {name: p%d, mode: bridge, mac: %s, queues: %d, ", i, netlab.SandboxMAC(i), *queues)
			if name == "tap-poll" {
				cfg += fmt.Sprintf("busy_poll: %s, ", *busyPoll)
			}
			if name != "afpacket" {
				cfg += fmt.Sprintf("tap: {netns: %s, ifname: eth0, addresses: [%s/24, %s/64]}}\n", netlab.Path(v.sb[i]), netlab.SandboxIP4(i), netlab.SandboxIP6(i))
				continue
			}
			ifc := fmt.Sprintf("vp%d", i)
			if err := lab.Veth(topo.SW, ifc, v.sb[i], "eth0"); err != nil {
				return nil, err
			}
			if err := address(i); err != nil {
				return nil, err
			}
			cfg += fmt.Sprintf("afpacket: {interface: %s}}\n", ifc)
		}
		path := filepath.Join(os.TempDir(), lab.Prefix+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		defer os.Remove(path) // read at start-up
		exe := *bin
		if name == "tap-base" {
			if *baseBin == "" {
				return nil, fmt.Errorf("variant tap-base needs -base")
			}
			exe = *baseBin
		}
		args := []string{exe, "run", "--config", path}
		if name == "tap-rt" {
			args = append(args, "--realtime", "10")
		}
		d, err := lab.Start(topo.SW, os.Stderr, os.Stderr, args...)
		if err != nil {
			return nil, err
		}
		v.pid = d.Process.Pid
		v.client = api.NewClient("/run/" + lab.Prefix + "/macvsw.sock")
		for i := range v.sb {
			if err := topo.WaitLink(v.sb[i], "eth0", 10*time.Second); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown variant %q", name)
	}
	return v, nil
}

// lineWaiter closes ready when the copier prints "ready".
type lineWaiter struct {
	buf   []byte
	ready chan struct{}
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if w.ready != nil && strings.Contains(string(w.buf), "ready\n") {
		close(w.ready)
		w.ready = nil
	}
	return len(p), nil
}

// cpuSample is the switch process's and the machine's CPU time, seconds.
type cpuSample struct{ sw, all float64 }

func (c cpuSample) since(o cpuSample) (sw, all float64) { return c.sw - o.sw, c.all - o.all }

func (v *variant) cpu() cpuSample { return cpuSample{procCPU(v.pid), machineCPU()} }

// procCPU returns utime+stime of pid in seconds (0 for pid 0).
func procCPU(pid int) float64 {
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

// machineCPU returns the busy time of every CPU together, in seconds:
// /proc/stat's cpu line without idle and iowait.
func machineCPU() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	fields := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
	var busy float64
	for i, x := range fields[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest (already in user)
			continue
		}
		n, _ := strconv.ParseFloat(x, 64)
		busy += n
	}
	return busy / 100
}

// iperf measures TCP from sandbox 0 to dst in sandbox 1, in Gbit/s.
func iperf(lab *netlab.Lab, sb []string, dst string, extra ...string) (float64, error) {
	r, err := lab.Iperf(sb[1], sb[0], dst, int(duration.Seconds()), extra...)
	return r.Gbps, err
}

// udp64 sends UDP datagrams whose Ethernet frames are 64 bytes on the wire
// (60 + FCS: 18 bytes of payload) as fast as iperf3 can, and fills in what
// was offered, crossed, delivered and dropped, per second.
func udp64(v *variant, res *result) error {
	lab, sb := v.lab, v.sb
	tx0, _ := lab.LinkStat(sb[0], "eth0", "tx_dropped")
	rx0, _ := lab.LinkStat(sb[1], "eth0", "rx_packets")
	sw0 := v.switchDrops()
	rb0 := udpRcvbufErrors(lab, sb[1])
	c0 := v.cpu()
	r, err := lab.Iperf(sb[1], sb[0], netlab.SandboxIP4(1), int(duration.Seconds()), "-u", "-b", "0", "-l", "18")
	if err != nil {
		return err
	}
	swCPU, allCPU := v.cpu().since(c0)
	if r.Seconds == 0 {
		return fmt.Errorf("iperf3 UDP: no result")
	}
	tx1, _ := lab.LinkStat(sb[0], "eth0", "tx_dropped")
	rx1, _ := lab.LinkStat(sb[1], "eth0", "rx_packets")
	sw1 := v.switchDrops()
	rb1 := udpRcvbufErrors(lab, sb[1])
	delivered := float64(r.Packets - r.Lost)
	res.UDPOffer = float64(r.Packets) / r.Seconds
	res.UDPApp = delivered / r.Seconds
	res.UDPCross = float64(rx1-rx0) / r.Seconds
	res.UDPSndDrp = float64(tx1-tx0) / r.Seconds
	res.UDPSwDrp = float64(sw1-sw0) / r.Seconds
	res.UDPRcvDrp = float64(rb1-rb0) / r.Seconds
	if delivered > 0 {
		res.SwCPUPkt, res.CPUPkt = swCPU*1e6/delivered, allCPU*1e6/delivered
	}
	return nil
}

// udpRcvbufErrors returns ns's Udp RcvbufErrors (/proc/net/snmp): the
// datagrams its kernel dropped because the receiving socket was full.
func udpRcvbufErrors(lab *netlab.Lab, ns string) uint64 {
	out, err := lab.Exec(ns, "cat", "/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}

// switchDrops sums every drop counter macvsw keeps (0 for other variants).
func (v *variant) switchDrops() uint64 {
	if v.client == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := v.client.Stats(ctx, "")
	if err != nil {
		return 0
	}
	n := s.Switch.Drops.Total() + s.Lower.Switch.RxDropped + s.Lower.Switch.TxDropped
	for _, p := range s.Ports {
		n += p.Switch.RxDropped + p.Switch.TxDropped
		t := p.Endpoint.Total()
		n += t.RxDrops.Total() + t.TxDrops.Total() + t.VnetErrors.Total()
	}
	return n
}

// rtt sends count pings 5 ms apart and returns p50 and p99 in
// microseconds.
func rtt(lab *netlab.Lab, ns, dst string, count int) (p50, p99 float64, err error) {
	out, err := lab.Exec(ns, "ping", "-n", "-c", fmt.Sprint(count), "-i", "0.005", dst)
	if err != nil {
		return 0, 0, err
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
		return 0, 0, fmt.Errorf("no ping replies")
	}
	sort.Float64s(v)
	return v[len(v)/2], v[min(len(v)-1, len(v)*99/100)], nil
}

// loadedRTT pings from sandbox 0 to 1 while a TCP stream runs from
// sandbox 2 to 3.
func loadedRTT(lab *netlab.Lab, sb []string) (p50, p99 float64, err error) {
	srv, err := lab.Start(sb[3], nil, nil, "iperf3", "-s", "-1")
	if err != nil {
		return 0, 0, err
	}
	defer netlab.Stop(srv, 5*time.Second)
	if err := lab.WaitListening(sb[3], 5201, 20*time.Second); err != nil {
		return 0, 0, err
	}
	cli, err := lab.Start(sb[2], nil, nil, "iperf3", "-c", netlab.SandboxIP4(3), "-t", "60")
	if err != nil {
		return 0, 0, err
	}
	defer netlab.Stop(cli, 5*time.Second)
	time.Sleep(time.Second)
	return rtt(lab, sb[0], netlab.SandboxIP4(1), *pings)
}

// stormPings is the ping count during a storm: 1000 at 5 ms, so that
// p99 is the 990th RTT, not the worst.
const stormPings = 1000

// stormRTT pings from sandbox 0 to 1 while sandbox 2 floods broadcasts as
// fast as it can (python3, AF_PACKET). On macvsw, port p2 has storm
// control (police.flood_pps 1000, flood_burst 50); kernel macvlan and the
// bridge have none to set.
func stormRTT(v *variant) (p50, p99 float64, err error) {
	if v.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := v.client.SetPort(ctx, "p2", api.PortPatch{Police: &api.Police{FloodPPS: 1000, FloodBurst: 50}}); err != nil {
			return 0, 0, fmt.Errorf("storm control on p2: %w", err)
		}
	}
	mac, err := net.ParseMAC(netlab.SandboxMAC(2))
	if err != nil {
		return 0, 0, err
	}
	secs := int(time.Duration(stormPings)*5*time.Millisecond/time.Second) + 2
	flooded := make(chan error, 1)
	go func() {
		_, err := v.lab.Flood(v.sb[2], rawScript, "eth0", secs, netlab.BroadcastUDP([6]byte(mac)))
		flooded <- err
	}()
	time.Sleep(500 * time.Millisecond) // the storm is on
	p50, p99, err = rtt(v.lab, v.sb[0], netlab.SandboxIP4(1), stormPings)
	if ferr := <-flooded; err == nil {
		err = ferr
	}
	return p50, p99, err
}

// median returns, field by field, the median of rs.
func median(name string, rs []result) result {
	m := result{Variant: name}
	for _, f := range fields {
		var xs []float64
		for i := range rs {
			xs = append(xs, *f.get(&rs[i]))
		}
		sort.Float64s(xs)
		if len(xs) > 0 {
			*f.get(&m) = xs[len(xs)/2]
		}
	}
	return m
}

// field is a row of the report.
type field struct {
	name   string
	get    func(*result) *float64
	ratio  bool    // show x ÷ kernel; else x − kernel
	scale  float64 // shown as x × scale (pps as kpps); 0 means 1
	target string  // what issue 13 asks, against kernel macvlan
}

var fields = []field{
	{"TCP 1 stream Gbit/s", func(r *result) *float64 { return &r.TCP1Gbps }, true, 0, "≥ 0.70"},
	{"TCP 4 streams Gbit/s", func(r *result) *float64 { return &r.TCP4Gbps }, true, 0, "≥ 0.60"},
	{"TCP IPv6 Gbit/s", func(r *result) *float64 { return &r.TCP6Gbps }, true, 0, ""},
	{"TCP sandbox → LAN host Gbit/s", func(r *result) *float64 { return &r.LANGbps }, true, 0, ""},
	{"UDP 64 B delivered to the app kpps", func(r *result) *float64 { return &r.UDPApp }, true, 1e-3, "≥ 0.80"},
	{"UDP 64 B crossed to the receiver kpps", func(r *result) *float64 { return &r.UDPCross }, true, 1e-3, ""},
	{"UDP 64 B offered by the sender kpps", func(r *result) *float64 { return &r.UDPOffer }, true, 1e-3, ""},
	{"UDP sender interface drops kpps", func(r *result) *float64 { return &r.UDPSndDrp }, false, 1e-3, ""},
	{"UDP switch drops kpps", func(r *result) *float64 { return &r.UDPSwDrp }, false, 1e-3, ""},
	{"UDP receiver socket drops kpps", func(r *result) *float64 { return &r.UDPRcvDrp }, false, 1e-3, ""},
	{"ping p50 µs", func(r *result) *float64 { return &r.RTTP50 }, false, 0, "≤ +60"},
	{"ping p99 µs", func(r *result) *float64 { return &r.RTTP99 }, false, 0, "≤ +250"},
	{"ping p50 µs, TCP 2→3 running", func(r *result) *float64 { return &r.LoadP50 }, false, 0, "≤ +60"},
	{"ping p99 µs, TCP 2→3 running", func(r *result) *float64 { return &r.LoadP99 }, false, 0, "≤ +250"},
	{"ping p50 µs, broadcast storm from 2", func(r *result) *float64 { return &r.StormP50 }, false, 0, ""},
	{"ping p99 µs, broadcast storm from 2", func(r *result) *float64 { return &r.StormP99 }, false, 0, "< 1000 (issue 12)"},
	{"switch CPU ms per Gbit (TCP 1)", func(r *result) *float64 { return &r.SwCPUGbit }, false, 0, ""},
	{"machine CPU ms per Gbit (TCP 1)", func(r *result) *float64 { return &r.CPUGbit }, true, 0, ""},
	{"switch CPU µs per datagram (UDP)", func(r *result) *float64 { return &r.SwCPUPkt }, false, 0, ""},
	{"machine CPU µs per datagram (UDP)", func(r *result) *float64 { return &r.CPUPkt }, true, 0, ""},
}

func report(rs []result) {
	var k *result
	for i := range rs {
		if rs[i].Variant == "kernel" {
			k = &rs[i]
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "median of " + strconv.Itoa(*rounds) + "\t"
	for _, r := range rs {
		head += r.Variant + "\t"
	}
	fmt.Fprintln(tw, head+"target (vs kernel)\t")
	for _, f := range fields {
		line := f.name + "\t"
		for i := range rs {
			x := *f.get(&rs[i])
			if x == 0 {
				line += "—\t"
				continue
			}
			sc := f.scale
			if sc == 0 {
				sc = 1
			}
			cell := fmt.Sprintf("%.1f", x*sc)
			if kx := *f.get(k0(k)); k != nil && rs[i].Variant != "kernel" && kx != 0 {
				if f.ratio {
					cell += fmt.Sprintf(" (%.2f×)", x/kx)
				} else {
					cell += fmt.Sprintf(" (%+.0f)", (x-kx)*sc)
				}
			}
			line += cell + "\t"
		}
		fmt.Fprintln(tw, line+f.target+"\t")
	}
	tw.Flush()
}

// k0 returns k, or a zero result when there is no kernel variant.
func k0(k *result) *result {
	if k == nil {
		return &result{}
	}
	return k
}
