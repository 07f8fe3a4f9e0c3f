package saml

import (
	"bytes"
	"compress/flate"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"portcullis/posture"
)

// login runs a full login and returns the session cookie (on the root
// host).
func (f *fixture) login(t *testing.T) *http.Cookie {
	t.Helper()
	id, binding := f.startLogin(t, "/")
	w := f.post(resp{InResponseTo: id, SignAssertion: true}.build(t, f), binding)
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName("corp") {
			return c
		}
	}
	t.Fatalf("no session cookie: %d %s", w.Code, w.Body)
	return nil
}

func TestLogoutSPInitiated(t *testing.T) {
	f := newFixture(t, nil)
	c := f.login(t)
	logout := f.sp.Handlers()["/.portcullis/saml/corp/logout"]
	// A GET (a link, maybe from another site) only asks.
	r := httptestRequest("GET", testRoot+"/.portcullis/saml/corp/logout", nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(c)
	w := recorder()
	logout.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `method="post" action="/.portcullis/saml/corp/logout"`) {
		t.Fatalf("logout GET: %d %s", w.Code, w.Body)
	}
	if len(f.revoker.revs) != 0 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("logout GET changed state: revocations %+v, cookies %v", f.revoker.revs, w.Result().Cookies())
	}
	// The confirmation form's POST, same-origin, ends the session.
	r = httptestRequest("POST", testRoot+"/.portcullis/saml/corp/logout", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.AddCookie(c)
	w = recorder()
	logout.ServeHTTP(w, r)
	if w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), testSLO+"?SAMLRequest=") {
		t.Fatalf("logout: %d %s", w.Code, w.Header().Get("Location"))
	}
	if len(f.revoker.revs) != 1 || f.revoker.revs[0].Kind != posture.RevokeSession || f.revoker.revs[0].Session == "" {
		t.Fatalf("revocations = %+v", f.revoker.revs)
	}
	cleared := false
	for _, ck := range w.Result().Cookies() {
		cleared = cleared || ck.Name == CookieName("corp") && ck.MaxAge < 0
	}
	if !cleared {
		t.Error("session cookie not cleared")
	}
	// A cross-site form cannot log the user out (nor revoke the session).
	c = f.login(t)
	r = httptestRequest("POST", testRoot+"/.portcullis/saml/corp/logout", nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.AddCookie(c)
	w = recorder()
	f.sp.Handlers()["/.portcullis/saml/corp/logout"].ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || len(f.revoker.revs) != 1 {
		t.Errorf("cross-site logout POST: %d, revocations %d", w.Code, len(f.revoker.revs))
	}
	// The IdP's LogoutResponse lands on the signed-out page.
	w = recorder()
	f.sp.serveSLO(w, httptestRequest("GET", testRoot+"/.portcullis/saml/corp/slo?SAMLResponse=x", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "signed out") {
		t.Errorf("slo response: %d", w.Code)
	}
}

// logoutRequest returns the raw query of an HTTP-Redirect LogoutRequest
// signed with key, for alg ("sha256" or "sha1"); sign=false leaves it
// unsigned.
func logoutRequest(t *testing.T, issue time.Time, nameID, sessionIndex string, key *rsa.PrivateKey, alg string, sign bool) string {
	t.Helper()
	idx := ""
	if sessionIndex != "" {
		idx = "<samlp:SessionIndex>" + sessionIndex + "</samlp:SessionIndex>"
	}
	x := fmt.Sprintf(`<samlp:LogoutRequest xmlns:samlp="%s" xmlns:saml="%s" ID="_l%s" Version="2.0" IssueInstant="%s" Destination="%s"><saml:Issuer>%s</saml:Issuer><saml:NameID>%s</saml:NameID>%s</samlp:LogoutRequest>`,
		nsProtocol, nsAssertion, randomToken(8), ts(issue), testRoot+"/.portcullis/saml/corp/slo", testIdP, nameID, idx)
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, 9)
	fw.Write([]byte(x))
	fw.Close()
	q := "SAMLRequest=" + url.QueryEscape(base64.StdEncoding.EncodeToString(buf.Bytes())) + "&RelayState=rs"
	if !sign {
		return q
	}
	algURI := "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	var sig []byte
	if alg == "sha1" {
		algURI = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
		q += "&SigAlg=" + url.QueryEscape(algURI)
		h := sha1.Sum([]byte(q))
		sig, _ = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, h[:])
	} else {
		q += "&SigAlg=" + url.QueryEscape(algURI)
		h := sha256.Sum256([]byte(q))
		sig, _ = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	}
	return q + "&Signature=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig))
}

func TestLogoutIdPInitiated(t *testing.T) {
	k := testKeys()
	tests := []struct {
		name    string
		query   func(t *testing.T) string
		wantOK  bool
		reason  Reason
		revoked int
	}{
		{name: "signed, session index known", query: func(t *testing.T) string {
			return logoutRequest(t, t0, "Alice@Example.TEST", "_s1", k[0].key, "sha256", true)
		}, wantOK: true, revoked: 1},
		{name: "signed, unknown session: revoke the user", query: func(t *testing.T) string {
			return logoutRequest(t, t0, "bob@example.test", "_other", k[0].key, "sha256", true)
		}, wantOK: true, revoked: 1},
		{name: "unsigned", query: func(t *testing.T) string {
			return logoutRequest(t, t0, "Alice@Example.TEST", "_s1", nil, "", false)
		}, reason: ReasonSignatureMissing},
		{name: "unknown key", query: func(t *testing.T) string {
			return logoutRequest(t, t0, "Alice@Example.TEST", "_s1", k[1].key, "sha256", true)
		}, reason: ReasonSignatureInvalid},
		{name: "sha1 refused", query: func(t *testing.T) string {
			return logoutRequest(t, t0, "Alice@Example.TEST", "_s1", k[0].key, "sha1", true)
		}, reason: ReasonSignatureInvalid},
		{name: "stale", query: func(t *testing.T) string {
			return logoutRequest(t, t0.Add(-time.Hour), "Alice@Example.TEST", "_s1", k[0].key, "sha256", true)
		}, reason: ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.login(t)
			w := recorder()
			f.sp.serveSLO(w, httptestRequest("GET", testRoot+"/.portcullis/saml/corp/slo?"+tt.query(t), nil))
			if tt.wantOK {
				if loc := w.Header().Get("Location"); w.Code != http.StatusFound || !strings.HasPrefix(loc, testSLO+"?") || !strings.Contains(loc, "SAMLResponse=") {
					t.Fatalf("status %d: %s", w.Code, grepReason(w.Body.String()))
				}
			} else if w.Code < 400 || !strings.Contains(w.Body.String(), string(tt.reason)) {
				t.Fatalf("status %d, want %s: %s", w.Code, tt.reason, grepReason(w.Body.String()))
			}
			if len(f.revoker.revs) != tt.revoked {
				t.Errorf("revocations = %+v, want %d", f.revoker.revs, tt.revoked)
			}
		})
	}
}
