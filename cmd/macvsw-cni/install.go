package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const cliUsage = `usage: macvsw-cni install DIR

macvsw-cni is a CNI plugin: container runtimes run it with CNI_COMMAND set.
"install DIR" copies this binary to DIR/macvsw-cni, e.g. /opt/cni/bin.`

// runCLI runs the plugin's own commands (when CNI_COMMAND is not set).
func runCLI(args []string) error {
	if len(args) != 2 || args[0] != "install" {
		return errors.New(cliUsage)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	return install(self, args[1])
}

// install copies the binary at src to dir/macvsw-cni, executable, through
// a temporary file in dir renamed into place: a runtime running the
// plugin meanwhile gets the old binary or the new one, never a partial
// one.
func install(src, dir string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, ".macvsw-cni-*")
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
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	dst := filepath.Join(dir, "macvsw-cni")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("install into %s: %w", dir, err)
	}
	return nil
}
