// Command runsc measures iperf3 TCP throughput of gVisor runsc sandboxes
// through macvsw ports made by the CNI plugin against kernel macvlan, in
// one run, and prints macvsw ÷ kernel ratios:
//
//	go run ./bench/runsc                          # as root; about 2 minutes
//	go run ./bench/runsc -duration 2s -rounds 3 -variants kernel,tap
//
// Each variant is a lab as in BEHAVIOUR.md §8.1 (tests/netlab): a LAN
// host and two sandbox namespaces, each running a runsc sandbox (built
// from the pinned gVisor by tests/runsclab, cached). The sandboxes' eth0
// is (a) "kernel": a kernel macvlan in bridge mode on the lower; (b)
// "tap": a macvsw bridge-mode tap port made by macvsw-cni (ADD through
// libcni, host-local IPAM); (c) "afpacket": a macvsw afpacket port made by
// macvsw-cni (a veth whose far end the daemon reads with AF_PACKET). Two
// measurements per variant: sandbox 0 → the LAN host (iperf3 server in
// the host namespace) and sandbox 0 → sandbox 1 (server in the sibling
// sandbox). Every variant's lab is built first and the rounds interleave
// the variants, so noise from other work on the machine spreads over all
// of them; each figure is the median of -rounds runs.
//
// It never touches the host's interfaces: everything lives in namespaces
// the labs create and delete, and CNI state lives in temporary
// directories.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/macvsw/macvsw/tests/cnilab"
	"github.com/macvsw/macvsw/tests/netlab"
	"github.com/macvsw/macvsw/tests/runsclab"
)

var (
	duration = flag.Duration("duration", 5*time.Second, "length of each iperf3 run")
	rounds   = flag.Int("rounds", 3, "runs of each measurement; the median is reported")
	variants = flag.String("variants", "kernel,tap,afpacket", "variants to run (kernel is the reference for the ratios)")
)

// variant is one built lab with its two sandboxes.
type variant struct {
	name  string
	v     *netlab.Variant
	sb    [2]*runsclab.Sandbox
	addr  [2]string // the sandboxes' IPv4 addresses
	lan   []float64 // Gbit/s per round, sandbox 0 -> LAN host
	sib   []float64 // Gbit/s per round, sandbox 0 -> sandbox 1
	close []func() error
}

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench/runsc:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	if err := netlab.Available(); err != nil {
		return err
	}
	if *rounds < 1 || *duration < time.Second {
		return errors.New("-rounds must be at least 1 and -duration at least 1s")
	}
	names := strings.Split(*variants, ",")
	for _, n := range names {
		if n != "kernel" && n != "tap" && n != "afpacket" {
			return fmt.Errorf("unknown variant %q (want kernel, tap, afpacket)", n)
		}
	}
	fmt.Fprintln(os.Stderr, "building runsc (cached after the first time), macvsw and the CNI plugins...")
	rs, err := runsclab.Pinned(ctx)
	if err != nil {
		return err
	}
	plugins, err := cnilab.Build(ctx)
	if err != nil {
		return err
	}
	defer cnilab.Remove()
	tmp, err := os.MkdirTemp("", "macvsw-bench-runsc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	bin, err := netlab.BuildBinary(root, tmp)
	if err != nil {
		return err
	}

	var vs []*variant
	defer func() {
		for _, v := range vs {
			for i := len(v.close) - 1; i >= 0; i-- {
				if err := v.close[i](); err != nil {
					fmt.Fprintf(os.Stderr, "cleanup %s: %v\n", v.name, err)
				}
			}
		}
	}()
	for _, n := range names {
		v := &variant{name: n}
		vs = append(vs, v)
		if err := build(ctx, v, rs.Path, bin, plugins, tmp); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		fmt.Fprintf(os.Stderr, "%s: lab up, sandboxes at %s and %s\n", n, v.addr[0], v.addr[1])
	}
	secs := int(duration.Seconds())
	for r := 1; r <= *rounds; r++ {
		for _, v := range vs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lan, err := iperfToLAN(ctx, v, secs)
			if err != nil {
				return fmt.Errorf("%s round %d, sandbox -> LAN: %w", v.name, r, err)
			}
			sib, err := iperfToSibling(ctx, v, secs)
			if err != nil {
				return fmt.Errorf("%s round %d, sandbox -> sibling: %w", v.name, r, err)
			}
			v.lan, v.sib = append(v.lan, lan), append(v.sib, sib)
			fmt.Fprintf(os.Stderr, "round %d %-8s  -> LAN %.2f Gbit/s   -> sibling %.2f Gbit/s\n", r, v.name, lan, sib)
		}
	}
	report(vs)
	return nil
}

// build makes a variant's lab, its ports and its two sandboxes; v.close
// collects what undoes them.
func build(ctx context.Context, v *variant, runsc, bin string, plugins *cnilab.Plugins, tmp string) error {
	specs := []netlab.SandboxSpec{{Mode: "bridge"}, {Mode: "bridge"}}
	var lab *netlab.Variant
	var err error
	if v.name == "kernel" {
		lab, err = netlab.BuildKernel("mvsbr", false, specs)
	} else {
		lab, err = netlab.BuildMacvsw("mvsbr", bin, tmp, false, nil)
	}
	v.v = lab
	v.close = append(v.close, lab.Close)
	if err != nil {
		return err
	}
	var nss [2]string
	if v.name == "kernel" {
		copy(nss[:], lab.Sandboxes)
		v.addr = [2]string{netlab.SandboxIP4(0), netlab.SandboxIP4(1)}
	} else {
		n := cnilab.Net{Socket: lab.Socket, DataDir: filepath.Join(tmp, lab.Lab.Prefix+"-ipam"), NoIPv6: true}
		if v.name == "afpacket" {
			n.Kind, n.VethNetns = "afpacket", netlab.Path(lab.Topo.SW)
		}
		list, err := n.List()
		if err != nil {
			return err
		}
		rt := plugins.Config(filepath.Join(tmp, lab.Lab.Prefix+"-cache"))
		for i := range nss {
			if nss[i], err = lab.Lab.AddNS(fmt.Sprintf("sb%d", i)); err != nil {
				return err
			}
			rc := &libcni.RuntimeConf{ContainerID: fmt.Sprintf("%s-%d", lab.Lab.Prefix, i), NetNS: netlab.Path(nss[i]), IfName: "eth0"}
			r, err := rt.AddNetworkList(ctx, list, rc)
			if err != nil {
				return fmt.Errorf("CNI ADD: %w", err)
			}
			v.close = append(v.close, func() error { return rt.DelNetworkList(context.Background(), list, rc) })
			res, err := types100.NewResultFromResult(r)
			if err != nil || len(res.IPs) == 0 {
				return fmt.Errorf("CNI ADD result %v: %v", r, err)
			}
			v.addr[i] = res.IPs[0].Address.IP.String()
		}
	}
	for i, ns := range nss {
		s, err := runsclab.Start(ctx, runsclab.Config{Runsc: runsc, NetNS: ns})
		if err != nil {
			return err
		}
		v.sb[i] = s
		v.close = append(v.close, s.Close)
	}
	return nil
}

// iperfToLAN runs a TCP iperf3 from sandbox 0 to a server in the LAN
// host's namespace.
func iperfToLAN(ctx context.Context, v *variant, secs int) (float64, error) {
	srv, err := v.v.Lab.Start(v.v.Topo.Host, nil, nil, "timeout", fmt.Sprint(secs+30), "iperf3", "-s", "-1")
	if err != nil {
		return 0, err
	}
	defer netlab.Stop(srv, 5*time.Second)
	return iperfClient(ctx, v.sb[0], netlab.HostIP4, secs)
}

// iperfToSibling runs a TCP iperf3 from sandbox 0 to a server in sandbox
// 1.
func iperfToSibling(ctx context.Context, v *variant, secs int) (float64, error) {
	srv, err := v.sb[1].Spawn("timeout", fmt.Sprint(secs+30), "iperf3", "-s", "-1")
	if err != nil {
		return 0, err
	}
	gbps, err := iperfClient(ctx, v.sb[0], v.addr[1], secs)
	// A one-off server exits after its test; one that is still there (its
	// client never got through) is stopped so the next round's can listen.
	if _, werr := srv.Wait(5 * time.Second); werr != nil {
		srv.Cmd.Process.Signal(syscall.SIGTERM) // runsc exec passes it on
		if out, werr := srv.Wait(10 * time.Second); werr != nil && err == nil {
			err = fmt.Errorf("iperf3 server in the sibling did not finish: %v: %s", werr, out)
		}
	}
	return gbps, err
}

// iperfClient runs the iperf3 client in s toward dst, retrying while the
// server starts, and returns the receiver's rate in Gbit/s.
func iperfClient(ctx context.Context, s *runsclab.Sandbox, dst string, secs int) (float64, error) {
	var out string
	var err error
	time.Sleep(500 * time.Millisecond) // the server starts listening
	for i := 0; i < 15; i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+30)*time.Second)
		out, err = s.Exec(cctx, "timeout", fmt.Sprint(secs+20), "iperf3", "-J", "-c", dst, "-t", fmt.Sprint(secs))
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		fmt.Fprintf(os.Stderr, "  iperf3 -c %s, attempt %d: %v\n", dst, i+1, firstLine(err.Error()))
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func report(vs []*variant) {
	var ref *variant
	for _, v := range vs {
		if v.name == "kernel" {
			ref = v
		}
	}
	fmt.Printf("runsc iperf3 TCP, %v per run, median of %d rounds (Gbit/s; ratio = ÷ kernel macvlan, same run)\n", *duration, *rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\trunsc -> LAN\tratio\trunsc -> sibling\tratio\t")
	for _, v := range vs {
		lan, sib := median(v.lan), median(v.sib)
		rl, rsib := "-", "-"
		if ref != nil && ref != v {
			rl = fmt.Sprintf("%.2f×", lan/median(ref.lan))
			rsib = fmt.Sprintf("%.2f×", sib/median(ref.sib))
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%.2f\t%s\t\n", v.name, lan, rl, sib, rsib)
	}
	tw.Flush()
}

// moduleRoot is the directory holding the repository's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the macvsw module: run from the repository")
		}
		dir = parent
	}
}
