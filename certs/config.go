package certs

import (
	"errors"
	"fmt"
	"regexp"

	"portcullis/internal/conf"
)

// DefaultMaxChainDepth is max_chain_depth when the configuration leaves it
// out.
const DefaultMaxChainDepth = 4

// maxChainDepthLimit bounds max_chain_depth, and so the work path building
// may do for one handshake.
const maxChainDepthLimit = 16

// DevicesConfig is the `devices:` section of the configuration file: the
// CAs that issue device certificates and how their certificates are
// revoked.
type DevicesConfig struct {
	// CAs are the device CAs, each with its own trust bundle and identity
	// rules. A resource names the ones it trusts; none named means all.
	CAs []CAConfig `yaml:"cas"`
	// Revocation configures CRL checking for every CA above.
	Revocation RevocationConfig `yaml:"revocation"`
}

// CAConfig is one device CA.
type CAConfig struct {
	// Name identifies the CA in resources, logs and the posture key
	// (name, device id). Letters, digits, '.', '_' and '-'; unique.
	Name string `yaml:"name"`
	// Bundle is a PEM file of the CA certificates that anchor this CA's
	// chains (a root, or the issuing CA itself).
	Bundle conf.Path `yaml:"bundle"`
	// DeviceID says where the device id is in the certificate. Required.
	DeviceID IdentityRule `yaml:"device_id"`
	// User says where the user is in the certificate; the value is
	// lower-cased. Optional: without it, no user is taken.
	User *IdentityRule `yaml:"user"`
	// MaxChainDepth bounds the chain: the leaf plus the intermediates
	// below the trust anchor, not counting self-issued intermediates (key
	// rollover). Default 4, at most 16.
	MaxChainDepth int `yaml:"max_chain_depth"`
	// OCSP configures OCSP checks of this CA's device certificates (the
	// leaf only). Default off.
	OCSP OCSPConfig `yaml:"ocsp"`
}

// Sources an [IdentityRule] may read from.
const (
	FromURISAN    = "uri_san"    // a uniformResourceIdentifier SAN
	FromDNSSAN    = "dns_san"    // a dNSName SAN
	FromEmailSAN  = "email_san"  // an rfc822Name SAN
	FromUPNSAN    = "upn_san"    // a Microsoft UPN otherName SAN (1.3.6.1.4.1.311.20.2.3)
	FromSubjectCN = "subject_cn" // a commonName attribute of the subject
	FromSubjectOU = "subject_ou" // an organizationalUnitName attribute of the subject
)

var fromKinds = []string{FromURISAN, FromDNSSAN, FromEmailSAN, FromUPNSAN, FromSubjectCN, FromSubjectOU}

// An IdentityRule picks one value out of a certificate: every value of the
// kind From is tried against Pattern, and exactly one must match.
type IdentityRule struct {
	// From is where to look: uri_san, dns_san, email_san, upn_san,
	// subject_cn or subject_ou.
	From string `yaml:"from"`
	// Pattern is an RE2 regular expression with exactly one capture group,
	// whose match is the value. Anchor it (^...$). Without a pattern the
	// whole value is taken, and the certificate must hold exactly one value
	// of that kind.
	Pattern string `yaml:"pattern"`
}

// RevocationConfig configures how device certificates are checked for
// revocation.
type RevocationConfig struct {
	// CRLFiles are CRL files (PEM or DER), each checked against the
	// certificates its issuer signed. They are re-read when they change.
	CRLFiles []conf.Path `yaml:"crl_files"`
	// CRLURLs are http or https URLs of CRLs (DER or PEM). Each is fetched
	// when the gateway starts and again before its nextUpdate (at two
	// thirds of its validity), or every Refresh, whichever comes first. A
	// failed fetch keeps the last good copy. Until a URL has been fetched
	// once, it counts as a stale CRL for every issuer.
	CRLURLs []string `yaml:"crl_urls"`
	// Refresh is the longest time between two fetches of a CRL URL.
	// Default 1h.
	Refresh conf.Duration `yaml:"refresh"`
	// FetchTimeout bounds one CRL download. Default 30s.
	FetchTimeout conf.Duration `yaml:"fetch_timeout"`
	// Stale says what a CRL past its nextUpdate (or a CRL URL never fetched)
	// means: "deny" (default) refuses every certificate its issuer signed,
	// "allow" keeps using it.
	Stale string `yaml:"stale"`
}

// Values of RevocationConfig.Stale.
const (
	StaleDeny  = "deny"
	StaleAllow = "allow"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate reports every problem, each naming its key.
func (c *DevicesConfig) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, ca := range c.CAs {
		errs = append(errs, conf.AtKey(fmt.Sprintf("cas[%d]", i), ca.Validate()))
		if ca.Name != "" && seen[ca.Name] {
			errs = append(errs, conf.Errorf(fmt.Sprintf("cas[%d].name", i), "duplicate CA name %q", ca.Name))
		}
		seen[ca.Name] = true
	}
	errs = append(errs, conf.AtKey("revocation", c.Revocation.Validate()))
	return errors.Join(errs...)
}

// Validate reports every problem, each naming its key.
func (c *CAConfig) Validate() error {
	var errs []error
	switch {
	case c.Name == "":
		errs = append(errs, conf.Errorf("name", "required"))
	case !nameRE.MatchString(c.Name):
		errs = append(errs, conf.Errorf("name", "%q: use letters, digits, '.', '_' and '-' (at most 64)", c.Name))
	}
	if c.Bundle == "" {
		errs = append(errs, conf.Errorf("bundle", "required"))
	}
	errs = append(errs, conf.AtKey("device_id", c.DeviceID.Validate()))
	if c.User != nil {
		errs = append(errs, conf.AtKey("user", c.User.Validate()))
	}
	if c.MaxChainDepth < 0 || c.MaxChainDepth > maxChainDepthLimit {
		errs = append(errs, conf.Errorf("max_chain_depth", "must be between 1 and %d (0 for the default %d)", maxChainDepthLimit, DefaultMaxChainDepth))
	}
	errs = append(errs, conf.AtKey("ocsp", c.OCSP.Validate()))
	return errors.Join(errs...)
}

// Validate reports every problem, each naming its key.
func (r *IdentityRule) Validate() error {
	_, err := r.compile()
	return err
}

func (r *IdentityRule) compile() (*rule, error) {
	var errs []error
	known := false
	for _, k := range fromKinds {
		known = known || r.From == k
	}
	switch {
	case r.From == "":
		errs = append(errs, conf.Errorf("from", "required (one of %v)", fromKinds))
	case !known:
		errs = append(errs, conf.Errorf("from", "unknown source %q (want one of %v)", r.From, fromKinds))
	}
	var re *regexp.Regexp
	if r.Pattern != "" {
		var err error
		re, err = regexp.Compile(r.Pattern)
		switch {
		case err != nil:
			errs = append(errs, conf.Errorf("pattern", "%v", err))
		case re.NumSubexp() != 1:
			errs = append(errs, conf.Errorf("pattern", "must have exactly one capture group, has %d", re.NumSubexp()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &rule{from: r.From, re: re}, nil
}

// Validate reports every problem, each naming its key.
func (c *RevocationConfig) Validate() error {
	var errs []error
	switch c.Stale {
	case "", StaleDeny, StaleAllow:
	default:
		errs = append(errs, conf.Errorf("stale", "unknown value %q (want deny or allow)", c.Stale))
	}
	for i, f := range c.CRLFiles {
		if f == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("crl_files[%d]", i), "empty path"))
		}
	}
	for i, u := range c.CRLURLs {
		if err := checkHTTPURL(u); err != nil {
			errs = append(errs, conf.Errorf(fmt.Sprintf("crl_urls[%d]", i), "%v", err))
		}
	}
	if c.Refresh < 0 {
		errs = append(errs, conf.Errorf("refresh", "must not be negative"))
	}
	if c.FetchTimeout < 0 {
		errs = append(errs, conf.Errorf("fetch_timeout", "must not be negative"))
	}
	return errors.Join(errs...)
}
