package session

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Box seals small values (login state, one-time handoffs) under the
// session keys. Each value is bound to a purpose string, so a value
// sealed for one purpose never opens for another.
type Box struct {
	keys []boxKey
}

type boxKey struct {
	id  [4]byte
	key []byte
}

// NewBox returns a box over keys; the first seals, all open.
func NewBox(keys [][]byte) (*Box, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	b := &Box{}
	for _, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("session key is %d bytes, want %d", len(k), KeySize)
		}
		b.keys = append(b.keys, boxKey{id: keyID(k), key: k})
	}
	return b, nil
}

// Seal encrypts plain for purpose, as base64url.
func (b *Box) Seal(purpose string, plain []byte) string {
	k := &b.keys[0]
	a, _ := chacha20poly1305.NewX(k.key)
	out := make([]byte, 4+nonceSize, overhead+len(plain))
	copy(out, k.id[:])
	rand.Read(out[4:])
	out = a.Seal(out, out[4:4+nonceSize], plain, append([]byte(purpose), k.id[:]...))
	return base64.RawURLEncoding.EncodeToString(out)
}

// Open decrypts a value sealed for purpose.
func (b *Box) Open(purpose, value string) ([]byte, error) {
	if len(value) > 2*maxCookie {
		return nil, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < overhead {
		return nil, ErrMalformed
	}
	for i := range b.keys {
		k := &b.keys[i]
		if [4]byte(raw[:4]) != k.id {
			continue
		}
		a, _ := chacha20poly1305.NewX(k.key)
		plain, err := a.Open(nil, raw[4:4+nonceSize], raw[4+nonceSize:], append([]byte(purpose), k.id[:]...))
		if err != nil {
			return nil, ErrMalformed
		}
		return plain, nil
	}
	return nil, ErrMalformed
}
