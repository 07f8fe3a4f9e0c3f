package test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	jose "github.com/go-jose/go-jose/v4"
)

// testOP is a minimal OpenID provider signing real tokens: it approves
// every authorization request as alice, with the acr asked for (default
// "silver"), and can send back-channel logout tokens.
type testOP struct {
	url   string
	key   *rsa.PrivateKey
	mu    sync.Mutex
	codes map[string]url.Values // code -> the authorization request
}

func startTestOP(t *testing.T) *testOP {
	t.Helper()
	op := &testOP{codes: map[string]url.Values{}}
	op.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	op.url = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": op.url, "authorization_endpoint": op.url + "/auth",
			"token_endpoint": op.url + "/token", "jwks_uri": op.url + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &op.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" {
			http.Error(w, "PKCE S256 and nonce required", 400)
			return
		}
		code := fmt.Sprintf("c%d", time.Now().UnixNano())
		op.mu.Lock()
		op.codes[code] = q
		op.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {op.url}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		op.mu.Lock()
		q := op.codes[r.PostForm.Get("code")]
		delete(op.codes, r.PostForm.Get("code"))
		op.mu.Unlock()
		if q == nil || r.PostForm.Get("code_verifier") == "" {
			http.Error(w, `{"error":"invalid_grant"}`, 400)
			return
		}
		acr := "silver"
		if v := q.Get("acr_values"); v != "" {
			acr = strings.Fields(v)[0]
		}
		now := time.Now()
		idt := op.sign(t, map[string]any{"iss": op.url, "aud": "portcullis", "sub": "u1", "email": "alice@example.test",
			"email_verified": true, "nonce": q.Get("nonce"), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"auth_time": now.Unix(), "acr": acr, "amr": []string{"pwd"}, "sid": "sid-1", "groups": []string{"eng"}}, "")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idt})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return op
}

func (op *testOP) sign(t *testing.T, claims map[string]any, typ string) string {
	opts := (&jose.SignerOptions{}).WithHeader("kid", "k1")
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: op.key}, opts)
	if err != nil {
		t.Error(err)
		return ""
	}
	b, _ := json.Marshal(claims)
	jws, _ := s.Sign(b)
	out, _ := jws.CompactSerialize()
	return out
}

const opGatewayConfig = `
listen:
  - address: 127.0.0.1:%d
    client_auth: "off"
admin: {listen: "%s"}
state: {dir: state}
tls:
  certificates: [{cert: server.pem, key: server.key}]
identity:
  oidc:
    - name: corp
      issuer: %s
      client_id: portcullis
      client_secret_file: op.secret
      redirect_url: https://localhost:%d/.portcullis/oidc/callback
resources:
  - name: gold
    hosts: [localhost]
    paths: [/gold]
    upstream: %s
    policy:
      login: corp
      device: {certificate: "off"}
      user: {acr: [gold]}
  - name: app
    hosts: [localhost]
    upstream: %s
    policy: {login: corp, device: {certificate: "off"}}
`

func TestOIDCStepUpAndBackchannel(t *testing.T) {
	op := startTestOP(t)
	e := newEnv(t)
	os.WriteFile(filepath.Join(e.dir, "op.secret"), []byte("s\n"), 0o600)
	os.WriteFile(e.cfgPath, []byte(fmt.Sprintf(opGatewayConfig, e.port, e.admin, op.url, e.port, e.upstream, e.upstream)), 0o600)
	e.start()

	c := (&dexEnv{env: e}).jarClient(t)
	follow := func(u string) (int, string) {
		t.Helper()
		for range 10 {
			code, loc, body := get(t, c, u)
			if loc == "" {
				return code, body
			}
			next, _ := url.Parse(u)
			u = next.ResolveReference(mustURL(t, loc)).String()
		}
		t.Fatal("too many redirects")
		return 0, ""
	}
	if code, body := follow(e.url("/hello")); code != 200 || !strings.Contains(body, "alice@example.test") {
		t.Fatalf("login: %d %s", code, body)
	}
	// Step-up: the gold resource needs acr gold; the first login was silver.
	code, loc, _ := get(t, c, e.url("/gold"))
	if code != http.StatusFound || !strings.Contains(loc, "acr=gold") || !strings.Contains(loc, "prompt=login") {
		t.Fatalf("GET /gold = %d %q, want a step-up redirect", code, loc)
	}
	if code, body := follow(e.url("/gold")); code != 200 || !strings.Contains(body, "alice@example.test") {
		t.Fatalf("after step-up: %d %s", code, body)
	}

	// A live websocket of the session, then a back-channel logout by sid.
	gw, _ := url.Parse(e.url("/"))
	var cookies []string
	for _, ck := range c.Jar.Cookies(gw) {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, strings.Replace(e.url("/ws"), "https", "wss", 1), &websocket.DialOptions{
		HTTPClient: e.client("", "", false), HTTPHeader: http.Header{"Cookie": {strings.Join(cookies, "; ")}}})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "echo: hi" {
		t.Fatalf("echo = %q, %v", msg, err)
	}
	now := time.Now()
	lt := op.sign(t, map[string]any{"iss": op.url, "aud": "portcullis", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": "j1", "sid": "sid-1", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}, "logout+jwt")
	resp, err := e.client("", "", false).PostForm(e.url("/.portcullis/oidc/backchannel"), url.Values{"logout_token": {lt}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("back-channel logout = %d", resp.StatusCode)
	}
	if _, _, err := ws.Read(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("websocket still open after back-channel logout (err %v)", err)
	}
	if code, loc, _ := get(t, c, e.url("/hello")); code != http.StatusFound || !strings.Contains(loc, "/.portcullis/oidc/start") {
		t.Errorf("after back-channel logout GET /hello = %d %q, want a new login", code, loc)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
