package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/macvsw/macvsw/cmd/macvsw/api"
	"github.com/macvsw/macvsw/config"
	vswitch "github.com/macvsw/macvsw/switch"
	"golang.org/x/sys/unix"
)

func TestPeerCheck(t *testing.T) {
	me := uint32(os.Geteuid())
	for _, tc := range []struct {
		gid  int
		cred unix.Ucred
		want bool
	}{
		{-1, unix.Ucred{Uid: 0, Gid: 0}, true},
		{-1, unix.Ucred{Uid: me, Gid: 1234}, true},
		{-1, unix.Ucred{Uid: 65534, Gid: 65534}, me == 65534},
		{4321, unix.Ucred{Uid: 65534, Gid: 4321}, true},
		{4321, unix.Ucred{Uid: 65534, Gid: 65534, Pid: int32(os.Getpid())}, me == 65534},
	} {
		a := &apiServer{gid: tc.gid}
		if got := a.allowed(&tc.cred); got != tc.want {
			t.Errorf("gid %d, peer %+v: allowed %v, want %v", tc.gid, tc.cred, got, tc.want)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", vswitch.ErrNotFound), http.StatusNotFound},
		{&vswitch.PortError{Port: "a", Op: "up", Err: vswitch.ErrAddrInUse}, http.StatusConflict},
		{&vswitch.PortError{Port: "a", Op: "set mtu", Err: vswitch.ErrMTU}, http.StatusBadRequest},
		{&config.FieldError{Err: config.ErrUnknownKey}, http.StatusBadRequest},
		{badRequest("nope"), http.StatusBadRequest},
		{errors.New("boom"), http.StatusInternalServerError},
	} {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestPcapWriter(t *testing.T) {
	var b bytes.Buffer
	w := newPcapWriter(&b, pcapSnapLen)
	if err := w.header(); err != nil {
		t.Fatal(err)
	}
	frame := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	if err := w.record(time.Unix(100, 5000), len(frame), frame); err != nil {
		t.Fatal(err)
	}
	h := b.Bytes()
	if binary.LittleEndian.Uint32(h[0:]) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(h[20:]) != 1 {
		t.Errorf("global header % x", h[:24])
	}
	r := h[24:]
	if binary.LittleEndian.Uint32(r[0:]) != 100 || binary.LittleEndian.Uint32(r[4:]) != 5 ||
		binary.LittleEndian.Uint32(r[8:]) != uint32(len(frame)) || !bytes.Equal(r[16:], frame) {
		t.Errorf("record % x", r)
	}
}

func TestOwnerMatches(t *testing.T) {
	a := &api.Owner{ContainerID: "c1", IfName: "eth0", Network: "net1"}
	legacy := &api.Owner{ContainerID: "c1", IfName: "eth0"} // recorded before owners had a network
	for _, tc := range []struct {
		filter api.Owner
		owner  *api.Owner
		want   bool
	}{
		{api.Owner{}, a, true},
		{api.Owner{}, nil, false},
		{api.Owner{ContainerID: "c1"}, a, true},
		{api.Owner{ContainerID: "c2"}, a, false},
		{api.Owner{ContainerID: "c1", IfName: "eth1"}, a, false},
		{api.Owner{ContainerID: "c1", IfName: "eth0", Network: "net1"}, a, true},
		{api.Owner{Network: "net2"}, a, false},
		{api.Owner{Network: "net1"}, legacy, false},
		{api.Owner{ContainerID: "c1", IfName: "eth0"}, legacy, true},
	} {
		if got := ownerMatches(tc.filter, tc.owner); got != tc.want {
			t.Errorf("ownerMatches(%+v, %+v) = %v, want %v", tc.filter, tc.owner, got, tc.want)
		}
	}
}

func TestOwnerQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  *api.Owner
	}{
		{"", nil},
		{"?owned=1", &api.Owner{}},
		{"?container_id=c1", &api.Owner{ContainerID: "c1"}},
		{"?container_id=c1&ifname=eth0&network=n", &api.Owner{ContainerID: "c1", IfName: "eth0", Network: "n"}},
		{"?network=n", &api.Owner{Network: "n"}},
	} {
		r := httptest.NewRequest("GET", "/v1/ports"+tc.query, nil)
		if diff := cmp.Diff(tc.want, ownerQuery(r)); diff != "" {
			t.Errorf("ownerQuery(%q) (-want +got):\n%s", tc.query, diff)
		}
	}
}
