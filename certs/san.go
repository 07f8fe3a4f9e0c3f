package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf8"
)

var (
	oidExtSAN     = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrgUnit    = asn1.ObjectIdentifier{2, 5, 4, 11}
)

// maxSANs bounds how many names one certificate may carry.
const maxSANs = 256

// GeneralName tags (RFC 5280 §4.2.1.6).
const (
	tagOtherName = 0
	tagRFC822    = 1
	tagDNS       = 2
	tagURI       = 6
)

// sans are the subject alternative names identity rules read, as written
// in the certificate (not normalized).
type sans struct {
	dns, email, uri, upn []string
}

// certSANs parses the SAN extension of c. crypto/x509 already parsed it,
// but it drops otherName entries such as the UPN and re-encodes URIs, so
// the raw extension is read again here.
func certSANs(c *x509.Certificate) (sans, error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidExtSAN) {
			return parseSANs(e.Value)
		}
	}
	return sans{}, nil
}

// parseSANs parses a SubjectAltName extension value: a SEQUENCE OF
// GeneralName. Names of kinds no rule reads are skipped.
func parseSANs(der []byte) (sans, error) {
	var s sans
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return s, fmt.Errorf("parsing subject alternative names: %w", err)
	}
	if len(rest) != 0 {
		return s, errors.New("parsing subject alternative names: trailing data")
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return s, errors.New("parsing subject alternative names: not a sequence")
	}
	b := seq.Bytes
	for n := 0; len(b) > 0; n++ {
		if n == maxSANs {
			return s, fmt.Errorf("parsing subject alternative names: more than %d names", maxSANs)
		}
		var gn asn1.RawValue
		b, err = asn1.Unmarshal(b, &gn)
		if err != nil {
			return s, fmt.Errorf("parsing subject alternative name: %w", err)
		}
		if gn.Class != asn1.ClassContextSpecific {
			return s, errors.New("parsing subject alternative name: not a GeneralName")
		}
		switch gn.Tag {
		case tagOtherName:
			if !gn.IsCompound {
				return s, errors.New("parsing otherName: not constructed")
			}
			upn, ok, err := parseOtherNameUPN(gn.Bytes)
			if err != nil {
				return s, err
			}
			if ok {
				s.upn = append(s.upn, upn)
			}
		case tagRFC822, tagDNS, tagURI:
			if gn.IsCompound {
				return s, errors.New("parsing subject alternative name: constructed string")
			}
			v := string(gn.Bytes)
			if !printableASCII(v) {
				return s, fmt.Errorf("parsing subject alternative name: %q is not printable ASCII", v)
			}
			switch gn.Tag {
			case tagRFC822:
				s.email = append(s.email, v)
			case tagDNS:
				s.dns = append(s.dns, v)
			default:
				s.uri = append(s.uri, v)
			}
		}
	}
	return s, nil
}

// parseOtherNameUPN parses the body of an otherName GeneralName
// (type-id OID, then [0] EXPLICIT value). It reports ok only for a
// Microsoft UPN (1.3.6.1.4.1.311.20.2.3), whose value must be a UTF8String
// of printable characters.
func parseOtherNameUPN(b []byte) (upn string, ok bool, err error) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(b, &oid)
	if err != nil {
		return "", false, fmt.Errorf("parsing otherName type: %w", err)
	}
	var val asn1.RawValue
	rest, err = asn1.Unmarshal(rest, &val)
	if err != nil {
		return "", false, fmt.Errorf("parsing otherName value: %w", err)
	}
	if len(rest) != 0 || val.Class != asn1.ClassContextSpecific || val.Tag != 0 || !val.IsCompound {
		return "", false, errors.New("parsing otherName value: want [0] EXPLICIT")
	}
	if !oid.Equal(oidUPN) {
		return "", false, nil
	}
	var s asn1.RawValue
	rest, err = asn1.Unmarshal(val.Bytes, &s)
	if err != nil {
		return "", false, fmt.Errorf("parsing UPN: %w", err)
	}
	if len(rest) != 0 || s.Class != asn1.ClassUniversal || s.Tag != asn1.TagUTF8String || s.IsCompound {
		return "", false, errors.New("parsing UPN: want a UTF8String")
	}
	v := string(s.Bytes)
	if !utf8.ValidString(v) {
		return "", false, errors.New("parsing UPN: invalid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", false, fmt.Errorf("parsing UPN: control character %U", r)
		}
	}
	return v, true, nil
}

// printableASCII reports whether s has only printable ASCII characters:
// identity values go into headers and logs.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
