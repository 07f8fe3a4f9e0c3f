// Package jsonx appends JSON strings without reflection or allocation,
// for the hand-built documents on the request path (decision records,
// problem documents).
package jsonx

import "unicode/utf8"

const hex = "0123456789abcdef"

// An Escapes marks the ASCII bytes written as \uXXXX (or \n, \r, \t, \",
// \\) rather than as themselves.
type Escapes [utf8.RuneSelf]bool

func escapes(extra string) *Escapes {
	var e Escapes
	for c := range 0x20 {
		e[c] = true
	}
	e['"'], e['\\'] = true, true
	for i := 0; i < len(extra); i++ {
		e[extra[i]] = true
	}
	return &e
}

var (
	// Log escapes what JSON requires, and DEL, so a record stays one
	// printable line.
	Log = escapes("\x7f")
	// HTMLSafe escapes what JSON requires, and <, > and &, so the body is
	// inert even if a client sniffs it as HTML.
	HTMLSafe = escapes("<>&")
)

// AppendString appends s to b as a JSON string, escaping the ASCII bytes
// esc marks. Invalid UTF-8 becomes U+FFFD, so the result is valid JSON
// whatever s holds; U+2028 and U+2029 are escaped for JavaScript.
func AppendString(b []byte, s string, esc *Escapes) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !esc[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
