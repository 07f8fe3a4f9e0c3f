package conf

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

type testInner struct {
	Name  string   `yaml:"name"`
	Items []string `yaml:"items"`
}

type testConfig struct {
	Port    int                  `yaml:"port"`
	Enabled bool                 `yaml:"enabled"`
	Ratio   float64              `yaml:"ratio"`
	Wait    Duration             `yaml:"wait"`
	Ptr     *bool                `yaml:"ptr"`
	Inner   testInner            `yaml:"inner"`
	List    []testInner          `yaml:"list"`
	Map     map[string]testInner `yaml:"map"`
	hidden  string
}

func TestDecodeValid(t *testing.T) {
	src := `
port: 8443
enabled: true
ratio: 0.5
wait: 15m
ptr: false
inner: {name: a, items: [x, y]}
list:
  - name: b
map:
  k: {name: c}
`
	var c testConfig
	pos, err := Decode("t.yaml", []byte(src), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 8443 || !c.Enabled || c.Ratio != 0.5 || c.Wait.Std() != 15*time.Minute || c.Ptr == nil || *c.Ptr {
		t.Errorf("scalars = %+v", c)
	}
	if c.Inner.Name != "a" || len(c.Inner.Items) != 2 || c.List[0].Name != "b" || c.Map["k"].Name != "c" {
		t.Errorf("nested = %+v", c)
	}
	if p := pos.Find("list[0].name"); p.Line != 9 || p.Col != 11 {
		t.Errorf("position of list[0].name = %+v, want 9:11", p)
	}
	if p := pos.Find("list[0].missing"); p.Line != 9 {
		t.Errorf("a missing key is placed at its parent: %+v", p)
	}
}

func TestDecodeReportsEveryProblem(t *testing.T) {
	src := `port: eighty
enabled: yes please
wait: 15 minutes
inner:
  nmae: a
  items: x
list: {name: b}
unknown: 1
port: 2
`
	var c testConfig
	_, err := Decode("t.yaml", []byte(src), &c)
	var got []string
	for _, e := range Flatten(err) {
		var pe *PosError
		if !errors.As(e, &pe) {
			t.Fatalf("not a PosError: %v", e)
		}
		got = append(got, fmt.Sprintf("%d:%d %s", pe.Line, pe.Col, pe.Key))
	}
	want := []string{
		"1:7 port", "2:10 enabled", "3:7 wait", "5:3 inner.nmae", "6:10 inner.items",
		"7:7 list", "8:1 unknown", "9:1 port",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("errors =\n%s\nwant\n%s\n(full: %v)", strings.Join(got, "\n"), strings.Join(want, "\n"), err)
	}
	if !strings.Contains(err.Error(), `did you mean "name"`) {
		t.Errorf("no typo suggestion in %v", err)
	}
}

func TestDecodeSyntaxErrorHasLine(t *testing.T) {
	var c testConfig
	_, err := Decode("t.yaml", []byte("port: 1\ninner: {name: [\n"), &c)
	var pe *PosError
	if !errors.As(err, &pe) || pe.Line == 0 || !strings.Contains(pe.Msg, "invalid YAML") {
		t.Fatalf("syntax error = %#v", err)
	}
}

func TestLocateAndAtKey(t *testing.T) {
	pos := Positions{"": {1, 1}, "a": {2, 1}, "a.b[1]": {4, 3}}
	err := AtKey("a", errors.Join(Errorf("b[1]", "bad"), Errorf("c", "missing")))
	got := Locate("f.yaml", pos, err)
	if len(got) != 2 || got[0].Error() != "f.yaml:2:1: a.c: missing" || got[1].Error() != "f.yaml:4:3: a.b[1]: bad" {
		t.Errorf("Locate = %v", got)
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret([]byte("hunter2"))
	for _, f := range []string{"%v", "%s", "%+v", "%#v", "%q"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "hunter2") {
			t.Errorf("%s printed the secret: %s", f, out)
		}
	}
	if out := fmt.Sprintf("%+v", struct{ S Secret }{s}); strings.Contains(out, "hunter2") {
		t.Errorf("nested secret printed: %s", out)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("port: 1\nlist: [{name: a}]\n"))
	f.Add([]byte("inner: &a {name: x}\nlist: [*a, *a]\n"))
	f.Add([]byte("<<: {port: 1}\n"))
	f.Add([]byte("map: {a: {items: [1, 2]}}\nwait: 1h\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c testConfig
		_, err := Decode("fuzz.yaml", b, &c)
		for _, e := range Flatten(err) {
			var pe *PosError
			if !errors.As(e, &pe) {
				t.Fatalf("error without position: %v", e)
			}
		}
	})
}

func TestDecodeAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("list: [{items: *a8}]\n")
	var tc struct {
		List []struct {
			Items [][][][][][][][][]string `yaml:"items"`
		} `yaml:"list"`
	}
	_, err := Decode("bomb.yaml", []byte(b.String()+"\n"), &tc)
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("alias bomb: err = %v", err)
	}
}
