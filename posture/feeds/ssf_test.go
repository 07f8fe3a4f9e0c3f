package feeds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"portcullis/internal/conf"
	"portcullis/posture"
)

const ssfToken = "9f2c-transmitter-bearer"

// transmitter is an SSF transmitter written for the tests: it serves its
// configuration, its JWKS, stream management and a poll endpoint, and
// signs SETs with real keys.
type transmitter struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	keys     []jose.JSONWebKey // public
	signer   jose.Signer
	kid      string
	priv     any
	jwksHits atomic.Int64
	state    string            // last verification state requested
	pending  map[string]string // jti → SET for poll
	acked    []string
	onAck    func(jtis []string)
	setErrs  map[string]SETError
	streams  int
}

func newTransmitter(t testing.TB) *transmitter {
	tx := &transmitter{t: t, pending: map[string]string{}, setErrs: map[string]SETError{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"spec_version": "1_0", "issuer": tx.srv.URL, "jwks_uri": tx.srv.URL + "/jwks",
			"delivery_methods_supported": []string{methodPush, methodPoll},
			"configuration_endpoint":     tx.srv.URL + "/streams",
			"status_endpoint":            tx.srv.URL + "/status",
			"verification_endpoint":      tx.srv.URL + "/verify",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		tx.jwksHits.Add(1)
		tx.mu.Lock()
		defer tx.mu.Unlock()
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: tx.keys})
	})
	auth := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+ssfToken }
	mux.HandleFunc("/streams", func(w http.ResponseWriter, r *http.Request) {
		if !auth(r) {
			w.WriteHeader(401)
			return
		}
		var in map[string]any
		json.NewDecoder(r.Body).Decode(&in)
		tx.mu.Lock()
		tx.streams++
		tx.mu.Unlock()
		in["stream_id"] = "st-1"
		in["iss"] = tx.srv.URL
		in["aud"] = "https://pep.acme.example/ssf"
		if d, ok := in["delivery"].(map[string]any); ok && d["method"] == methodPoll {
			d["endpoint_url"] = tx.srv.URL + "/poll"
		}
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		json.NewEncoder(w).Encode(in)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"stream_id":"st-1","status":"enabled"}`)
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ State string }
		json.NewDecoder(r.Body).Decode(&in)
		tx.mu.Lock()
		tx.state = in.State
		tx.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /poll", func(w http.ResponseWriter, r *http.Request) {
		if !auth(r) {
			w.WriteHeader(401)
			return
		}
		var in struct {
			MaxEvents int                 `json:"maxEvents"`
			Ack       []string            `json:"ack"`
			SetErrs   map[string]SETError `json:"setErrs"`
		}
		json.NewDecoder(r.Body).Decode(&in)
		if len(in.Ack) > 0 && tx.onAck != nil {
			tx.onAck(in.Ack)
		}
		tx.mu.Lock()
		defer tx.mu.Unlock()
		for _, j := range in.Ack {
			delete(tx.pending, j)
			tx.acked = append(tx.acked, j)
		}
		for j, e := range in.SetErrs {
			delete(tx.pending, j)
			tx.setErrs[j] = e
		}
		sets := map[string]string{}
		for j, s := range tx.pending {
			sets[j] = s
		}
		json.NewEncoder(w).Encode(map[string]any{"sets": sets, "moreAvailable": false})
	})
	tx.srv = httptest.NewServer(mux)
	t.Cleanup(tx.srv.Close)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tx.useKey("tx-ec-1", jose.ES256, ec, &ec.PublicKey)
	return tx
}

// useKey adds a key to the JWKS and signs with it from now on.
func (tx *transmitter) useKey(kid string, alg jose.SignatureAlgorithm, priv, pub any) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.keys = append(tx.keys, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(alg), Use: "sig"})
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		tx.t.Fatal(err)
	}
	tx.signer, tx.kid, tx.priv = s, kid, priv
}

// sign signs claims as a SET.
func (tx *transmitter) sign(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	tx.mu.Lock()
	s := tx.signer
	tx.mu.Unlock()
	obj, err := s.Sign(b)
	if err != nil {
		tx.t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

// signRaw signs claims given as JSON text, for claims a map cannot hold
// (duplicate names).
func (tx *transmitter) signRaw(claims string) string {
	tx.mu.Lock()
	s := tx.signer
	tx.mu.Unlock()
	obj, err := s.Sign([]byte(claims))
	if err != nil {
		tx.t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return out
}

var jtiSeq atomic.Int64

// claims builds a SET's claims for one event.
func (tx *transmitter) claims(iat time.Time, subID any, uri string, event map[string]any) map[string]any {
	c := map[string]any{
		"iss": tx.srv.URL, "jti": fmt.Sprintf("jti-%d", jtiSeq.Add(1)), "iat": iat.Unix(),
		"aud": "https://pep.acme.example/ssf", "txn": "txn-1",
		"events": map[string]any{uri: event},
	}
	if subID != nil {
		c["sub_id"] = subID
	}
	return c
}

type ssfHarness struct {
	t   testing.TB
	tx  *transmitter
	dir string
	cfg posture.FeedConfig
	db  *posture.DB
	ssf *SSF
	srv *httptest.Server
	mu  sync.Mutex
	now time.Time
}

func newSSFHarness(t testing.TB, delivery string) *ssfHarness {
	h := &ssfHarness{t: t, tx: newTransmitter(t), dir: t.TempDir(), now: t0.Add(time.Hour)}
	tok := filepath.Join(h.dir, "tok")
	os.WriteFile(tok, []byte(ssfToken+"\n"), 0o600)
	h.cfg = posture.FeedConfig{FeedBase: posture.FeedBase{Name: "ssf", Type: posture.FeedSSF}, TokenKeys: posture.TokenKeys{Issuer: h.tx.srv.URL, Audience: "https://pep.acme.example/ssf"}, SignalKeys: posture.SignalKeys{AuthorizationFile: conf.Path(tok), UserFrom: posture.UserFromEmail}, SSFKeys: posture.SSFKeys{Delivery: posture.Delivery(delivery), ManageStream: true, EndpointURL: "https://pep.acme.example/ssf"}, DeviceKeys: posture.DeviceKeys{DeviceCA: "ivanti"}}
	db, err := posture.Open(filepath.Join(h.dir, "state"), posture.Options{Now: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	h.db = db
	s, err := NewSSF(h.cfg, db, Options{Registry: prometheus.NewRegistry(), Now: h.clock, HTTPClient: h.tx.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	h.ssf = s
	h.srv = httptest.NewServer(s)
	t.Cleanup(func() { h.srv.Close(); db.Close() })
	return h
}

func (h *ssfHarness) clock() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.now }
func (h *ssfHarness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

func (h *ssfHarness) push(token string) (int, SETError) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL, strings.NewReader(token))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Authorization", "Bearer "+ssfToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e SETError
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

var (
	jdoe    = map[string]any{"format": "email", "email": "J.Doe@acme.example"}
	devSubj = map[string]any{"format": "complex",
		"device": map[string]any{"format": "iss_sub", "iss": "https://uem.acme.example/ssf", "sub": "7c2e8f4a"},
		"user":   map[string]any{"format": "email", "email": "j.doe@acme.example"}}
)

func TestSSFEvents(t *testing.T) {
	h := newSSFHarness(t, "push")
	const user = "j.doe@acme.example"
	dk := posture.DeviceKey{CA: "ivanti", ID: "7c2e8f4a"}
	base := h.now.Add(-time.Minute)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	ts := func(i int) map[string]any { return map[string]any{"event_timestamp": at(i).Unix()} }
	with := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		subj  any
		uri   string
		event map[string]any
		check func() string
	}{
		{"risk high", jdoe, EventRiskLevelChange, with(ts(1), "principal", "USER", "current_level", "HIGH", "risk_reason", "PASSWORD_FOUND_IN_DATA_BREACH"), func() string {
			if r := h.db.Risk(user); r == nil || r.Level != posture.RiskHigh {
				return fmt.Sprintf("risk %+v", r)
			}
			return ""
		}},
		{"device not compliant", devSubj, EventDeviceComplianceChange, with(ts(2), "previous_status", "compliant", "current_status", "not-compliant"), func() string {
			d := h.db.Device(dk)
			if d == nil || len(d.Records) != 1 || d.Records[0].Compliance != posture.NotCompliant || d.Records[0].Source != "ssf:compliance" {
				return fmt.Sprintf("device %+v", d)
			}
			return ""
		}},
		{"device compliant", devSubj, EventDeviceComplianceChange, with(ts(3), "previous_status", "not-compliant", "current_status", "compliant"), func() string {
			if d := h.db.Device(dk); d != nil {
				return fmt.Sprintf("device %+v, want the record cleared", d)
			}
			return ""
		}},
		{"device risk high", map[string]any{"format": "opaque", "id": "7c2e8f4a"}, EventRiskLevelChange, with(ts(4), "principal", "DEVICE", "current_level", "HIGH"), func() string {
			if d := h.db.Device(dk); d == nil || d.Records[0].Threat != posture.ThreatHigh {
				return fmt.Sprintf("device %+v", d)
			}
			return ""
		}},
		{"session revoked", map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "sid-9"},
			"user": map[string]any{"format": "email", "email": user}}, EventSessionRevoked, ts(5), func() string {
			if !h.db.SessionRevoked("sid-9") || !h.db.UserRevokedBefore(user).IsZero() {
				return "session not revoked alone"
			}
			return ""
		}},
		{"credential change", jdoe, EventCredentialChange, with(ts(6), "credential_type", "password", "change_type", "update"), func() string {
			if got := h.db.UserRevokedBefore(user); !got.Equal(at(6).Add(time.Second)) {
				return fmt.Sprintf("revoked before %v", got)
			}
			return ""
		}},
		{"x509 revoke", devSubj, EventCredentialChange, with(ts(7), "credential_type", "x509", "change_type", "revoke"), func() string {
			if got := h.db.DeviceRevokedBefore(dk); !got.Equal(at(7).Add(time.Second)) {
				return fmt.Sprintf("device revoked before %v", got)
			}
			return ""
		}},
		{"assurance decrease", map[string]any{"format": "account", "uri": "acct:j.doe@acme.example"}, EventAssuranceLevelChange, with(ts(8), "namespace", "NIST-AAL", "current_level", "nist-aal1", "change_direction", "decrease"), func() string {
			if got := h.db.UserRevokedBefore(user); !got.Equal(at(8).Add(time.Second)) {
				return fmt.Sprintf("revoked before %v", got)
			}
			return ""
		}},
		{"token claims change", jdoe, EventTokenClaimsChange, with(ts(9), "claims", map[string]any{"role": "guest"}), func() string {
			if got := h.db.UserRevokedBefore(user); !got.Equal(at(9).Add(time.Second)) {
				return fmt.Sprintf("revoked before %v", got)
			}
			return ""
		}},
		{"account disabled", nil, EventAccountDisabled, with(ts(10), "subject", jdoe, "reason", "hijacking"), func() string {
			if got := h.db.UserRevokedBefore(user); !got.Equal(at(10).Add(time.Second)) {
				return fmt.Sprintf("revoked before %v", got)
			}
			return ""
		}},
		{"account purged", jdoe, EventAccountPurged, ts(11), func() string {
			if got := h.db.UserRevokedBefore(user); !got.Equal(at(11).Add(time.Second)) {
				return fmt.Sprintf("revoked before %v", got)
			}
			return ""
		}},
		{"sessions revoked", jdoe, EventSessionsRevoked, ts(12), func() string {
			if got := h.db.UserRevokedBefore(user); !got.Equal(at(12).Add(time.Second)) {
				return fmt.Sprintf("revoked before %v", got)
			}
			return ""
		}},
		{"risk low", jdoe, EventRiskLevelChange, with(ts(13), "principal", "USER", "current_level", "LOW"), func() string {
			if r := h.db.Risk(user); r == nil || r.Level != posture.RiskLow {
				return fmt.Sprintf("risk %+v", r)
			}
			return ""
		}},
		{"credential compromise", jdoe, EventCredentialCompromise, with(ts(14), "credential_type", "password"), func() string {
			if r := h.db.Risk(user); r == nil || r.Level != posture.RiskHigh || !h.db.UserRevokedBefore(user).Equal(at(14).Add(time.Second)) {
				return fmt.Sprintf("risk %+v", r)
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e := h.push(h.tx.sign(h.tx.claims(h.now, tt.subj, tt.uri, tt.event)))
			if status != http.StatusAccepted {
				t.Fatalf("status = %d %+v, want 202", status, e)
			}
			if msg := tt.check(); msg != "" {
				t.Error(msg)
			}
		})
	}
	if n := h.ssf.KeyFetches(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

// hs256 signs claims with HMAC-SHA256 under key, by hand.
func hs256(header, claims any, key []byte) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	in := enc(header) + "." + enc(claims)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestSSFRefusals(t *testing.T) {
	h := newSSFHarness(t, "push")
	good := func() map[string]any {
		return h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{})
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: other, KeyID: "tx-ec-1"}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	signWith := func(s jose.Signer, c map[string]any) string {
		b, _ := json.Marshal(c)
		o, _ := s.Sign(b)
		out, _ := o.CompactSerialize()
		return out
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	h.push(h.tx.sign(good())) // fetch the keys once
	set := func(kv ...any) string {
		c := good()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return h.tx.sign(c)
	}
	wrongTyp, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: h.tx.priv, KeyID: h.tx.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	tests := []struct {
		name  string
		token string
		code  string
	}{
		{"bad signature", signWith(forged, good()), SETInvalidKey},
		{"alg none", hs256(map[string]any{"alg": "none", "typ": "secevent+jwt"}, good(), nil)[:0] +
			base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"secevent+jwt"}`)) + "." +
			base64.RawURLEncoding.EncodeToString(mustJSON(good())) + ".", SETInvalidRequest},
		{"hs256 with the public key", hs256(map[string]any{"alg": "HS256", "typ": "secevent+jwt", "kid": "tx-ec-1"}, good(), pubDER), SETInvalidRequest},
		{"wrong typ", signWith(wrongTyp, good()), SETInvalidRequest},
		{"wrong audience", set("aud", []string{"https://other.example"}), SETInvalidAudience},
		{"wrong issuer", set("iss", "https://evil.example"), SETInvalidIssuer},
		{"iat in the future", set("iat", h.now.Add(10*time.Minute).Unix()), SETInvalidRequest},
		{"exp present", set("exp", h.now.Add(time.Hour).Unix()), SETInvalidRequest},
		{"sub present", set("sub", "00u9k2mQ7dLxYzP1h0g7"), SETInvalidRequest},
		{"no jti", set("jti", nil), SETInvalidRequest},
		{"no events", set("events", map[string]any{}), SETInvalidRequest},
		{"two events", set("events", map[string]any{EventSessionsRevoked: map[string]any{}, EventAccountDisabled: map[string]any{}}), SETInvalidRequest},
		{"no sub_id and no subject", set("sub_id", nil), SETInvalidRequest},
		{"subject without a format", set("sub_id", nil, "events", map[string]any{EventSessionsRevoked: map[string]any{"subject": map[string]any{"email": "a@b"}}}), SETInvalidRequest},
		{"claim names differing in case", set("Events", map[string]any{EventAccountDisabled: map[string]any{}}), SETInvalidRequest},
		{"duplicate claim", h.tx.signRaw(fmt.Sprintf(`{"iss":%q,"jti":"dup-1","jti":"dup-2","iat":%d,"aud":"https://pep.acme.example/ssf","sub_id":{"format":"email","email":"j.doe@acme.example"},"events":{%q:{}}}`,
			h.tx.srv.URL, h.now.Unix(), EventSessionsRevoked)), SETInvalidRequest},
		{"event members differing in case", set("events", map[string]any{EventRiskLevelChange: map[string]any{"principal": "USER", "current_level": "HIGH", "Current_Level": "LOW"}}), SETInvalidRequest},
		{"event member in another case", set("events", map[string]any{EventRiskLevelChange: map[string]any{"Principal": "USER", "current_level": "HIGH"}}), SETInvalidRequest},
		{"sub_id member in another case", set("sub_id", map[string]any{"format": "email", "Email": "j.doe@acme.example"}), SETInvalidRequest},
		{"encrypted", "a.b.c.d.e", SETInvalidKey},
		{"garbage", "not a jwt", SETInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e := h.push(tt.token)
			if status != http.StatusBadRequest || e.Code != tt.code {
				t.Errorf("push = %d %+v, want 400 %s", status, e, tt.code)
			}
		})
	}
	if n := h.ssf.KeyFetches(); n > 2 {
		t.Errorf("JWKS fetched %d times for refused SETs, want at most 2", n)
	}

	t.Run("wrong bearer", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL, strings.NewReader(h.tx.sign(good())))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", "Bearer nope")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status = %d, want 401", resp.StatusCode)
		}
	})
	t.Run("replayed jti", func(t *testing.T) {
		c := h.tx.claims(h.now, jdoe, EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "HIGH"})
		tok := h.tx.sign(c)
		if s, e := h.push(tok); s != 202 {
			t.Fatalf("first push = %d %+v", s, e)
		}
		// The same jti with another level must not apply.
		c["events"] = map[string]any{EventRiskLevelChange: map[string]any{"principal": "USER", "current_level": "LOW", "event_timestamp": h.now.Add(time.Second).Unix()}}
		if s, e := h.push(h.tx.sign(c)); s != 202 {
			t.Fatalf("replay = %d %+v, want 202", s, e)
		}
		if r := h.db.Risk("j.doe@acme.example"); r == nil || r.Level != posture.RiskHigh {
			t.Errorf("risk after replay = %+v, want high", r)
		}
	})
	t.Run("unknown subject", func(t *testing.T) {
		before := h.ssf.Health().Ignored
		for _, subj := range []any{
			map[string]any{"format": "phone_number", "phone_number": "+12065550100"},
			map[string]any{"format": "iss_sub", "iss": "https://acme.okta.com", "sub": "00u1"},
		} {
			if s, e := h.push(h.tx.sign(h.tx.claims(h.now, subj, EventSessionsRevoked, map[string]any{}))); s != 202 {
				t.Errorf("push = %d %+v, want 202", s, e)
			}
		}
		if got := h.ssf.Health().Ignored - before; got != 2 {
			t.Errorf("ignored %d, want 2", got)
		}
	})
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// TestSSFReplayByIssuerAndJTI: a SET is one (iss, jti). A SET that
// reuses an earlier jti with another event type is a replay and changes
// nothing; the same jti from another issuer is another SET.
func TestSSFReplayByIssuerAndJTI(t *testing.T) {
	h := newSSFHarness(t, "push")
	dk := posture.DeviceKey{CA: "ivanti", ID: "7c2e8f4a"}
	first := h.tx.claims(h.now, jdoe, EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "LOW"})
	if s, e := h.push(h.tx.sign(first)); s != 202 {
		t.Fatalf("first SET = %d %+v", s, e)
	}
	reuse := h.tx.claims(h.now, devSubj, EventDeviceComplianceChange, map[string]any{"previous_status": "compliant", "current_status": "not-compliant"})
	reuse["jti"] = first["jti"]
	if s, e := h.push(h.tx.sign(reuse)); s != 202 {
		t.Fatalf("SET reusing the jti = %d %+v, want 202 (a replay is acknowledged)", s, e)
	}
	if d := h.db.Device(dk); d != nil {
		t.Errorf("a SET reusing an earlier jti with another event type was applied: %+v", d)
	}
	if h.db.Risk("j.doe@acme.example") == nil {
		t.Error("the first SET was not applied")
	}

	// A second SSF feed, another transmitter, on the same store.
	tx2 := newTransmitter(t)
	tok := filepath.Join(h.dir, "tok2")
	os.WriteFile(tok, []byte(ssfToken+"\n"), 0o600)
	cfg := h.cfg
	cfg.Name, cfg.Issuer, cfg.AuthorizationFile, cfg.Path = "ssf2", tx2.srv.URL, conf.Path(tok), ""
	s2, err := NewSSF(cfg, h.db, Options{Registry: prometheus.NewRegistry(), Now: h.clock, HTTPClient: tx2.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(s2)
	defer srv2.Close()
	other := tx2.claims(h.now, devSubj, EventDeviceComplianceChange, map[string]any{"previous_status": "compliant", "current_status": "not-compliant"})
	other["jti"] = first["jti"]
	req, _ := http.NewRequest(http.MethodPost, srv2.URL, strings.NewReader(tx2.sign(other)))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Authorization", "Bearer "+ssfToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("the same jti from another issuer = %d, want 202", resp.StatusCode)
	}
	if d := h.db.Device(dk); d == nil || d.Records[0].Source != "ssf2:compliance" {
		t.Errorf("the same jti from another issuer was not applied: %+v", d)
	}
}

func TestSSFKeyRotation(t *testing.T) {
	h := newSSFHarness(t, "push")
	if s, e := h.push(h.tx.sign(h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{}))); s != 202 {
		t.Fatalf("push = %d %+v", s, e)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h.tx.useKey("tx-rsa-2", jose.RS256, rk, &rk.PublicKey)
	h.advance(time.Minute)
	for i := range 5 {
		if s, e := h.push(h.tx.sign(h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{}))); s != 202 {
			t.Fatalf("push %d with the new key = %d %+v", i, s, e)
		}
	}
	if n := h.ssf.KeyFetches(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (one refetch for the new kid)", n)
	}
	// A kid the transmitter never published costs no fetch beyond the one
	// made after it arrived: the SETs get 503 until the key appears.
	small, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.tx.useKey("tx-unpublished", jose.ES256, small, nil)
	for range 3 {
		h.push(h.tx.sign(h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{})))
	}
	if n := h.ssf.KeyFetches(); n != 2 {
		t.Errorf("JWKS fetched %d times after unknown kids, want still 2", n)
	}
}

func TestSSFStreamAndVerification(t *testing.T) {
	h := newSSFHarness(t, "push")
	ctx := context.Background()
	if err := h.ssf.SetupStream(ctx); err != nil {
		t.Fatal(err)
	}
	st := h.ssf.Status()
	if st.StreamID != "st-1" || st.Status != "enabled" || st.Verified {
		t.Fatalf("status = %+v", st)
	}
	opaque := map[string]any{"format": "opaque", "id": "st-1"}
	bad := h.tx.claims(h.now, opaque, EventVerification, map[string]any{"state": "wrong"})
	if s, e := h.push(h.tx.sign(bad)); s != 400 || e.Code != SETInvalidState {
		t.Errorf("wrong state = %d %+v, want 400 invalid_state", s, e)
	}
	h.tx.mu.Lock()
	state := h.tx.state
	h.tx.mu.Unlock()
	good := h.tx.claims(h.now, opaque, EventVerification, map[string]any{"state": state})
	if s, e := h.push(h.tx.sign(good)); s != 202 {
		t.Errorf("verification = %d %+v, want 202", s, e)
	}
	if st := h.ssf.Status(); !st.Verified || st.LastVerification.IsZero() {
		t.Errorf("status after verification = %+v", st)
	}
	if got := h.db.Cursor(h.ssf.streamCursor()); got != "st-1" {
		t.Errorf("saved stream id = %q", got)
	}
}

func TestSSFPollAcksOnlyPersisted(t *testing.T) {
	h := newSSFHarness(t, "poll")
	ctx := context.Background()
	if err := h.ssf.SetupStream(ctx); err != nil {
		t.Fatal(err)
	}
	good := h.tx.claims(h.now, jdoe, EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "MEDIUM"})
	bad := h.tx.claims(h.now, jdoe, EventSessionsRevoked, map[string]any{})
	bad["aud"] = "https://other.example"
	h.tx.pending[good["jti"].(string)] = h.tx.sign(good)
	h.tx.pending[bad["jti"].(string)] = h.tx.sign(bad)
	var ackedBeforeStored []string
	h.tx.onAck = func(jtis []string) {
		if r := h.db.Risk("j.doe@acme.example"); r == nil || r.Level != posture.RiskMedium {
			ackedBeforeStored = append(ackedBeforeStored, jtis...)
		}
	}
	more, err := h.ssf.Poll(ctx)
	if err != nil || !more {
		t.Fatalf("Poll = %v, %v, want more (acks pending)", more, err)
	}
	if len(h.tx.acked) != 0 {
		t.Fatalf("acked %v in the same request that delivered them", h.tx.acked)
	}
	if _, err := h.ssf.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.tx.acked) != 1 || h.tx.acked[0] != good["jti"] || len(ackedBeforeStored) != 0 {
		t.Errorf("acked = %v (before stored: %v), want [%s]", h.tx.acked, ackedBeforeStored, good["jti"])
	}
	if e, ok := h.tx.setErrs[bad["jti"].(string)]; !ok || e.Code != SETInvalidAudience {
		t.Errorf("setErrs = %+v, want invalid_audience for the bad SET", h.tx.setErrs)
	}
	if len(h.tx.pending) != 0 {
		t.Errorf("still pending at the transmitter: %d", len(h.tx.pending))
	}
}

func FuzzParseSET(f *testing.F) {
	tx := newTransmitter(f)
	v := &setVerifier{issuer: tx.srv.URL, audience: "https://pep.acme.example/ssf", tolerance: 5 * time.Minute,
		keys: &keySet{url: func(context.Context) (string, error) { return tx.srv.URL + "/jwks", nil }, client: tx.srv.Client(), now: time.Now},
		now:  func() time.Time { return t0.Add(time.Hour) }}
	signed := map[string]bool{}
	for _, uri := range []string{EventSessionRevoked, EventRiskLevelChange} {
		c := tx.claims(t0, devSubj, uri, map[string]any{"current_level": "HIGH"})
		signed[c["jti"].(string)] = true
		f.Add(tx.sign(c))
	}
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"secevent+jwt"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x"}`)) + ".")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		set, err := v.verify(context.Background(), tok, t0.Add(time.Hour))
		if err != nil {
			return
		}
		if !signed[set.JTI] {
			t.Fatalf("accepted a SET the transmitter never signed: jti %q", set.JTI)
		}
	})
}

// pushRetrying delivers a SET as an RFC 8935 transmitter does: a 5xx is
// retried after its Retry-After (the test clock advances by it), any
// other status is final. It returns the final status.
func (h *ssfHarness) pushRetrying(token string) int {
	h.t.Helper()
	for range 5 {
		req, _ := http.NewRequest(http.MethodPost, h.srv.URL, strings.NewReader(token))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", "Bearer "+ssfToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			h.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 500 {
			return resp.StatusCode
		}
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusServiceUnavailable || err != nil || secs < 1 {
			h.t.Fatalf("status %d with Retry-After %q, want 503 and whole seconds", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		h.advance(time.Duration(secs) * time.Second)
	}
	h.t.Fatal("SET still refused after 5 deliveries")
	return 0
}

// TestSSFKeyRotationLosesNoSET rotates the transmitter's key twice within
// 30 seconds, each time signing with the new key at once: every SET is
// applied (some after a 503 and a retry), and the JWKS is fetched once
// per rotation, however many SETs arrive together.
func TestSSFKeyRotationLosesNoSET(t *testing.T) {
	h := newSSFHarness(t, "push")
	start := h.now
	sid := 0
	send := func() string {
		sid++
		id := fmt.Sprintf("sid-%d", sid)
		subj := map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": id}}
		return h.tx.sign(h.tx.claims(h.now, subj, EventSessionRevoked, map[string]any{}))
	}
	if s := h.pushRetrying(send()); s != 202 {
		t.Fatalf("first SET = %d", s)
	}
	rotate := func(kid string) {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		h.tx.useKey(kid, jose.RS256, rk, &rk.PublicKey)
	}
	// First rotation one second after the first fetch: within the
	// refetch interval, so the SET is answered 503 and applied on retry.
	h.advance(time.Second)
	rotate("tx-rsa-2")
	if s := h.pushRetrying(send()); s != 202 {
		t.Fatalf("SET with the first new key = %d", s)
	}
	// Second rotation a few seconds later; eight SETs signed with it
	// arrive together.
	h.advance(3 * time.Second)
	rotate("tx-rsa-3")
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		tok := send()
		wg.Go(func() { statuses[i] = h.pushRetrying(tok) })
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 202 {
			t.Errorf("concurrent SET %d = %d, want 202", i, s)
		}
	}
	if d := h.now.Sub(start); d >= 30*time.Second {
		t.Fatalf("the test took %s of clock, want two rotations within 30s", d)
	}
	for i := 1; i <= sid; i++ {
		if !h.db.SessionRevoked(fmt.Sprintf("sid-%d", i)) {
			t.Errorf("SET %d (session sid-%d) was lost", i, i)
		}
	}
	if n := h.ssf.KeyFetches(); n != 3 {
		t.Errorf("JWKS fetched %d times, want 3 (the first key and one per rotation)", n)
	}
}

// TestSSFPollKeyRotation: in poll mode a SET signed with a key that cannot
// be had yet is neither acknowledged nor reported as an error, so the
// transmitter delivers it again; the next poll applies it.
func TestSSFPollKeyRotation(t *testing.T) {
	h := newSSFHarness(t, "poll")
	ctx := context.Background()
	if err := h.ssf.SetupStream(ctx); err != nil {
		t.Fatal(err)
	}
	first := h.tx.claims(h.now, jdoe, EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "LOW"})
	h.tx.pending[first["jti"].(string)] = h.tx.sign(first)
	if _, err := h.ssf.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	h.tx.useKey("tx-rsa-2", jose.RS256, rk, &rk.PublicKey)
	h.advance(time.Second)
	rotated := h.tx.claims(h.now, jdoe, EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "HIGH", "event_timestamp": h.now.Unix()})
	jti := rotated["jti"].(string)
	signed := h.tx.sign(rotated)
	h.tx.mu.Lock()
	h.tx.pending[jti] = signed
	h.tx.mu.Unlock()
	if _, err := h.ssf.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	h.tx.mu.Lock()
	_, reported := h.tx.setErrs[jti]
	_, stillPending := h.tx.pending[jti]
	h.tx.mu.Unlock()
	if reported || !stillPending {
		t.Fatalf("SET with a key not yet fetchable: reported %v, pending %v; want neither acked nor reported", reported, stillPending)
	}
	h.advance(keyRefetchMin)
	for range 2 { // one poll applies it, the next acknowledges it
		if _, err := h.ssf.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if r := h.db.Risk("j.doe@acme.example"); r == nil || r.Level != posture.RiskHigh {
		t.Errorf("risk = %+v, want high from the SET signed with the new key", r)
	}
	h.tx.mu.Lock()
	defer h.tx.mu.Unlock()
	if _, ok := h.tx.pending[jti]; ok || len(h.tx.setErrs) != 0 {
		t.Errorf("pending %v, setErrs %v; want the SET acknowledged", h.tx.pending, h.tx.setErrs)
	}
}
