package test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	crewsaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"

	"portcullis/certs/devca"
)

// signalReplicas is three gateway replicas on one Redis with every
// signal feed (posture webhook, Okta event hook, SSF push, Universal
// Logout) and a SAML IdP, as a load balancer would front them: every
// replica has the same configuration, the same SAML SP key pair and the
// same root_url.
type signalReplicas struct {
	e                            *env
	rd                           *redisPeer
	rs                           []*env
	tx                           *transmitter
	idp                          *samlidp.Server
	idpBase                      string
	oktaSecret, ssfToken, gtrTok string
}

const replicaSSFAudience = "https://pep.example.test/ssf"

func startSignalReplicas(t *testing.T) *signalReplicas {
	t.Helper()
	sr := &signalReplicas{rd: startRedisPeer(t), e: newEnv(t), tx: newTransmitter(t)}
	sr.idp, sr.idpBase = startSamlidp(t)
	e := sr.e
	sr.oktaSecret, sr.ssfToken, sr.gtrTok = "okta-"+uuid4(), "ssf-"+uuid4(), "gtr-"+uuid4()
	key, cert := samlSelfSigned(t, "portcullis-sp")
	files := map[string][]byte{
		"okta.secret": []byte(sr.oktaSecret), "ssf.token": []byte(sr.ssfToken), "gtr.token": []byte(sr.gtrTok),
		"saml-sp.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"saml-sp.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "    - {name: uem, type: webhook, secret_file: feed.secret}",
		"    - {name: uem, type: webhook, secret_file: feed.secret}\n"+
			"    - {name: okta, type: okta-event-hook, authorization_file: okta.secret}\n"+
			"    - {name: ssf, type: ssf, issuer: \""+sr.tx.issuer+"\", audience: \""+replicaSSFAudience+"\", authorization_file: ssf.token}\n"+
			"    - {name: logout, type: universal-logout, authorization_file: gtr.token}", 1)
	cfg = strings.Replace(cfg, "resources:\n", fmt.Sprintf(`identity:
  saml:
    - name: corp
      idp_metadata_url: %s/metadata
      root_url: https://localhost:ROOTPORT
      key_file: saml-sp.key
      cert_file: saml-sp.pem
      allow_idp_initiated: true
      attributes: {user: uid, email: mail, groups: eduPersonAffiliation}
resources:
  - name: sapp
    hosts: [localhost]
    paths: [/sapp]
    upstream: %s
    policy:
      login: saml:corp
      device: {certificate: "off"}
  - name: risky
    hosts: [localhost]
    paths: [/risky]
    upstream: %s
    policy:
      login: none
      device: {certificate: required}
      user: {max_risk: medium, unknown_risk: allow}
`, sr.idpBase, e.upstream, e.upstream), 1)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sr.rs = replicaEnvs(t, e, 3, sr.rd.addr())
	for _, r := range sr.rs {
		b, _ := os.ReadFile(r.cfgPath)
		os.WriteFile(r.cfgPath, []byte(strings.Replace(string(b), "ROOTPORT", fmt.Sprint(sr.rs[0].port), 1)), 0o600)
		r.start()
	}
	return sr
}

// device issues another device certificate from e's device CA, for user.
func (e *env) device(t *testing.T, user string) (id, cert, key string) {
	t.Helper()
	ca, err := devca.LoadFiles(e.dir, "device-ca")
	if err != nil {
		t.Fatal(err)
	}
	id = uuid4()
	c, k, _, err := ca.IssueDevice(id, user, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(e.dir, id+".pem"), filepath.Join(e.dir, id+".key")
	os.WriteFile(cert, c, 0o600)
	os.WriteFile(key, k, 0o600)
	return id, cert, key
}

// send posts body to path on replica r and returns the status and body.
func (sr *signalReplicas) send(t *testing.T, r *env, path, contentType, auth, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url(path), strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", auth)
	c := r.client("", "", true)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(out)
}

func (sr *signalReplicas) pushSET(t *testing.T, r *env, set string) int {
	t.Helper()
	code, _ := sr.send(t, r, "/.portcullis/feeds/ssf", "application/secevent+jwt", "Bearer "+sr.ssfToken, set)
	return code
}

// setWithJTI signs one SET with the given jti.
func (tx *transmitter) setWithJTI(t *testing.T, jti string, subject map[string]any, eventType string, event map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"iss": tx.issuer, "aud": replicaSSFAudience, "iat": time.Now().Unix(), "jti": jti,
		"sub_id": subject, "events": map[string]any{eventType: event}})
	jws, err := tx.signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

var (
	samlResponseRE = regexp.MustCompile(`name="SAMLResponse" value="([^"]+)"`)
	entityIDRE     = regexp.MustCompile(`entityID="([^"]+)"`)
)

// idpInitiatedResponse registers the replicas' SP with the IdP and
// returns a signed, IdP-initiated SAMLResponse for user, as the IdP's
// auto-submitting form carries it.
func (sr *signalReplicas) idpInitiatedResponse(t *testing.T, user, group string) string {
	t.Helper()
	resp, err := sr.rs[0].client("", "", true).Get(sr.rs[0].url("/.portcullis/saml/corp/metadata"))
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := entityIDRE.FindSubmatch(md)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("SP metadata: %d %s", resp.StatusCode, md)
	}
	samlPut(t, sr.idpBase+"/services/portcullis", md)
	sc, _ := json.Marshal(map[string]any{"name": "portcullis", "service_provider": string(m[1])})
	samlPut(t, sr.idpBase+"/shortcuts/portcullis", sc)
	// A signed-in IdP session, as the IdP's login form would leave it.
	sess := &crewsaml.Session{ID: uuid4(), NameID: user + "@example.test", CreateTime: time.Now(), ExpireTime: time.Now().Add(time.Hour),
		Index: uuid4(), UserName: user, UserEmail: user + "@example.test", Groups: []string{group}}
	if err := sr.idp.Store.Put("/sessions/"+sess.ID, sess); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, sr.idpBase+"/login/portcullis", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: sess.ID})
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	f := samlResponseRE.FindSubmatch(page)
	if f == nil {
		t.Fatalf("IdP-initiated login: %d %s", resp.StatusCode, page)
	}
	return html.UnescapeString(string(f[1]))
}

// TestReplicasRefuseReplays: a SAML assertion accepted by replica 1 is
// refused as a replay by replica 2 (the assertion-id cache is in Redis),
// and an SSF SET's jti used on replica 1 is refused on replica 2.
func TestReplicasRefuseReplays(t *testing.T) {
	sr := startSignalReplicas(t)
	e, rs := sr.e, sr.rs

	t.Run("saml assertion", func(t *testing.T) {
		form := url.Values{"SAMLResponse": {sr.idpInitiatedResponse(t, "alice", "admins")}, "RelayState": {""}}.Encode()
		const ctype = "application/x-www-form-urlencoded"
		if code, body := sr.send(t, rs[0], "/.portcullis/saml/corp/acs", ctype, "", form); code != http.StatusSeeOther {
			t.Fatalf("first use on replica 1: %d %s", code, body)
		}
		for i, r := range []*env{rs[1], rs[2], rs[0]} {
			code, body := sr.send(t, r, "/.portcullis/saml/corp/acs", ctype, "", form)
			if code != http.StatusForbidden || !strings.Contains(body, "saml.replayed") {
				t.Errorf("replay %d on :%d: %d %s, want 403 saml.replayed", i+1, r.port, code, body)
			}
		}
	})

	t.Run("ssf jti", func(t *testing.T) {
		rs[0].setCompliant(e.dev1ID, true)
		rs[1].waitStatus(t, e.dev1Cert, e.dev1Key, "/", 200)
		jti := uuid4()
		bob := map[string]any{"format": "email", "email": "bob@example.test"}
		alice := map[string]any{"format": "email", "email": e.dev1User}
		now := map[string]any{"event_timestamp": time.Now().Unix()}
		if code := sr.pushSET(t, rs[0], sr.tx.setWithJTI(t, jti, bob, caepSessionRevoked, now)); code != 202 {
			t.Fatalf("SET on replica 1: %d", code)
		}
		// The same jti, now about alice, on replica 2: acknowledged (a
		// transmitter must not resend it) and not applied.
		if code := sr.pushSET(t, rs[1], sr.tx.setWithJTI(t, jti, alice, caepSessionRevoked, now)); code != 202 {
			t.Fatalf("replayed SET on replica 2: %d", code)
		}
		if got := rs[1].statusOf(t, e.dev1Cert, e.dev1Key, "/"); got != 200 {
			t.Errorf("alice on replica 2 after a replayed jti: %d, want 200 (the replay was applied)", got)
		}
	})
}

// TestReplicasCloseWebsocketsOnSignals: a risk event (Okta event hook),
// a Universal Logout and an SSF session-revoked, each posted to replica 1
// about one user, close that user's websockets on replicas 2 and 3, and
// nobody else's.
func TestReplicasCloseWebsocketsOnSignals(t *testing.T) {
	sr := startSignalReplicas(t)
	e, rs := sr.e, sr.rs
	bobID, bobCert, bobKey := e.device(t, "bob.control@example.test")
	rs[0].setCompliant(bobID, true)

	signals := []struct {
		name string
		post func(user string) int
	}{
		{"okta risk high", func(user string) int {
			code, _ := sr.send(t, rs[0], "/.portcullis/feeds/okta", "application/json", sr.oktaSecret,
				oktaRisk(uuid4(), user, "LOW", "HIGH", time.Now()))
			return code
		}},
		{"universal logout", func(user string) int {
			code, _ := sr.send(t, rs[0], "/.portcullis/feeds/logout", "application/json", "Bearer "+sr.gtrTok,
				fmt.Sprintf(`{"sub_id":{"format":"email","email":%q}}`, user))
			return code
		}},
		{"ssf session revoked", func(user string) int {
			return sr.pushSET(t, rs[0], sr.tx.set(t, replicaSSFAudience, map[string]any{"format": "email", "email": user},
				caepSessionRevoked, map[string]any{"event_timestamp": time.Now().Unix()}))
		}},
	}
	for i, sig := range signals {
		t.Run(sig.name, func(t *testing.T) {
			user := fmt.Sprintf("user%d@example.test", i)
			id, cert, key := e.device(t, user)
			rs[0].setCompliant(id, true)
			for _, r := range rs[1:] {
				r.waitStatus(t, cert, key, "/risky/x", 200)
			}
			target := []<-chan struct{}{
				rs[1].openWSAt(t, cert, key, "/risky/ws"), rs[2].openWSAt(t, cert, key, "/risky/ws"),
			}
			control := []<-chan struct{}{
				rs[1].openWSAt(t, bobCert, bobKey, "/risky/ws"), rs[2].openWSAt(t, bobCert, bobKey, "/risky/ws"),
			}
			start := time.Now()
			if code := sig.post(user); code/100 != 2 {
				t.Fatalf("signal on replica 1: %d", code)
			}
			took := waitAllClosed(t, start, sig.name, target...)
			t.Logf("%s on replica 1 → last websocket closed on replicas 2 and 3: %v", sig.name, took)
			for j, ch := range control {
				select {
				case <-ch:
					t.Errorf("another user's websocket on replica %d was closed too", j+2)
				default:
				}
			}
			for _, r := range rs[1:] {
				if got := r.statusOf(t, bobCert, bobKey, "/risky/x"); got != 200 {
					t.Errorf("the other user on :%d: %d, want 200", r.port, got)
				}
			}
		})
	}
}
