package saml

import (
	"net/http"
	"sync"
	"time"
)

// issue starts the session of a verified login and sends the browser on:
// straight to the return URL when it is on the ACS host, else through a
// one-time handoff code to the return URL's host, where the cookie is
// set (session cookies are host-only).
func (sp *SP) issue(w http.ResponseWriter, r *http.Request, l *Login) error {
	// The return URL was checked when the login started; check it again,
	// against the configuration of now, and redirect only to what this
	// yields.
	ret, err := sp.checkReturn(l.ReturnTo)
	if err != nil {
		return &Error{Reason: ReasonBadReturn, Err: err}
	}
	now := sp.now()
	s := sp.codec.New(randomToken(18), now, l.NotAfter)
	id := s.Subject.SessionID
	s.Subject = l.Subject
	s.Subject.SessionID = id
	s.Subject.IdPSession = l.SessionIndex
	s.Subject.SubjectKey = l.NameID
	value, err := sp.codec.Seal(s)
	if err != nil {
		return err
	}
	sp.sessionIdx.add(l.NameID, l.SessionIndex, id, s.Expires, now)
	sp.metrics.login(sp.idp)
	sp.log.Info("saml login", "user", s.Subject.UserID, "session_id", id, "acr", s.Subject.ACR)
	return sp.handoffs.Finish(w, r, sp.codec, s, value, ret)
}

// sessionIndex maps the IdP's session (NameID, SessionIndex) to our
// session ids, so an IdP LogoutRequest revokes exactly those sessions. It
// is in memory and bounded; after a restart a LogoutRequest falls back to
// revoking the user.
type sessionIndex struct {
	mu sync.Mutex
	m  map[string][]indexed
}

type indexed struct {
	id      string
	expires time.Time
}

const maxIndexed = 100000

func newSessionIndex() *sessionIndex { return &sessionIndex{m: map[string][]indexed{}} }

func indexKey(nameID, sessionIndex string) string { return nameID + "\x00" + sessionIndex }

func (x *sessionIndex) add(nameID, sessionIndex, id string, expires, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.m) >= maxIndexed {
		for k, es := range x.m {
			kept := es[:0]
			for _, e := range es {
				if e.expires.After(now) {
					kept = append(kept, e)
				}
			}
			if len(kept) == 0 || len(x.m) >= maxIndexed {
				delete(x.m, k)
			} else {
				x.m[k] = kept
			}
		}
	}
	for _, k := range []string{indexKey(nameID, sessionIndex), indexKey(nameID, "")} {
		if len(x.m[k]) < 64 {
			x.m[k] = append(x.m[k], indexed{id: id, expires: expires})
		}
	}
}

// take removes and returns the session ids of (nameID, sessionIndex);
// an empty sessionIndex means every session of nameID.
func (x *sessionIndex) take(nameID, sessionIndex string) []indexed {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := indexKey(nameID, sessionIndex)
	out := x.m[k]
	delete(x.m, k)
	return out
}

// signedOut writes the page shown after a logout.
func signedOut(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.Write([]byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>` +
		`<body><h1 id="signed-out">You are signed out.</h1></body></html>`))
}
