package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// The command line's conventions, shared by every command:
//
//   - `macvsw CMD [SUB] --help` (or -h) prints that command's usage, and
//     only it, on stdout, and exits 0;
//   - a usage mistake (an unknown flag, a missing argument) is printed
//     once, on stderr, with the command's usage, and exits 2;
//   - a bad flag value is named by the flag the user typed (`--mac: bad
//     MAC address "x"`) and exits 2;
//   - every command that prints has --json.

// errUsage marks a command-line mistake that has already been printed:
// exit status 2 and nothing more.
var errUsage = errors.New("usage")

// flagError is a bad value of a flag (or argument) the user typed: exit
// status 2, with the message.
func flagError(format string, args ...any) error {
	return &exitErr{exitUsage, fmt.Errorf(format, args...)}
}

// newFlagSet returns the flag set of a command. usage is its synopsis and
// description, printed before the flags.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n", strings.TrimRight(usage, "\n"))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// wantsHelp reports whether args ask for help (-h, -help, --help) before
// any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// parseArgs parses a command's arguments, flags anywhere among the
// positional ones, and returns the positional ones. With --help it prints
// the usage on stdout and returns flag.ErrHelp; a flag the set does not
// have, or a bad value for a typed flag, is printed once by the flag
// package with the usage, and returns errUsage.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	if wantsHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, flag.ErrHelp
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// usageFail prints a usage mistake and the command's usage on its flag
// set's output (stderr), and returns errUsage.
func usageFail(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

// wantArgs checks the number of positional arguments: at least min, at
// most max (-1: any); names says what they are, for the message.
func wantArgs(fs *flag.FlagSet, pos []string, min, max int, names string) error {
	switch {
	case len(pos) < min:
		return usageFail(fs, "missing %s", names)
	case max >= 0 && len(pos) > max:
		return usageFail(fs, "unexpected argument %q", pos[max])
	}
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
