package assertion_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"portcullis/gateway/assertion"
)

// Identity is what an upstream learns from a verified assertion.
type Identity struct {
	jwt.Claims
	Email    string   `json:"email"`
	Groups   []string `json:"groups"`
	DeviceID string   `json:"device_id"`
	DeviceCA string   `json:"device_ca"`
}

// verifyAssertion is what an upstream does with the X-Portcullis-Assertion
// header: check the signature against the gateway's JWKS, then the
// issuer, audience (its own resource name) and validity period.
func verifyAssertion(token string, keys *jose.JSONWebKeySet, resource string) (*Identity, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, err
	}
	matching := keys.Key(tok.Headers[0].KeyID)
	if len(matching) == 0 {
		return nil, errors.New("unknown key: refetch the JWKS")
	}
	var id Identity
	if err := tok.Claims(matching[0].Key, &id); err != nil {
		return nil, err
	}
	if err := id.Validate(jwt.Expected{
		Issuer:      "portcullis",
		AnyAudience: jwt.Audience{resource},
		Time:        time.Now(),
	}); err != nil {
		return nil, err
	}
	return &id, nil
}

func Example_verify() {
	dir, _ := os.MkdirTemp("", "assertion")
	defer os.RemoveAll(dir)
	signer, _ := assertion.Open(dir, assertion.Options{})

	// The gateway serves the JWKS; the upstream fetches it (and caches it
	// for at most the Cache-Control max-age).
	gw := httptest.NewServer(signer.Handler())
	defer gw.Close()
	res, err := http.Get(gw.URL + "/.well-known/portcullis/jwks.json")
	if err != nil {
		panic(err)
	}
	var keys jose.JSONWebKeySet
	json.NewDecoder(res.Body).Decode(&keys)
	res.Body.Close()

	token, _ := signer.Assertion(assertion.Claims{
		Resource: "wiki",
		UserID:   "alice",
		Email:    "alice@example.com",
		Groups:   []string{"eng"},
		DeviceID: "3f2a9c1e-0000-4000-8000-000000000001",
		DeviceCA: "ivanti",
	})
	id, err := verifyAssertion(token, &keys, "wiki")
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	fmt.Println(id.Subject, id.Email, id.Groups, id.DeviceCA)
	_, err = verifyAssertion(token, &keys, "git")
	fmt.Println(err != nil)
	// Output:
	// alice alice@example.com [eng] ivanti
	// true
}
