package conf

import (
	"fmt"
	"strconv"
	"strings"
)

// Enum returns text as one of allowed, or an error that names every
// allowed value. Mode types call it from UnmarshalText, so a bad value is
// a decode error placed at its line:
//
//	func (m *Mode) UnmarshalText(b []byte) (err error) {
//		*m, err = conf.Enum(b, ModeA, ModeB)
//		return err
//	}
func Enum[T ~string](text []byte, allowed ...T) (T, error) {
	for _, a := range allowed {
		if string(text) == string(a) {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown value %s (want %s)", strconv.Quote(string(text)), OneOf(allowed...))
}

// OneOf lists values for a message: "a", "a or b", "a, b or c".
func OneOf[T ~string](values ...T) string {
	var b strings.Builder
	for i, v := range values {
		switch {
		case i == 0:
		case i == len(values)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(v))
	}
	return b.String()
}
