package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckHost checks what the file names on this host: every tap.netns path
// exists, and lower.interface and every afpacket.interface exist in the
// current network namespace (/sys/class/net). Parse never looks at the host,
// so a config can be checked on another machine; `macvsw config check`
// calls both. Errors are [*FieldError]s of class ErrMissing (wrapping
// fs.ErrNotExist) or ErrInvalidValue.
func (c *Config) CheckHost() error { return c.checkHost(os.Stat) }

// checkHost is CheckHost with an injectable stat, for tests.
func (c *Config) checkHost(stat func(string) (fs.FileInfo, error)) error {
	var errs []*FieldError
	check := func(path, file, what string) {
		_, err := stat(file)
		switch {
		case err == nil:
			return
		case errors.Is(err, fs.ErrNotExist):
			err = classWrap(ErrMissing, err, "%s %s does not exist", what, file)
		default:
			err = classWrap(ErrInvalidValue, err, "%s: %v", what, err)
		}
		errs = append(errs, c.src.fieldError(path, err))
	}
	if c.Lower.Interface != "" {
		check("lower.interface", sysClassNet(c.Lower.Interface), "interface")
	}
	for i, p := range c.Ports {
		if p.Tap != nil && p.Tap.Netns != "" {
			check(fmt.Sprintf("ports[%d].tap.netns", i), p.Tap.Netns, "network namespace")
		}
		if p.AFPacket != nil && p.AFPacket.Interface != "" {
			check(fmt.Sprintf("ports[%d].afpacket.interface", i), sysClassNet(p.AFPacket.Interface), "interface")
		}
	}
	return joinErrors(errs)
}

func sysClassNet(ifname string) string { return filepath.Join("/sys/class/net", ifname) }
