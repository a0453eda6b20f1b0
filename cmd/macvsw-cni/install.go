package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const cliUsage = `usage: macvsw-cni install BINDIR [CONFLIST CONFDIR]

macvsw-cni is a CNI plugin: container runtimes run it with CNI_COMMAND set.
"install BINDIR" copies this binary to BINDIR/macvsw-cni (e.g. /opt/cni/bin)
and, with CONFLIST, that network configuration file into CONFDIR (e.g.
/etc/cni/net.d) under its own name; each file is renamed into place.`

// runCLI runs the plugin's own commands (when CNI_COMMAND is not set).
func runCLI(args []string) error {
	if (len(args) != 2 && len(args) != 4) || args[0] != "install" {
		return errors.New(cliUsage)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := install(self, args[1], "macvsw-cni", 0o755); err != nil {
		return err
	}
	if len(args) == 4 {
		return install(args[2], args[3], filepath.Base(args[2]), 0o644)
	}
	return nil
}

// install copies the file at src to dir/name with mode perm, through a
// temporary file in dir renamed into place: a runtime reading it
// meanwhile gets the old file or the new one, never a partial one.
func install(src, dir, name string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	dst := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	return nil
}
