package conf

import (
	"encoding"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is a place in a configuration file.
type Pos struct{ Line, Col int }

// Positions maps key paths ("resources[3].policy.login") to where they
// stand in the file, so semantic errors found after decoding can name their
// line too.
type Positions map[string]Pos

// Find returns the position of key, or of its nearest enclosing key that is
// in the file (a missing key is reported where its parent is).
func (p Positions) Find(key string) Pos {
	for k := key; k != ""; k = parentKey(k) {
		if v, ok := p[k]; ok {
			return v
		}
	}
	return p[""]
}

func parentKey(k string) string {
	i := strings.LastIndexAny(k, ".[")
	if i < 0 {
		return ""
	}
	return k[:i]
}

// Decode decodes YAML data into v (a pointer to a struct) strictly: an
// unknown key, a duplicate key, a value of the wrong type or one its type
// rejects is an error with file, line and column. Decoding goes on after a
// problem, so the returned error (a join of *PosError) lists all of them.
//
// Fields are named by their `yaml:"name"` tag; fields without one are not
// settable from the file. Types implementing [PathUnmarshaler] (such as
// [Path]) or [encoding.TextUnmarshaler] take scalars; a [PathUnmarshaler]
// is told the directory of file, so relative names are resolved here, once.
// Types implementing [Unmarshaler] decode their own node.
func Decode(file string, data []byte, v any) (Positions, error) {
	var root yaml.Node
	d := &decoder{file: file, dir: BaseDir(file), pos: Positions{}}
	if err := yaml.Unmarshal(data, &root); err != nil {
		return d.pos, syntaxError(file, err)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("conf.Decode: v must be a non-nil pointer")
	}
	d.pos[""] = Pos{1, 1}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		d.value(root.Content[0], rv.Elem(), "")
	}
	return d.pos, JoinPos(d.errs)
}

type decoder struct {
	file   string
	dir    string // absolute directory of file
	pos    Positions
	errs   []*PosError
	visits int // nodes walked; aliases can make a small file huge
}

// maxVisits bounds the nodes one Decode walks, so a document of nested
// aliases (a "billion laughs") is refused instead of exhausting memory.
const maxVisits = 1_000_000

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, &PosError{File: d.file, Line: n.Line, Col: n.Column, Key: key, Msg: fmt.Sprintf(format, args...)})
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	pathUnmarshaler = reflect.TypeFor[PathUnmarshaler]()
	nodeUnmarshaler = reflect.TypeFor[Unmarshaler]()
)

func (d *decoder) value(n *yaml.Node, v reflect.Value, key string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.visits++; d.visits > maxVisits {
		if d.visits == maxVisits+1 {
			d.fail(n, key, "document too large once aliases are expanded")
		}
		return
	}
	d.pos[key] = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default in place
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(n, v.Elem(), key)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(nodeUnmarshaler) {
		v.Addr().Interface().(Unmarshaler).UnmarshalConfig(&Node{d: d, n: n, key: key})
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(pathUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a file name, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(PathUnmarshaler).UnmarshalConfigPath([]byte(n.Value), d.dir); err != nil {
			d.fail(n, key, "%v", err)
		}
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(n, key, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.structValue(n, []reflect.Value{v}, key, nil)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", key, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, key, "want a mapping, got %s", kindName(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			panic("conf: only string-keyed maps are supported")
		}
		m := reflect.MakeMap(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				d.fail(k, joinKey(key, k.Value), "duplicate key")
				continue
			}
			seen[k.Value] = true
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(c, e, joinKey(key, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, ok := parseBool(n)
		if !ok {
			d.fail(n, key, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, key, "want a whole number, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, key, "want a non-negative whole number, got %s", describe(n))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, key, "want a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.fail(n, key, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(x))
	default:
		panic("conf: unsupported field kind " + v.Kind().String())
	}
}

// structValue decodes mapping n into the structs vs, each key going to
// the first struct that has a field for it. unknown, if set, explains a
// key none has; otherwise the message suggests a near key.
func (d *decoder) structValue(n *yaml.Node, vs []reflect.Value, key string, unknown func(string) string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "want a mapping, got %s", kindName(n))
		return
	}
	fields := map[string][]int{}
	owner := map[string]reflect.Value{}
	for i := len(vs) - 1; i >= 0; i-- {
		for k, idx := range fieldsOf(vs[i].Type()) {
			fields[k], owner[k] = idx, vs[i]
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, c := n.Content[i], n.Content[i+1]
		fk := joinKey(key, k.Value)
		if k.Value == "<<" {
			d.fail(k, fk, "merge keys are not supported")
			continue
		}
		if seen[k.Value] {
			d.fail(k, fk, "duplicate key")
			continue
		}
		seen[k.Value] = true
		idx, ok := fields[k.Value]
		if !ok {
			if msg := ""; unknown != nil {
				if msg = unknown(k.Value); msg != "" {
					d.fail(k, fk, "%s", msg)
					continue
				}
			}
			d.fail(k, fk, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		d.value(c, owner[k.Value].FieldByIndex(idx), fk)
		// A scalar's problems are in its value; a block's are best shown
		// at its key, where a reader looks for what is missing.
		if c.Kind != yaml.ScalarNode && c.Kind != yaml.AliasNode {
			d.pos[fk] = Pos{k.Line, k.Column}
		}
	}
}

func fieldsOf(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("yaml")
		if !ok || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, idx := range fieldsOf(f.Type) {
				m[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = []int{i}
	}
	return m
}

// suggest names the known key closest to an unknown one, for typos.
func suggest(k string, fields map[string][]int) string {
	best, bestD := "", 3
	for f := range fields {
		if dist := editDistance(k, f); dist < bestD || dist == bestD && f < best && best != "" {
			best, bestD = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func parseBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return describe(n)
}

func describe(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return kindName(n)
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return strconv.Quote(v)
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError places a YAML syntax error on its line; yaml.v3 reports the
// line in its message only.
func syntaxError(file string, err error) *PosError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &PosError{File: file, Line: line, Col: 1, Msg: "invalid YAML: " + m[2]}
	}
	return &PosError{File: file, Msg: "invalid YAML: " + msg}
}
