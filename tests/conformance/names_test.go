package conformance

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// subtestName is the form of every subtest name in this package: a
// two-digit case number of switch/BEHAVIOUR.md §8.2 (1-57), then lower-case
// words joined by underscores. Go leaves such names as they are, and
// `-run 'Test/^NAME$'` selects exactly one of them.
var subtestName = regexp.MustCompile(`^(0[1-9]|[1-4][0-9]|5[0-7])(_[a-z0-9]+)+$`)

// knownSetups are the setups applySetup performs; those on B need B.
var knownSetups = map[string]bool{"": true, "B down": true, "B down inside": true, "B new MAC inside": true, "B allmulti": true, "B joins group": true, "lower down": true, "cutoff -1": true}

// TestCaseTable checks, without root, what the live tests rely on: subtest
// names well formed, unique and stable in meaning (the hairpin word and
// the ports' modes in a conformance case's name agree with the case), and
// every case's participants, addresses and setup known.
func TestCaseTable(t *testing.T) {
	var names [][]string
	var cs []string
	for _, c := range cases {
		cs = append(cs, c.name)
	}
	names = append(names, cs)
	var rules, sends, vectors []string
	for _, r := range controlRules {
		rules = append(rules, r.name)
	}
	for _, s := range counterSends {
		sends = append(sends, s.name)
	}
	for _, v := range vnetVectors {
		vectors = append(vectors, v.name)
	}
	names = append(names, rules, sends, vectors)
	for _, list := range names {
		seen := map[string]bool{}
		for _, n := range list {
			if !subtestName.MatchString(n) {
				t.Errorf("subtest name %q: want NN_words_like_this (NN a case number, 01-57)", n)
			}
			if seen[n] {
				t.Errorf("subtest name %q twice", n)
			}
			seen[n] = true
		}
	}
	for _, r := range rules {
		if !strings.HasPrefix(r, "57_") {
			t.Errorf("control rule %q: the control rules are case 57", r)
		}
	}
	for _, s := range sends {
		if !strings.HasPrefix(s, "43_") {
			t.Errorf("counter send %q: the counters are case 43", s)
		}
	}
	for _, v := range vectors {
		if n, _ := strconv.Atoi(v[:2]); n < 50 || n > 52 {
			t.Errorf("vnet vector %q: numbered by its case, 50-52", v)
		}
	}

	last := 0
	for _, c := range cases {
		n, _ := strconv.Atoi(c.name[:2])
		if n > 42 {
			t.Errorf("case %s: the frame cases are 1-42", c.name)
		}
		if n < last {
			t.Errorf("case %s after case %02d: keep the table in case order", c.name, last)
		}
		last = n
		words := strings.Split(c.name, "_")[1:]
		has := func(w string) bool {
			for _, x := range words {
				if x == w {
					return true
				}
			}
			return false
		}
		// The hairpin word: said when a port or the lower sends, true to
		// the case.
		viaLower := false
		for _, s := range c.sends {
			if s.from != "EXT" {
				viaLower = true
			}
		}
		hp := strings.HasSuffix(c.name, "_hairpin") && !strings.HasSuffix(c.name, "_no_hairpin")
		nhp := strings.HasSuffix(c.name, "_no_hairpin")
		switch {
		case viaLower && c.hairpin && !hp:
			t.Errorf("case %s: hairpin on, the name must end in _hairpin", c.name)
		case viaLower && !c.hairpin && !nhp:
			t.Errorf("case %s: hairpin off, the name must end in _no_hairpin", c.name)
		case !viaLower && (has("hairpin") || c.hairpin):
			t.Errorf("case %s: only the LAN host sends; run it without hairpin and do not name it", c.name)
		}
		// Every port's mode is in the name, as often as it occurs.
		modes := map[string]int{}
		for _, m := range c.modes {
			modes[m]++
		}
		for m, k := range modes {
			got := 0
			for _, w := range words {
				if w == m {
					got++
				}
			}
			if got < k {
				t.Errorf("case %s: %d port(s) in %s mode, the name says %s %d time(s)", c.name, k, m, m, got)
			}
		}
		if len(c.modes) == 0 || len(c.modes) > len(sandboxIndex) {
			t.Errorf("case %s: %d ports, want 1-%d", c.name, len(c.modes), len(sandboxIndex))
		}
		if !knownSetups[c.setup] {
			t.Errorf("case %s: unknown setup %q", c.name, c.setup)
		}
		if strings.HasPrefix(c.setup, "B ") && len(c.modes) < 2 {
			t.Errorf("case %s: setup %q needs port B", c.name, c.setup)
		}
		if c.noBCQ != strings.Contains(c.name, "no_broadcast_queue") {
			t.Errorf("case %s: a zero-length broadcast queue and the name must go together", c.name)
		}
		for _, s := range c.sources {
			if _, err := parseMAC(s); err != nil {
				t.Errorf("case %s: source %q: %v", c.name, s, err)
			}
		}
		if len(c.sends) == 0 {
			t.Errorf("case %s: nothing sent", c.name)
		}
		for j, s := range c.sends {
			if i, ok := sandboxIndex[s.from]; ok && i >= len(c.modes) {
				t.Errorf("case %s send %d: no port %s", c.name, j, s.from)
			} else if !ok && s.from != "EXT" && s.from != "LSTACK" {
				t.Errorf("case %s send %d: unknown sender %q", c.name, j, s.from)
			}
			bad := false
			if s.frames == nil {
				for _, a := range []string{s.dst, s.src} {
					if _, err := parseMAC(a); err != nil {
						t.Errorf("case %s send %d: address %q: %v", c.name, j, a, err)
						bad = true
					}
				}
			}
			// The longest label (the largest nonce) fits in every frame.
			if !bad {
				if _, _, err := buildSend(c, j, math.MaxInt64); err != nil {
					t.Errorf("case %s send %d: %v", c.name, j, err)
				}
			}
		}
	}
	for name := range divergences {
		found := false
		for _, c := range cases {
			found = found || c.name == name
		}
		if !found {
			t.Errorf("divergence for %q: no such case", name)
		}
	}
}
