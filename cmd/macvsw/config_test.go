package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/macvsw/macvsw/config"
	"github.com/macvsw/macvsw/endpoints"
	vswitch "github.com/macvsw/macvsw/switch"
)

// One bad config per error class: `macvsw config check` fails with a
// file:line message naming the field.
func TestConfigCheckErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"syntax", "lower: {interface: lo\nports: [", `syntax\.yaml:\d+(:\d+)?: .*syntax`},
		{"unknown-key", "lower: {interface: lo}\nbogus: 1\n", `unknown-key\.yaml:2:1: bogus: .*unknown`},
		{"bad-mac", "lower: {interface: lo}\nports:\n  - {name: a, mac: 'zz:00:00:00:00:01', afpacket: {interface: x}}\n", `bad-mac\.yaml:3:\d+: ports\[0\]\.mac: `},
		{"duplicate-mac", "lower: {interface: lo}\nports:\n  - {name: a, mac: '02:00:00:00:00:01', afpacket: {interface: x}}\n  - {name: b, mac: '02:00:00:00:00:01', afpacket: {interface: y}}\n", `duplicate-mac\.yaml:4:\d+: ports\[1\]\.mac: .*already used`},
		{"mtu-above-lower", "lower: {interface: lo, mtu: 1500}\nports:\n  - {name: a, mtu: 9000, mac: '02:00:00:00:00:01', afpacket: {interface: x}}\n", `mtu-above-lower\.yaml:3:\d+: ports\[0\]\.mtu: `},
		{"passthru-siblings", "lower: {interface: lo}\nports:\n  - {name: a, mode: passthru, afpacket: {interface: x}}\n  - {name: b, mac: '02:00:00:00:00:01', afpacket: {interface: y}}\n", `passthru-siblings\.yaml:4:\d+: ports\[1\]\.mode: .*passthru`},
		{"missing-netns", "lower: {interface: lo}\nports:\n  - {name: a, mac: '02:00:00:00:00:01', tap: {netns: /var/run/netns/does-not-exist-mvs}}\n", `missing-netns\.yaml:3:\d+: ports\[0\]\.tap\.netns: `},
		{"bad-mode", "lower: {interface: lo}\nports:\n  - {name: a, mode: hub, mac: '02:00:00:00:00:01', afpacket: {interface: x}}\n", `bad-mode\.yaml:3:\d+: ports\[0\]\.mode: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"config", "check", path}, &out, &errb)
			if err == nil {
				t.Fatalf("config check accepted:\n%s", tc.body)
			}
			if !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Errorf("error %q does not match %q", err, tc.want)
			}
		})
	}
}

// TestLimits ties the limits each layer declares for itself: the switch's
// queues per port are the endpoints' and the file's; the file's lower
// queues are what an AF_PACKET endpoint opens at most.
func TestLimits(t *testing.T) {
	if vswitch.MaxQueues != endpoints.MaxQueues || config.MaxPortQueues != vswitch.MaxQueues {
		t.Errorf("queues per port: vswitch %d, endpoints %d, config %d", vswitch.MaxQueues, endpoints.MaxQueues, config.MaxPortQueues)
	}
	if config.MaxLowerQueues != endpoints.MaxPacketQueues {
		t.Errorf("lower queues: config %d, endpoints %d", config.MaxLowerQueues, endpoints.MaxPacketQueues)
	}
}
