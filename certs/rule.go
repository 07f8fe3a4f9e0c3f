package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"regexp"
)

// A rule is a compiled [IdentityRule].
type rule struct {
	from string
	re   *regexp.Regexp // nil: the whole value
}

// values returns every value of the rule's kind in c.
func (r *rule) values(c *x509.Certificate) ([]string, error) {
	switch r.from {
	case FromSubjectCN:
		return subjectValues(c, oidCommonName), nil
	case FromSubjectOU:
		return subjectValues(c, oidOrgUnit), nil
	}
	s, err := certSANs(c)
	if err != nil {
		return nil, err
	}
	switch r.from {
	case FromURISAN:
		return s.uri, nil
	case FromDNSSAN:
		return s.dns, nil
	case FromEmailSAN:
		return s.email, nil
	case FromUPNSAN:
		return s.upn, nil
	}
	return nil, fmt.Errorf("unknown identity source %q", r.from)
}

func subjectValues(c *x509.Certificate, oid asn1.ObjectIdentifier) []string {
	var out []string
	for _, a := range c.Subject.Names {
		if !a.Type.Equal(oid) {
			continue
		}
		if v, ok := a.Value.(string); ok {
			out = append(out, v)
		}
	}
	return out
}

// extract returns the one value the rule picks from c. It fails with
// [CodeNoIdentity] when nothing matches and [CodeAmbiguousIdentity] when
// more than one value does.
func (r *rule) extract(c *x509.Certificate) (string, error) {
	vals, err := r.values(c)
	if err != nil {
		return "", verifyErr(CodeNoIdentity, err)
	}
	var got string
	n := 0
	for _, v := range vals {
		if r.re != nil {
			m := r.re.FindStringSubmatch(v)
			if m == nil {
				continue
			}
			v = m[1]
		}
		if v == "" || !printableUTF8(v) {
			continue
		}
		got = v
		n++
	}
	switch {
	case n == 0:
		return "", verifyErr(CodeNoIdentity, fmt.Errorf("no %s matches", r.from))
	case n > 1:
		return "", verifyErr(CodeAmbiguousIdentity, fmt.Errorf("%d values of %s match", n, r.from))
	}
	return got, nil
}

// printableUTF8 reports whether s has no control characters (subject
// attributes may be any string type).
func printableUTF8(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
			return false
		}
	}
	return true
}
