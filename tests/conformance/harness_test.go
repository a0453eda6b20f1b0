package conformance

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"

	"github.com/macvsw/macvsw/tests/netlab"
)

// stepError is a harness failure: the step of building, configuring or
// driving a lab that failed (not a difference between the kernel and
// macvsw). The summary tables show the step; the subtest's log has the
// whole error.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// step wraps err, if any, as the failure of the named step.
func step(name string, err error) error {
	if err == nil {
		return nil
	}
	return &stepError{step: name, err: err}
}

// stepOf returns the name of the failed step, or the error itself when it
// is not a stepError.
func stepOf(err error) string {
	var se *stepError
	if errors.As(err, &se) {
		return se.step
	}
	return err.Error()
}

// teardown registers v's teardown with t, so that the lab goes even when
// the subtest fails or stops early, and returns it for tearing down at
// once. Either call reports a failed teardown as an error of t; the second
// does nothing.
func teardown(t *testing.T, what string, v *netlab.Variant) func() {
	if v == nil {
		return func() {}
	}
	var once sync.Once
	f := func() {
		once.Do(func() {
			if err := v.Close(); err != nil {
				t.Errorf("tear down the %s lab: %v", what, err)
			}
		})
	}
	t.Cleanup(f)
	return f
}

// summary collects the rows that a test's subtests report, in any order
// (and from any goroutine), and renders them, sorted by their order key,
// as one aligned table; the parent test prints it from a t.Cleanup, after
// all its subtests, failed ones included.
type summary struct {
	header []string

	mu   sync.Mutex
	rows []summaryRow
}

type summaryRow struct {
	order int
	cells []string
}

func newSummary(header ...string) *summary { return &summary{header: header} }

// add records one row; order places it in the table.
func (s *summary) add(order int, cells ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows = append(s.rows, summaryRow{order, cells})
}

// count returns how many rows have a last cell (the verdict) starting with
// prefix.
func (s *summary) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.rows {
		if len(r.cells) > 0 && strings.HasPrefix(r.cells[len(r.cells)-1], prefix) {
			n++
		}
	}
	return n
}

// len returns the number of rows.
func (s *summary) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rows)
}

func (s *summary) String() string {
	s.mu.Lock()
	rows := append([]summaryRow(nil), s.rows...)
	s.mu.Unlock()
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].order < rows[j].order })
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, strings.Join(s.header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r.cells, "\t"))
	}
	w.Flush()
	return b.String()
}

// Verdicts, the last cell of every summary row.
const (
	verdictSame    = "same"
	verdictKnown   = "known divergence"
	verdictDiffers = "DIFFERS"
	verdictHarness = "HARNESS ERROR"
)

// tally is the one-line account of a summary's verdicts.
func (s *summary) tally(unit string) string {
	return fmt.Sprintf("%d %s: %d same, %d known divergences, %d differ, %d harness errors",
		s.len(), unit, s.count(verdictSame), s.count(verdictKnown), s.count(verdictDiffers), s.count(verdictHarness))
}
