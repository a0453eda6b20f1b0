// Command soak runs a macvsw daemon under mixed traffic and churn for a
// while and shows that it does not grow: its goroutines, open FDs and
// resident memory are sampled at every interval and printed as a table.
//
//	go run ./bench/soak                     # as root; 30 minutes
//	go run ./bench/soak -duration 2m -interval 10s
//
// The lab (tests/netlab, BEHAVIOUR.md §8.1) has four bridge-mode tap
// sandboxes. Meanwhile, in rounds, bounded in time:
//   - TCP (iperf3) from sandbox 0 to 1;
//   - UDP (iperf3, 20 Mbit/s) from sandbox 2 to 3;
//   - a broadcast ping flood from sandbox 3;
//   - an extra port added and deleted;
//   - a reload (SIGHUP);
//   - a capture of 50 frames.
//
// It exits non-zero when the last sample exceeds the first one taken after
// warm-up by more than -max-goroutines, -max-fds or -max-rss-mib. Nothing
// leaves the lab's namespaces, and the lab is removed at the end.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/macvsw/macvsw/tests/netlab"
)

var (
	duration = flag.Duration("duration", 30*time.Minute, "how long to soak")
	interval = flag.Duration("interval", time.Minute, "how often to sample the daemon")
	maxGor   = flag.Int("max-goroutines", 50, "allowed growth in goroutines from the first sample after warm-up to the last")
	maxFDs   = flag.Int("max-fds", 20, "allowed growth in open FDs")
	maxRSS   = flag.Float64("max-rss-mib", 64, "allowed growth in resident memory, MiB")
)

type sample struct {
	at         time.Duration
	goroutines int
	fds        int
	rssMiB     float64
	rounds     int
}

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "soak: needs root (network namespaces)")
		os.Exit(2)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "macvsw-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	bin, err := netlab.BuildBinary(root, dir)
	if err != nil {
		return err
	}
	specs := make([]netlab.SandboxSpec, 4)
	for i := range specs {
		specs[i] = netlab.SandboxSpec{Mode: "bridge"}
	}
	v, err := netlab.BuildMacvsw("mvk", bin, dir, false, specs)
	if v != nil {
		defer v.Close()
	}
	if err != nil {
		return err
	}
	lab := v.Lab
	extra, err := lab.AddNS("extra")
	if err != nil {
		return err
	}
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "MACVSW_SOCKET="+v.Socket)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	pid := v.Daemon.Process.Pid

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	rounds := 0
	var errs []string
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	loop := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(); err != nil {
					note("%s: %v", name, err)
					time.Sleep(time.Second)
				}
				mu.Lock()
				rounds++
				mu.Unlock()
			}
		}()
	}
	loop("tcp", func() error {
		_, err := lab.Iperf(v.Sandboxes[1], v.Sandboxes[0], netlab.SandboxIP4(1), 10)
		return err
	})
	loop("udp", func() error {
		_, err := lab.Iperf(v.Sandboxes[3], v.Sandboxes[2], netlab.SandboxIP4(3), 10, "-u", "-b", "20M")
		return err
	})
	loop("flood", func() error {
		lab.Exec(v.Sandboxes[3], "ping", "-b", "-q", "-c", "2000", "-i", "0.002", "-W", "1", "10.77.0.255")
		time.Sleep(2 * time.Second)
		return nil
	})
	loop("churn", func() error {
		if out, err := cli("port", "add", "extra", "--mode", "bridge", "--tap-netns", netlab.Path(extra), "--address", "10.77.0.99/24"); err != nil {
			return fmt.Errorf("port add: %v %s", err, out)
		}
		time.Sleep(5 * time.Second)
		if out, err := cli("port", "del", "extra"); err != nil {
			return fmt.Errorf("port del: %v %s", err, out)
		}
		time.Sleep(5 * time.Second)
		return nil
	})
	loop("reload-capture", func() error {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return err
		}
		if out, err := cli("capture", "p1", "-w", filepath.Join(dir, "c.pcap"), "-c", "50", "-G", "10"); err != nil {
			return fmt.Errorf("capture: %v %s", err, out)
		}
		time.Sleep(20 * time.Second)
		return nil
	})

	start := time.Now()
	var samples []sample
	take := func() error {
		s, err := sampleOf(pid)
		if err != nil {
			return err
		}
		s.at = time.Since(start).Round(time.Second)
		mu.Lock()
		s.rounds = rounds
		mu.Unlock()
		samples = append(samples, s)
		fmt.Fprintf(os.Stderr, "%8v  goroutines %4d  fds %4d  rss %7.1f MiB  rounds %d\n", s.at, s.goroutines, s.fds, s.rssMiB, s.rounds)
		return nil
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	deadline := time.After(*duration)
	if err := take(); err != nil {
		return err
	}
sampling:
	for {
		select {
		case <-t.C:
			if err := take(); err != nil {
				return err
			}
		case <-deadline:
			break sampling
		}
	}
	close(stop)
	wg.Wait()
	if err := take(); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "time\tgoroutines\tfds\trss MiB\trounds\t")
	for _, s := range samples {
		fmt.Fprintf(tw, "%v\t%d\t%d\t%.1f\t%d\t\n", s.at, s.goroutines, s.fds, s.rssMiB, s.rounds)
	}
	tw.Flush()
	for _, e := range errs {
		fmt.Println("error during the soak:", e)
	}
	// The first sample after warm-up (the second) against the last, taken
	// once the load stopped.
	base, last := samples[min(1, len(samples)-1)], samples[len(samples)-1]
	var grew []string
	if d := last.goroutines - base.goroutines; d > *maxGor {
		grew = append(grew, fmt.Sprintf("goroutines +%d", d))
	}
	if d := last.fds - base.fds; d > *maxFDs {
		grew = append(grew, fmt.Sprintf("fds +%d", d))
	}
	if d := last.rssMiB - base.rssMiB; d > *maxRSS {
		grew = append(grew, fmt.Sprintf("rss +%.1f MiB", d))
	}
	if len(grew) > 0 {
		return fmt.Errorf("the daemon grew: %s", strings.Join(grew, ", "))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d errors during the soak", len(errs))
	}
	return nil
}

// sampleOf reads the daemon's open FDs and resident memory from /proc and
// its goroutines from its metrics (go_goroutines).
func sampleOf(pid int) (sample, error) {
	var s sample
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(rest)[0])
			s.rssMiB = float64(kb) / 1024
		}
	}
	s.goroutines, err = goroutines(pid)
	return s, err
}

var goroutineRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

// goroutines scrapes go_goroutines from the daemon's metrics endpoint,
// which the lab serves on 127.0.0.1:9464 in the switch's namespace.
func goroutines(pid int) (int, error) {
	out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net",
		"curl", "-sf", "--max-time", "5", "http://127.0.0.1:9464/metrics").Output()
	if err != nil {
		return 0, fmt.Errorf("scrape metrics: %w", err)
	}
	m := goroutineRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no go_goroutines in the metrics")
	}
	return strconv.Atoi(string(m[1]))
}
