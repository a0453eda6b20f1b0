package tests

import (
	"os/exec"
	"strings"
	"testing"
)

// TestGofmt fails when a Go file in the repository is not gofmt-clean
// (wireguard-go's format_test idea).
func TestGofmt(t *testing.T) {
	out, err := exec.Command("gofmt", "-l", "..").CombinedOutput()
	if err != nil {
		t.Skipf("gofmt unavailable: %v: %s", err, out)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		t.Errorf("gofmt would change:\n%s", files)
	}
}
