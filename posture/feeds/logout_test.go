package feeds

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
	"portcullis/posture"
)

func TestUniversalLogout(t *testing.T) {
	tx := newTransmitter(t) // serves the issuer's keys at /jwks
	dir := t.TempDir()
	now := t0.Add(time.Hour)
	db, err := posture.Open(filepath.Join(dir, "state"), posture.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok := filepath.Join(dir, "gtr")
	os.WriteFile(tok, []byte("static-gtr-token\n"), 0o600)
	const aud = "https://pep.acme.example/_portcullis/gtr"
	u, err := NewUniversalLogout(posture.FeedConfig{FeedBase: posture.FeedBase{Name: "gtr", Type: posture.FeedUniversalLogout}, SignalKeys: posture.SignalKeys{AuthorizationFile: conf.Path(tok)}, TokenKeys: posture.TokenKeys{Issuer: tx.srv.URL, JWKSURL: tx.srv.URL + "/jwks", Audience: aud}, LogoutKeys: posture.LogoutKeys{ClientID: "0oa-app"}},
		db, Options{Registry: prometheus.NewRegistry(), Now: func() time.Time { return now }, HTTPClient: tx.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(u)
	defer srv.Close()

	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: tx.priv, KeyID: tx.kid}},
		(&jose.SignerOptions{}).WithType(LogoutTokenType))
	jwt := func(kv ...any) string {
		c := map[string]any{"iss": tx.srv.URL, "sub": "0oa-app", "aud": aud, "jti": "j-" + kv[0].(string),
			"iat": now.Unix(), "nbf": now.Add(-5 * time.Minute).Unix(), "exp": now.Add(5 * time.Minute).Unix()}
		for i := 1; i < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		b, _ := json.Marshal(c)
		o, _ := signer.Sign(b)
		s, _ := o.CompactSerialize()
		return s
	}
	tests := []struct {
		name   string
		token  string
		body   string
		status int
		user   string
	}{
		{"static token, okta subject member", "static-gtr-token", `{"subject":{"format":"email","email":"J.Doe@acme.example"}}`, 204, "j.doe@acme.example"},
		{"signed token, sub_id", jwt("1"), `{"sub_id":{"format":"account","uri":"acct:ann@acme.example"}}`, 204, "ann@acme.example"},
		{"bad static token", "nope", `{"sub_id":{"format":"email","email":"bob@acme.example"}}`, 401, "bob@acme.example"},
		{"wrong audience", jwt("2", "aud", "https://other.example"), `{"sub_id":{"format":"email","email":"bob@acme.example"}}`, 401, "bob@acme.example"},
		{"expired", jwt("3", "exp", now.Add(-2*time.Minute).Unix()), `{"sub_id":{"format":"email","email":"bob@acme.example"}}`, 401, "bob@acme.example"},
		{"wrong client", jwt("4", "sub", "0oa-other"), `{"sub_id":{"format":"email","email":"bob@acme.example"}}`, 401, "bob@acme.example"},
		{"unknown user", "static-gtr-token", `{"sub_id":{"format":"iss_sub","iss":"https://acme.okta.com","sub":"00u1"}}`, 404, ""},
		{"unknown format", "static-gtr-token", `{"sub_id":{"format":"carrier_pigeon"}}`, 400, ""},
		{"not json", "static-gtr-token", `{`, 400, ""},
		{"two subjects differing in case", "static-gtr-token", `{"sub_id":{"format":"email","email":"ann@acme.example"},"SUB_ID":{"format":"email","email":"bob@acme.example"}}`, 400, "bob@acme.example"},
		{"duplicate email", "static-gtr-token", `{"subject":{"format":"email","email":"ann@acme.example","email":"bob@acme.example"}}`, 400, "bob@acme.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.user == "" {
				return
			}
			revoked := !db.UserRevokedBefore(tt.user).IsZero()
			if revoked != (tt.status == 204) {
				t.Errorf("user %s revoked = %v", tt.user, revoked)
			}
		})
	}
	if h := u.Health(); h.Accepted != 2 || h.Rejected != 9 {
		t.Errorf("health = %+v", h)
	}
}

func TestNewDispatch(t *testing.T) {
	dir := t.TempDir()
	db, err := posture.Open(dir, posture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sec := filepath.Join(dir, "s")
	os.WriteFile(sec, []byte("x\n"), 0o600)
	for _, cfg := range []posture.FeedConfig{
		{FeedBase: posture.FeedBase{Name: "okta", Type: posture.FeedOktaHook}, SignalKeys: posture.SignalKeys{AuthorizationFile: conf.Path(sec)}},
		{FeedBase: posture.FeedBase{Name: "ssf", Type: posture.FeedSSF}, TokenKeys: posture.TokenKeys{Issuer: "https://tx.example", Audience: "a"},
			SignalKeys: posture.SignalKeys{AuthorizationFile: conf.Path(sec)}},
		{FeedBase: posture.FeedBase{Name: "gtr", Type: posture.FeedUniversalLogout}, SignalKeys: posture.SignalKeys{AuthorizationFile: conf.Path(sec)}},
	} {
		r, err := New(cfg, db, Options{})
		if err != nil {
			t.Fatalf("New(%s): %v", cfg.Type, err)
		}
		if r.Name() != cfg.Name || r.Path() != posture.DefaultFeedPathPrefix+cfg.Name || r.Health().Type != string(cfg.Type) {
			t.Errorf("%s: name %q path %q health %+v", cfg.Type, r.Name(), r.Path(), r.Health())
		}
	}
	if _, err := New(posture.FeedConfig{FeedBase: posture.FeedBase{Name: "x", Type: "jamf"}}, db, Options{}); err == nil {
		t.Error("New accepted an unknown type")
	}
}
