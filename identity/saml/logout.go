package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/beevik/etree"
	crewsaml "github.com/crewjam/saml"

	"portcullis/identity/session"
	"portcullis/posture"
)

// maxLogoutMessage bounds an inflated logout message.
const maxLogoutMessage = 64 << 10

// revocationSource marks the revocations this package makes.
const revocationSource = "saml"

// serveLogout ends the user's session here, then, when the IdP has a
// single-logout endpoint, sends the browser there with a signed
// LogoutRequest; otherwise it shows the signed-out page. It is mounted
// behind flow.Logout: only a same-origin POST reaches it.
func (sp *SP) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		sp.fail(w, r, reject(ReasonMalformed, "logout with method %s", r.Method), http.StatusMethodNotAllowed)
		return
	}
	v, ok := session.CookieValue(r.Header, sp.codec.Name())
	sp.codec.Clear(w)
	if !ok {
		signedOut(w)
		return
	}
	s, err := sp.codec.Open(v, sp.now())
	if err != nil {
		signedOut(w)
		return
	}
	if sp.revoker != nil {
		if _, err := sp.revoker.Revoke(r.Context(), posture.Revocation{Kind: posture.RevokeSession, Session: s.Subject.SessionID,
			User: s.Subject.UserID, Source: revocationSource, Reasons: []string{"saml.logout"}, ExpiresAt: s.Expires}); err != nil {
			sp.log.Error("saml logout: revoking the session failed", "error", err)
		}
	}
	sp.sessionIdx.take(s.Subject.SubjectKey, s.Subject.IdPSession)
	m := sp.metadata()
	if m == nil || m.sloURL == "" || s.Subject.SubjectKey == "" {
		signedOut(w)
		return
	}
	u, err := sp.logoutRequestURL(m, s.Subject.SubjectKey, s.Subject.IdPSession)
	if err != nil {
		sp.log.Error("saml logout request", "error", err)
		signedOut(w)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusFound)
}

func (sp *SP) logoutRequestURL(m *idpMeta, nameID, sessionIndex string) (string, error) {
	lib := sp.lib
	lib.IDPMetadata = m.desc
	lib.SignatureMethod = ""
	req, err := lib.MakeLogoutRequest(m.sloURL, nameID)
	if err != nil {
		return "", err
	}
	if sessionIndex != "" {
		req.SessionIndex = &crewsaml.SessionIndex{Value: sessionIndex}
	}
	lib.SignatureMethod = sp.lib.SignatureMethod
	if err := lib.SignLogoutRequest(req); err != nil {
		return "", err
	}
	return req.Redirect("").String(), nil
}

// serveSLO receives the IdP's single-logout messages: a LogoutRequest
// (the user logged out elsewhere: revoke the sessions it names, answer
// with a LogoutResponse), or the LogoutResponse that ends a logout we
// started (our session is already gone).
func (sp *SP) serveSLO(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxACSBody)
	if err := r.ParseForm(); err != nil {
		sp.fail(w, r, reject(ReasonMalformed, "form: %v", err), http.StatusBadRequest)
		return
	}
	if r.Form.Get("SAMLResponse") != "" {
		signedOut(w)
		return
	}
	m := sp.metadata()
	if m == nil {
		sp.fail(w, r, reject(ReasonIdPUnavailable, "no IdP metadata"), http.StatusServiceUnavailable)
		return
	}
	req, err := sp.readLogoutRequest(r, m)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Reason: ReasonMalformed, Err: err}
		}
		sp.fail(w, r, e, http.StatusBadRequest)
		return
	}
	if err := sp.revokeFor(r.Context(), req); err != nil {
		sp.fail(w, r, &Error{Reason: ReasonInternal, Err: err}, http.StatusServiceUnavailable)
		return
	}
	if m.sloURL == "" {
		signedOut(w)
		return
	}
	lib := sp.lib
	lib.IDPMetadata = m.desc
	u, err := lib.MakeRedirectLogoutResponse(req.ID, r.Form.Get("RelayState"))
	if err != nil {
		signedOut(w)
		return
	}
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// readLogoutRequest decodes and authenticates an IdP LogoutRequest, in
// the HTTP-Redirect binding (query signature) or HTTP-POST binding
// (enveloped signature).
func (sp *SP) readLogoutRequest(r *http.Request, m *idpMeta) (*crewsaml.LogoutRequest, error) {
	raw := r.Form.Get("SAMLRequest")
	if raw == "" {
		return nil, reject(ReasonMalformed, "no SAMLRequest")
	}
	data, err := base64.StdEncoding.DecodeString(stripSpace(raw))
	if err != nil {
		return nil, reject(ReasonMalformed, "base64: %v", err)
	}
	redirect := r.Method == http.MethodGet
	if redirect {
		data, err = io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data)), maxLogoutMessage+1))
		if err != nil || len(data) > maxLogoutMessage {
			return nil, reject(ReasonMalformed, "inflating the request failed or is too large")
		}
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(data); err != nil {
		return nil, reject(ReasonMalformed, "xml: %v", err)
	}
	root := doc.Root()
	if root == nil || root.Tag != "LogoutRequest" || root.NamespaceURI() != nsProtocol {
		return nil, reject(ReasonMalformed, "not a LogoutRequest")
	}
	if err := checkNoComments(&doc.Element); err != nil {
		return nil, err
	}
	switch {
	case redirect && r.URL.Query().Get("Signature") != "":
		if err := verifyRedirectSignature(r.URL.RawQuery, m); err != nil {
			return nil, reject(ReasonSignatureInvalid, "logout request: %v", err)
		}
	case hasSignature(root):
		if err := verifyElement(m, root, sp.cfg.AllowSHA1); err != nil {
			return nil, reject(ReasonSignatureInvalid, "logout request: %v", err)
		}
	default:
		return nil, reject(ReasonSignatureMissing, "unsigned logout request")
	}
	var req crewsaml.LogoutRequest
	if err := xmlUnmarshalElement(root, &req); err != nil {
		return nil, reject(ReasonMalformed, "logout request: %v", err)
	}
	now := sp.now()
	skew := sp.cfg.MaxClockSkew.Std()
	if req.Issuer == nil || req.Issuer.Value != m.desc.EntityID {
		return nil, reject(ReasonIssuerMismatch, "logout request issuer")
	}
	if req.Destination != "" && req.Destination != sp.sloURL {
		return nil, reject(ReasonDestinationMismatch, "logout request destination %q", req.Destination)
	}
	if req.IssueInstant.Add(crewsaml.MaxIssueDelay+skew).Before(now) || req.IssueInstant.After(now.Add(skew)) {
		return nil, reject(ReasonExpired, "logout request issued at %s", req.IssueInstant)
	}
	if req.NotOnOrAfter != nil && !now.Before(req.NotOnOrAfter.Add(skew)) {
		return nil, reject(ReasonExpired, "logout request NotOnOrAfter")
	}
	if req.NameID == nil || req.NameID.Value == "" {
		return nil, reject(ReasonSubjectInvalid, "logout request without NameID")
	}
	return &req, nil
}

// revokeFor revokes the sessions a LogoutRequest names: by session index
// when we know it, else every session of the NameID we know, else (after
// a restart) the user, when the NameID is the user id.
func (sp *SP) revokeFor(ctx context.Context, req *crewsaml.LogoutRequest) error {
	if sp.revoker == nil {
		return errors.New("no revocation store")
	}
	idx := ""
	if req.SessionIndex != nil {
		idx = req.SessionIndex.Value
	}
	now := sp.now()
	ids := sp.sessionIdx.take(req.NameID.Value, idx)
	if idx != "" {
		sp.sessionIdx.take(req.NameID.Value, "")
	}
	for _, e := range ids {
		if _, err := sp.revoker.Revoke(ctx, posture.Revocation{Kind: posture.RevokeSession, Session: e.id, Source: revocationSource,
			Reasons: []string{"saml.idp_logout"}, ExpiresAt: e.expires}); err != nil {
			return err
		}
	}
	if len(ids) == 0 && sp.cfg.Attributes.User == "" {
		_, err := sp.revoker.Revoke(ctx, posture.Revocation{Kind: posture.RevokeUser, User: strings.ToLower(req.NameID.Value),
			Before: now.Add(time.Second), Source: revocationSource, Reasons: []string{"saml.idp_logout"}})
		return err
	}
	sp.log.Info("saml idp logout", "sessions", len(ids))
	return nil
}

// verifyRedirectSignature checks the query signature of the HTTP-Redirect
// binding over the raw SAMLRequest, RelayState and SigAlg parameters.
// SHA-1 is refused.
func verifyRedirectSignature(rawQuery string, m *idpMeta) error {
	var parts [3]string // raw SAMLRequest=, RelayState=, SigAlg= pairs, as received
	var sig string
	for _, kv := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "SAMLRequest":
			parts[0] = kv
		case "RelayState":
			parts[1] = kv
		case "SigAlg":
			parts[2] = kv
		case "Signature":
			sig = v
		}
	}
	if parts[0] == "" || parts[2] == "" || sig == "" {
		return errors.New("missing SigAlg or Signature")
	}
	signed := parts[0]
	if parts[1] != "" {
		signed += "&" + parts[1]
	}
	signed += "&" + parts[2]
	alg, err := url.QueryUnescape(strings.TrimPrefix(parts[2], "SigAlg="))
	if err != nil {
		return err
	}
	sigText, err := url.QueryUnescape(sig)
	if err != nil {
		return err
	}
	sigBytes, err := base64.StdEncoding.DecodeString(sigText)
	if err != nil {
		return err
	}
	var h crypto.Hash
	var sum []byte
	switch alg {
	case "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256":
		s := sha256.Sum256([]byte(signed))
		h, sum = crypto.SHA256, s[:]
	case "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512":
		s := sha512.Sum512([]byte(signed))
		h, sum = crypto.SHA512, s[:]
	default:
		return errors.New("signature algorithm not accepted: " + truncate(alg, 80))
	}
	for _, c := range m.certs {
		switch pub := c.PublicKey.(type) {
		case *rsa.PublicKey:
			if strings.Contains(alg, "rsa-") && rsa.VerifyPKCS1v15(pub, h, sum, sigBytes) == nil {
				return nil
			}
		case *ecdsa.PublicKey:
			if strings.Contains(alg, "ecdsa-") && ecdsa.VerifyASN1(pub, sum, sigBytes) {
				return nil
			}
		}
	}
	return errors.New("no IdP signing key verifies the signature")
}

func xmlUnmarshalElement(el *etree.Element, v any) error {
	doc := etree.NewDocument()
	doc.SetRoot(el.Copy())
	b, err := doc.WriteToBytes()
	if err != nil {
		return err
	}
	return xmlUnmarshal(b, v)
}
