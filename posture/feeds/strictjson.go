package feeds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Feed payloads are decoded strictly, by one rule for every feed: member
// names are case-sensitive, and an object may not hold two members whose
// names are equal or differ only in case. encoding/json alone matches
// names case-insensitively and keeps the last of duplicates, so
// {"compliant":true,"Compliant":false} reads as not compliant there and
// as compliant in a parser that keeps the first or matches exactly: a
// relay in front of the gateway would see another event than the gateway
// does. Under the strict rule every parser that accepts a payload reads
// the same event from it.
//
// Members the target type does not name are still ignored, as the wire
// formats ask (device-feeds.md §2: "Unknown fields are ignored"), unless
// their name differs only in case from a member it does name: such a
// member is refused, since a case-insensitive parser would take it for
// that member.

// maxJSONDepth bounds how deeply a feed payload may nest.
const maxJSONDepth = 64

// A KeyError says why the member names of a JSON payload are refused.
type KeyError struct {
	// Path locates the object: "" for the top level, else for example
	// "device" or "data.events[2].target[0]".
	Path string
	// Key is the refused member name, as the payload spells it.
	Key string
	// Other is, for a duplicate, the name of the member Key repeats (equal
	// to Key, or differing only in case).
	Other string
	// Want is, for a member that differs only in case from a known one,
	// the known name.
	Want string
	// TooDeep reports a payload nested more than 64 levels.
	TooDeep bool
}

func (e *KeyError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	switch {
	case e.TooDeep:
		fmt.Fprintf(&b, "nested more than %d levels", maxJSONDepth)
	case e.Other == e.Key:
		fmt.Fprintf(&b, "duplicate key %q", clip(e.Key))
	case e.Other != "":
		fmt.Fprintf(&b, "duplicate key %q (it differs from %q only in case)", clip(e.Key), clip(e.Other))
	default:
		fmt.Fprintf(&b, "unknown key %q (names are case-sensitive: %q)", clip(e.Key), e.Want)
	}
	return b.String()
}

// decodeStrict decodes data into v as [json.Unmarshal] does, then refuses
// it with a *[KeyError] if its member names break the strict rule for v's
// type. Syntax and type errors are json.Unmarshal's.
func decodeStrict(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	return checkStrict(data, reflect.TypeOf(v))
}

// checkStrict checks data's member names against shape, the Go type data
// is (or could be) decoded into; a nil shape checks only for duplicates.
// data must be valid JSON: a syntax error is returned as found.
func checkStrict(data []byte, shape reflect.Type) error {
	w := keyWalker{dec: json.NewDecoder(bytes.NewReader(data))}
	w.dec.UseNumber() // numbers are skipped: no need to parse them as floats
	return w.value(shape)
}

// keyWalker walks a JSON value's tokens alongside the Go type it decodes
// into.
type keyWalker struct {
	dec  *json.Decoder
	path []pathElem // where the walk is, formatted only for an error
}

type pathElem struct {
	key   string
	index int // -1 for an object member
}

func (w *keyWalker) where() string {
	var b strings.Builder
	for _, p := range w.path {
		if p.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(clip(p.key))
	}
	return b.String()
}

func (w *keyWalker) value(t reflect.Type) error {
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	if len(w.path) >= maxJSONDepth {
		return &KeyError{Path: w.where(), TooDeep: true}
	}
	t = shapeOf(t)
	if d == '{' {
		err = w.object(t)
	} else {
		err = w.array(t)
	}
	if err != nil {
		return err
	}
	_, err = w.dec.Token() // the closing delimiter
	return err
}

func (w *keyWalker) array(t reflect.Type) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	for i := 0; w.dec.More(); i++ {
		w.path = append(w.path, pathElem{index: i})
		if err := w.value(elem); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	return nil
}

func (w *keyWalker) object(t reflect.Type) error {
	var fields *structFields
	var elem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = fieldsOf(t)
		case reflect.Map:
			elem = t.Elem()
		}
	}
	seen := map[string]string{} // folded name → the name as written
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		folded := foldName(key)
		if other, dup := seen[folded]; dup {
			return &KeyError{Path: w.where(), Key: key, Other: other}
		}
		seen[folded] = key
		ft := elem
		if fields != nil {
			var known bool
			if ft, known = fields.exact[key]; !known {
				if want, near := fields.folded[folded]; near {
					return &KeyError{Path: w.where(), Key: key, Want: want}
				}
			}
		}
		w.path = append(w.path, pathElem{key: key, index: -1})
		if err := w.value(ft); err != nil {
			return err
		}
		w.path = w.path[:len(w.path)-1]
	}
	return nil
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// shapeOf returns the type whose members a JSON value is matched
// against: t without pointers, or nil when the value is taken whole
// (interfaces, json.RawMessage, types with their own UnmarshalJSON), in
// which case only duplicates are looked for.
func shapeOf(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t == rawMessageType || t.Kind() == reflect.Interface ||
		t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	return t
}

// structFields are the JSON member names of a struct type.
type structFields struct {
	exact  map[string]reflect.Type // name → the member's type
	folded map[string]string       // foldName(name) → name
}

var fieldCache sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	f := &structFields{exact: map[string]reflect.Type{}, folded: map[string]string{}}
	addFields(f, t, 0)
	fieldCache.Store(t, f)
	return f
}

// addFields adds t's members, and those of untagged embedded structs as
// encoding/json promotes them.
func addFields(f *structFields, t reflect.Type, depth int) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" {
			et := sf.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct && depth < 8 {
				addFields(f, et, depth+1)
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if _, dup := f.exact[name]; dup {
			continue // the shallower member wins, as in encoding/json
		}
		f.exact[name] = sf.Type
		f.folded[foldName(name)] = name
	}
}

// foldName maps a name to a key equal for exactly the names that
// strings.EqualFold finds equal: every rune becomes the smallest rune of
// its simple case-folding orbit (so "k", "K" and the Kelvin sign meet).
func foldName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return strings.Map(foldRune, s)
		}
	}
	// ASCII: the smallest of a letter's orbit is its upper case.
	return strings.ToUpper(s)
}

func foldRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}
