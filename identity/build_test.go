package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"portcullis/identity/internal/flow"
	"portcullis/identity/oidc"
	"portcullis/identity/saml"
	"portcullis/internal/conf"
	"portcullis/posture"
)

type nopStore struct{}

func (nopStore) SessionRevoked(string) bool                                          { return false }
func (nopStore) UserRevokedBefore(string) time.Time                                  { return time.Time{} }
func (nopStore) Revoke(context.Context, posture.Revocation) (posture.Outcome, error) { return 0, nil }
func (nopStore) ApplyRevocations(_ context.Context, b []posture.RevocationEvent) ([]posture.Outcome, error) {
	return make([]posture.Outcome, len(b)), nil
}

func idpMetadata(t *testing.T, dir string) string {
	t.Helper()
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "idp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	md := `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.test/metadata">
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>` +
		base64.StdEncoding.EncodeToString(der) + `</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.test/sso"/>
</md:IDPSSODescriptor></md:EntityDescriptor>`
	p := filepath.Join(dir, "idp.xml")
	if err := os.WriteFile(p, []byte(md), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNew builds OIDC and SAML providers with one constructor: one
// session key file, one handoff endpoint, every provider an
// Authenticator under its policy.login name.
func TestNew(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	cfg := Config{
		OIDC: []oidc.ProviderConfig{{Name: "corp", Issuer: "https://login.example.test", ClientID: "portcullis",
			ClientSecretFile: conf.Path(secret), RedirectURL: "https://auth.example.test/.portcullis/oidc/callback"}},
		SAML: []saml.Config{{Name: "corp", IdPMetadataFile: conf.Path(idpMetadata(t, dir)), RootURL: "https://login.example.test"}},
	}
	st := NewState(nil)
	defer st.Close()
	set, err := New(t.Context(), cfg, Options{Store: nopStore{}, State: st, StateDir: dir,
		Hosts: map[string][]string{"corp": {"app.example.test"}, "saml:corp": {"wiki.example.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.Authenticator("corp").(*oidc.Provider); !ok {
		t.Errorf("Authenticator(corp) = %T", set.Authenticator("corp"))
	}
	if _, ok := set.Authenticator("saml:corp").(*saml.SP); !ok {
		t.Errorf("Authenticator(saml:corp) = %T", set.Authenticator("saml:corp"))
	}
	if set.Authenticator("other") != nil || (*Set)(nil).Authenticator("corp") != nil {
		t.Error("unknown login has an Authenticator")
	}
	for _, p := range []string{flow.HandoffPath, oidc.LogoutPath, oidc.StartPath, "/.portcullis/oidc/callback",
		"/.portcullis/saml/corp/acs", "/.portcullis/saml/corp/logout"} {
		if set.Handlers()[p] == nil {
			t.Errorf("%s not mounted", p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "session.keys")); err != nil {
		t.Errorf("session key file: %v", err)
	}
	// A reload builds again with the same state (the replay cache stays
	// open once).
	if _, err := New(t.Context(), cfg, Options{Store: nopStore{}, State: st, StateDir: dir}); err != nil {
		t.Errorf("second build: %v", err)
	}
	empty, err := New(t.Context(), Config{}, Options{})
	if err != nil || len(empty.Handlers()) != 0 {
		t.Errorf("empty config: %v %v", empty.Handlers(), err)
	}
}
