package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error classes. Every error from Load, Parse, Validate, CheckHost and
// Overrides.Apply is a *FieldError (or several, joined with errors.Join)
// that wraps exactly one of these, so callers test with errors.Is.
var (
	ErrSyntax       = errors.New("syntax error")  // not YAML, or not one document
	ErrUnknownKey   = errors.New("unknown key")   // a key the schema does not have
	ErrInvalidValue = errors.New("invalid value") // wrong type, out of range, malformed
	ErrDuplicate    = errors.New("duplicate")     // repeated key, port name, MAC, …
	ErrMissing      = errors.New("missing")       // required value absent, or absent on the host
	ErrConflict     = errors.New("conflict")      // two settings that cannot go together
)

// FieldError locates one configuration error. Its message reads
//
//	macvsw.yaml:12:5: ports[1].mac: bad MAC address "zz:00:00:00:00:01"
//
// File is the name given to Parse (the path for Load), or "flag -NAME" for
// a value set by a command-line flag. Line and Column are 1-based and 0
// when unknown (a Config built in code). Field is the dotted path of the
// key, with list indexes (ports[1].tap.netns); empty for a syntax error.
type FieldError struct {
	File   string
	Line   int
	Column int
	Field  string
	Err    error // wraps one of the Err* classes
}

// Error implements error.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File == "" {
			b.WriteString("line ")
		} else {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error, which wraps the error class.
func (e *FieldError) Unwrap() error { return e.Err }

// classError carries a message of its own while matching its class (and an
// optional cause, such as vswitch.ErrBadMAC or fs.ErrNotExist) with errors.Is.
type classError struct {
	class error
	msg   string
	cause error
}

func (e *classError) Error() string { return e.msg }

func (e *classError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.class}
	}
	return []error{e.class, e.cause}
}

func classErrorf(class error, format string, args ...any) error {
	return &classError{class: class, msg: fmt.Sprintf(format, args...)}
}

func classWrap(class, cause error, format string, args ...any) error {
	return &classError{class: class, msg: fmt.Sprintf(format, args...), cause: cause}
}
