package saml

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzACS feeds arbitrary response documents to the ACS checks, and
// arbitrary bodies to the handler: nothing panics, nothing is accepted
// (no input can carry a valid signature for a pending request), and no
// answer is a 500.
func FuzzACS(f *testing.F) {
	fx := newFixture(f, nil)
	id, binding := fx.startLogin(f, "/")
	good := resp{InResponseTo: id, SignAssertion: true}.build(f, fx)
	x, _ := base64.StdEncoding.DecodeString(good)
	f.Add(x)
	f.Add([]byte(strings.Replace(string(x), "Alice@", "Alice@<!---->", 1)))
	f.Add([]byte(strings.Replace(string(x), "saml:Subject", "saml:Subjekt", 2)))
	f.Add([]byte(`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><Assertion xmlns="urn:oasis:names:tc:SAML:2.0:assertion"/></samlp:Response>`))
	f.Add([]byte("<a"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		if string(doc) == string(x) {
			return // the one good response (the first use succeeds)
		}
		b64 := base64.StdEncoding.EncodeToString(doc)
		if login, err := fx.sp.verify(t.Context(), b64, "", binding); err == nil {
			t.Fatalf("accepted %q as %q", doc, login.Subject.UserID)
		}
		for _, body := range []string{url.Values{"SAMLResponse": {b64}}.Encode(), string(doc)} {
			w := fx.post("", binding, body)
			if w.Code == http.StatusInternalServerError || w.Code < 400 {
				t.Fatalf("status %d for %q", w.Code, body)
			}
		}
	})
}

// FuzzMetadata parses arbitrary IdP metadata without panicking.
func FuzzMetadata(f *testing.F) {
	f.Add([]byte(idpMetadataXML(testKeys()[0].cert)))
	f.Add([]byte(`<EntitiesDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata"/>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseMetadata(data)
	})
}
