package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"portcullis/enforcement"
	"portcullis/identity/internal/flow"
)

func TestLoginRedirect(t *testing.T) {
	f := newFixture(t, nil)
	r := httptestRequest("GET", testRoot+"/.portcullis/saml/corp/login?return_to="+url.QueryEscape(testAppURL)+"&force=1&acr="+url.QueryEscape("urn:example:mfa"), nil)
	w := recorder()
	f.sp.serveLogin(w, r)
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || loc.Host != "idp.example.test" {
		t.Fatalf("login: %d %s", w.Code, loc)
	}
	// The AuthnRequest is signed (HTTP-Redirect binding: over the raw query).
	raw := loc.RawQuery
	i := strings.Index(raw, "&Signature=")
	if i < 0 || loc.Query().Get("SigAlg") != "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" {
		t.Fatalf("unsigned AuthnRequest: %s", raw)
	}
	sig, _ := base64.StdEncoding.DecodeString(loc.Query().Get("Signature"))
	h := sha256.Sum256([]byte(raw[:i]))
	if err := rsa.VerifyPKCS1v15(f.sp.cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, h[:], sig); err != nil {
		t.Errorf("AuthnRequest signature: %v", err)
	}
	// Step-up: the request forces authentication and names the class.
	areq := inflateRequest(t, loc.Query().Get("SAMLRequest"))
	for _, want := range []string{`ForceAuthn="true"`, `<samlp:RequestedAuthnContext Comparison="exact"`,
		`<saml:AuthnContextClassRef>urn:example:mfa</saml:AuthnContextClassRef>`} {
		if !strings.Contains(areq, want) {
			t.Errorf("AuthnRequest lacks %s:\n%s", want, areq)
		}
	}
	w = recorder()
	f.sp.serveLogin(w, httptestRequest("GET", testRoot+"/.portcullis/saml/corp/login?return_to=%2F&acr=a%0Ab", nil))
	if w.Code != http.StatusBadRequest {
		t.Errorf("acr with a control character: %d", w.Code)
	}
	w = recorder()
	f.sp.serveLogin(w, httptestRequest("GET", testRoot+"/.portcullis/saml/corp/login?return_to=%2F", nil))
	loc, _ = url.Parse(w.Header().Get("Location"))
	if areq := inflateRequest(t, loc.Query().Get("SAMLRequest")); strings.Contains(areq, "ForceAuthn") || strings.Contains(areq, "RequestedAuthnContext") {
		t.Errorf("plain login asks for step-up:\n%s", areq)
	}

	var bc *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == BindingCookie {
			bc = c
		}
	}
	if bc == nil || !bc.Secure || !bc.HttpOnly || bc.SameSite != http.SameSiteNoneMode {
		t.Errorf("binding cookie = %+v", bc)
	}

	for _, ret := range []string{"https://evil.example/", "//evil.example/", "http://app.example.test/"} {
		w := recorder()
		f.sp.serveLogin(w, httptestRequest("GET", testRoot+"/.portcullis/saml/corp/login?return_to="+url.QueryEscape(ret), nil))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), string(ReasonBadReturn)) {
			t.Errorf("return_to %q: %d", ret, w.Code)
		}
	}
	// Started on another host: sent to the ACS host first, so the binding
	// cookie lands where the ACS can read it.
	w = recorder()
	f.sp.serveLogin(w, httptestRequest("GET", "https://app.example.test/.portcullis/saml/corp/login?return_to=%2F", nil))
	if w.Code != http.StatusFound || !strings.HasPrefix(w.Header().Get("Location"), testRoot+"/.portcullis/saml/corp/login?") {
		t.Errorf("other host: %d %s", w.Code, w.Header().Get("Location"))
	}
}

func TestChallenge(t *testing.T) {
	f := newFixture(t, nil)
	d := enforcement.Decision{Verdict: enforcement.Login, Reason: enforcement.ReasonLoginRequired}
	r := httptestRequest("GET", testAppURL, nil)
	r.Header.Set("Accept", "text/html")
	w := recorder()
	f.sp.Challenge(w, r, d, flow.Challenge{RequestID: "rid", Resource: "app"})
	loc, _ := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || loc.Path != "/.portcullis/saml/corp/login" || loc.Query().Get("return_to") != testAppURL {
		t.Errorf("browser: %d %s", w.Code, loc)
	}
	d.Verdict = enforcement.StepUp
	w = recorder()
	f.sp.Challenge(w, r, d, flow.Challenge{RequestID: "rid", Resource: "app"})
	if !strings.Contains(w.Header().Get("Location"), "force=1") {
		t.Errorf("step-up does not force authentication: %s", w.Header().Get("Location"))
	}
	// An MFA step-up asks for the resource's authentication context.
	d.Reason = enforcement.ReasonMFARequired
	w = recorder()
	f.sp.Challenge(w, r, d, flow.Challenge{ACR: []string{"urn:example:mfa", "urn:example:hwk"}, RequestID: "rid", Resource: "app"})
	loc, _ = url.Parse(w.Header().Get("Location"))
	if loc.Query().Get("acr") != "urn:example:mfa" || loc.Query().Get("force") != "1" {
		t.Errorf("mfa step-up: %s", loc)
	}
	api := httptestRequest("POST", testAppURL, nil)
	api.Header.Set("Accept", "application/json")
	w = recorder()
	f.sp.Challenge(w, api, d, flow.Challenge{RequestID: "rid", Resource: "app"})
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "rid") {
		t.Errorf("api: %d %s", w.Code, w.Body)
	}
}

func TestSPMetadata(t *testing.T) {
	f := newFixture(t, nil)
	w := recorder()
	f.sp.serveMetadata(w, httptestRequest("GET", testRoot+"/.portcullis/saml/corp/metadata", nil))
	body := w.Body.String()
	for _, want := range []string{`entityID="` + testRoot + `/.portcullis/saml/corp/metadata"`, testRoot + "/.portcullis/saml/corp/acs",
		testRoot + "/.portcullis/saml/corp/slo", `AuthnRequestsSigned="true"`, `WantAssertionsSigned="true"`, `use="encryption"`} {
		if !strings.Contains(body, want) {
			t.Errorf("SP metadata lacks %s", want)
		}
	}
}

// TestMetadataRefresh: the metadata URL is fetched at start, refreshed
// when due, and the last good copy is kept when the IdP fails.
func TestMetadataRefresh(t *testing.T) {
	var fail atomic.Bool
	fetched := make(chan struct{}, 8)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { fetched <- struct{}{} }()
		if fail.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Write([]byte(idpMetadataXML(testKeys()[0].cert)))
	}))
	defer idp.Close()
	f := newFixture(t, func(c *Config) {
		c.IdPMetadataFile, c.IdPMetadataURL = "", idp.URL+"/md"
		c.MetadataRefresh.UnmarshalText([]byte("1m"))
	})
	<-fetched
	if f.sp.metadata() == nil {
		t.Fatal("no metadata after the first fetch")
	}
	fail.Store(true)
	*f.now = t0.Add(2 * time.Minute)
	m := f.sp.metadata() // starts a refresh, which fails
	<-fetched            // a failed fetch never replaces the current copy, so no need to wait for it to return
	if m == nil || f.sp.metadata() != m {
		t.Error("the last good metadata was not kept")
	}
	// A login still works on the kept copy.
	id, b := f.startLogin(t, "/")
	setLibNow(*f.now)
	defer setLibNow(t0)
	if w := f.post(resp{InResponseTo: id, SignAssertion: true, Issue: *f.now}.build(t, f), b); w.Code != http.StatusSeeOther {
		t.Errorf("login on kept metadata: %d", w.Code)
	}
	if err := f.sp.Refresh(context.Background()); err == nil {
		t.Error("Refresh against a failing IdP succeeded")
	}
}

// inflateRequest decodes an HTTP-Redirect binding SAMLRequest value
// (base64 of raw DEFLATE).
func inflateRequest(t *testing.T, v string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		t.Fatalf("SAMLRequest: %v", err)
	}
	x, err := io.ReadAll(flate.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("SAMLRequest: %v", err)
	}
	return string(x)
}
