//go:build linux

package endpoints

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNetnsLinkWatchOverflow: notifications the kernel drops because the
// watcher's socket overflowed (ENOBUFS) end its subscription; the watcher
// subscribes again, reads the interface afresh, warns, and later changes
// still arrive.
func TestNetnsLinkWatchOverflow(t *testing.T) {
	requireNetns(t)
	goroutineLeakCheck(t)
	_, _, nsB, pathB := vethPair(t)
	ns, err := openNetNS(pathB)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.close()
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))
	gate := make(chan struct{})
	var mu sync.Mutex
	var mtus []uint32
	w, err := watchLink(ns, "vethb", log, 2048, func(_, st LinkState) {
		<-gate // a slow consumer: the socket overflows behind it
		mu.Lock()
		mtus = append(mtus, st.MTU)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// One change the watcher starts handling (and blocks in), then a
	// flood of notifications: 200 veth pairs created and deleted.
	nsRun(t, nsB, "ip", "link", "set", "vethb", "mtu", "1400")
	var batch strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&batch, "link add x%d type veth peer name y%d\n", i, i)
	}
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&batch, "link del x%d\n", i)
	}
	f, err := os.CreateTemp(t.TempDir(), "batch")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(batch.String())
	f.Close()
	if out, err := exec.Command("ip", "-n", nsB, "-batch", f.Name()).CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v %s", err, out)
	}
	close(gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		logMu.Lock()
		overflowed := strings.Contains(logs.String(), "subscribing again")
		logMu.Unlock()
		if overflowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no overflow seen; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// After the overflow: a change made now still arrives.
	nsRun(t, nsB, "ip", "link", "set", "vethb", "mtu", "1300")
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		last := uint32(0)
		if len(mtus) > 0 {
			last = mtus[len(mtus)-1]
		}
		mu.Unlock()
		if last == 1300 && w.State().MTU == 1300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the change after the overflow never arrived: mtus %v state %+v\n%s", mtus, w.State(), logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
