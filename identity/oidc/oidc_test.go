package oidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/internal/conf"
	"portcullis/posture"
)

// fakeOP is a minimal OpenID provider: discovery and JWKS, and a signer
// for tokens.
type fakeOP struct {
	srv     *httptest.Server
	key     *rsa.PrivateKey
	mu      sync.Mutex
	jwksHit int
	nonce   string // the nonce the token endpoint's ID token carries
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	op := &fakeOP{}
	op.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": op.srv.URL, "authorization_endpoint": op.srv.URL + "/auth", "token_endpoint": op.srv.URL + "/token",
			"jwks_uri": op.srv.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		op.jwksHit++
		op.mu.Unlock()
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &op.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		nonce := op.nonce
		op.mu.Unlock()
		now := time.Now()
		idt := op.sign(t, map[string]any{"iss": op.srv.URL, "aud": "portcullis", "sub": "u1", "email": "alice@example.test",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "nonce": nonce}, "k1", "")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *fakeOP) hits() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.jwksHit
}

func (op *fakeOP) sign(t *testing.T, claims map[string]any, kid string, typ string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: op.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

type fakeStore struct {
	mu   sync.Mutex
	revs []posture.Revocation
}

func (s *fakeStore) SessionRevoked(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.revs {
		if r.Kind == posture.RevokeSession && r.Session == id {
			return true
		}
	}
	return false
}

func (s *fakeStore) UserRevokedBefore(user string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, r := range s.revs {
		if r.Kind == posture.RevokeUser && r.User == user && r.Before.After(t) {
			t = r.Before
		}
	}
	return t
}

func (s *fakeStore) ApplyRevocations(ctx context.Context, b []posture.RevocationEvent) ([]posture.Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range b {
		s.revs = append(s.revs, e.Revocation)
	}
	return make([]posture.Outcome, len(b)), nil
}

func newManager(t *testing.T, op *fakeOP, store *fakeStore) *Manager {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	key := make([]byte, session.KeySize)
	rand.Read(key)
	m, err := New([]ProviderConfig{{
		Name: "corp", Issuer: op.srv.URL, ClientID: "portcullis", ClientSecretFile: conf.Path(secret),
		RedirectURL: "https://auth.example.test/.portcullis/oidc/callback",
		Bearer:      &BearerConfig{Audience: "api://portcullis"},
	}}, Options{Store: store, SessionKeys: [][]byte{key}, Hosts: map[string][]string{"corp": {"app.example.test", "*.apps.example.test"}},
		Ports: func(p int) bool { return p == 8443 }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBearer(t *testing.T) {
	op := newFakeOP(t)
	m := newManager(t, op, &fakeStore{})
	p := m.Provider("corp")
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": op.srv.URL, "aud": "api://portcullis", "sub": "u1", "email": "Alice@Example.test",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": []string{"eng"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	none := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"k1"}`))
		b, _ := json.Marshal(claims(nil))
		return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
	}
	hs256 := func() string {
		pub, _ := x509.MarshalPKIXPublicKey(&op.key.PublicKey)
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		b, _ := json.Marshal(claims(nil))
		jws, _ := s.Sign(b)
		out, _ := jws.CompactSerialize()
		return out
	}
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"valid", op.sign(t, claims(nil), "k1", ""), true},
		{"expired", op.sign(t, claims(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), "k1", ""), false},
		{"not yet valid", op.sign(t, claims(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() }), "k1", ""), false},
		{"wrong audience", op.sign(t, claims(func(c map[string]any) { c["aud"] = "api://other" }), "k1", ""), false},
		{"wrong issuer", op.sign(t, claims(func(c map[string]any) { c["iss"] = "https://evil.example.test" }), "k1", ""), false},
		{"alg none", none(), false},
		{"HS256 with the public key", hs256(), false},
		{"no user claim", op.sign(t, claims(func(c map[string]any) { delete(c, "email") }), "k1", ""), false},
		{"garbage", "a.b.c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://app.example.test/", nil)
			r.Header.Set("Authorization", "Bearer "+tt.tok)
			sub := p.Authenticate(nil, r)
			if (sub != nil) != tt.ok {
				t.Fatalf("Authenticate = %+v, want ok=%v", sub, tt.ok)
			}
			if r.Header.Get("Authorization") != "" {
				t.Error("Authorization reached the upstream")
			}
			if tt.ok && (sub.UserID != "alice@example.test" || sub.IdP != "corp" || len(sub.Groups) != 1) {
				t.Errorf("subject = %+v", sub)
			}
		})
	}

	// Unknown key ids: one JWKS refresh in all, however many tokens.
	before := op.hits()
	for range 5 {
		r := httptest.NewRequest("GET", "https://app.example.test/", nil)
		r.Header.Set("Authorization", "Bearer "+op.sign(t, claims(func(c map[string]any) { c["jti"] = randomString(8) }), "k-unknown", ""))
		if p.Authenticate(nil, r) != nil {
			t.Fatal("token of an unknown key accepted")
		}
	}
	if got := op.hits() - before; got > 1 {
		t.Errorf("unknown kids caused %d JWKS fetches, want at most 1", got)
	}
	// A bad signature with a known kid never refetches.
	before = op.hits()
	good := op.sign(t, claims(func(c map[string]any) { c["jti"] = "x" }), "k1", "")
	bad := good[:len(good)-4] + "AAAA"
	for range 3 {
		r := httptest.NewRequest("GET", "https://app.example.test/", nil)
		r.Header.Set("Authorization", "Bearer "+bad)
		if p.Authenticate(nil, r) != nil {
			t.Fatal("bad signature accepted")
		}
	}
	if got := op.hits() - before; got != 0 {
		t.Errorf("bad signatures caused %d JWKS fetches, want 0", got)
	}
}

func TestBackchannelLogout(t *testing.T) {
	op := newFakeOP(t)
	store := &fakeStore{}
	m := newManager(t, op, store)
	p := m.Provider("corp")
	now := time.Now()
	lt := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": op.srv.URL, "aud": "portcullis", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": randomString(8), "sid": "idp-session-1", "events": map[string]any{backchannelEvent: map[string]any{}}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	// A session of that provider session, as a login would have made.
	s := p.codec.New("our-session", now, time.Time{})
	s.Subject.UserID, s.Subject.IdP = "alice@example.test", "corp"
	s.Subject.IdPSession = p.revocationKey("sid", "idp-session-1")
	m.sids.add(s.Subject.IdPSession, sidEntry{session: "our-session", user: "alice@example.test", expires: s.Expires}, now)
	cookie, _ := p.codec.Seal(s)

	post := func(tok string) int {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", BackchannelPath, strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		m.Handlers()[BackchannelPath].ServeHTTP(w, r)
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Error("no Cache-Control: no-store")
		}
		return w.Code
	}
	bad := []struct {
		name string
		tok  string
	}{
		{"nonce present", op.sign(t, lt(func(c map[string]any) { c["nonce"] = "n" }), "k1", "")},
		{"no events", op.sign(t, lt(func(c map[string]any) { delete(c, "events") }), "k1", "")},
		{"event not an object", op.sign(t, lt(func(c map[string]any) { c["events"] = map[string]any{backchannelEvent: "x"} }), "k1", "")},
		{"wrong audience", op.sign(t, lt(func(c map[string]any) { c["aud"] = "other" }), "k1", "")},
		{"wrong typ", op.sign(t, lt(nil), "k1", "JWT")},
		{"old iat", op.sign(t, lt(func(c map[string]any) { c["iat"] = now.Add(-time.Hour).Unix() }), "k1", "")},
		{"neither sid nor sub", op.sign(t, lt(func(c map[string]any) { delete(c, "sid") }), "k1", "")},
		{"unknown issuer", op.sign(t, lt(func(c map[string]any) { c["iss"] = "https://evil.example.test" }), "k1", "")},
		{"empty", ""},
	}
	for _, tt := range bad {
		if code := post(tt.tok); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", tt.name, code)
		}
	}
	if len(store.revs) != 0 {
		t.Fatalf("refused tokens revoked %+v", store.revs)
	}
	good := op.sign(t, lt(nil), "k1", "logout+jwt")
	if code := post(good); code != http.StatusOK {
		t.Fatalf("valid logout token: status %d", code)
	}
	if !store.SessionRevoked("our-session") || !store.SessionRevoked(s.Subject.IdPSession) {
		t.Errorf("revocations = %+v, want the session and the provider session", store.revs)
	}
	if code := post(good); code != http.StatusBadRequest {
		t.Errorf("replayed logout token: status %d, want 400", code)
	}
	r := httptest.NewRequest("GET", "https://app.example.test/", nil)
	r.Header.Set("Cookie", p.codec.Name()+"="+cookie)
	if sub := p.Authenticate(nil, r); sub != nil {
		t.Errorf("revoked session still authenticates: %+v", sub)
	}

	// By sub: every session of the user.
	subTok := op.sign(t, lt(func(c map[string]any) { delete(c, "sid"); c["sub"] = "u1" }), "k1", "")
	if code := post(subTok); code != http.StatusOK {
		t.Fatalf("logout by sub: status %d", code)
	}
	if store.UserRevokedBefore(p.revocationKey("sub", "u1")).IsZero() {
		t.Errorf("logout by sub did not revoke the subject: %+v", store.revs)
	}
}

func TestChallenge(t *testing.T) {
	op := newFakeOP(t)
	m := newManager(t, op, &fakeStore{})
	p := m.Provider("corp")
	tests := []struct {
		name     string
		accept   string
		d        enforcement.Decision
		status   int
		location string
		www      []string
	}{
		{"browser login", "text/html", enforcement.Decision{Verdict: enforcement.Login, Reason: enforcement.ReasonLoginRequired}, 302,
			"https://auth.example.test/.portcullis/oidc/start?provider=corp&rd=https%3A%2F%2Fapp.example.test%2Fx%3Fy%3D1", nil},
		{"browser mfa", "text/html", enforcement.Decision{Verdict: enforcement.StepUp, Reason: enforcement.ReasonMFARequired}, 302,
			"https://auth.example.test/.portcullis/oidc/start?acr=urn%3Aloa%3A2&prompt=login&provider=corp&rd=https%3A%2F%2Fapp.example.test%2Fx%3Fy%3D1", nil},
		{"api login", "application/json", enforcement.Decision{Verdict: enforcement.Login, Reason: enforcement.ReasonLoginRequired}, 401, "",
			[]string{`Bearer realm="portcullis"`}},
		{"api mfa", "application/json", enforcement.Decision{Verdict: enforcement.StepUp, Reason: enforcement.ReasonMFARequired}, 401, "",
			[]string{`error="insufficient_user_authentication"`, `acr_values="urn:loa:2"`}},
		{"api reauth", "application/json", enforcement.Decision{Verdict: enforcement.StepUp, Reason: enforcement.ReasonReauthRequired}, 401, "",
			[]string{`error="insufficient_user_authentication"`, `max_age=300`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "https://app.example.test/x?y=1", nil)
			r.Header.Set("Accept", tt.accept)
			p.Challenge(w, r, tt.d, flow.Challenge{ACR: []string{"urn:loa:2"}, MaxAuthAge: 5 * time.Minute, RequestID: "r1"})
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("Location"); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
			for _, want := range tt.www {
				if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, want) {
					t.Errorf("WWW-Authenticate = %q, want %q in it", got, want)
				}
			}
			if tt.status == 401 && !strings.Contains(w.Body.String(), string(tt.d.Reason)) {
				t.Errorf("body lacks the reason: %s", w.Body)
			}
		})
	}
}

func TestIdPUnavailable(t *testing.T) {
	op := newFakeOP(t)
	m := newManager(t, op, &fakeStore{})
	p := m.Provider("corp")
	// A session issued earlier keeps working while the provider is down.
	now := time.Now()
	s := p.codec.New("s1", now, time.Time{})
	s.Subject.UserID, s.Subject.IdP = "alice@example.test", "corp"
	cookie, _ := p.codec.Seal(s)
	op.srv.Close()

	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "https://app.example.test/", nil)
	r.Header.Set("Accept", "text/html")
	p.Challenge(w, r, enforcement.Decision{Verdict: enforcement.Login, Reason: enforcement.ReasonLoginRequired}, flow.Challenge{})
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "idp.unavailable") {
		t.Errorf("new user with the provider down = %d %s", w.Code, w.Body)
	}
	r = httptest.NewRequest("GET", "https://app.example.test/", nil)
	r.Header.Set("Cookie", p.codec.Name()+"="+cookie)
	if p.Authenticate(nil, r) == nil {
		t.Error("existing session refused while the provider is down")
	}
}

func TestCheckReturn(t *testing.T) {
	op := newFakeOP(t)
	p := newManager(t, op, &fakeStore{}).Provider("corp")
	tests := []struct {
		raw string
		ok  bool
	}{
		{"https://app.example.test/x", true},
		{"https://app.example.test:8443/x?y", true},
		{"https://auth.example.test/", true},
		{"https://a.apps.example.test/", true},
		{"/local/path", true},
		{"https://b.a.apps.example.test/", false},
		{"https://evil.example/", false},
		{"//evil.example/", false},
		{"/\\evil.example", false},
		{"http://app.example.test/", false},
		{"https://u:p@app.example.test/", false},
		{"https://app.example.test.evil/", false},
		{"javascript:alert(1)", false},
		{"https://app.example.test/\nx", false},
		{"", false},
	}
	for _, tt := range tests {
		base := &url.URL{Scheme: "https", Host: "auth.example.test"}
		if _, err := p.returns.Check(tt.raw, base); (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.raw, err, tt.ok)
		}
	}
}

// FuzzCallback throws arbitrary callback queries and state cookies at the
// callback: it must answer 4xx, never succeed, never panic.
func FuzzCallback(f *testing.F) {
	f.Add("state="+strings.Repeat("A", 43)+"&code=x", "__Host-pc_l-AAAAAAAAAAAAAAAA=abc")
	f.Add("error=access_denied&state=x", "")
	f.Add("code=%zz&state=;;", "a=b")
	f.Fuzz(func(t *testing.T, query, cookie string) {
		op := sharedOP(t)
		m := sharedManager(t, op)
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "https://auth.example.test/.portcullis/oidc/callback", nil)
		r.URL.RawQuery = query
		r.Header.Set("Cookie", cookie)
		m.serveCallback(w, r)
		if w.Code < 400 || w.Code > 499 {
			t.Fatalf("callback answered %d", w.Code)
		}
		w = httptest.NewRecorder()
		r = httptest.NewRequest("GET", "https://auth.example.test/.portcullis/oidc/start", nil)
		r.URL.RawQuery = query
		r.Header.Set("Cookie", cookie)
		m.serveStart(w, r)
		if w.Code == http.StatusFound {
			if loc, _ := url.Parse(w.Header().Get("Location")); loc == nil || !strings.HasPrefix(loc.String(), op.srv.URL) {
				t.Fatalf("start redirected to %q", w.Header().Get("Location"))
			}
		}
	})
}

var (
	fuzzOnce sync.Once
	fuzzOP   *fakeOP
	fuzzM    *Manager
)

func sharedOP(*testing.T) *fakeOP {
	fuzzOnce.Do(func() {
		fuzzOP = newFakeOPNoCleanup()
	})
	return fuzzOP
}

func sharedManager(t *testing.T, op *fakeOP) *Manager {
	if fuzzM == nil {
		fuzzM = newManager(t, op, &fakeStore{})
	}
	return fuzzM
}

// newFakeOPNoCleanup is a discovery-only provider shared by every fuzz
// input (a fuzz target cannot register cleanups once per run).
func newFakeOPNoCleanup() *fakeOP {
	op := &fakeOP{}
	op.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": op.srv.URL, "authorization_endpoint": op.srv.URL + "/auth", "token_endpoint": op.srv.URL + "/token",
			"jwks_uri": op.srv.URL + "/jwks",
		})
	})
	op.srv = httptest.NewServer(mux)
	return op
}
