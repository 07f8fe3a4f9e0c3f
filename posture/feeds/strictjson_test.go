package feeds

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name string
		in   string
		into func() any
		want string // "" accepted, else a part of the error
	}{
		{"clean", `{"spec":"x","compliant":true,"device":{"id":"d"}}`, newWire, ""},
		{"unknown members ignored", `{"spec":"x","future":{"a":[1,{"b":2}]}}`, newWire, ""},
		{"duplicate", `{"compliant":true,"compliant":false}`, newWire, `duplicate key "compliant"`},
		{"duplicate through an escape", `{"spec":"a","\u0073pec":"b"}`, newWire, `duplicate key "spec"`},
		{"duplicate by case", `{"compliant":true,"Compliant":false,"STATE":"lost"}`, newWire, `duplicate key "Compliant" (it differs from "compliant" only in case)`},
		{"known name in another case", `{"STATE":"lost"}`, newWire, `unknown key "STATE" (names are case-sensitive: "state")`},
		{"long s folds to s", `{"ſpec":"x"}`, newWire, `unknown key "ſpec"`},
		{"kelvin sign folds to k", `{"a":1,"\u212a":2,"k":3}`, newWire, "duplicate key \"k\" (it differs from \"\u212a\" only in case)"},
		{"nested", `{"device":{"id":"a","ID":"b"}}`, newWire, `device: duplicate key "ID"`},
		{"nested known name", `{"threat":{"Level":"none"}}`, newWire, `threat: unknown key "Level"`},
		{"in an array", `{"device":{"id":"a","aliases":[{"kind":"serial"},{"kind":"imei","Value":"1"}]}}`, newWire, `device.aliases[1]: unknown key "Value"`},
		{"inside an unknown member", `{"extra":{"x":1,"x":2}}`, newWire, `extra: duplicate key "x"`},
		{"unknown names differing in case", `{"extra":1,"Extra":2}`, newWire, `duplicate key "Extra"`},
		{"raw elements", `[{"a":1},{"a":1,"a":2}]`, func() any { return new([]json.RawMessage) }, `[1]: duplicate key "a"`},
		{"map keys", `{"risk":"{level=LOW}","Risk":"{level=HIGH}"}`, func() any { return new(map[string]json.RawMessage) }, `duplicate key "Risk"`},
		{"map values are whole", `{"a":{"Spec":1}}`, func() any { return new(map[string]json.RawMessage) }, ""},
		{"time values are whole", `{"uuid":"u","published":"2026-09-14T08:21:05Z","eventType":"x"}`, func() any { return new(OktaEvent) }, ""},
		{"syntax", `{"spec":`, newWire, "unexpected end"},
		{"too deep", strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1), func() any { return new(any) }, "nested more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeStrict([]byte(tt.in), tt.into())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("decodeStrict = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("decodeStrict = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func newWire() any { return new(wireEvent) }

// FuzzDecodeStrict checks the strict rule against encoding/json itself:
// whatever it accepts decodes, in every object, to as many members as the
// text holds (so no duplicate was dropped) with no two names equal but
// for case, and no top-level name of a wireEvent differs only in case
// from a known one.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"spec":"portcullis.posture.v1","compliant":true,"device":{"id":"d","aliases":[{"kind":"serial","value":"1"}]}}`,
		`{"compliant":true,"Compliant":false,"STATE":"lost"}`,
		`[{"a":1},{"b":[{"c":{"d":null}}]}]`,
		`{"a":1,"\u212a":2}`,
		`{"x":{"y":{"y":1}}}`,
		`"str"`, `12`, `[]`, `{}`,
	} {
		f.Add([]byte(s))
	}
	known := fieldsOf(reflect.TypeFor[wireEvent]())
	f.Fuzz(func(t *testing.T, b []byte) {
		var w wireEvent
		errWire := decodeStrict(b, &w)
		var v any
		errAny := decodeStrict(b, &v)
		if !json.Valid(b) {
			if errAny == nil || errWire == nil {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			return
		}
		var ke *KeyError
		if errAny != nil {
			if !errors.As(errAny, &ke) {
				t.Fatalf("valid JSON refused without a KeyError: %v", errAny)
			}
			if !ke.TooDeep && !hasDuplicate(t, b) {
				t.Fatalf("refused %q (%v) but encoding/json sees no duplicate", b, errAny)
			}
			return
		}
		if hasDuplicate(t, b) {
			t.Fatalf("accepted %q, which has duplicate names", b)
		}
		if errWire == nil {
			if m, ok := v.(map[string]any); ok {
				for k := range m {
					if _, exact := known.exact[k]; !exact {
						if want, near := known.folded[foldName(k)]; near {
							t.Fatalf("accepted %q as a wireEvent, though %q differs only in case from %q", b, k, want)
						}
					}
				}
			}
		}
	})
}

// hasDuplicate reports whether some object of b has two members whose
// names are equal ignoring case, by a plain walk over the tokens that
// compares every pair of names with strings.EqualFold.
func hasDuplicate(t *testing.T, b []byte) bool {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	type open struct {
		object  bool
		wantKey bool
		names   []string
	}
	var stack []*open
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if d, ok := tok.(json.Delim); !ok || d != '}' {
				name := tok.(string)
				for _, other := range stack[n-1].names {
					if strings.EqualFold(name, other) {
						return true
					}
				}
				stack[n-1].names = append(stack[n-1].names, name)
				stack[n-1].wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &open{object: true, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &open{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true // a member's value ended
		}
		if len(stack) == 0 {
			return false
		}
	}
}
