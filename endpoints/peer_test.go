//go:build linux

package endpoints

import (
	"strings"
	"testing"
)

// TestNetnsSenderMAC: for a veth, the MAC of its peer, in the same
// namespace or in another named one; for any other interface, its own.
func TestNetnsSenderMAC(t *testing.T) {
	requireNetns(t)
	a, pathA := newNetns(t)
	b, _ := newNetns(t)
	nsRun(t, a, "ip", "link", "add", "vsame", "address", "02:00:00:00:aa:01", "type", "veth", "peer", "name", "vsamep", "address", "02:00:00:00:aa:02")
	nsRun(t, a, "ip", "link", "add", "vcross", "address", "02:00:00:00:bb:01", "type", "veth", "peer", "name", "vcrossp", "address", "02:00:00:00:bb:02", "netns", b)
	nsRun(t, a, "ip", "link", "add", "dum", "address", "02:00:00:00:cc:01", "type", "bridge")
	for _, tc := range []struct {
		ifname, mac, how string
	}{
		{"vsame", "02:00:00:00:aa:02", "veth peer vsamep"},
		{"vcross", "02:00:00:00:bb:02", "veth peer vcrossp in /var/run/netns/" + b},
		{"dum", "02:00:00:00:cc:01", "dum itself"},
	} {
		mac, how, err := SenderMAC(pathA, tc.ifname)
		if err != nil || mac.String() != tc.mac || !strings.Contains(how, tc.how) {
			t.Errorf("SenderMAC(%s) = %v, %q, %v; want %s, %q", tc.ifname, mac, how, err, tc.mac, tc.how)
		}
	}
	if _, _, err := SenderMAC(pathA, "nosuch"); err == nil {
		t.Error("SenderMAC of a missing interface: no error")
	}
}
