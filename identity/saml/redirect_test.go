package saml

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"portcullis/identity/internal/flow"
	"portcullis/identity/internal/flow/flowtest"
	"portcullis/posture"
)

// Every SAML endpoint that redirects after a login (the ACS, for an
// SP-initiated login and for an IdP-initiated one's RelayState, and the
// handoff) sends the browser only to an allowed host and port, as an
// absolute URL.

var (
	samlHosts = []string{"login.example.test", flowtest.AllowedHost}
	samlPorts = []string{"", "8443"}
)

var samlLegit = map[string]string{
	"https://app.example.test/x?y=1":           "https://app.example.test/x?y=1",
	"https://app.example.test:8443/x":          "https://app.example.test:8443/x",
	"https://app.example.test//evil.example/x": "https://app.example.test/evil.example/x",
	"/local?q": testRoot + "/local?q",
}

// finishACS follows the ACS answer w through the handoff, checking each
// Location, and returns the final one.
func (f *fixture) finishACS(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code != http.StatusSeeOther {
		t.Fatalf("acs = %d %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	flowtest.CheckLocation(t, testRoot+"/.portcullis/saml/corp/acs", loc, samlHosts, samlPorts)
	u, _ := url.Parse(loc)
	if u == nil || u.Path != flow.HandoffPath {
		return loc
	}
	hw := httptest.NewRecorder()
	f.handoffs.ServeHTTP(hw, httptest.NewRequest("GET", loc, nil))
	if hw.Code != http.StatusSeeOther {
		t.Fatalf("handoff = %d %s", hw.Code, hw.Body)
	}
	flowtest.CheckLocation(t, loc, hw.Header().Get("Location"), samlHosts, samlPorts)
	return hw.Header().Get("Location")
}

func TestSPInitiatedRedirects(t *testing.T) {
	f := newFixture(t, nil)
	login := func(t *testing.T, rd string) string {
		r := httptest.NewRequest("GET", testRoot+"/.portcullis/saml/corp/login?return_to="+url.QueryEscape(rd), nil)
		w := httptest.NewRecorder()
		f.sp.serveLogin(w, r)
		if w.Code == http.StatusBadRequest {
			return ""
		}
		var binding, id string
		for _, c := range w.Result().Cookies() {
			if c.Name == BindingCookie {
				binding = c.Value
			}
		}
		f.sp.tracker.mu.Lock()
		for k, p := range f.sp.tracker.requests {
			if p.binding == sha(binding) {
				id = k
			}
		}
		f.sp.tracker.mu.Unlock()
		return f.finishACS(t, f.post(resp{InResponseTo: id, SignAssertion: true}.build(t, f), binding))
	}
	for _, rd := range flowtest.HostileReturns {
		if rd == "" {
			continue // the root
		}
		t.Run("hostile "+rd, func(t *testing.T) {
			if got := login(t, rd); got != "" && !strings.HasPrefix(got, "https://app.example.test/") && !strings.HasPrefix(got, testRoot+"/") {
				t.Errorf("login to %q ended at %q", rd, got)
			}
		})
	}
	for rd, want := range samlLegit {
		t.Run(rd, func(t *testing.T) {
			if got := login(t, rd); got != want {
				t.Errorf("login to %q ended at %q, want %q", rd, got, want)
			}
		})
	}
}

// TestRelayStateRedirects: an IdP-initiated login's RelayState is the
// IdP's (or an attacker's) to choose; a refused one lands on the root.
func TestRelayStateRedirects(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AllowIdPInitiated = true })
	login := func(t *testing.T, relay string) string {
		body := url.Values{"SAMLResponse": {resp{SignAssertion: true}.build(t, f)}, "RelayState": {relay}}.Encode()
		return f.finishACS(t, f.post("", "", body))
	}
	for _, rd := range flowtest.HostileReturns {
		t.Run("hostile "+rd, func(t *testing.T) {
			got := login(t, rd)
			if u, _ := url.Parse(got); u == nil || (u.Host != flowtest.AllowedHost && got != testRoot+"/") {
				t.Errorf("RelayState %q ended at %q", rd, got)
			}
		})
	}
	for rd, want := range samlLegit {
		t.Run(rd, func(t *testing.T) {
			if got := login(t, rd); got != want {
				t.Errorf("RelayState %q ended at %q, want %q", rd, got, want)
			}
		})
	}
}

// TestSAMLHandoffRechecksRevocation: a SAML session revoked between the
// ACS and the handoff is not planted on the resource host.
func TestSAMLHandoffRechecksRevocation(t *testing.T) {
	f := newFixture(t, nil)
	id, binding := f.startLogin(t, testAppURL)
	w := f.post(resp{InResponseTo: id, SignAssertion: true}.build(t, f), binding)
	loc := w.Header().Get("Location")
	var sid string
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName("corp") {
			s, err := f.sp.codec.Open(c.Value, *f.now)
			if err != nil {
				t.Fatal(err)
			}
			sid = s.Subject.SessionID
		}
	}
	if !strings.Contains(loc, flow.HandoffPath) || sid == "" {
		t.Fatalf("acs = %d %q", w.Code, loc)
	}
	f.revoker.Revoke(t.Context(), posture.Revocation{Kind: posture.RevokeSession, Session: sid})
	hw := httptest.NewRecorder()
	f.handoffs.ServeHTTP(hw, httptest.NewRequest("GET", loc, nil))
	if hw.Code != http.StatusUnauthorized || len(hw.Result().Cookies()) != 0 {
		t.Errorf("handoff of a revoked session = %d, cookies %v; want 401 and none", hw.Code, hw.Result().Cookies())
	}
}
