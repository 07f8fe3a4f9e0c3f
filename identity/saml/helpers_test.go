package saml

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml/xmlenc"
	dsig "github.com/russellhaering/goxmldsig"

	"portcullis/identity/internal/flow"
	"portcullis/identity/session"
	"portcullis/internal/conf"
	"portcullis/posture"
)

// t0 is the fixed test time.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testRoot   = "https://login.example.test"
	testIdP    = "https://idp.example.test/metadata"
	testSSO    = "https://idp.example.test/sso"
	testSLO    = "https://idp.example.test/slo"
	testAppURL = "https://app.example.test/docs?x=1"
)

type keyPair struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

var (
	keysOnce sync.Once
	keys     [3]keyPair // [0] the IdP's, [1] an unknown signer, [2] the SP's
)

func testKeys() [3]keyPair {
	keysOnce.Do(func() {
		for i := range keys {
			k, _ := rsa.GenerateKey(rand.Reader, 2048)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: fmt.Sprint("idp", i)},
				NotBefore: t0.AddDate(-1, 0, 0), NotAfter: t0.AddDate(20, 0, 0)}
			der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
			c, _ := x509.ParseCertificate(der)
			keys[i] = keyPair{key: k, cert: c}
		}
	})
	return keys
}

func idpMetadataXML(cert *x509.Certificate) string {
	c := base64.StdEncoding.EncodeToString(cert.Raw)
	return `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="` + testIdP + `">
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>` + c + `</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="` + testSLO + `"/>
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="` + testSSO + `"/>
</md:IDPSSODescriptor></md:EntityDescriptor>`
}

type fakeRevoker struct {
	mu   sync.Mutex
	revs []posture.Revocation
}

func (f *fakeRevoker) Revoke(_ context.Context, r posture.Revocation) (posture.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revs = append(f.revs, r)
	return 0, nil
}

// SessionRevoked and UserRevokedBefore make the fake a session.Revocations
// too, so that the codec sees what logouts revoke.
func (f *fakeRevoker) SessionRevoked(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.revs {
		if r.Kind == posture.RevokeSession && r.Session == id {
			return true
		}
	}
	return false
}

func (f *fakeRevoker) UserRevokedBefore(user string) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t time.Time
	for _, r := range f.revs {
		if r.Kind == posture.RevokeUser && r.User == user && r.Before.After(t) {
			t = r.Before
		}
	}
	return t
}

type fixture struct {
	sp       *SP
	revoker  *fakeRevoker
	handoffs *flow.Handoffs
	now      *time.Time
	dir      string
}

// newFixture builds an SP at t0 with a pinned IdP metadata file.
func newFixture(t testing.TB, mut func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	md := filepath.Join(dir, "idp.xml")
	if err := os.WriteFile(md, []byte(idpMetadataXML(testKeys()[0].cert)), 0o600); err != nil {
		t.Fatal(err)
	}
	spk := testKeys()[2]
	kf, cf := filepath.Join(dir, "sp.key"), filepath.Join(dir, "sp.crt")
	os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(spk.key)}), 0o600)
	os.WriteFile(cf, pemCert(spk.cert), 0o600)
	cfg := Config{Name: "corp", IdPMetadataFile: conf.Path(md), RootURL: testRoot, KeyFile: conf.Path(kf), CertFile: conf.Path(cf), Attributes: Attributes{Groups: "groups"}}
	if mut != nil {
		mut(&cfg)
	}
	k := make([]byte, session.KeySize)
	rand.Read(k)
	rev := &fakeRevoker{}
	codec, err := session.NewCodec(CookieName(cfg.Name), [][]byte{k}, session.Config{}, rev)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := OpenReplayCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replay.Close() })
	now := t0
	f := &fixture{revoker: rev, now: &now, dir: dir}
	clock := func() time.Time { return *f.now }
	f.handoffs = flow.NewHandoffs(clock)
	f.sp, err = New(context.Background(), cfg, Options{StateDir: dir, Sessions: codec, Replay: replay, Tracker: NewTracker(),
		Revoker: f.revoker, Now: clock, Hosts: []string{"app.example.test"}, Handoffs: f.handoffs,
		Ports: func(p int) bool { return p == 8443 }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// startLogin runs the login endpoint and returns the AuthnRequest id and
// the binding cookie.
func (f *fixture) startLogin(t testing.TB, ret string) (id, binding string) {
	t.Helper()
	r := httptest.NewRequest("GET", testRoot+"/.portcullis/saml/corp/login?return_to="+url.QueryEscape(ret), nil)
	w := httptest.NewRecorder()
	f.sp.serveLogin(w, r)
	if w.Code != http.StatusFound {
		t.Fatalf("login: status %d: %s", w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == BindingCookie {
			binding = c.Value
		}
	}
	f.sp.tracker.mu.Lock()
	for k := range f.sp.tracker.requests {
		id = k
	}
	f.sp.tracker.mu.Unlock()
	return id, binding
}

// post sends a SAMLResponse to the ACS.
func (f *fixture) post(samlResponse, binding string, body ...string) *httptest.ResponseRecorder {
	form := url.Values{"SAMLResponse": {samlResponse}}
	b := form.Encode()
	if len(body) > 0 {
		b = body[0]
	}
	r := httptest.NewRequest("POST", testRoot+"/.portcullis/saml/corp/acs", strings.NewReader(b))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if binding != "" {
		r.AddCookie(&http.Cookie{Name: BindingCookie, Value: binding})
	}
	w := httptest.NewRecorder()
	f.sp.serveACS(w, r)
	return w
}

// resp describes a Response to build. The zero value (after defaults)
// is a good response to request id InResponseTo, signed on the assertion.
type resp struct {
	InResponseTo      string
	AssertionID       string
	Audience          string // "-" for none
	Recipient         string
	Destination       string
	Issuer            string
	NameID            string
	NameIDNS          string
	Method            string
	Groups            []string
	NotOnOrAfter      time.Time
	NotBefore         time.Time
	Issue             time.Time
	SessionNotOnOrAf  string
	SignAssertion     bool
	SignResponse      bool
	Signer            int // index into testKeys
	Encrypt           bool
	NoSubject         bool
	NoConditions      bool
	TwoConfirmations  bool
	ExtraAssertion    bool
	Comment           bool
	Status            string
	SubjectConfIRT    *string
	AuthnContextClass string
	SHA1              bool
}

func (o *resp) defaults() {
	if o.AssertionID == "" {
		o.AssertionID = "_a" + randomToken(12)
	}
	if o.Audience == "" {
		o.Audience = testRoot + "/.portcullis/saml/corp/metadata"
	}
	if o.Recipient == "" {
		o.Recipient = testRoot + "/.portcullis/saml/corp/acs"
	}
	if o.Destination == "" {
		o.Destination = o.Recipient
	}
	if o.Issuer == "" {
		o.Issuer = testIdP
	}
	if o.NameID == "" {
		o.NameID = "Alice@Example.TEST"
	}
	if o.NameIDNS == "" {
		o.NameIDNS = nsAssertion
	}
	if o.Method == "" {
		o.Method = bearer
	}
	if o.Issue.IsZero() {
		o.Issue = t0
	}
	if o.NotOnOrAfter.IsZero() {
		o.NotOnOrAfter = o.Issue.Add(5 * time.Minute)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = o.Issue.Add(-time.Minute)
	}
	if o.Status == "" {
		o.Status = "urn:oasis:names:tc:SAML:2.0:status:Success"
	}
	if o.AuthnContextClass == "" {
		o.AuthnContextClass = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
	}
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func attr(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", `"`, "&quot;")
	return r.Replace(s)
}

// build returns the base64 SAMLResponse.
func (o resp) build(t testing.TB, f *fixture) string {
	t.Helper()
	o.defaults()
	irt := ""
	if o.InResponseTo != "" {
		irt = ` InResponseTo="` + attr(o.InResponseTo) + `"`
	}
	scIRT := irt
	if o.SubjectConfIRT != nil {
		scIRT = ` InResponseTo="` + attr(*o.SubjectConfIRT) + `"`
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<saml:Assertion xmlns:saml="%s" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="%s" IssueInstant="%s" Version="2.0">`, nsAssertion, o.AssertionID, ts(o.Issue))
	fmt.Fprintf(&b, `<saml:Issuer>%s</saml:Issuer>`, attr(o.Issuer))
	if !o.NoSubject {
		name := attr(o.NameID)
		if o.NameIDNS == nsAssertion {
			fmt.Fprintf(&b, `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">%s</saml:NameID>`, name)
		} else {
			fmt.Fprintf(&b, `<saml:Subject><x:NameID xmlns:x="%s">%s</x:NameID>`, o.NameIDNS, name)
		}
		n := 1
		if o.TwoConfirmations {
			n = 2
		}
		for range n {
			fmt.Fprintf(&b, `<saml:SubjectConfirmation Method="%s"><saml:SubjectConfirmationData%s NotOnOrAfter="%s" Recipient="%s"/></saml:SubjectConfirmation>`,
				attr(o.Method), scIRT, ts(o.NotOnOrAfter), attr(o.Recipient))
		}
		b.WriteString(`</saml:Subject>`)
	}
	if !o.NoConditions {
		fmt.Fprintf(&b, `<saml:Conditions NotBefore="%s" NotOnOrAfter="%s">`, ts(o.NotBefore), ts(o.NotOnOrAfter))
		if o.Audience != "-" {
			fmt.Fprintf(&b, `<saml:AudienceRestriction><saml:Audience>%s</saml:Audience></saml:AudienceRestriction>`, attr(o.Audience))
		}
		b.WriteString(`</saml:Conditions>`)
	}
	sno := ""
	if o.SessionNotOnOrAf != "" {
		sno = ` SessionNotOnOrAfter="` + o.SessionNotOnOrAf + `"`
	}
	fmt.Fprintf(&b, `<saml:AuthnStatement AuthnInstant="%s" SessionIndex="_s1"%s><saml:AuthnContext><saml:AuthnContextClassRef>%s</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`,
		ts(o.Issue.Add(-30*time.Second)), sno, o.AuthnContextClass)
	b.WriteString(`<saml:AttributeStatement><saml:Attribute Name="mail"><saml:AttributeValue xsi:type="xs:string">alice@example.test</saml:AttributeValue></saml:Attribute>`)
	if len(o.Groups) > 0 {
		b.WriteString(`<saml:Attribute Name="groups">`)
		for _, g := range o.Groups {
			fmt.Fprintf(&b, `<saml:AttributeValue xsi:type="xs:string">%s</saml:AttributeValue>`, attr(g))
		}
		b.WriteString(`</saml:Attribute>`)
	}
	b.WriteString(`</saml:AttributeStatement></saml:Assertion>`)

	k := testKeys()[o.Signer]
	sc := dsig.NewDefaultSigningContext(dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{k.cert.Raw}, PrivateKey: k.key}))
	sc.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if o.SHA1 {
		sc.Hash = crypto.SHA1
		if err := sc.SetSignatureMethod(dsig.RSASHA1SignatureMethod); err != nil {
			t.Fatal(err)
		}
	}
	adoc := etree.NewDocument()
	if err := adoc.ReadFromString(b.String()); err != nil {
		t.Fatal(err)
	}
	ael := adoc.Root()
	if o.SignAssertion {
		var err error
		if ael, err = sc.SignEnveloped(ael); err != nil {
			t.Fatal(err)
		}
	}
	if o.Encrypt {
		d := etree.NewDocument()
		d.SetRoot(ael)
		plain, _ := d.WriteToBytes()
		e := xmlenc.OAEP()
		e.BlockCipher = xmlenc.AES256CBC
		nonce := []byte(nil)
		ed, err := e.Encrypt(f.sp.cert, plain, nonce)
		if err != nil {
			t.Fatal(err)
		}
		ed.CreateAttr("Type", "http://www.w3.org/2001/04/xmlenc#Element")
		enc := etree.NewElement("saml:EncryptedAssertion")
		enc.CreateAttr("xmlns:saml", nsAssertion)
		enc.AddChild(ed)
		ael = enc
	}
	rdoc := etree.NewDocument()
	rs := fmt.Sprintf(`<samlp:Response xmlns:samlp="%s" xmlns:saml="%s" ID="_r%s" Version="2.0" IssueInstant="%s" Destination="%s"%s><saml:Issuer>%s</saml:Issuer><samlp:Status><samlp:StatusCode Value="%s"/></samlp:Status></samlp:Response>`,
		nsProtocol, nsAssertion, randomToken(12), ts(o.Issue), attr(o.Destination), irt, attr(o.Issuer), o.Status)
	if err := rdoc.ReadFromString(rs); err != nil {
		t.Fatal(err)
	}
	root := rdoc.Root()
	root.AddChild(ael)
	if o.ExtraAssertion {
		root.AddChild(ael.Copy())
	}
	if o.SignResponse {
		signed, err := sc.SignEnveloped(root)
		if err != nil {
			t.Fatal(err)
		}
		rdoc.SetRoot(signed)
	}
	out, err := rdoc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	if o.Comment { // after signing: canonicalization ignores comments
		out = []byte(strings.Replace(string(out), "Alice@", "Alice@<!--x-->", 1))
	}
	return base64.StdEncoding.EncodeToString(out)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
