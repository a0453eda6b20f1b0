package config

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"

	vswitch "github.com/macvsw/macvsw/switch"
)

// The file's shape, for Marshal only: decoding walks yaml.Node itself to
// keep positions. Every value is written, defaults included, so the output
// documents the running configuration and does not depend on the defaults
// of the binary that reads it back.
type (
	fileConfig struct {
		Lower      fileLower      `yaml:"lower"`
		Broadcast  fileBroadcast  `yaml:"broadcast"`
		Reassembly fileReassembly `yaml:"reassembly"`
		Control    fileControl    `yaml:"control"`
		Metrics    fileMetrics    `yaml:"metrics,omitempty"`
		Log        fileLog        `yaml:"log"`
		Ports      []filePort     `yaml:"ports,omitempty"`
	}
	fileLower struct {
		Interface   string `yaml:"interface"`
		Queues      int    `yaml:"queues"`
		Promiscuous bool   `yaml:"promiscuous"`
		MTU         int    `yaml:"mtu"`
	}
	fileBroadcast struct {
		QueueLen int `yaml:"queue_len"`
		Cutoff   int `yaml:"cutoff"`
	}
	fileControl struct {
		Socket string     `yaml:"socket"`
		Group  string     `yaml:"group,omitempty"`
		Allow  *fileAllow `yaml:"allow,omitempty"`
	}
	fileAllow struct {
		Ports      []string `yaml:"ports,omitempty"`
		Netns      []string `yaml:"netns,omitempty"`
		Interfaces []string `yaml:"interfaces,omitempty"`
		Addresses  []string `yaml:"addresses,omitempty"`
		SocketDirs []string `yaml:"socket_dirs,omitempty"`
		Captures   bool     `yaml:"captures,omitempty"`
	}
	fileMetrics struct {
		Listen string `yaml:"listen,omitempty"`
	}
	fileLog struct {
		Format string `yaml:"format"`
		Level  string `yaml:"level"`
	}
	filePort struct {
		Name         string        `yaml:"name"`
		Mode         string        `yaml:"mode"`
		MAC          string        `yaml:"mac,omitempty"`
		MTU          int           `yaml:"mtu"`
		Queues       int           `yaml:"queues"`
		QueueLen     int           `yaml:"queue_len"`
		AllMulticast bool          `yaml:"allmulticast"`
		Multicast    []string      `yaml:"multicast,omitempty"`
		SourceMACs   []string      `yaml:"source_macs,omitempty"`
		NoDst        bool          `yaml:"nodst,omitempty"`
		NoPromisc    bool          `yaml:"nopromisc,omitempty"`
		BCQueueLen   int           `yaml:"bcqueuelen"`
		Police       *filePolice   `yaml:"police,omitempty"`
		SpoofCheck   bool          `yaml:"spoofcheck,omitempty"`
		BusyPoll     string        `yaml:"busy_poll,omitempty"`
		AllowedIPs   []string      `yaml:"allowed_ips,omitempty"`
		Tap          *fileTap      `yaml:"tap,omitempty"`
		AFPacket     *fileAFPacket `yaml:"afpacket,omitempty"`
		Socket       *fileSocket   `yaml:"socket,omitempty"`
	}
	fileTap struct {
		Netns     string      `yaml:"netns"`
		Ifname    string      `yaml:"ifname"`
		Addresses []string    `yaml:"addresses,omitempty"`
		Routes    []fileRoute `yaml:"routes,omitempty"`
		Offloads  bool        `yaml:"offloads"`
		Adopt     bool        `yaml:"adopt,omitempty"`
		LoUp      bool        `yaml:"lo_up"`
	}
	filePolice struct {
		PPS        uint64 `yaml:"pps,omitempty"`
		BPS        uint64 `yaml:"bps,omitempty"`
		Burst      uint64 `yaml:"burst,omitempty"`
		BurstBytes uint64 `yaml:"burst_bytes,omitempty"`
		FloodPPS   uint64 `yaml:"flood_pps,omitempty"`
		FloodBurst uint64 `yaml:"flood_burst,omitempty"`
	}
	fileRoute struct {
		To     string `yaml:"to"`
		Via    string `yaml:"via,omitempty"`
		Metric int    `yaml:"metric,omitempty"`
	}
	fileAFPacket struct {
		Interface string `yaml:"interface"`
		Netns     string `yaml:"netns,omitempty"`
	}
	fileSocket struct {
		Type    string `yaml:"type"`
		Listen  string `yaml:"listen,omitempty"`
		Connect string `yaml:"connect,omitempty"`
		Peer    string `yaml:"peer,omitempty"`
	}
)

// Marshal returns c as YAML that Parse turns back into an equal Config:
// every value explicit, generated MACs included (for the API's running
// config). It fails only for values no file could hold, such as an unknown
// Mode or log level; it does not otherwise validate.
func (c *Config) Marshal() ([]byte, error) {
	level, ok := logLevelString(c.Log.Level)
	if !ok {
		return nil, fmt.Errorf("marshal config: log.level: unsupported level %v", c.Log.Level)
	}
	f := fileConfig{
		Lower:      fileLower(c.Lower),
		Broadcast:  fileBroadcast(c.Broadcast),
		Reassembly: c.Reassembly.file(),
		Control:    fileControl{Socket: c.Control.Socket, Group: c.Control.Group},
		Metrics:    fileMetrics(c.Metrics),
		Log:        fileLog{Format: string(c.Log.Format), Level: level},
	}
	if a := c.Control.Allow; !a.Equal(Allow{}) {
		fa := &fileAllow{Ports: a.Ports, Netns: a.Netns, Interfaces: a.Interfaces, SocketDirs: a.SocketDirs, Captures: a.Captures}
		for _, p := range a.Addresses {
			fa.Addresses = append(fa.Addresses, p.String())
		}
		f.Control.Allow = fa
	}
	for i, p := range c.Ports {
		mode, err := p.Mode.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("marshal config: ports[%d].mode: %w", i, err)
		}
		fp := filePort{
			Name:         p.Name,
			Mode:         string(mode),
			MTU:          p.MTU,
			Queues:       p.Queues,
			QueueLen:     p.QueueLen,
			AllMulticast: p.AllMulticast,
			Multicast:    macStrings(p.Multicast),
			SourceMACs:   macStrings(p.SourceMACs),
			NoDst:        p.NoDst,
			NoPromisc:    p.NoPromisc,
			BCQueueLen:   p.BCQueueLen,
		}
		if !p.MAC.IsZero() {
			fp.MAC = p.MAC.String()
		}
		f.Ports = append(f.Ports, filePortOf(p, fp))
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&f); err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return b.Bytes(), nil
}

// filePortOf adds p's policing, anti-spoofing and kind to fp.
func filePortOf(p Port, fp filePort) filePort {
	if !p.Police.IsZero() {
		fp.Police = (*filePolice)(&p.Police)
	}
	fp.SpoofCheck = p.SpoofCheck
	if p.BusyPoll != 0 {
		fp.BusyPoll = p.BusyPoll.String()
	}
	for _, a := range p.AllowedIPs {
		fp.AllowedIPs = append(fp.AllowedIPs, a.String())
	}
	if t := p.Tap; t != nil {
		ft := &fileTap{Netns: t.Netns, Ifname: t.Ifname, Offloads: t.Offloads, Adopt: t.Adopt, LoUp: t.LoUp}
		for _, a := range t.Addresses {
			ft.Addresses = append(ft.Addresses, a.String())
		}
		for _, r := range t.Routes {
			fr := fileRoute{To: r.To.String(), Metric: r.Metric}
			if r.Via.IsValid() {
				fr.Via = r.Via.String()
			}
			ft.Routes = append(ft.Routes, fr)
		}
		fp.Tap = ft
	}
	if a := p.AFPacket; a != nil {
		fp.AFPacket = &fileAFPacket{Interface: a.Interface, Netns: a.Netns}
	}
	if so := p.Socket; so != nil {
		fp.Socket = &fileSocket{Type: string(so.Type), Listen: so.Listen, Connect: so.Connect, Peer: so.Peer}
	}
	return fp
}

func macStrings(macs []vswitch.MAC) []string {
	var s []string
	for _, m := range macs {
		s = append(s, m.String())
	}
	return s
}

// MarshalPort returns one port entry as YAML that ParsePort reads back to
// an equal Port (the daemon keeps the ports added through its API this
// way).
func MarshalPort(p Port) ([]byte, error) {
	mode, err := p.Mode.MarshalText()
	if err != nil {
		return nil, fmt.Errorf("marshal port %q: mode: %w", p.Name, err)
	}
	fp := filePort{
		Name: p.Name, Mode: string(mode), MTU: p.MTU, Queues: p.Queues, QueueLen: p.QueueLen,
		AllMulticast: p.AllMulticast, Multicast: macStrings(p.Multicast), SourceMACs: macStrings(p.SourceMACs),
		NoDst: p.NoDst, NoPromisc: p.NoPromisc, BCQueueLen: p.BCQueueLen,
	}
	if !p.MAC.IsZero() {
		fp.MAC = p.MAC.String()
	}
	fp = filePortOf(p, fp)
	b, err := yaml.Marshal(&fp)
	if err != nil {
		return nil, fmt.Errorf("marshal port %q: %w", p.Name, err)
	}
	return b, nil
}
