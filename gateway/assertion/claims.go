package assertion

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

var b64 = base64.RawURLEncoding

// Claims is the identity an assertion vouches for. Two Claims with equal
// fields share a cached token.
type Claims struct {
	Resource string   // "aud": the resource the request is for
	UserID   string   // "sub"; empty for a device-only request
	Email    string   // "email"
	Groups   []string // "groups"
	DeviceID string   // "device_id"
	DeviceCA string   // "device_ca": the name of the CA that vouched for the device
}

func (c *Claims) equal(o *Claims) bool {
	return c.Resource == o.Resource && c.UserID == o.UserID && c.Email == o.Email &&
		c.DeviceID == o.DeviceID && c.DeviceCA == o.DeviceCA && slices.Equal(c.Groups, o.Groups)
}

// payload is the JWT claims set.
type payload struct {
	Issuer    string   `json:"iss"`
	Audience  string   `json:"aud"`
	Subject   string   `json:"sub,omitempty"`
	Email     string   `json:"email,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	DeviceID  string   `json:"device_id,omitempty"`
	DeviceCA  string   `json:"device_ca,omitempty"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
	Expiry    int64    `json:"exp"`
	ID        string   `json:"jti"`
}

// Assertion returns a compact ES256 JWT for c. A token for the same
// claims is reused until less than half its lifetime remains, so its
// "jti" identifies the token, not the request: an upstream must not use
// it to detect replays.
func (s *Signer) Assertion(c Claims) (string, error) {
	now := s.now()
	k := s.key.Load()
	h := s.cache.hash(&c)
	if tok, ok := s.cache.get(h, &c, k.gen, now); ok {
		return tok, nil
	}
	tok, err := s.sign(k, &c, now)
	if err != nil {
		return "", err
	}
	s.cache.put(h, &c, tok, k.gen, now.Add(s.lifetime/2))
	return tok, nil
}

func (s *Signer) sign(k *signingKey, c *Claims, now time.Time) (string, error) {
	var jti [16]byte
	rand.Read(jti[:]) // never fails (crypto/rand panics instead)
	iat := now.Unix()
	body, err := json.Marshal(&payload{
		Issuer:    s.issuer,
		Audience:  c.Resource,
		Subject:   c.UserID,
		Email:     c.Email,
		Groups:    c.Groups,
		DeviceID:  c.DeviceID,
		DeviceCA:  c.DeviceCA,
		IssuedAt:  iat,
		NotBefore: iat,
		Expiry:    now.Add(s.lifetime).Unix(),
		ID:        b64.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", fmt.Errorf("assertion: %w", err)
	}
	jws, err := k.signer.Sign(body)
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	return tok, nil
}
