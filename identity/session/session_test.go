package session

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"portcullis/enforcement"
	"portcullis/internal/conf"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k)
	return k
}

type fakeRevs struct {
	sessions map[string]bool
	users    map[string]time.Time
}

func (f *fakeRevs) SessionRevoked(id string) bool           { return f.sessions[id] }
func (f *fakeRevs) UserRevokedBefore(user string) time.Time { return f.users[user] }

func sample(c *Codec) *Session {
	s := c.New("sid-1", t0, time.Time{})
	s.Subject.IdP = "corp"
	s.Subject.UserID = "alice@example.test"
	s.Subject.Email = "alice@example.test"
	s.Subject.Groups = []string{"eng", "admins"}
	s.Subject.AMR = []string{"pwd", "otp"}
	s.Subject.ACR = "urn:mfa"
	s.Subject.AuthTime = t0.Add(-time.Minute)
	s.Subject.IdPSession = "oidc-sid:corp:abc"
	s.Subject.SubjectKey = "oidc-sub:corp:def"
	return s
}

func mustCodec(t testing.TB, name string, keys [][]byte, revs Revocations) *Codec {
	t.Helper()
	c, err := NewCodec(name, keys, Config{Lifetime: conf.Duration(8 * time.Hour), IdleTimeout: conf.Duration(30 * time.Minute)}, revs)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var cmpSession = cmpopts.IgnoreUnexported(Session{})

func TestRoundTrip(t *testing.T) {
	c := mustCodec(t, CookiePrefix+"-corp", [][]byte{newKey()}, nil)
	for _, mod := range []func(*Session){
		func(*Session) {},
		func(s *Session) { s.Subject.Groups, s.Subject.AMR = nil, nil },
		func(s *Session) {
			s.Subject.Groups = nil
			for i := range 40 {
				s.Subject.Groups = append(s.Subject.Groups, strings.Repeat("g", i+1))
			}
		},
	} {
		s := sample(c)
		mod(s)
		v, err := c.Seal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Open(v, t0.Add(time.Minute))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if d := cmp.Diff(s, got, cmpSession, cmpopts.EquateApproxTime(time.Second)); d != "" {
			t.Errorf("round trip (-want +got):\n%s", d)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	k1, k2 := newKey(), newKey()
	revs := &fakeRevs{sessions: map[string]bool{}, users: map[string]time.Time{}}
	c := mustCodec(t, CookiePrefix+"-corp", [][]byte{k1}, revs)
	s := sample(c)
	v, _ := c.Seal(s)
	raw, _ := base64.RawURLEncoding.DecodeString(v)

	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other := mustCodec(t, CookiePrefix+"-other", [][]byte{k1}, nil)
	moved, _ := other.Seal(sample(other))
	foreign := mustCodec(t, CookiePrefix+"-corp", [][]byte{k2}, nil)
	foreignV, _ := foreign.Seal(sample(foreign))

	tests := []struct {
		name  string
		value string
		now   time.Time
		setup func()
		want  error
	}{
		{"empty", "", t0, nil, ErrMalformed},
		{"not base64", strings.Repeat("!", 80), t0, nil, ErrMalformed},
		{"flipped key id", flip(0), t0, nil, ErrMalformed},
		{"flipped nonce", flip(10), t0, nil, ErrMalformed},
		{"flipped ciphertext", flip(len(raw) - 30), t0, nil, ErrMalformed},
		{"flipped tag", flip(len(raw) - 1), t0, nil, ErrMalformed},
		{"truncated", v[:len(v)-4], t0, nil, ErrMalformed},
		{"other cookie name", moved, t0, nil, ErrMalformed},
		{"unknown key", foreignV, t0, nil, ErrMalformed},
		{"too long", strings.Repeat("A", maxCookie+1), t0, nil, ErrMalformed},
		{"expired", v, t0.Add(8 * time.Hour), nil, ErrExpired},
		{"idle", v, t0.Add(31 * time.Minute), nil, ErrIdle},
		{"session revoked", v, t0, func() { revs.sessions["sid-1"] = true }, ErrRevoked},
		{"idp session revoked", v, t0, func() { revs.sessions["oidc-sid:corp:abc"] = true }, ErrRevoked},
		{"user revoked after auth", v, t0, func() { revs.users["alice@example.test"] = t0 }, ErrRevoked},
		{"subject revoked", v, t0, func() { revs.users["oidc-sub:corp:def"] = t0 }, ErrRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clear(revs.sessions)
			clear(revs.users)
			if tt.setup != nil {
				tt.setup()
			}
			_, err := c.Open(tt.value, tt.now)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open = %v, want %v", err, tt.want)
			}
		})
	}
	// A user revoked before the session authenticated keeps it.
	clear(revs.sessions)
	clear(revs.users)
	revs.users["alice@example.test"] = t0.Add(-time.Hour)
	if _, err := c.Open(v, t0); err != nil {
		t.Errorf("revocation before auth time: Open = %v, want nil", err)
	}
}

func TestKeyRotation(t *testing.T) {
	old, cur := newKey(), newKey()
	before := mustCodec(t, CookiePrefix, [][]byte{old}, nil)
	v, _ := before.Seal(sample(before))
	after := mustCodec(t, CookiePrefix, [][]byte{cur, old}, nil)
	if _, err := after.Open(v, t0); err != nil {
		t.Fatalf("old key no longer opens: %v", err)
	}
	v2, _ := after.Seal(sample(after))
	if _, err := before.Open(v2, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("new cookie opened with the old key alone: %v", err)
	}
	dropped := mustCodec(t, CookiePrefix, [][]byte{cur}, nil)
	if _, err := dropped.Open(v, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("dropped key still opens: %v", err)
	}
}

func TestNeedsRefresh(t *testing.T) {
	c := mustCodec(t, CookiePrefix, [][]byte{newKey()}, nil)
	s := sample(c)
	tests := []struct {
		after time.Duration
		want  bool
	}{{0, false}, {59 * time.Second, false}, {time.Minute, true}, {10 * time.Minute, true}}
	for _, tt := range tests {
		if got := c.NeedsRefresh(s, t0.Add(tt.after)); got != tt.want {
			t.Errorf("NeedsRefresh after %s = %v, want %v", tt.after, got, tt.want)
		}
	}
}

func TestTooLarge(t *testing.T) {
	c := mustCodec(t, CookiePrefix, [][]byte{newKey()}, nil)
	s := sample(c)
	for range 200 {
		s.Subject.Groups = append(s.Subject.Groups, strings.Repeat("x", 30))
	}
	if _, err := c.Seal(s); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Seal = %v, want ErrTooLarge", err)
	}
}

func TestCookieAttributes(t *testing.T) {
	c := mustCodec(t, CookiePrefix+"-corp", [][]byte{newKey()}, nil)
	rec := &headerRecorder{h: http.Header{}}
	if err := c.Write(rec, sample(c)); err != nil {
		t.Fatal(err)
	}
	got := rec.h.Get("Set-Cookie")
	for _, want := range []string{"__Host-pc_s-corp=", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(got, want) {
			t.Errorf("Set-Cookie %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "Domain") {
		t.Errorf("Set-Cookie %q has a Domain", got)
	}
	r, _ := http.NewRequest("GET", "https://app.example.test/", nil)
	r.Header.Set("Cookie", "a=b; "+strings.Split(got, ";")[0]+"; c=d")
	if _, err := c.Read(r, t0); err != nil {
		t.Errorf("Read = %v", err)
	}
	StripCookies(r.Header, CookiePrefix)
	if got := r.Header.Get("Cookie"); got != "a=b; c=d" {
		t.Errorf("after StripCookies Cookie = %q", got)
	}
}

type headerRecorder struct{ h http.Header }

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(int)             {}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "session.keys")
	keys, err := LoadKeyFile(p, true)
	if err != nil || len(keys) != 1 {
		t.Fatalf("LoadKeyFile(create) = %d keys, %v", len(keys), err)
	}
	again, err := LoadKeyFile(p, true)
	if err != nil || !bytes.Equal(again[0], keys[0]) {
		t.Fatalf("second load = %v, key changed: %v", err, !bytes.Equal(again[0], keys[0]))
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	tests := []struct {
		name, data string
		n          int
		bad        bool
	}{
		{"two keys", "# c\n" + base64.StdEncoding.EncodeToString(newKey()) + "\n\n" + base64.RawURLEncoding.EncodeToString(newKey()) + "\n", 2, false},
		{"empty", "# nothing\n", 0, true},
		{"short", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0, true},
		{"garbage", "not*base64", 0, true},
	}
	for _, tt := range tests {
		ks, err := ParseKeys([]byte(tt.data))
		if (err != nil) != tt.bad || len(ks) != tt.n {
			t.Errorf("%s: ParseKeys = %d keys, %v", tt.name, len(ks), err)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing"), false); err == nil {
		t.Error("missing file without create: no error")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		c    Config
		keys []string
	}{
		{Config{}, nil},
		{Config{Lifetime: conf.Duration(-1)}, []string{"lifetime"}},
		{Config{Lifetime: conf.Duration(time.Hour), IdleTimeout: conf.Duration(2 * time.Hour)}, []string{"idle_timeout"}},
		{Config{IdleTimeout: conf.Duration(time.Second)}, []string{"idle_timeout"}},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		var got []string
		for _, e := range conf.Flatten(err) {
			var fe *conf.FieldError
			if errors.As(e, &fe) {
				got = append(got, fe.Key)
			}
		}
		if d := cmp.Diff(tt.keys, got); d != "" {
			t.Errorf("%+v: keys (-want +got):\n%s", tt.c, d)
		}
	}
}

var sinkSubject *enforcement.Subject

func BenchmarkSessionDecode(b *testing.B) {
	revs := &fakeRevs{sessions: map[string]bool{"x": true}, users: map[string]time.Time{"bob": t0}}
	c := mustCodec(b, CookiePrefix+"-corp", [][]byte{newKey(), newKey()}, revs)
	v, _ := c.Seal(sample(c))
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.Open(v, t0)
		if err != nil {
			b.Fatal(err)
		}
		sinkSubject = &s.Subject
	}
}

func FuzzOpen(f *testing.F) {
	key := make([]byte, KeySize)
	c, _ := NewCodec(CookiePrefix, [][]byte{key}, Config{}, nil)
	v, _ := c.Seal(sample(c))
	f.Add(v)
	f.Add("")
	f.Add(v[:len(v)/2])
	f.Add(strings.Repeat("A", 200))
	f.Fuzz(func(t *testing.T, value string) {
		s, err := c.Open(value, t0)
		if err == nil && s.Subject.SessionID == "" {
			t.Fatal("opened a session without an id")
		}
	})
}

// FuzzParse feeds the plaintext parser directly, which the AEAD otherwise
// shields from arbitrary input.
func FuzzParse(f *testing.F) {
	c, _ := NewCodec(CookiePrefix, [][]byte{newKey()}, Config{}, nil)
	f.Add(appendSession(nil, sample(c)))
	f.Add([]byte{1})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, plain []byte) {
		s, err := parseSession(plain)
		if err != nil {
			return
		}
		again, err := parseSession(appendSession(nil, s))
		if err != nil {
			t.Fatalf("re-encoded session does not parse: %v", err)
		}
		if d := cmp.Diff(s, again, cmpSession); d != "" {
			t.Fatalf("re-encode changed the session:\n%s", d)
		}
	})
}
