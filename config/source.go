package config

import (
	"cmp"
	"errors"
	"slices"
	"strings"
)

// position is a 1-based line and column in the source file.
type position struct{ line, col int }

// source remembers where a Config's values came from, so that errors found
// after decoding (Validate, CheckHost) still point into the file.
type source struct {
	file string
	// pos maps a field path (ports[1].tap.netns) to its key's position;
	// "" is the document itself.
	pos map[string]position
	// flags maps a field path to the flag that last set it.
	flags map[string]string
	// autoMAC holds the names of ports whose MAC the loader generated.
	autoMAC map[string]bool
}

func newSource(file string) *source {
	return &source{
		file:    file,
		pos:     map[string]position{"": {1, 1}},
		flags:   map[string]string{},
		autoMAC: map[string]bool{},
	}
}

// parentPath returns the path of the value holding path: "ports[1].mac" →
// "ports[1]" → "ports" → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// fieldError builds the error for path, located at path's key or, when the
// file does not have that key, at the nearest enclosing key that it has.
func (s *source) fieldError(path string, err error) *FieldError {
	fe := &FieldError{Field: path, Err: err}
	if s == nil {
		return fe
	}
	if f, ok := s.flags[path]; ok {
		fe.File = "flag -" + f
		return fe
	}
	fe.File = s.file
	for p := path; ; p = parentPath(p) {
		if at, ok := s.pos[p]; ok {
			fe.Line, fe.Column = at.line, at.col
			return fe
		}
		if p == "" {
			return fe
		}
	}
}

// joinErrors sorts errors by position, so they read in file order, and
// joins them. It returns nil for none and the error itself for one.
func joinErrors(errs []*FieldError) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	slices.SortStableFunc(errs, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}
