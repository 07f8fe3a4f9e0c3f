package conf

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

type mode string

const (
	modeOn  mode = "on"
	modeOff mode = "off"
)

func (m *mode) UnmarshalText(b []byte) (err error) {
	*m, err = Enum(b, modeOn, modeOff)
	return err
}

// shape is an Unmarshaler: its `kind` selects the keys it may have.
type shape struct {
	Kind   string
	Radius int
	Width  int
}

type circleKeys struct {
	Kind   string `yaml:"kind"`
	Radius int    `yaml:"radius"`
}

type squareKeys struct {
	Kind  string `yaml:"kind"`
	Width int    `yaml:"width"`
}

func (s *shape) UnmarshalConfig(n *Node) {
	k := n.Field("kind")
	if k == nil {
		n.Errorf("kind is required")
		return
	}
	k.Decode(&s.Kind)
	unknown := func(key string) string {
		if key == "radius" || key == "width" {
			return "not a key of a " + s.Kind
		}
		return ""
	}
	switch s.Kind {
	case "circle":
		var c circleKeys
		n.DecodeStruct(unknown, &c)
		s.Radius = c.Radius
	case "square":
		var q squareKeys
		n.DecodeStruct(unknown, &q)
		s.Width = q.Width
	default:
		k.Errorf("unknown kind %q", s.Kind)
	}
}

type pathConfig struct {
	File  Path            `yaml:"file"`
	Files []Path          `yaml:"files"`
	Dirs  map[string]Path `yaml:"dirs"`
	Mode  mode            `yaml:"mode"`
	Modes map[string]mode `yaml:"modes"`
	Shape []shape         `yaml:"shapes"`
}

func TestDecodePathsAreResolvedAgainstTheFile(t *testing.T) {
	src := "file: secret.txt\nfiles: [/abs/a, ../b, \"\"]\ndirs: {x: sub/dir}\n"
	var c pathConfig
	if _, err := Decode("/etc/portcullis/p.yaml", []byte(src), &c); err != nil {
		t.Fatal(err)
	}
	want := pathConfig{
		File:  "/etc/portcullis/secret.txt",
		Files: []Path{"/abs/a", "/etc/b", ""},
		Dirs:  map[string]Path{"x": "/etc/portcullis/sub/dir"},
	}
	if c.File != want.File || strings.Join(pathStrings(c.Files), "|") != strings.Join(pathStrings(want.Files), "|") || c.Dirs["x"] != want.Dirs["x"] {
		t.Errorf("decoded %+v, want %+v", c, want)
	}
	// A relative config file name resolves to an absolute directory.
	if _, err := Decode("p.yaml", []byte("file: s\n"), &c); err != nil || !filepath.IsAbs(string(c.File)) {
		t.Errorf("relative config: file = %q, err %v", c.File, err)
	}
	if _, err := Decode("p.yaml", []byte("file: [a]\n"), &c); err == nil || !strings.Contains(err.Error(), "p.yaml:1:7: file: want a file name") {
		t.Errorf("list as a path: %v", err)
	}
}

func pathStrings(ps []Path) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p))
	}
	return out
}

func TestDecodeEnumNamesAllowedValues(t *testing.T) {
	var c pathConfig
	_, err := Decode("p.yaml", []byte("mode: on\nmodes: {a: off, b: maybe}\n"), &c)
	if c.Mode != modeOn || c.Modes["a"] != modeOff {
		t.Errorf("decoded %+v", c)
	}
	want := `p.yaml:2:20: modes.b: unknown value "maybe" (want on or off)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

func TestOneOf(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{nil, ""}, {[]string{"a"}, "a"}, {[]string{"a", "b"}, "a or b"}, {[]string{"a", "b", "c"}, "a, b or c"},
	} {
		if got := OneOf(tt.in...); got != tt.want {
			t.Errorf("OneOf(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDecodeUnmarshalerSelectsKeysByKind(t *testing.T) {
	src := `shapes:
  - {kind: circle, radius: 2}
  - {kind: square, width: 3}
  - {kind: circle, width: 3, colour: red}
  - {kind: hexagon}
  - {radius: 1}
`
	var c pathConfig
	pos, err := Decode("p.yaml", []byte(src), &c)
	if c.Shape[0].Radius != 2 || c.Shape[1].Width != 3 {
		t.Errorf("decoded %+v", c.Shape)
	}
	var got []string
	for _, e := range Flatten(err) {
		var pe *PosError
		if !errors.As(e, &pe) {
			t.Fatalf("not a PosError: %v", e)
		}
		got = append(got, pe.Error())
	}
	want := []string{
		"p.yaml:4:20: shapes[2].width: not a key of a circle",
		"p.yaml:4:30: shapes[2].colour: unknown key",
		`p.yaml:5:12: shapes[3].kind: unknown kind "hexagon"`,
		"p.yaml:6:5: shapes[4]: kind is required",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := pos.Find("shapes[1].width"); p.Line != 3 || p.Col != 27 {
		t.Errorf("position of shapes[1].width = %+v, want 3:27", p)
	}
}

func FuzzDecodeKinds(f *testing.F) {
	f.Add([]byte("shapes: [{kind: circle, radius: 1}, {kind: square, radius: 2}]\n"))
	f.Add([]byte("file: a\nfiles: [b, /c]\nmode: on\nmodes: {x: off}\n"))
	f.Add([]byte("shapes: [&s {kind: circle}, *s, {kind: *s}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c pathConfig
		_, err := Decode("/cfg/fuzz.yaml", b, &c)
		for _, e := range Flatten(err) {
			var pe *PosError
			if !errors.As(e, &pe) {
				t.Fatalf("error without position: %v", e)
			}
		}
		if err != nil {
			return
		}
		for _, p := range append([]Path{c.File}, c.Files...) {
			if p != "" && !filepath.IsAbs(string(p)) {
				t.Fatalf("path %q not resolved", p)
			}
		}
		if c.Mode != "" && c.Mode != modeOn && c.Mode != modeOff {
			t.Fatalf("mode %q accepted", c.Mode)
		}
	})
}

func TestMapPaths(t *testing.T) {
	type inner struct{ P Path }
	c := struct {
		A Path
		B []Path
		C map[string]inner
		D *inner
		E string
		f Path
	}{A: "/a", B: []Path{"/b"}, C: map[string]inner{"k": {"/c"}}, D: &inner{"/d"}, E: "/e", f: "/f"}
	MapPaths(&c, func(p Path) Path { return "/x" + p })
	if c.A != "/x/a" || c.B[0] != "/x/b" || c.C["k"].P != "/x/c" || c.D.P != "/x/d" || c.E != "/e" || c.f != "/f" {
		t.Errorf("MapPaths = %+v", c)
	}
}
