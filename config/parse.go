package config

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	vswitch "github.com/macvsw/macvsw/switch"
)

// Load reads, decodes and validates the configuration file at path. Errors
// name path, as [Parse] does. Load does not look at the host: call
// [Config.CheckHost] for that.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a YAML configuration; name is used only in
// error messages. It starts from [Defaults], decodes every port onto
// [DefaultPort], gives every port without a mac (except passthru) a random
// locally administered unicast MAC, and runs [Config.Validate].
//
// On failure the error joins one [*FieldError] per problem found, in file
// order; each wraps one of the Err* classes.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, rand.Reader)
}

func parse(name string, data []byte, random io.Reader) (*Config, error) {
	src := newSource(name)
	var doc yaml.Node
	if err := unmarshalOne(data, &doc); err != nil {
		return nil, syntaxError(src, err, data)
	}
	c := Defaults()
	c.src = src
	d := &decoder{
		src:      src,
		reported: map[string]bool{},
		budget:   decodeBudgetFloor + decodeBudgetPerByte*len(data),
	}
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		src.pos[""] = position{root.Line, root.Column}
		d.config(root, c)
	}
	if err := c.assignMACs(random); err != nil {
		return nil, err
	}
	errs := d.errs
	for _, fe := range c.validate() {
		if !d.reportedUnder(fe.Field) {
			errs = append(errs, fe)
		}
	}
	if err := joinErrors(errs); err != nil {
		return nil, err
	}
	return c, nil
}

// unmarshalOne decodes exactly one YAML document into doc. yaml.v3 turns
// its internal failures into errors, but we recover anyway: bytes from a
// file must never crash the switch.
func unmarshalOne(data []byte, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(doc); err != nil {
		if err == io.EOF { // empty file: an empty document
			*doc = yaml.Node{}
			return nil
		}
		return err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("yaml: line %d: more than one document", extra.Line)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner. For these, yaml.v3 v3.0.1 prints the 0-based line
// of the mark (decode.go parser.fail adds 1 for scanner errors only) and
// omits "line 0"; syntaxError turns them into 1-based lines.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find
// expected key") into a FieldError of class ErrSyntax located at the
// mistake: its line, and the column where the line's content starts (or
// its tab, or the bracket left open).
//
// yaml.v3 locates a scanner error (a tab, a stray ':', an unclosed quote)
// on its line, but a parser error at the start of the construct it was
// parsing: an entry indented one space too few on line 7 of a port that
// starts on line 4 is "line 4: did not find expected key". For those,
// and for errors without a line, locateSyntax finds the line itself.
func syntaxError(src *source, err error, data []byte) error {
	msg := err.Error()
	fe := &FieldError{File: src.file}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	switch {
	case parserProblems[msg]:
		// fe.Line is 0-based here, and names the construct's start
		// (or, when that is the first line, where the parser stopped).
		if line, ok := locateSyntax(data, fe.Line+1); ok {
			fe.Line = line
		} else if line, ok := locateSyntax(data, 1); ok {
			fe.Line = line
		} else {
			fe.Line++
		}
	case fe.Line == 0:
		fe.Line, _ = locateSyntax(data, 1)
	}
	hint := ""
	fe.Column, hint = syntaxColumn(data, fe.Line, msg)
	fe.Err = classWrap(ErrSyntax, err, "syntax error: %s%s", msg, hint)
	return fe
}

// maxLocateLines bounds locateSyntax's work (a parse per line, each of
// the file so far): beyond it errors keep yaml.v3's line.
const maxLocateLines = 5000

// locateSyntax returns the line of a syntax mistake at or after line
// from: the first line L whose addition makes the document stop parsing
// (the document cut after L fails, cut just before L it parses). In block
// style every line boundary is a place a document may end, so this is
// the line whose indentation or content is wrong. Only a multi-line flow
// collection or quoted string between from and the mistake, where a cut
// fails too, makes it name that construct's first line instead.
func locateSyntax(data []byte, from int) (int, bool) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > maxLocateLines || from < 1 || from > len(lines) {
		return 0, false
	}
	prevOK := parsesAll(bytes.Join(lines[:from-1], nil))
	for k := from; k <= len(lines); k++ {
		ok := parsesAll(bytes.Join(lines[:k], nil))
		if prevOK && !ok {
			return k, true
		}
		prevOK = ok
	}
	return 0, false
}

// parsesAll reports whether data is well-formed YAML (any number of
// documents).
func parsesAll(data []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		switch err := dec.Decode(&n); {
		case err == io.EOF:
			return true
		case err != nil:
			return false
		}
	}
}

// syntaxColumn returns the column to report on line (1-based) of data for
// a syntax error with message msg, and a hint for the message: the
// column of a tab in the indentation (YAML indents with spaces only), of
// the last bracket left open when the parser wanted one closed, or where
// the line's content starts.
func syntaxColumn(data []byte, line int, msg string) (int, string) {
	if line <= 0 {
		return 0, ""
	}
	lines := bytes.Split(data, []byte("\n"))
	if line > len(lines) {
		return 0, ""
	}
	l := lines[line-1]
	indent := len(l) - len(bytes.TrimLeft(l, " \t"))
	if i := bytes.IndexByte(l[:indent], '\t'); i >= 0 {
		return i + 1, " (YAML indents with spaces, not tabs)"
	}
	if strings.HasSuffix(msg, "',' or '}'") || strings.HasSuffix(msg, "',' or ']'") {
		if col := openBracket(l); col > 0 {
			return col, fmt.Sprintf(" (the %q here is never closed)", l[col-1])
		}
	}
	hint := ""
	switch msg {
	case "did not find expected key", "did not find expected '-' indicator", "mapping values are not allowed in this context":
		hint = " (check this line's indentation against the lines above)"
	}
	return indent + 1, hint
}

// openBracket returns the 1-based column of the last '[' or '{' on line
// that the line does not close, outside quotes; 0 if there is none.
func openBracket(line []byte) int {
	var stack []int
	var quote byte
scan:
	for i, c := range line {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			break scan // a comment
		case c == '[' || c == '{':
			stack = append(stack, i+1)
		case (c == ']' || c == '}') && len(stack) > 0:
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) == 0 {
		return 0
	}
	return stack[len(stack)-1]
}

// assignMACs gives every port that has no MAC and is neither passthru nor
// afpacket a random locally administered unicast address distinct from
// every other port's.
// It only touches ports whose file entry has no mac key, so a malformed mac
// is reported rather than silently replaced.
func (c *Config) assignMACs(random io.Reader) error {
	used := make(map[vswitch.MAC]bool, len(c.Ports))
	for i := range c.Ports {
		used[c.Ports[i].MAC] = true
	}
	for i := range c.Ports {
		p := &c.Ports[i]
		// An afpacket port without a mac takes the MAC its interface's
		// far end sends with, which only the daemon can see.
		if p.Mode == vswitch.ModePassthru || !p.MAC.IsZero() || p.AFPacket != nil {
			continue
		}
		if _, ok := c.src.pos[fmt.Sprintf("ports[%d].mac", i)]; ok {
			continue
		}
		for {
			m, err := randomMAC(random)
			if err != nil {
				return fmt.Errorf("%s: generate MAC for ports[%d]: %w", c.src.file, i, err)
			}
			if !used[m] {
				used[m] = true
				p.MAC = m
				c.src.autoMAC[p.Name] = true
				break
			}
		}
	}
	return nil
}

// randomMAC returns a random unicast address with the locally administered
// bit set, as the kernel's eth_random_addr does.
func randomMAC(random io.Reader) (vswitch.MAC, error) {
	var m vswitch.MAC
	if _, err := io.ReadFull(random, m[:]); err != nil {
		return m, err
	}
	m[0] = m[0]&^0x01 | 0x02 // clear I/G (multicast), set U/L (local)
	return m, nil
}

// decoder walks the yaml.Node tree, filling a Config and collecting every
// error with its position rather than stopping at the first.
type decoder struct {
	src      *source
	errs     []*FieldError
	reported map[string]bool // paths with a decode error
	// budget bounds the values visited: aliases let a small file name the
	// same list many times over (ports: [*p, *p, …] with p holding a long
	// multicast list), as in the "billion laughs" attack.
	budget int
}

// decodeBudget is how many values a file may expand to through aliases:
// one per byte of input (without aliases every value costs at least two
// bytes, "a,"), plus a floor for small files.
const (
	decodeBudgetPerByte = 1
	decodeBudgetFloor   = 10000
)

// spend uses one unit of budget; once it is gone, it reports the file once
// and decoding stops.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	d.budget--
	switch {
	case d.budget > 0:
		return true
	case d.budget == 0:
		d.failAt(n, path, classErrorf(ErrInvalidValue, "too many values after alias expansion"))
		d.reported[""] = true // the rest of the config is incomplete: check nothing else
	}
	return false
}

func (d *decoder) failAt(n *yaml.Node, path string, err error) {
	fe := &FieldError{File: d.src.file, Line: n.Line, Column: n.Column, Field: path, Err: err}
	d.errs = append(d.errs, fe)
	d.reported[path] = true
}

// fail reports err at path's recorded key position.
func (d *decoder) fail(path string, err error) {
	d.errs = append(d.errs, d.src.fieldError(path, err))
	d.reported[path] = true
}

// reportedUnder reports whether a decode error was reported at path or at
// a value enclosing it, which makes later checks of path redundant.
func (d *decoder) reportedUnder(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.reported[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// field is one key of a mapping and how to decode its value at path.
type field struct {
	name   string
	decode func(v *yaml.Node, path string)
}

// maxAliasDepth bounds alias chains; yaml.v3 rejects cycles, this only
// guards against surprises.
const maxAliasDepth = 64

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < maxAliasDepth && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's type for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int":
			return "integer " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!float":
			return "number " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "an alias"
}

func (d *decoder) wantErr(v *yaml.Node, path, want string) {
	class := ErrInvalidValue
	if isNull(v) {
		class = ErrMissing
	}
	d.fail(path, classErrorf(class, "want %s, got %s", want, describe(v)))
}

// mapping decodes a mapping node with the given keys. Null (an empty value)
// is an empty mapping. Unknown and repeated keys are errors.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.wantErr(n, path, "a mapping")
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if !d.spend(k, path) {
			return
		}
		if k.Kind != yaml.ScalarNode {
			// Not added to d.reported: path's other keys are still checked.
			d.errs = append(d.errs, &FieldError{File: d.src.file, Line: k.Line, Column: k.Column, Field: path,
				Err: classErrorf(ErrInvalidValue, "want a key, got %s", describe(k))})
			continue
		}
		kpath := joinPath(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			d.failAt(k, kpath, classErrorf(ErrDuplicate, "key repeated (first at line %d)", line))
			continue
		}
		seen[k.Value] = k.Line
		j := fieldIndex(fields, k.Value)
		if j < 0 {
			d.failAt(k, kpath, classErrorf(ErrUnknownKey, "unknown key (want %s)", fieldNames(fields)))
			continue
		}
		d.src.pos[kpath] = position{k.Line, k.Column}
		fields[j].decode(v, kpath)
	}
}

func fieldIndex(fields []field, name string) int {
	for i, f := range fields {
		if f.name == name {
			return i
		}
	}
	return -1
}

func fieldNames(fields []field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return orList(names)
}

// orList formats "a, b or c".
func orList(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// sequence decodes each element of a list; null is an empty list.
func (d *decoder) sequence(n *yaml.Node, path string, elem func(e *yaml.Node, path string)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.wantErr(n, path, "a list")
		return
	}
	for i, e := range n.Content {
		if !d.spend(e, path) {
			return
		}
		epath := fmt.Sprintf("%s[%d]", path, i)
		d.src.pos[epath] = position{e.Line, e.Column}
		elem(resolve(e), epath)
	}
}

// scalar returns the text of a string-like scalar, or reports an error.
func (d *decoder) scalar(v *yaml.Node, path, want string) (string, bool) {
	v = resolve(v)
	if v.Kind == yaml.ScalarNode {
		switch v.ShortTag() {
		case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
			return v.Value, true
		}
	}
	d.wantErr(v, path, want)
	return "", false
}

func (d *decoder) str(dst *string) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		if s, ok := d.scalar(v, path, "a string"); ok {
			*dst = s
		}
	}
}

// netns decodes a network namespace: a path, or the name of one in
// NetnsDir (see NetnsPath).
func (d *decoder) netns(dst *string) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		if s, ok := d.scalar(v, path, "a netns name or path"); ok {
			*dst = NetnsPath(s)
		}
	}
}

func (d *decoder) integer(dst *int) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		v = resolve(v)
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
			d.wantErr(v, path, "an integer")
			return
		}
		var i int
		if err := v.Decode(&i); err != nil {
			d.fail(path, classErrorf(ErrInvalidValue, "integer %s out of range", v.Value))
			return
		}
		*dst = i
	}
}

// rate decodes a non-negative count: an integer, or a string with a
// decimal SI suffix (k, M, G, T), e.g. 10M or 2.5G.
func (d *decoder) rate(dst *uint64, unit string) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		s, ok := d.scalar(v, path, "a number of "+unit)
		if !ok {
			return
		}
		n, err := ParseRate(s)
		if err != nil {
			d.fail(path, classWrap(ErrInvalidValue, err, "%v (want a number of %s, e.g. 10000 or 10k)", err, unit))
			return
		}
		*dst = n
	}
}

// ParseRate parses a non-negative count with an optional decimal SI
// suffix: "1500", "10k", "2.5G" (2500000000).
func ParseRate(s string) (uint64, error) {
	mult := 1.0
	num := strings.TrimSpace(s)
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'k', 'K':
			mult = 1e3
		case 'M':
			mult = 1e6
		case 'G':
			mult = 1e9
		case 'T':
			mult = 1e12
		}
		if mult != 1 {
			num = num[:n-1]
		}
	}
	if mult == 1 {
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad count %q", s)
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult >= 1<<63 {
		return 0, fmt.Errorf("bad count %q", s)
	}
	return uint64(f * mult), nil
}

// ParseAddrOrPrefix parses "10.0.0.2" (a host prefix) or "10.0.0.0/24"
// (masked).
func ParseAddrOrPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// strList decodes a sequence of strings.
func (d *decoder) strList(dst *[]string, want string) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		d.sequence(v, path, func(e *yaml.Node, epath string) {
			if s, ok := d.scalar(e, epath, want); ok {
				*dst = append(*dst, s)
			}
		})
	}
}

func (d *decoder) boolean(dst *bool) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		v = resolve(v)
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
			d.wantErr(v, path, "true or false")
			return
		}
		var b bool
		if err := v.Decode(&b); err != nil {
			d.fail(path, classErrorf(ErrInvalidValue, "want true or false, got %q", v.Value))
			return
		}
		*dst = b
	}
}

func (d *decoder) mac(v *yaml.Node, path string) (vswitch.MAC, bool) {
	s, ok := d.scalar(v, path, "a MAC address")
	if !ok {
		return vswitch.MAC{}, false
	}
	m, err := vswitch.ParseMAC(s)
	if err != nil {
		d.fail(path, classWrap(ErrInvalidValue, err, "bad MAC address %q", s))
		return vswitch.MAC{}, false
	}
	return m, true
}

// unicastMAC decodes a MAC that must be a valid unicast address (a port's
// own MAC, a source-mode remote): the kernel's is_valid_ether_addr.
func (d *decoder) unicastMAC(v *yaml.Node, path string) (vswitch.MAC, bool) {
	m, ok := d.mac(v, path)
	if ok && !m.IsValidUnicast() {
		d.fail(path, errNotUnicast(m))
		return vswitch.MAC{}, false
	}
	return m, ok
}

func errNotUnicast(m vswitch.MAC) error {
	if m.IsZero() {
		return classErrorf(ErrInvalidValue, "bad MAC address %s: all zeros (want a unicast address)", m)
	}
	return classErrorf(ErrInvalidValue, "bad MAC address %s: a group address (want unicast; the low bit of the first byte must be 0)", m)
}

// prefix decodes a CIDR prefix.
func (d *decoder) prefix(dst *netip.Prefix, want string) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		s, ok := d.scalar(v, path, want)
		if !ok {
			return
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			d.fail(path, classWrap(ErrInvalidValue, err, "bad prefix %q (want %s)", s, want))
			return
		}
		*dst = p
	}
}

// addr decodes an IP address.
func (d *decoder) addr(dst *netip.Addr) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		s, ok := d.scalar(v, path, "an IP address")
		if !ok {
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			d.fail(path, classWrap(ErrInvalidValue, err, "bad IP address %q", s))
			return
		}
		*dst = a
	}
}

// macKind says what a list of MACs must hold.
type macKind int

const (
	unicastMACs macKind = iota // valid unicast addresses (source-mode remotes)
	groupMACs                  // multicast group addresses
)

func (d *decoder) macList(dst *[]vswitch.MAC, kind macKind) func(*yaml.Node, string) {
	return func(v *yaml.Node, path string) {
		d.sequence(v, path, func(e *yaml.Node, epath string) {
			var m vswitch.MAC
			var ok bool
			if kind == unicastMACs {
				m, ok = d.unicastMAC(e, epath)
			} else if m, ok = d.mac(e, epath); ok && !m.IsGroup() {
				d.fail(epath, classErrorf(ErrInvalidValue, "%s is not a multicast address (the low bit of the first byte must be 1)", m))
				ok = false
			}
			if ok {
				*dst = append(*dst, m)
			}
		})
	}
}

func (d *decoder) config(root *yaml.Node, c *Config) {
	d.mapping(root, "", []field{
		{"lower", func(v *yaml.Node, p string) {
			d.mapping(v, p, []field{
				{"interface", d.str(&c.Lower.Interface)},
				{"queues", d.integer(&c.Lower.Queues)},
				{"promiscuous", d.boolean(&c.Lower.Promiscuous)},
				{"mtu", d.integer(&c.Lower.MTU)},
			})
		}},
		{"broadcast", func(v *yaml.Node, p string) {
			d.mapping(v, p, []field{
				{"queue_len", d.integer(&c.Broadcast.QueueLen)},
				{"cutoff", d.integer(&c.Broadcast.Cutoff)},
			})
		}},
		{"reassembly", func(v *yaml.Node, p string) { d.reassembly(v, p, &c.Reassembly) }},
		{"control", func(v *yaml.Node, p string) {
			d.mapping(v, p, []field{
				{"socket", d.str(&c.Control.Socket)},
				{"group", d.str(&c.Control.Group)},
				{"allow", func(v *yaml.Node, p string) {
					a := &c.Control.Allow
					d.mapping(v, p, []field{
						{"ports", d.strList(&a.Ports, "a port name pattern")},
						{"netns", d.strList(&a.Netns, "a path prefix")},
						{"interfaces", d.strList(&a.Interfaces, "an interface name pattern")},
						{"addresses", func(v *yaml.Node, path string) {
							d.sequence(v, path, func(e *yaml.Node, epath string) {
								var pfx netip.Prefix
								d.prefix(&pfx, "a prefix, e.g. 10.77.0.0/16")(e, epath)
								if pfx.IsValid() {
									a.Addresses = append(a.Addresses, pfx.Masked())
								}
							})
						}},
						{"socket_dirs", d.strList(&a.SocketDirs, "a path prefix")},
						{"captures", d.boolean(&a.Captures)},
					})
				}},
			})
		}},
		{"metrics", func(v *yaml.Node, p string) {
			d.mapping(v, p, []field{
				{"listen", d.str(&c.Metrics.Listen)},
			})
		}},
		{"log", func(v *yaml.Node, p string) {
			d.mapping(v, p, []field{
				{"format", func(v *yaml.Node, p string) {
					s, ok := d.scalar(v, p, "text or json")
					if !ok {
						return
					}
					f, ok := parseLogFormat(s)
					if !ok {
						d.fail(p, errLogFormat(s))
						return
					}
					c.Log.Format = f
				}},
				{"level", func(v *yaml.Node, p string) {
					s, ok := d.scalar(v, p, "debug, info, warn or error")
					if !ok {
						return
					}
					l, ok := parseLogLevel(s)
					if !ok {
						d.fail(p, errLogLevel(s))
						return
					}
					c.Log.Level = l
				}},
			})
		}},
		{"ports", func(v *yaml.Node, p string) {
			d.sequence(v, p, func(e *yaml.Node, ep string) {
				port := DefaultPort()
				d.port(e, ep, &port)
				c.Ports = append(c.Ports, port)
			})
		}},
	})
}

func errLogFormat(s string) error {
	return classErrorf(ErrInvalidValue, "unknown log format %q (want text or json)", s)
}

func errLogLevel(s string) error {
	return classErrorf(ErrInvalidValue, "unknown log level %q (want debug, info, warn or error)", s)
}

func (d *decoder) port(n *yaml.Node, path string, p *Port) {
	d.mapping(n, path, []field{
		{"name", d.str(&p.Name)},
		{"mode", func(v *yaml.Node, path string) {
			s, ok := d.scalar(v, path, "a mode name")
			if !ok {
				return
			}
			m, err := vswitch.ParseMode(s)
			if err != nil {
				d.fail(path, classWrap(ErrInvalidValue, err, "%v", err))
				return
			}
			p.Mode = m
		}},
		{"mac", func(v *yaml.Node, path string) {
			if m, ok := d.unicastMAC(v, path); ok {
				p.MAC = m
			}
		}},
		{"mtu", d.integer(&p.MTU)},
		{"queues", d.integer(&p.Queues)},
		{"queue_len", d.integer(&p.QueueLen)},
		{"allmulticast", d.boolean(&p.AllMulticast)},
		{"multicast", d.macList(&p.Multicast, groupMACs)},
		{"source_macs", d.macList(&p.SourceMACs, unicastMACs)},
		{"nodst", d.boolean(&p.NoDst)},
		{"nopromisc", d.boolean(&p.NoPromisc)},
		{"bcqueuelen", d.integer(&p.BCQueueLen)},
		{"busy_poll", d.duration(&p.BusyPoll)},
		{"police", func(v *yaml.Node, path string) {
			pol := &p.Police
			d.mapping(v, path, []field{
				{"pps", d.rate(&pol.PPS, "frames per second")},
				{"bps", d.rate(&pol.BPS, "bits per second")},
				{"burst", d.rate(&pol.Burst, "frames")},
				{"burst_bytes", d.rate(&pol.BurstBytes, "bytes")},
				{"flood_pps", d.rate(&pol.FloodPPS, "frames per second")},
				{"flood_burst", d.rate(&pol.FloodBurst, "frames")},
			})
		}},
		{"spoofcheck", d.boolean(&p.SpoofCheck)},
		{"allowed_ips", func(v *yaml.Node, path string) {
			d.sequence(v, path, func(e *yaml.Node, epath string) {
				s, ok := d.scalar(e, epath, "an address or prefix")
				if !ok {
					return
				}
				a, err := ParseAddrOrPrefix(s)
				if err != nil {
					d.fail(epath, classWrap(ErrInvalidValue, err, "bad address %q (want an address, 10.0.0.2, or a prefix, 10.0.0.0/24)", s))
					return
				}
				p.AllowedIPs = append(p.AllowedIPs, a)
			})
		}},
		{"tap", func(v *yaml.Node, path string) {
			t := defaultTap()
			d.mapping(v, path, []field{
				{"netns", d.netns(&t.Netns)},
				{"ifname", d.str(&t.Ifname)},
				{"addresses", func(v *yaml.Node, path string) {
					d.sequence(v, path, func(e *yaml.Node, epath string) {
						s, ok := d.scalar(e, epath, "an address/prefix-length")
						if !ok {
							return
						}
						a, err := netip.ParsePrefix(s)
						if err != nil {
							d.fail(epath, classWrap(ErrInvalidValue, err, "bad address %q (want CIDR notation, e.g. 10.0.0.2/24)", s))
							return
						}
						t.Addresses = append(t.Addresses, a)
					})
				}},
				{"routes", func(v *yaml.Node, path string) {
					d.sequence(v, path, func(e *yaml.Node, epath string) {
						var r Route
						d.mapping(e, epath, []field{
							{"to", d.prefix(&r.To, "a destination prefix, e.g. 0.0.0.0/0 or 10.1.0.0/16")},
							{"via", d.addr(&r.Via)},
							{"metric", d.integer(&r.Metric)},
						})
						t.Routes = append(t.Routes, r)
					})
				}},
				{"offloads", d.boolean(&t.Offloads)},
				{"adopt", d.boolean(&t.Adopt)},
				{"lo_up", d.boolean(&t.LoUp)},
			})
			p.Tap = &t
		}},
		{"afpacket", func(v *yaml.Node, path string) {
			var a AFPacketPort
			d.mapping(v, path, []field{
				{"interface", d.str(&a.Interface)},
				{"netns", d.netns(&a.Netns)},
			})
			p.AFPacket = &a
		}},
		{"socket", func(v *yaml.Node, path string) {
			var so SocketPort
			d.mapping(v, path, []field{
				{"type", func(v *yaml.Node, path string) {
					s, ok := d.scalar(v, path, "stream or dgram")
					if !ok {
						return
					}
					switch t := SocketType(s); t {
					case SocketStream, SocketDgram:
						so.Type = t
					default:
						d.fail(path, classErrorf(ErrInvalidValue, "unknown socket type %q (want stream or dgram)", s))
					}
				}},
				{"listen", d.str(&so.Listen)},
				{"connect", d.str(&so.Connect)},
				{"peer", d.str(&so.Peer)},
			})
			p.Socket = &so
		}},
	})
	if p.Tap != nil {
		if _, ok := d.src.pos[joinPath(path, "tap.ifname")]; !ok {
			p.Tap.Ifname = p.Name // the default: the port's own name
		}
	}
}

// ParsePort decodes and validates one port entry, a YAML (or JSON) mapping
// with the keys of a ports[] element, as the control API receives it;
// name is used only in error messages, and error paths are the entry's
// own keys ("mac", "tap.netns"). It applies [DefaultPort] but, unlike
// [Parse], leaves a missing mac zero: the switch then picks one. The
// checks are the file's for a port on its own, and the switch's rules for
// a port on an unknown lower; rules between ports are the running
// switch's business.
func ParsePort(name string, data []byte) (Port, error) { return parsePort(name, data, false) }

// ParseHandoffPort parses a port entry for a port whose socket the daemon
// makes and hands over (POST /v1/ports?fd=...): as ParsePort, but the
// entry names no kind (tap, afpacket, socket); the returned port has none.
func ParseHandoffPort(name string, data []byte) (Port, error) { return parsePort(name, data, true) }

func parsePort(name string, data []byte, handoff bool) (Port, error) {
	src := newSource(name)
	var doc yaml.Node
	if err := unmarshalOne(data, &doc); err != nil {
		return Port{}, syntaxError(src, err, data)
	}
	p := DefaultPort()
	d := &decoder{src: src, reported: map[string]bool{}, budget: decodeBudgetFloor + decodeBudgetPerByte*len(data)}
	if len(doc.Content) == 0 {
		return Port{}, joinErrors([]*FieldError{src.fieldError("", classErrorf(ErrMissing, "empty port entry"))})
	}
	d.port(doc.Content[0], "", &p)
	k := &checker{src: src}
	if handoff {
		if p.Kind() != "" {
			k.fail(p.Kind(), ErrConflict, "a hand-off port's socket is made by the daemon: remove %s", p.Kind())
		}
		// Stand in for the kind so the rest is checked as usual.
		p.Socket = &SocketPort{Type: SocketStream, Listen: "/handoff"}
	}
	validatePort(k, &p, "")
	for _, e := range vswitch.CheckPorts(vswitch.LowerInfo{}, []vswitch.PortConfig{p.SwitchConfig()}) {
		if !d.reportedUnder(e.Field) && !slices.ContainsFunc(k.errs, func(fe *FieldError) bool { return fe.Field == e.Field }) {
			k.errs = append(k.errs, src.fieldError(e.Field, classWrap(ErrInvalidValue, e, "%v", e.Err)))
		}
	}
	errs := d.errs
	for _, fe := range k.errs {
		if !d.reportedUnder(fe.Field) {
			errs = append(errs, fe)
		}
	}
	if err := joinErrors(errs); err != nil {
		return Port{}, err
	}
	if handoff {
		p.Socket = nil
	}
	return p, nil
}
