package main

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
)

// conf is a network config with the given extra keys.
func conf(extra string) []byte {
	s := `{"cniVersion": "1.1.0", "name": "net1", "type": "macvsw-cni"`
	if extra != "" {
		s += ", " + extra
	}
	return []byte(s + "}")
}

func TestLoadSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin []byte
		args  string
		want  settings // conf left out of the comparison
	}{
		{"defaults", conf(""), "",
			settings{socket: api.DefaultSocket, kind: kindTap, mode: "bridge", offloads: true}},
		{"every key", conf(`"socket": "/run/x/s.sock", "kind": "tap", "mode": "vepa", "mtu": 1400, "queues": 4, "mac": "02:AA:00:00:00:01", "offloads": false`), "",
			settings{socket: "/run/x/s.sock", kind: kindTap, mode: "vepa", mtu: 1400, queues: 4, mac: "02:aa:00:00:00:01"}},
		{"afpacket", conf(`"kind": "afpacket", "vethNetns": "/var/run/netns/sw"`), "",
			settings{socket: api.DefaultSocket, kind: kindAFPacket, mode: "bridge", offloads: true, vethNetns: "/var/run/netns/sw"}},
		{"unknown keys ignored", conf(`"frobnicate": 3, "cni.dev/attachments": [], "ipam": {"type": "host-local", "x": 1}`), "",
			settings{socket: api.DefaultSocket, kind: kindTap, mode: "bridge", offloads: true}},
		{"CNI_ARGS MAC beats the key", conf(`"mac": "02:00:00:00:00:01"`), "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:02",
			settings{socket: api.DefaultSocket, kind: kindTap, mode: "bridge", offloads: true, mac: "02:00:00:00:00:02"}},
		{"runtimeConfig beats CNI_ARGS", conf(`"runtimeConfig": {"mac": "02:00:00:00:00:03"}`), "MAC=02:00:00:00:00:02",
			settings{socket: api.DefaultSocket, kind: kindTap, mode: "bridge", offloads: true, mac: "02:00:00:00:00:03"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := loadSettings(tc.stdin, tc.args)
			if err != nil {
				t.Fatalf("loadSettings: %v", err)
			}
			s.conf = nil
			if diff := cmp.Diff(tc.want, *s, cmp.AllowUnexported(settings{})); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoadSettingsErrors: every bad value is a CNI error with the spec's
// code whose message names the key (or the variable) and what is wanted.
func TestLoadSettingsErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin []byte
		args  string
		code  uint
		says  []string
	}{
		{"bad mode", conf(`"mode": "hub"`), "", types.ErrInvalidNetworkConfig, []string{"mode", "hub", "bridge"}},
		{"bad kind", conf(`"kind": "macvtap"`), "", types.ErrInvalidNetworkConfig, []string{"kind", "macvtap", "afpacket"}},
		{"mtu too small", conf(`"mtu": 20`), "", types.ErrInvalidNetworkConfig, []string{"mtu 20", "68..65535"}},
		{"mtu a string", conf(`"mtu": "big"`), "", types.ErrInvalidNetworkConfig, []string{"mtu", "string"}},
		{"queues", conf(`"queues": 300`), "", types.ErrInvalidNetworkConfig, []string{"queues 300", "1..256"}},
		{"relative socket", conf(`"socket": "macvsw.sock"`), "", types.ErrInvalidNetworkConfig, []string{"socket", "absolute"}},
		{"bad mac", conf(`"mac": "02:00:00:00:00"`), "", types.ErrInvalidNetworkConfig, []string{"mac", "02:00:00:00:00"}},
		{"group mac", conf(`"mac": "01:00:5e:00:00:01"`), "", types.ErrInvalidNetworkConfig, []string{"mac", "unicast"}},
		{"bad runtimeConfig mac", conf(`"runtimeConfig": {"mac": "zz"}`), "", types.ErrInvalidNetworkConfig, []string{"runtimeConfig.mac"}},
		{"bad CNI_ARGS mac", conf(""), "MAC=nope", types.ErrInvalidEnvironmentVariables, []string{"CNI_ARGS MAC", "nope"}},
		{"unknown CNI_ARGS", conf(""), "K8S_POD_NAME=x", types.ErrInvalidEnvironmentVariables, []string{"CNI_ARGS", "K8S_POD_NAME"}},
		{"vethNetns on a tap", conf(`"vethNetns": "/var/run/netns/sw"`), "", types.ErrInvalidNetworkConfig, []string{"vethNetns", "afpacket"}},
		{"vethNetns relative", conf(`"kind": "afpacket", "vethNetns": "sw"`), "", types.ErrInvalidNetworkConfig, []string{"vethNetns", "absolute"}},
		{"no offloads on afpacket", conf(`"kind": "afpacket", "offloads": false`), "", types.ErrUnsupportedField, []string{`"offloads": false`}},
		{"passthru with a mac", conf(`"mode": "passthru", "mac": "02:00:00:00:00:01"`), "", types.ErrInvalidNetworkConfig, []string{"passthru"}},
		{"not JSON", []byte(`{"name": `), "", types.ErrDecodingFailure, []string{"JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSettings(tc.stdin, tc.args)
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("loadSettings = %v, want a *types.Error", err)
			}
			if te.Code != tc.code {
				t.Errorf("code %d (%s), want %d", te.Code, te.Msg, tc.code)
			}
			for _, s := range tc.says {
				if !strings.Contains(te.Msg, s) {
					t.Errorf("message %q does not say %q", te.Msg, s)
				}
			}
		})
	}
}

func TestPortName(t *testing.T) {
	a := portName("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "eth0")
	if len(a) > 15 || !strings.HasPrefix(a, "mvs") {
		t.Errorf("portName = %q: want at most 15 bytes (an interface name), starting mvs", a)
	}
	if b := portName("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "eth0"); b != a {
		t.Errorf("portName is not deterministic: %q, %q", a, b)
	}
	seen := map[string]string{}
	for _, k := range [][2]string{{"c1", "eth0"}, {"c1", "eth1"}, {"c2", "eth0"}, {"c1e", "th0"}, {"c1eth", "0"}} {
		n := portName(k[0], k[1])
		if other, ok := seen[n]; ok {
			t.Errorf("portName(%q, %q) = %q, as for %s", k[0], k[1], n, other)
		}
		seen[n] = k[0] + "/" + k[1]
	}
}

func TestPortEntry(t *testing.T) {
	o := owner("net1", "c1", "eth0")
	tap, err := loadSettings(conf(`"mtu": 1400, "queues": 2, "mac": "02:00:00:00:00:07", "offloads": false`), "")
	if err != nil {
		t.Fatal(err)
	}
	got := tap.portEntry("mvsx", "/var/run/netns/c1", "eth0", o, []string{"10.1.0.2/24"},
		[]portRoute{{To: "0.0.0.0/0", Via: "10.1.0.1"}}, "")
	want := `{"mac":"02:00:00:00:00:07","mode":"bridge","mtu":1400,"name":"mvsx",` +
		`"owner":{"container_id":"c1","ifname":"eth0","network":"net1"},"queues":2,` +
		`"tap":{"addresses":["10.1.0.2/24"],"ifname":"eth0","lo_up":true,"netns":"/var/run/netns/c1","offloads":false,` +
		`"routes":[{"to":"0.0.0.0/0","via":"10.1.0.1"}]}}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("tap entry\n got %s\nwant %s", b, want)
	}
	af, err := loadSettings(conf(`"kind": "afpacket", "vethNetns": "/var/run/netns/sw"`), "")
	if err != nil {
		t.Fatal(err)
	}
	got = af.portEntry("mvsx", "/var/run/netns/c1", "eth0", o, nil, nil, "02:00:00:00:00:08")
	want = `{"afpacket":{"interface":"mvsx","netns":"/var/run/netns/sw"},"mac":"02:00:00:00:00:08","mode":"bridge","name":"mvsx",` +
		`"owner":{"container_id":"c1","ifname":"eth0","network":"net1"}}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("afpacket entry\n got %s\nwant %s", b, want)
	}
}

func TestTapRoutes(t *testing.T) {
	route := func(dst, gw string, prio int) *types.Route {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			t.Fatal(err)
		}
		return &types.Route{Dst: *n, GW: net.ParseIP(gw), Priority: prio}
	}
	gw4, gw6 := net.ParseIP("10.1.0.1"), net.ParseIP("fd01::1")
	got, err := tapRoutes([]*types.Route{
		route("0.0.0.0/0", "", 0),
		route("::/0", "", 0),
		route("10.9.0.0/16", "10.1.0.254", 50),
	}, gw4, gw6)
	if err != nil {
		t.Fatal(err)
	}
	want := []portRoute{{To: "0.0.0.0/0", Via: "10.1.0.1"}, {To: "::/0", Via: "fd01::1"}, {To: "10.9.0.0/16", Via: "10.1.0.254", Metric: 50}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tapRoutes (-want +got):\n%s", diff)
	}
	// No gateway for the family: an on-link route.
	if got, _ := tapRoutes([]*types.Route{route("::/0", "", 0)}, gw4, nil); len(got) != 1 || got[0].Via != "" {
		t.Errorf("a v6 route without a v6 gateway: %+v, want on-link", got)
	}
	r := route("10.9.0.0/16", "", 0)
	r.MTU = 1300
	_, err = tapRoutes([]*types.Route{r}, gw4, gw6)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrUnsupportedField || !strings.Contains(te.Msg, "10.9.0.0/16") {
		t.Errorf("a route with an MTU: %v, want code 2 naming the route", err)
	}
}
