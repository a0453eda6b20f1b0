package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestDemoInMem(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo probes 18 paths, some until they time out")
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"demo"}, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "all 18 probes match kernel macvlan") {
		t.Errorf("demo output:\n%s", out.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), nil, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("no args: %v, want usage error", err)
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errb); !errors.Is(err, errUsage) {
		t.Errorf("unknown command: %v, want usage error", err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "macvsw ") {
		t.Errorf("version: %v %q", err, out.String())
	}
}
