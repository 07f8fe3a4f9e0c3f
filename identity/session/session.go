package session

import (
	"encoding/binary"
	"errors"
	"time"

	"portcullis/enforcement"
)

// Session is one login, as its cookie holds it. The identity is an
// [enforcement.Subject], whose SessionID is the session id, whose IdP
// names the provider, and whose IdPSession and SubjectKey are the
// provider's session and subject as revocation keys (so a back-channel
// logout by sid or sub reaches this session); the rest is bookkeeping.
type Session struct {
	Subject enforcement.Subject
	// Issued is when the login completed; Refreshed when the cookie was
	// last re-issued (the idle timeout counts from it); Expires is the
	// absolute end.
	Issued, Refreshed, Expires time.Time

	// inline backs Groups and AMR after a decode, so that decoding
	// allocates nothing for them in the common case.
	inline [inlineStrings]string
}

const (
	formatVersion = 1
	inlineStrings = 16
	// maxList bounds the groups and amr values of a session.
	maxList = 256
	// maxPlain bounds the encoded session; with sealing and base64 the
	// cookie stays under browsers' 4096-byte limit.
	maxPlain = 2900
)

var (
	// ErrMalformed is a cookie that does not decrypt or parse: tampered,
	// truncated, or sealed with a key no longer in the key file.
	ErrMalformed = errors.New("session cookie is malformed or not ours")
	// ErrTooLarge is a session whose cookie would exceed the browser
	// limit (usually: too many groups).
	ErrTooLarge = errors.New("session is too large for a cookie")
)

// appendSession encodes s: a version byte, four times as varints of Unix
// seconds, seven length-prefixed strings, the two list lengths, then the
// groups and the amr values, each length-prefixed.
func appendSession(b []byte, s *Session) []byte {
	b = append(b, formatVersion)
	for _, t := range [...]time.Time{s.Issued, s.Refreshed, s.Expires, s.Subject.AuthTime} {
		b = binary.AppendVarint(b, unixOrZero(t))
	}
	for _, v := range [...]string{s.Subject.SessionID, s.Subject.IdP, s.Subject.UserID, s.Subject.Email, s.Subject.ACR, s.Subject.IdPSession, s.Subject.SubjectKey} {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Subject.Groups)))
	b = binary.AppendUvarint(b, uint64(len(s.Subject.AMR)))
	for _, l := range [...][]string{s.Subject.Groups, s.Subject.AMR} {
		for _, v := range l {
			b = appendString(b, v)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// parseSession decodes what appendSession wrote. Every string of the
// result is a substring of one copy of plain; the lists use the inline
// array when they fit, so the common case allocates twice.
func parseSession(plain []byte) (*Session, error) {
	if len(plain) < 1 || plain[0] != formatVersion {
		return nil, ErrMalformed
	}
	p := parser{s: string(plain), i: 1}
	s := new(Session)
	var times [4]int64
	for i := range times {
		times[i] = p.varint()
	}
	s.Issued, s.Refreshed, s.Expires = timeOrZero(times[0]), timeOrZero(times[1]), timeOrZero(times[2])
	s.Subject.AuthTime = timeOrZero(times[3])
	for _, dst := range [...]*string{&s.Subject.SessionID, &s.Subject.IdP, &s.Subject.UserID, &s.Subject.Email, &s.Subject.ACR, &s.Subject.IdPSession, &s.Subject.SubjectKey} {
		*dst = p.str()
	}
	ng, na := p.uvarint(), p.uvarint()
	if p.bad || ng > maxList || na > maxList {
		return nil, ErrMalformed
	}
	var buf []string
	if ng+na <= inlineStrings {
		buf = s.inline[:0]
	} else {
		buf = make([]string, 0, ng+na)
	}
	for range ng + na {
		buf = append(buf, p.str())
	}
	if ng > 0 {
		s.Subject.Groups = buf[:ng:ng]
	}
	if na > 0 {
		s.Subject.AMR = buf[ng : ng+na : ng+na]
	}
	if p.bad || p.i != len(p.s) || s.Subject.SessionID == "" {
		return nil, ErrMalformed
	}
	return s, nil
}

// parser reads the encoding; bad records the first problem, after which
// reads return zero values.
type parser struct {
	s   string
	i   int
	bad bool
}

func (p *parser) uvarint() uint64 {
	var x uint64
	var shift uint
	for k := 0; k < binary.MaxVarintLen64; k++ {
		if p.i >= len(p.s) {
			p.bad = true
			return 0
		}
		c := p.s[p.i]
		p.i++
		if c < 0x80 {
			if k == binary.MaxVarintLen64-1 && c > 1 {
				p.bad = true
				return 0
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	p.bad = true
	return 0
}

func (p *parser) varint() int64 {
	ux := p.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (p *parser) str() string {
	n := p.uvarint()
	if p.bad || n > uint64(len(p.s)-p.i) {
		p.bad = true
		return ""
	}
	v := p.s[p.i : p.i+int(n)]
	p.i += int(n)
	return v
}
