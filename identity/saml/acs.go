package saml

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/beevik/etree"
	crewsaml "github.com/crewjam/saml"
	"github.com/crewjam/saml/xmlenc"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"

	"portcullis/enforcement"
	"portcullis/identity/session"
)

// Namespaces and fixed values.
const (
	nsProtocol  = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	nsDSig      = "http://www.w3.org/2000/09/xmldsig#"
	nsXMLEnc    = "http://www.w3.org/2001/04/xmlenc#"
	bearer      = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
)

// Bounds of an ACS request.
const (
	// MaxACSBody bounds the POST body of the ACS.
	MaxACSBody = 256 << 10
	maxNameID  = 512
	maxGroups  = 256
)

// Login is a verified assertion, reduced to what a session needs.
type Login struct {
	Subject enforcement.Subject
	// NameID and SessionIndex identify the IdP session, for logout.
	NameID, SessionIndex string
	// NotAfter caps the session (SessionNotOnOrAfter); zero if none.
	NotAfter time.Time
	// ReturnTo is where the browser goes next.
	ReturnTo string
}

// serveACS is the assertion consumer service (HTTP-POST binding).
func (sp *SP) serveACS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		sp.fail(w, r, reject(ReasonMalformed, "acs with method %s", r.Method), http.StatusMethodNotAllowed)
		return
	}
	login, err := sp.ConsumeResponse(r, w)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Reason: ReasonInternal, Err: err}
		}
		status := http.StatusForbidden
		switch e.Reason {
		case ReasonTooLarge:
			status = http.StatusRequestEntityTooLarge
		case ReasonIdPUnavailable:
			status = http.StatusServiceUnavailable
		case ReasonInternal:
			status = http.StatusServiceUnavailable
		}
		sp.fail(w, r, e, status)
		return
	}
	if err := sp.issue(w, r, login); err != nil {
		var e *Error
		if errors.As(err, &e) {
			sp.fail(w, r, e, http.StatusBadRequest)
			return
		}
		sp.fail(w, r, &Error{Reason: ReasonInternal, Err: err}, http.StatusServiceUnavailable)
	}
}

// ConsumeResponse reads and verifies the SAMLResponse posted in r. w
// receives only the bounded-body error; nothing is written on success.
// Every failure is an *[Error].
func (sp *SP) ConsumeResponse(r *http.Request, w http.ResponseWriter) (login *Login, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, MaxACSBody)
	if err := r.ParseForm(); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, reject(ReasonTooLarge, "body over %d bytes", MaxACSBody)
		}
		return nil, reject(ReasonMalformed, "form: %v", err)
	}
	raw := r.PostForm.Get("SAMLResponse")
	if raw == "" {
		return nil, reject(ReasonMalformed, "no SAMLResponse")
	}
	binding, _ := session.CookieValue(r.Header, BindingCookie)
	return sp.verify(r.Context(), raw, r.PostForm.Get("RelayState"), binding)
}

// verify runs every check on a base64 SAMLResponse; binding is the
// browser's binding cookie. It never panics: a library panic is a
// malformed response.
func (sp *SP) verify(ctx context.Context, raw, relayState, binding string) (login *Login, err error) {
	defer func() {
		if p := recover(); p != nil {
			login, err = nil, reject(ReasonMalformed, "library panic: %v", p)
		}
	}()
	m := sp.metadata()
	if m == nil {
		return nil, reject(ReasonIdPUnavailable, "no IdP metadata")
	}
	now := sp.now()
	skew := sp.cfg.MaxClockSkew.Std()

	xmlBytes, err := base64.StdEncoding.DecodeString(stripSpace(raw))
	if err != nil {
		return nil, reject(ReasonMalformed, "base64: %v", err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(xmlBytes); err != nil {
		return nil, reject(ReasonMalformed, "xml: %v", err)
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != nsProtocol {
		return nil, reject(ReasonMalformed, "root is not a samlp:Response")
	}
	if err := checkStructure(doc, root); err != nil {
		return nil, err
	}
	assertionEl, encrypted := onlyAssertion(root)
	if assertionEl == nil {
		return nil, reject(ReasonMalformed, "want exactly one Assertion or EncryptedAssertion")
	}
	responseSigned := hasSignature(root)

	// The library: signatures, Destination, Issuer, Status, decryption,
	// conditions (under its own 180 s skew), audience (our hook).
	lib := sp.lib
	lib.IDPMetadata = m.desc
	rec := &sigRecorder{allowSHA1: sp.cfg.AllowSHA1}
	lib.SignatureVerifier = rec
	acs, _ := url.Parse(sp.acsURL)
	a, err := lib.ParseXMLResponse(xmlBytes, nil, *acs)
	if err != nil {
		return nil, classify(err, rec)
	}

	// Which signatures were verified, against what the configuration asks.
	if encrypted {
		if assertionEl, err = sp.decrypt(assertionEl); err != nil {
			return nil, reject(ReasonMalformed, "decrypting assertion: %v", err)
		}
		if err := checkNoComments(assertionEl); err != nil {
			return nil, err
		}
	}
	if err := sp.checkSignatures(m, rec, responseSigned, assertionEl); err != nil {
		return nil, err
	}
	if a.ID == "" || a.ID != assertionEl.SelectAttrValue("ID", "") {
		return nil, reject(ReasonMalformed, "verified assertion is not the one in the response")
	}

	// Subject, confirmation, conditions: the library's gaps.
	if a.Subject == nil || a.Conditions == nil {
		return nil, reject(ReasonMalformed, "assertion without Subject or Conditions")
	}
	nameID, err := readNameID(assertionEl)
	if err != nil {
		return nil, err
	}
	if a.Subject.NameID == nil || a.Subject.NameID.Value != nameID {
		return nil, reject(ReasonSubjectInvalid, "NameID differs from the namespaced element")
	}
	if a.IssueInstant.After(now.Add(skew)) {
		return nil, reject(ReasonNotYetValid, "assertion issued in the future")
	}
	if len(a.Subject.SubjectConfirmations) != 1 {
		return nil, reject(ReasonSubjectInvalid, "%d SubjectConfirmations, want exactly one", len(a.Subject.SubjectConfirmations))
	}
	sc := a.Subject.SubjectConfirmations[0]
	if sc.Method != bearer || sc.SubjectConfirmationData == nil {
		return nil, reject(ReasonSubjectInvalid, "SubjectConfirmation is not bearer")
	}
	scd := sc.SubjectConfirmationData
	if scd.Recipient != sp.acsURL {
		return nil, reject(ReasonRecipientMismatch, "recipient %q", scd.Recipient)
	}
	if scd.NotOnOrAfter.IsZero() || !now.Before(scd.NotOnOrAfter.Add(skew)) {
		return nil, reject(ReasonExpired, "SubjectConfirmationData NotOnOrAfter %s", scd.NotOnOrAfter)
	}
	if !scd.NotBefore.IsZero() && scd.NotBefore.After(now.Add(skew)) {
		return nil, reject(ReasonNotYetValid, "SubjectConfirmationData NotBefore %s", scd.NotBefore)
	}
	c := a.Conditions
	if !c.NotBefore.IsZero() && c.NotBefore.After(now.Add(skew)) {
		return nil, reject(ReasonNotYetValid, "Conditions NotBefore %s", c.NotBefore)
	}
	if c.NotOnOrAfter.IsZero() || !now.Before(c.NotOnOrAfter.Add(skew)) {
		return nil, reject(ReasonExpired, "Conditions NotOnOrAfter %s", c.NotOnOrAfter)
	}
	if len(a.AuthnStatements) == 0 {
		return nil, reject(ReasonMalformed, "no AuthnStatement")
	}
	as := a.AuthnStatements[0]
	if as.SessionNotOnOrAfter != nil && !now.Before(*as.SessionNotOnOrAfter) {
		return nil, reject(ReasonExpired, "SessionNotOnOrAfter %s", *as.SessionNotOnOrAfter)
	}

	// Replay: the id is kept until no clock could still accept it.
	expires := a.IssueInstant.Add(crewsaml.MaxIssueDelay + crewsaml.MaxClockSkew + skew)
	if t := scd.NotOnOrAfter.Add(skew); t.After(expires) {
		expires = t
	}
	if t := c.NotOnOrAfter.Add(skew); t.After(expires) {
		expires = t
	}
	if max := now.Add(24 * time.Hour); expires.After(max) {
		return nil, reject(ReasonExpired, "assertion valid for more than 24h")
	}
	seen, err := sp.replay.Seen(ctx, ReplayKey(sp.idp, a.ID), expires, now)
	if err != nil {
		return nil, &Error{Reason: ReasonInternal, Err: fmt.Errorf("replay cache: %w", err)}
	}
	if seen {
		return nil, reject(ReasonReplayed, "assertion id seen before")
	}

	// InResponseTo: a request this browser started, or none at all.
	irt := root.SelectAttrValue("InResponseTo", "")
	if scd.InResponseTo != irt {
		return nil, reject(ReasonNotRequested, "InResponseTo differs between Response and SubjectConfirmationData")
	}
	login = &Login{NameID: nameID, SessionIndex: as.SessionIndex}
	if irt == "" {
		if !sp.cfg.AllowIdPInitiated {
			return nil, reject(ReasonNotRequested, "unsolicited response and allow_idp_initiated is off")
		}
		// RelayState is the IdP's to set: it passes the same rule as any
		// return URL, or the login lands on the root.
		ret, err := sp.checkReturn(relayState)
		if err != nil {
			if ret, err = sp.checkReturn("/"); err != nil {
				return nil, &Error{Reason: ReasonBadReturn, Err: err}
			}
		}
		login.ReturnTo = ret.String()
	} else {
		p, ok := sp.tracker.takeRequest(sp.cfg.Name, irt, binding, now)
		if !ok {
			return nil, reject(ReasonNotRequested, "InResponseTo names no live request of this browser")
		}
		login.ReturnTo = p.returnTo
	}
	if as.SessionNotOnOrAfter != nil {
		login.NotAfter = *as.SessionNotOnOrAfter
	}
	if err := sp.subject(a, nameID, &login.Subject); err != nil {
		return nil, err
	}
	return login, nil
}

// subject maps the assertion to the enforcement subject.
func (sp *SP) subject(a *crewsaml.Assertion, nameID string, s *enforcement.Subject) error {
	as := a.AuthnStatements[0]
	user := nameID
	if sp.cfg.Attributes.User != "" {
		vs := attrValues(a, sp.cfg.Attributes.User)
		if len(vs) != 1 {
			return reject(ReasonSubjectInvalid, "attribute %q has %d values, want 1", sp.cfg.Attributes.User, len(vs))
		}
		user = vs[0]
	}
	user = strings.ToLower(strings.TrimSpace(user))
	if user == "" || len(user) > maxNameID {
		return reject(ReasonSubjectInvalid, "empty or oversized user id")
	}
	s.UserID = user
	if vs := attrValues(a, sp.cfg.Attributes.Email); len(vs) > 0 {
		s.Email = vs[0]
	}
	if gs := attrValues(a, sp.cfg.Attributes.Groups); len(gs) > 0 {
		if len(gs) > maxGroups {
			return reject(ReasonSubjectInvalid, "%d groups, at most %d", len(gs), maxGroups)
		}
		s.Groups = gs
	}
	s.IdP = sp.idp
	s.AuthTime = as.AuthnInstant.UTC()
	if ref := as.AuthnContext.AuthnContextClassRef; ref != nil {
		s.ACR = strings.TrimSpace(ref.Value)
	}
	return nil
}

func attrValues(a *crewsaml.Assertion, name string) []string {
	var out []string
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			if at.Name != name && at.FriendlyName != name {
				continue
			}
			for _, v := range at.Values {
				if v.Value != "" {
					out = append(out, v.Value)
				}
			}
		}
	}
	return out
}

// checkAudience is the library hook: at least one AudienceRestriction,
// and each names our entity id.
func (sp *SP) checkAudience(a *crewsaml.Assertion) error {
	if a.Conditions == nil || len(a.Conditions.AudienceRestrictions) == 0 {
		return errAudience
	}
	for _, ar := range a.Conditions.AudienceRestrictions {
		if strings.TrimSpace(ar.Audience.Value) != sp.cfg.EntityID {
			return errAudience
		}
	}
	return nil
}

var errAudience = errors.New("audience restriction missing or not naming this SP")

// sigRecorder wraps signature verification so that we know which element
// the library verified, and refuses weak algorithms first.
type sigRecorder struct {
	response, assertion bool
	failed              bool
	allowSHA1           bool
}

func (s *sigRecorder) VerifySignature(vc *dsig.ValidationContext, el *etree.Element) error {
	if err := checkAlgorithms(el, s.allowSHA1); err != nil {
		s.failed = true
		return err
	}
	if _, err := vc.Validate(el); err != nil {
		s.failed = true
		return err
	}
	switch el.Tag {
	case "Response":
		s.response = true
	case "Assertion":
		s.assertion = true
	}
	return nil
}

// checkSignatures enforces signature_required.
func (sp *SP) checkSignatures(m *idpMeta, rec *sigRecorder, responseSigned bool, assertionEl *etree.Element) error {
	switch sp.cfg.SignatureRequired {
	case SignResponse:
		if !responseSigned || !rec.response {
			return reject(ReasonSignatureMissing, "the Response is not signed")
		}
	case SignEither:
		if !rec.response && !rec.assertion {
			return reject(ReasonSignatureMissing, "neither Response nor Assertion is signed")
		}
	default: // assertion
		if rec.assertion {
			return nil
		}
		if !hasSignature(assertionEl) {
			return reject(ReasonSignatureMissing, "the Assertion is not signed")
		}
		// The library skips assertion signatures under a signed
		// Response; verify it ourselves.
		if err := verifyElement(m, assertionEl, sp.cfg.AllowSHA1); err != nil {
			return reject(ReasonSignatureInvalid, "assertion: %v", err)
		}
	}
	return nil
}

// Accepted signature and digest algorithms (SHA-1 only with allow_sha1).
var (
	strongAlgs = map[string]bool{
		dsig.RSASHA256SignatureMethod: true, dsig.RSASHA384SignatureMethod: true, dsig.RSASHA512SignatureMethod: true,
		dsig.ECDSASHA256SignatureMethod: true, dsig.ECDSASHA384SignatureMethod: true, dsig.ECDSASHA512SignatureMethod: true,
		"http://www.w3.org/2001/04/xmlenc#sha256": true, "http://www.w3.org/2001/04/xmldsig-more#sha384": true,
		"http://www.w3.org/2001/04/xmlenc#sha512": true,
	}
	sha1Algs = map[string]bool{
		dsig.RSASHA1SignatureMethod: true, dsig.ECDSASHA1SignatureMethod: true, "http://www.w3.org/2000/09/xmldsig#sha1": true,
	}
)

// checkAlgorithms refuses an enveloped signature of el whose signature
// or digest method is not strong.
func checkAlgorithms(el *etree.Element, allowSHA1 bool) error {
	var sig *etree.Element
	for _, c := range el.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == nsDSig {
			sig = c
		}
	}
	if sig == nil {
		return errors.New("no signature")
	}
	var algs []string
	for _, m := range sig.FindElements("./SignedInfo/SignatureMethod") {
		algs = append(algs, m.SelectAttrValue("Algorithm", ""))
	}
	for _, m := range sig.FindElements("./SignedInfo/Reference/DigestMethod") {
		algs = append(algs, m.SelectAttrValue("Algorithm", ""))
	}
	if len(algs) < 2 {
		return errors.New("signature without SignatureMethod or DigestMethod")
	}
	for _, a := range algs {
		if !strongAlgs[a] && !(allowSHA1 && sha1Algs[a]) {
			return fmt.Errorf("signature algorithm %q is not accepted", truncate(a, 80))
		}
	}
	return nil
}

// verifyElement checks the enveloped signature of el against the IdP's
// signing certificates.
func verifyElement(m *idpMeta, el *etree.Element, allowSHA1 bool) error {
	if err := checkAlgorithms(el, allowSHA1); err != nil {
		return err
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: m.certs})
	vc.IdAttribute = "ID"
	if crewsaml.Clock != nil {
		vc.Clock = crewsaml.Clock
	}
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		return err
	}
	if ctx, err = ctx.SubContext(el); err != nil {
		return err
	}
	det, err := etreeutils.NSDetatch(ctx, el)
	if err != nil {
		return err
	}
	_, err = vc.Validate(det)
	return err
}

// decrypt returns the plaintext assertion of an EncryptedAssertion.
func (sp *SP) decrypt(enc *etree.Element) (*etree.Element, error) {
	var data *etree.Element
	for _, c := range enc.ChildElements() {
		if c.Tag == "EncryptedData" && c.NamespaceURI() == nsXMLEnc {
			data = c
		}
	}
	if data == nil {
		return nil, errors.New("no EncryptedData")
	}
	var key any = sp.key
	if kel := enc.FindElement("./EncryptedKey"); kel != nil {
		k, err := xmlenc.Decrypt(sp.key, kel)
		if err != nil {
			return nil, err
		}
		key = k
	}
	plain, err := xmlenc.Decrypt(key, data)
	if err != nil {
		return nil, err
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(plain); err != nil {
		return nil, err
	}
	el := doc.Root()
	if el == nil || el.Tag != "Assertion" || el.NamespaceURI() != nsAssertion {
		return nil, errors.New("plaintext is not an Assertion")
	}
	return el, nil
}

// checkStructure refuses documents that only wrapping attacks produce:
// an Assertion anywhere but as a direct child of the Response, more than
// one, or comments (which canonicalization drops, so they can split a
// signed value).
func checkStructure(doc *etree.Document, root *etree.Element) error {
	if err := checkNoComments(&doc.Element); err != nil {
		return err
	}
	n := 0
	var walk func(el *etree.Element, depth int) error
	walk = func(el *etree.Element, depth int) error {
		if depth > 64 {
			return reject(ReasonMalformed, "nesting deeper than 64")
		}
		for _, c := range el.ChildElements() {
			if c.Tag == "Assertion" || c.Tag == "EncryptedAssertion" {
				if el != root {
					return reject(ReasonMalformed, "%s outside the Response's children", c.Tag)
				}
				n++
			}
			if err := walk(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root, 0); err != nil {
		return err
	}
	if n != 1 {
		return reject(ReasonMalformed, "%d assertions, want exactly one", n)
	}
	return nil
}

func checkNoComments(el *etree.Element) error {
	for _, t := range el.Child {
		switch t := t.(type) {
		case *etree.Comment:
			return reject(ReasonMalformed, "XML comment in the response")
		case *etree.Element:
			if err := checkNoComments(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// onlyAssertion returns the Response's single assertion child.
func onlyAssertion(root *etree.Element) (*etree.Element, bool) {
	var found *etree.Element
	enc := false
	for _, c := range root.ChildElements() {
		if (c.Tag == "Assertion" || c.Tag == "EncryptedAssertion") && c.NamespaceURI() == nsAssertion {
			if found != nil {
				return nil, false
			}
			found, enc = c, c.Tag == "EncryptedAssertion"
		}
	}
	return found, enc
}

func hasSignature(el *etree.Element) bool {
	for _, c := range el.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == nsDSig {
			return true
		}
	}
	return false
}

// readNameID returns the text of Subject/NameID, both in the SAML
// assertion namespace, refusing anything but plain text.
func readNameID(a *etree.Element) (string, error) {
	var subj *etree.Element
	for _, c := range a.ChildElements() {
		if c.Tag == "Subject" {
			if c.NamespaceURI() != nsAssertion || subj != nil {
				return "", reject(ReasonSubjectInvalid, "Subject in the wrong namespace or repeated")
			}
			subj = c
		}
	}
	if subj == nil {
		return "", reject(ReasonMalformed, "assertion without Subject")
	}
	var nid *etree.Element
	for _, c := range subj.ChildElements() {
		if c.Tag == "NameID" {
			if c.NamespaceURI() != nsAssertion || nid != nil {
				return "", reject(ReasonSubjectInvalid, "NameID in the wrong namespace or repeated")
			}
			nid = c
		}
		if c.Tag == "EncryptedID" || c.Tag == "BaseID" {
			return "", reject(ReasonSubjectInvalid, "%s is not supported", c.Tag)
		}
	}
	if nid == nil {
		return "", reject(ReasonSubjectInvalid, "no NameID")
	}
	var b strings.Builder
	for _, t := range nid.Child {
		cd, ok := t.(*etree.CharData)
		if !ok {
			return "", reject(ReasonSubjectInvalid, "NameID is not plain text")
		}
		b.WriteString(cd.Data)
	}
	v := b.String()
	if v == "" || len(v) > maxNameID {
		return "", reject(ReasonSubjectInvalid, "empty or oversized NameID")
	}
	return v, nil
}

// classify maps a library error to a reason code.
func classify(err error, rec *sigRecorder) *Error {
	msg := err.Error()
	var ire *crewsaml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		msg = ire.PrivateErr.Error()
		var bs crewsaml.ErrBadStatus
		if errors.As(ire.PrivateErr, &bs) {
			return reject(ReasonStatus, "status %s", bs.Status)
		}
	}
	has := func(s string) bool { return strings.Contains(msg, s) }
	r := ReasonMalformed
	switch {
	case rec.failed || has("signature") || has("Signature"):
		r = ReasonSignatureInvalid
	case has("Destination"):
		r = ReasonDestinationMismatch
	case has("Recipient"):
		r = ReasonRecipientMismatch
	case has("audience"):
		r = ReasonAudienceMismatch
	case has("not yet valid"):
		r = ReasonNotYetValid
	case has("expired"):
		r = ReasonExpired
	case has("ssuer"):
		r = ReasonIssuerMismatch
	}
	return &Error{Reason: r, Err: errors.New(truncate(msg, 300))}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func stripSpace(s string) string {
	if !strings.ContainsAny(s, " \r\n\t") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\r' || r == '\n' || r == '\t' {
			return -1
		}
		return r
	}, s)
}

func sha(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// xmlMarshal renders v as an XML document.
func xmlMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	if err := xmlEncode(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
