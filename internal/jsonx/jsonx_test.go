package jsonx

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendString(t *testing.T) {
	for _, tt := range []struct {
		in   string
		esc  *Escapes
		want string
	}{
		{"plain", Log, `"plain"`},
		{"a\"b\\c\n\r\t\x01\x7f", Log, `"a\"b\\c\n\r\t\u0001\u007f"`},
		{"<a&b>\x7f", Log, `"<a&b>\u007f"`},
		{"<a&b>\x7f", HTMLSafe, "\"\\u003ca\\u0026b\\u003e\x7f\""},
		{"bad \xff utf8", Log, `"bad \ufffd utf8"`},
		{"line\u2028sep\u2029", HTMLSafe, `"line\u2028sep\u2029"`},
		{"héllo", Log, `"héllo"`},
	} {
		if got := string(AppendString(nil, tt.in, tt.esc)); got != tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzAppendString: the output is always valid JSON and decodes to the
// input (with invalid UTF-8 replaced), for both escape sets.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "x", "\"\\\n", "<>&\x7f", "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.ToValidUTF8(s, "\uFFFD")
		for _, esc := range []*Escapes{Log, HTMLSafe} {
			b := AppendString(nil, s, esc)
			var got string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("AppendString(%q) = %s: not JSON: %v", s, b, err)
			}
			if got != want && utf8.ValidString(s) {
				t.Fatalf("AppendString(%q) decodes to %q", s, got)
			}
		}
	})
}
