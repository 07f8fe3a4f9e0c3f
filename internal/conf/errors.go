package conf

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// A FieldError is a problem with one configuration key. Key is a path such
// as "resources[3].policy.login", relative to the section that returned it;
// [AtKey] prefixes it as the error rises.
type FieldError struct {
	Key string
	Msg string
	Err error // the error Msg was made from, if any; for errors.Is
}

// Unwrap returns the underlying error, if any.
func (e *FieldError) Unwrap() error { return e.Err }

func (e *FieldError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// Errorf returns a [FieldError] for key with a formatted message.
func Errorf(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// AtKey prefixes the key of every FieldError in err (which may be a joined
// error) with prefix. Errors that are not FieldErrors become FieldErrors at
// prefix. A nil err stays nil.
func AtKey(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &FieldError{Key: joinKey(prefix, fe.Key), Msg: fe.Msg, Err: fe.Err})
			continue
		}
		var pe *PosError
		if errors.As(e, &pe) {
			out = append(out, pe)
			continue
		}
		out = append(out, &FieldError{Key: prefix, Msg: e.Error(), Err: e})
	}
	return errors.Join(out...)
}

func joinKey(prefix, key string) string {
	switch {
	case prefix == "":
		return key
	case key == "":
		return prefix
	case strings.HasPrefix(key, "["):
		return prefix + key
	}
	return prefix + "." + key
}

// Flatten returns the leaves of an error tree built with errors.Join.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// A PosError is a configuration problem with its place in the file.
type PosError struct {
	File string
	Line int // 1-based; 0 when the key is not in the file (a missing key)
	Col  int
	Key  string
	Msg  string
}

func (e *PosError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Locate turns every error in err into a PosError, finding each
// FieldError's key in pos (or its nearest enclosing key that is there), and
// sorts them by position.
func Locate(file string, pos Positions, err error) []*PosError {
	var out []*PosError
	for _, e := range Flatten(err) {
		var pe *PosError
		if errors.As(e, &pe) {
			out = append(out, pe)
			continue
		}
		var fe *FieldError
		if errors.As(e, &fe) {
			p := pos.Find(fe.Key)
			out = append(out, &PosError{File: file, Line: p.Line, Col: p.Col, Key: fe.Key, Msg: fe.Msg})
			continue
		}
		out = append(out, &PosError{File: file, Msg: e.Error()})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Col < out[j].Col
	})
	return out
}

// JoinPos joins positioned errors into one error, or nil for none.
func JoinPos(errs []*PosError) error {
	if len(errs) == 0 {
		return nil
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}
