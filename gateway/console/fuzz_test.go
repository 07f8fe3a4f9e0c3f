package console

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func FuzzCheckSession(f *testing.F) {
	good, _ := json.Marshal(newSession("admin-token", "token", fakeNow, time.Hour))
	f.Add(good)
	f.Add([]byte(`{"sid":"x","csrf":"y","op":"","idp":"","iat":0,"exp":0}`))
	f.Add([]byte(`{"sid":"aaaaaaaaaaaaaaaaaaaa","csrf":"aaaaaaaaaaaaaaaaaaaa","op":"a","idp":"b","iat":1,"exp":99999999999}{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"sid":"aaaaaaaaaaaaaaaaaaaa","csrf":"aaaaaaaaaaaaaaaaaaaa","op":"a","idp":"corp","iat":1,"exp":99999999999,"host":true,"login":"s1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := checkSession(b, fakeNow, func(string) bool { return false })
		if err != nil {
			return
		}
		if s.Operator == "" || s.IdP == "" || len(s.CSRF) < 16 || fakeNow.Unix() >= s.Expires {
			t.Fatalf("accepted an incomplete or expired session %+v", s)
		}
	})
}

func FuzzSealOpen(f *testing.F) {
	x, err := newSealer(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(x.seal(newSession("admin-token", "token", fakeNow, time.Hour)))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, v string) {
		if s, err := x.open(v, fakeNow); err == nil && s.Operator == "" {
			t.Fatal("opened a session without an operator")
		}
	})
}

func FuzzParseList(f *testing.F) {
	f.Add("q=alice&show=problems&page=2")
	f.Add("page=-1")
	f.Add("q=%00&q=x")
	f.Add("show=all&page=99999999999999999999")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		lq, err := parseList(v, deviceShows...)
		if err != nil {
			return
		}
		if lq.Page < 1 || lq.Page > maxPage || !utf8.ValidString(lq.Q) || len(lq.Q) > maxParam {
			t.Fatalf("accepted %q as %+v", raw, lq)
		}
		p := paginate(lq, 1234, func(int) string { return "" })
		if i, j := p.bounds(); i < 0 || j > 1234 || i > j {
			t.Fatalf("page bounds %d:%d for %+v", i, j, lq)
		}
	})
}

func FuzzParseFilter(f *testing.F) {
	f.Add("user=alice&verdict=deny")
	f.Add("reason=device.&device=%ff")
	f.Add("verdict=allow&verdict=deny")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		fl, err := parseFilter(v)
		if err != nil {
			return
		}
		switch fl.Verdict {
		case "", "any", "allow", "deny":
		default:
			t.Fatalf("accepted verdict %q", fl.Verdict)
		}
		for _, s := range []string{fl.User, fl.Device, fl.Resource, fl.Reason} {
			if !utf8.ValidString(s) || len(s) > maxParam {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}

func FuzzContainsFold(f *testing.F) {
	f.Add("Alice@Example.test", "example")
	f.Add("ÄBC", "äb")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, s, sub string) {
		want := strings.Contains(strings.ToLower(s), strings.ToLower(sub))
		if !isASCII(s) || !isASCII(sub) {
			return // Unicode case folding differs from ToLower; EqualFold is the rule there
		}
		if got := containsFold(s, sub); got != want {
			t.Fatalf("containsFold(%q, %q) = %v, want %v", s, sub, got, want)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
