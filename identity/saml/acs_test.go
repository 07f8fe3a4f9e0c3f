package saml

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	crewsaml "github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"portcullis/identity/internal/flow"
)

// libNow is the library's clock in tests (its TimeNow and Clock are
// package globals: set once here, changed only by sequential tests).
var libNow atomic.Pointer[time.Time]

func setLibNow(t time.Time) {
	libNow.Store(&t)
	crewsaml.Clock = dsig.NewFakeClockAt(t)
}

func TestMain(m *testing.M) {
	crewsaml.TimeNow = func() time.Time { return *libNow.Load() }
	setLibNow(t0)
	os.Exit(m.Run())
}

func ptr[T any](v T) *T { return &v }

// TestACSGuards proves each check: a good response logs in, and each
// single defect is refused with its reason, never a 500.
func TestACSGuards(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*Config)
		mut    func(*resp)
		noReq  bool // send without starting a login
		wantOK bool
		reason Reason
	}{
		{name: "good signed assertion", wantOK: true},
		{name: "good signed response", cfg: func(c *Config) { c.SignatureRequired = SignResponse }, mut: func(o *resp) { o.SignAssertion, o.SignResponse = false, true }, wantOK: true},
		{name: "good both signed", mut: func(o *resp) { o.SignResponse = true }, wantOK: true},
		{name: "good encrypted assertion", mut: func(o *resp) { o.Encrypt = true }, wantOK: true},
		{name: "encrypted signed response, assertion unsigned", mut: func(o *resp) { o.Encrypt, o.SignAssertion, o.SignResponse = true, false, true }, reason: ReasonSignatureMissing},
		{name: "unsigned", mut: func(o *resp) { o.SignAssertion = false }, reason: ReasonSignatureInvalid},
		{name: "response signed but assertion required", mut: func(o *resp) { o.SignAssertion, o.SignResponse = false, true }, reason: ReasonSignatureMissing},
		{name: "assertion signed but response required", cfg: func(c *Config) { c.SignatureRequired = SignResponse }, reason: ReasonSignatureMissing},
		{name: "either accepts response signature", cfg: func(c *Config) { c.SignatureRequired = SignEither }, mut: func(o *resp) { o.SignAssertion, o.SignResponse = false, true }, wantOK: true},
		{name: "unknown signing key", mut: func(o *resp) { o.Signer = 1 }, reason: ReasonSignatureInvalid},
		{name: "unknown key on response", mut: func(o *resp) { o.SignResponse, o.Signer = true, 1 }, reason: ReasonSignatureInvalid},
		{name: "expired", mut: func(o *resp) { o.Issue = t0.Add(-10 * time.Minute) }, reason: ReasonExpired},
		{name: "conditions expired within library skew", mut: func(o *resp) { o.NotOnOrAfter = t0.Add(-2 * time.Minute) }, reason: ReasonExpired},
		{name: "not yet valid", mut: func(o *resp) { o.NotBefore = t0.Add(2 * time.Minute) }, reason: ReasonNotYetValid},
		{name: "issued in the future", mut: func(o *resp) { o.Issue = t0.Add(2 * time.Minute) }, reason: ReasonNotYetValid},
		{name: "session not on or after passed", mut: func(o *resp) { o.SessionNotOnOrAf = ts(t0.Add(-time.Second)) }, reason: ReasonExpired},
		{name: "wrong audience", mut: func(o *resp) { o.Audience = "https://other.example/sp" }, reason: ReasonAudienceMismatch},
		{name: "no audience restriction", mut: func(o *resp) { o.Audience = "-" }, reason: ReasonAudienceMismatch},
		{name: "wrong destination", mut: func(o *resp) { o.Destination = "https://evil.example/acs" }, reason: ReasonDestinationMismatch},
		{name: "wrong recipient", mut: func(o *resp) {
			o.Recipient = "https://evil.example/acs"
			o.Destination = testRoot + "/.portcullis/saml/corp/acs"
		}, reason: ReasonRecipientMismatch},
		{name: "wrong issuer", mut: func(o *resp) { o.Issuer = "https://evil.example/idp" }, reason: ReasonIssuerMismatch},
		{name: "status not success", mut: func(o *resp) { o.Status = "urn:oasis:names:tc:SAML:2.0:status:Requester" }, reason: ReasonStatus},
		{name: "not requested", noReq: true, reason: ReasonNotRequested},
		{name: "unknown request id", mut: func(o *resp) { o.InResponseTo = "id-never-issued" }, reason: ReasonNotRequested},
		{name: "subject confirmation in response to another", mut: func(o *resp) { o.SubjectConfIRT = ptr("id-other") }, reason: ReasonNotRequested},
		{name: "idp-initiated while off", noReq: true, mut: func(o *resp) { o.InResponseTo = "" }, reason: ReasonNotRequested},
		{name: "idp-initiated when on", noReq: true, cfg: func(c *Config) { c.AllowIdPInitiated = true }, mut: func(o *resp) { o.InResponseTo = "" }, wantOK: true},
		{name: "idp-initiated on, unknown InResponseTo", noReq: true, cfg: func(c *Config) { c.AllowIdPInitiated = true }, mut: func(o *resp) { o.InResponseTo = "id-x" }, reason: ReasonNotRequested},
		{name: "no subject (library panic)", mut: func(o *resp) { o.NoSubject = true }, reason: ReasonMalformed},
		{name: "no conditions (library panic)", mut: func(o *resp) { o.NoConditions = true }, reason: ReasonMalformed},
		{name: "NameID in a foreign namespace", mut: func(o *resp) { o.NameIDNS = "urn:evil" }, reason: ReasonSubjectInvalid},
		{name: "two subject confirmations", mut: func(o *resp) { o.TwoConfirmations = true }, reason: ReasonSubjectInvalid},
		{name: "holder-of-key confirmation", mut: func(o *resp) { o.Method = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key" }, reason: ReasonSubjectInvalid},
		{name: "two assertions", mut: func(o *resp) { o.ExtraAssertion = true }, reason: ReasonMalformed},
		{name: "sha1 signature", mut: func(o *resp) { o.SHA1 = true }, reason: ReasonSignatureInvalid},
		{name: "sha1 signature allowed", cfg: func(c *Config) { c.AllowSHA1 = true }, mut: func(o *resp) { o.SHA1 = true }, wantOK: true},
		{name: "sha1 response signature", mut: func(o *resp) { o.SignResponse, o.SHA1 = true, true }, reason: ReasonSignatureInvalid},
		{name: "comment in NameID", mut: func(o *resp) { o.Comment = true }, reason: ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.cfg)
			o := resp{SignAssertion: true}
			binding := ""
			if !tt.noReq {
				o.InResponseTo, binding = f.startLogin(t, testAppURL)
			} else {
				o.InResponseTo = "id-unsolicited"
			}
			if tt.mut != nil {
				tt.mut(&o)
			}
			w := f.post(o.build(t, f), binding)
			if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d", w.Code)
			}
			if tt.wantOK {
				if w.Code != http.StatusSeeOther {
					t.Fatalf("status %d, want 303: %s", w.Code, w.Body)
				}
				return
			}
			if w.Code < 400 {
				t.Fatalf("status %d, want a refusal (%s)", w.Code, tt.reason)
			}
			if !strings.Contains(w.Body.String(), string(tt.reason)) {
				t.Errorf("refused, but not with %s: %s", tt.reason, grepReason(w.Body.String()))
			}
		})
	}
}

func grepReason(body string) string {
	i := strings.Index(body, "saml.")
	if i < 0 {
		return body
	}
	j := i
	for j < len(body) && (body[j] == '.' || body[j] == '_' || body[j] >= 'a' && body[j] <= 'z') {
		j++
	}
	return body[i:j]
}

func TestACSLoginSession(t *testing.T) {
	f := newFixture(t, nil)
	id, binding := f.startLogin(t, testAppURL)
	w := f.post(resp{InResponseTo: id, SignAssertion: true, Groups: []string{"eng", "admins"}}.build(t, f), binding)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	// app.example.test is not the ACS host: a handoff code carries the
	// session there.
	loc, _ := url.Parse(w.Header().Get("Location"))
	if loc.Host != "app.example.test" || loc.Path != flow.HandoffPath {
		t.Fatalf("Location = %s", loc)
	}
	r := httptestRequest("GET", loc.String(), nil)
	hw := recorder()
	f.handoffs.ServeHTTP(hw, r)
	if hw.Code != http.StatusSeeOther || hw.Header().Get("Location") != testAppURL {
		t.Fatalf("handoff: %d %s", hw.Code, hw.Header().Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range hw.Result().Cookies() {
		if c.Name == CookieName("corp") {
			cookie = c
		}
	}
	if cookie == nil || !cookie.Secure || !cookie.HttpOnly {
		t.Fatalf("session cookie = %+v", cookie)
	}
	// A second redemption fails.
	hw2 := recorder()
	f.handoffs.ServeHTTP(hw2, httptestRequest("GET", loc.String(), nil))
	if hw2.Code != http.StatusBadRequest {
		t.Errorf("second handoff: %d", hw2.Code)
	}
	ar := httptestRequest("GET", testAppURL, nil)
	ar.AddCookie(cookie)
	ar.Header.Add("Cookie", "app=1")
	sub := f.sp.Authenticate(nil, ar)
	if sub == nil {
		t.Fatal("Authenticate = nil")
	}
	if sub.UserID != "alice@example.test" || sub.Email != "alice@example.test" || sub.IdP != "saml:corp" ||
		len(sub.Groups) != 2 || sub.Groups[1] != "admins" || sub.SessionID == "" ||
		!sub.AuthTime.Equal(t0.Add(-30*time.Second)) || !strings.HasSuffix(sub.ACR, "PasswordProtectedTransport") {
		t.Errorf("subject = %+v", sub)
	}
	if got := ar.Header.Get("Cookie"); got != "app=1" {
		t.Errorf("upstream Cookie = %q, want only the app's", got)
	}
}

func TestACSReplay(t *testing.T) {
	for _, idpInit := range []bool{false, true} {
		f := newFixture(t, func(c *Config) { c.AllowIdPInitiated = idpInit })
		o := resp{SignAssertion: true}
		binding := ""
		if !idpInit {
			o.InResponseTo, binding = f.startLogin(t, "/")
		}
		body := o.build(t, f)
		if w := f.post(body, binding); w.Code != http.StatusSeeOther {
			t.Fatalf("first: %d %s", w.Code, w.Body)
		}
		// The same response again, even after a new login from the
		// same browser, is a replay.
		if !idpInit {
			f.startLogin(t, "/")
		}
		w := f.post(body, binding)
		if !strings.Contains(w.Body.String(), string(ReasonReplayed)) {
			t.Errorf("idp-initiated=%v: replay not refused as replayed: %d %s", idpInit, w.Code, grepReason(w.Body.String()))
		}
	}
}

// TestReplayPersists proves the replay cache survives a restart.
func TestReplayPersists(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenReplayCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	if seen, err := c.Seen(t.Context(), ReplayKey("saml:corp", "_a1"), t0.Add(time.Minute), t0); seen || err != nil {
		t.Fatalf("first Seen = %v, %v", seen, err)
	}
	c.Close()
	c, err = OpenReplayCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if seen, _ := c.Seen(t.Context(), ReplayKey("saml:corp", "_a1"), t0.Add(time.Minute), t0.Add(30*time.Second)); !seen {
		t.Error("not seen after reopening")
	}
	if seen, _ := c.Seen(t.Context(), ReplayKey("saml:corp", "_a1"), t0.Add(3*time.Minute), t0.Add(2*time.Minute)); seen {
		t.Error("seen after its expiry")
	}
	if seen, _ := c.Seen(t.Context(), ReplayKey("saml:other", "_a1"), t0.Add(time.Minute), t0); seen {
		t.Error("ids are per provider")
	}
}

func TestACSBinding(t *testing.T) {
	f := newFixture(t, nil)
	id, _ := f.startLogin(t, "/")
	// Another browser (another binding cookie) posts the response.
	w := f.post(resp{InResponseTo: id, SignAssertion: true}.build(t, f), randomToken(32))
	if !strings.Contains(w.Body.String(), string(ReasonNotRequested)) {
		t.Errorf("foreign browser: %d %s", w.Code, grepReason(w.Body.String()))
	}
	// The request is still pending for its own browser? No: it is not
	// consumed by a foreign attempt, but expires after RequestTTL.
	id2, b2 := f.startLogin(t, "/")
	*f.now = t0.Add(RequestTTL + time.Second)
	setLibNow(*f.now)
	defer setLibNow(t0)
	w = f.post(resp{InResponseTo: id2, SignAssertion: true, Issue: *f.now}.build(t, f), b2)
	if !strings.Contains(w.Body.String(), string(ReasonNotRequested)) {
		t.Errorf("expired request: %d %s", w.Code, grepReason(w.Body.String()))
	}
}

func TestACSBounds(t *testing.T) {
	f := newFixture(t, nil)
	big := "SAMLResponse=" + strings.Repeat("A", MaxACSBody+10)
	if w := f.post("", "", big); w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), string(ReasonTooLarge)) {
		t.Errorf("oversized: %d %s", w.Code, grepReason(w.Body.String()))
	}
	for _, body := range []string{"", "SAMLResponse=%%%", "SAMLResponse=bm90IHhtbA==", "SAMLResponse=PGE+PC9hPg=="} {
		if w := f.post("", "", body); w.Code != http.StatusForbidden && w.Code != http.StatusBadRequest {
			t.Errorf("body %q: %d", body, w.Code)
		}
	}
	r := httptestRequest("GET", testRoot+"/.portcullis/saml/corp/acs", nil)
	w := recorder()
	f.sp.serveACS(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET acs: %d", w.Code)
	}
}
