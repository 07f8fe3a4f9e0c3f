package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// cookieName is the console's session cookie. It is scoped to /console/,
// HttpOnly, SameSite=Strict, and Secure whenever the console is served
// over TLS.
const cookieName = "portcullis_console"

// maxCookieLen bounds the cookie value read, before any decoding.
const maxCookieLen = 2048

// errBadSession is every reason a cookie is not a valid session; the
// operator is simply asked to sign in again.
var errBadSession = errors.New("console: not a valid session")

// session is what the sealed cookie carries: who signed in, how, until
// when, and the CSRF token every form of the session must return. A
// session made on the console host (Host) is bound to the gateway login
// it was made for: its operator, provider and login session.
type session struct {
	ID       string `json:"sid"`
	CSRF     string `json:"csrf"`
	Operator string `json:"op"`
	IdP      string `json:"idp"`
	Issued   int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	Host     bool   `json:"host,omitempty"`
	Login    string `json:"login,omitempty"` // the gateway login session's id, on the host
}

// sealer encrypts sessions with AES-256-GCM. Its keys come from
// admin.console.session_key_file, so that sessions hold across replicas
// and restarts, or else from a key made at start: a sign-in then does
// not outlive the process. mu guards ended.
type sealer struct {
	aeads []cipher.AEAD // the first seals; each opens

	mu    sync.Mutex
	ended map[string]int64 // session ids signed out before they expired → expiry
}

// sealerKeyLabel separates the console's use of a key file's keys from
// any other use of the same file (such as identity.session.key_file).
const sealerKeyLabel = "portcullis admin console session v1"

// newSealer returns a sealer over keys (the first seals, every one
// opens), or over a random key when keys is empty. Each key is used
// through HMAC-SHA256 with a label of its own.
func newSealer(keys [][]byte) (*sealer, error) {
	if len(keys) == 0 {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		keys = [][]byte{k}
	}
	x := &sealer{ended: map[string]int64{}}
	for _, k := range keys {
		if len(k) < 32 {
			return nil, errors.New("console: a session key is shorter than 32 bytes")
		}
		m := hmac.New(sha256.New, k)
		m.Write([]byte(sealerKeyLabel))
		block, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		x.aeads = append(x.aeads, aead)
	}
	return x, nil
}

// newSession returns a session for operator, signed in through idp, valid
// from now for maxAge.
func newSession(operator, idp string, now time.Time, maxAge time.Duration) *session {
	return &session{ID: randomToken(), CSRF: randomToken(), Operator: operator, IdP: idp,
		Issued: now.Unix(), Expires: now.Add(maxAge).Unix()}
}

func randomToken() string {
	var b [18]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// seal encrypts s for the cookie, bound to the cookie's name.
func (x *sealer) seal(s *session) string {
	plain, _ := json.Marshal(s)
	a := x.aeads[0]
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(a.Seal(nonce, nonce, plain, []byte(cookieName)))
}

// open decrypts and checks a cookie value: it must be sealed under one
// of the sealer's keys, unexpired at now, and not signed out here.
func (x *sealer) open(value string, now time.Time) (*session, error) {
	if len(value) > maxCookieLen {
		return nil, errBadSession
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return nil, errBadSession
	}
	for _, a := range x.aeads {
		n := a.NonceSize()
		if len(raw) < n+a.Overhead() {
			return nil, errBadSession
		}
		if plain, err := a.Open(nil, raw[:n], raw[n:], []byte(cookieName)); err == nil {
			return checkSession(plain, now, x.signedOut)
		}
	}
	return nil, errBadSession
}

// checkSession decodes a decrypted session and checks its fields; it is
// the parser behind open, fuzzed on its own.
func checkSession(plain []byte, now time.Time, signedOut func(string) bool) (*session, error) {
	var s session
	dec := json.NewDecoder(strings.NewReader(string(plain)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || dec.More() {
		return nil, errBadSession
	}
	switch {
	case len(s.ID) < 16, len(s.CSRF) < 16, s.Operator == "", s.IdP == "":
		return nil, errBadSession
	case now.Unix() >= s.Expires, s.Issued > now.Unix()+60:
		return nil, errBadSession
	case signedOut(s.ID):
		return nil, errBadSession
	}
	return &s, nil
}

// end remembers that s was signed out, until it would have expired.
func (x *sealer) end(s *session, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for id, exp := range x.ended {
		if now.Unix() >= exp {
			delete(x.ended, id)
		}
	}
	x.ended[s.ID] = s.Expires
}

func (x *sealer) signedOut(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.ended[id]
	return ok
}

// setCookie sends the sealed session; maxAge < 0 deletes it.
func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: cookieName, Value: value, Path: "/console/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(maxAge / time.Second)}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// sameOrigin reports why a state-changing request did not come from the
// console's own pages, or "" when it did. A browser says where a request
// comes from in Sec-Fetch-Site and Origin; a request with neither is not
// from a browser, and the CSRF token alone guards it.
func sameOrigin(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return "the request came from another site (Sec-Fetch-Site: " + site + ")"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if err != nil || u.Scheme != scheme || !strings.EqualFold(u.Host, r.Host) || u.Path != "" {
		return "the request came from another origin"
	}
	return ""
}

// validCSRF reports whether the form's CSRF token is the session's.
func validCSRF(s *session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF)) == 1
}
