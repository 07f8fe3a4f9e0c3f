package saml

import (
	"errors"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"portcullis/internal/conf"
)

// Defaults for [Config].
const (
	DefaultMaxClockSkew    = time.Minute
	DefaultMetadataRefresh = time.Hour
	// MaxClockSkewLimit bounds max_clock_skew; the library's own (global)
	// skew is 180 s, so a larger value would not take effect anyway.
	MaxClockSkewLimit = 3 * time.Minute
	// DefaultEmailAttribute and DefaultGroupsAttribute name the attributes
	// read when the configuration names none.
	DefaultEmailAttribute  = "mail"
	DefaultGroupsAttribute = "groups"
)

// Signature requirements accepted by Config.SignatureRequired.
const (
	SignAssertion = "assertion"
	SignResponse  = "response"
	SignEither    = "either"
)

// PathPrefix starts the path of every SP endpoint.
const PathPrefix = "/.portcullis/saml/"

// Config is one SAML identity provider (an entry of `identity.saml:`).
type Config struct {
	// Name identifies the provider: policies say `login: saml:NAME`, and
	// its endpoints live under /.portcullis/saml/NAME/. Lower-case
	// letters, digits, '-' and '_', at most 32.
	Name string `yaml:"name"`
	// IdPMetadataFile is the IdP's metadata XML, pinned on disk. Exactly
	// one of idp_metadata_file and idp_metadata_url is set.
	IdPMetadataFile conf.Path `yaml:"idp_metadata_file"`
	// IdPMetadataURL is where the IdP's metadata is fetched (https, or
	// http on a loopback address), and re-fetched every metadata_refresh;
	// the last good copy stays in use when a fetch fails.
	IdPMetadataURL string `yaml:"idp_metadata_url"`
	// EntityID is the SP's entity id, the audience assertions must name.
	// Default: ROOT_URL/.portcullis/saml/NAME/metadata.
	EntityID string `yaml:"entity_id"`
	// RootURL is the https base URL whose /.portcullis/saml/NAME/ paths
	// are the SP's endpoints, e.g. https://login.example.com. Required.
	RootURL string `yaml:"root_url"`
	// KeyFile and CertFile are the SP's signing and decryption key (PEM,
	// RSA) and its certificate. Both empty: saml-NAME.key and
	// saml-NAME.crt in the state directory, created when missing.
	KeyFile  conf.Path `yaml:"key_file"`
	CertFile conf.Path `yaml:"cert_file"`
	// Attributes says which assertion attributes carry the identity.
	Attributes Attributes `yaml:"attributes"`
	// AllowIdPInitiated accepts responses no AuthnRequest asked for
	// (IdP-initiated login). Default false. Replays are refused either way.
	AllowIdPInitiated bool `yaml:"allow_idp_initiated"`
	// SignatureRequired is what must carry a valid IdP signature:
	// "assertion" (default), "response", or "either".
	SignatureRequired string `yaml:"signature_required"`
	// AllowSHA1 accepts XML signatures and digests made with SHA-1, for
	// IdPs that cannot be moved to SHA-256. Default false: refused.
	AllowSHA1 bool `yaml:"allow_sha1"`
	// MaxClockSkew is the tolerance on NotBefore and NotOnOrAfter
	// (default 1m, at most 3m).
	MaxClockSkew conf.Duration `yaml:"max_clock_skew"`
	// MetadataRefresh is how often idp_metadata_url is fetched again
	// (default 1h, at least 1m).
	MetadataRefresh conf.Duration `yaml:"metadata_refresh"`
}

// Attributes names the assertion attributes (by Name or FriendlyName)
// that carry the user's identity.
type Attributes struct {
	// User is the user id attribute. Default: the assertion's NameID.
	User string `yaml:"user"`
	// Email is the e-mail attribute (default "mail").
	Email string `yaml:"email"`
	// Groups is the multi-valued group attribute (default "groups").
	Groups string `yaml:"groups"`
}

// ApplyDefaults fills the unset fields that have defaults.
func (c *Config) ApplyDefaults() {
	if c.SignatureRequired == "" {
		c.SignatureRequired = SignAssertion
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = conf.Duration(DefaultMaxClockSkew)
	}
	if c.MetadataRefresh == 0 {
		c.MetadataRefresh = conf.Duration(DefaultMetadataRefresh)
	}
	if c.Attributes.Email == "" {
		c.Attributes.Email = DefaultEmailAttribute
	}
	if c.Attributes.Groups == "" {
		c.Attributes.Groups = DefaultGroupsAttribute
	}
	if c.EntityID == "" && c.RootURL != "" {
		c.EntityID = c.endpoint("metadata")
	}
}

// endpoint returns the absolute URL of one of the SP's endpoints.
func (c *Config) endpoint(name string) string {
	return strings.TrimRight(c.RootURL, "/") + PathPrefix + c.Name + "/" + name
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// Validate reports every problem in c, keys relative to the entry.
func (c *Config) Validate() error {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, conf.Errorf("name", "must be 1-32 lower-case letters, digits, '-' or '_', starting with a letter or digit"))
	}
	switch {
	case c.IdPMetadataFile == "" && c.IdPMetadataURL == "":
		errs = append(errs, conf.Errorf("idp_metadata_file", "one of idp_metadata_file and idp_metadata_url is required"))
	case c.IdPMetadataFile != "" && c.IdPMetadataURL != "":
		errs = append(errs, conf.Errorf("idp_metadata_url", "set only one of idp_metadata_file and idp_metadata_url"))
	case c.IdPMetadataURL != "":
		if err := checkURL(c.IdPMetadataURL, true); err != nil {
			errs = append(errs, conf.Errorf("idp_metadata_url", "%v", err))
		}
	}
	if c.RootURL == "" {
		errs = append(errs, conf.Errorf("root_url", "is required"))
	} else if err := checkURL(c.RootURL, true); err != nil {
		errs = append(errs, conf.Errorf("root_url", "%v", err))
	} else if u, _ := url.Parse(c.RootURL); strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, conf.Errorf("root_url", "must be a scheme and host only, without path or query"))
	}
	if len(c.EntityID) > 1024 {
		errs = append(errs, conf.Errorf("entity_id", "is longer than 1024 bytes"))
	}
	if (c.KeyFile == "") != (c.CertFile == "") {
		errs = append(errs, conf.Errorf("cert_file", "key_file and cert_file are set together or not at all"))
	}
	switch c.SignatureRequired {
	case "", SignAssertion, SignResponse, SignEither:
	default:
		errs = append(errs, conf.Errorf("signature_required", "must be assertion, response or either, not %q", c.SignatureRequired))
	}
	if c.MaxClockSkew < 0 || c.MaxClockSkew.Std() > MaxClockSkewLimit {
		errs = append(errs, conf.Errorf("max_clock_skew", "must be between 0 and %s", MaxClockSkewLimit))
	}
	if c.MetadataRefresh < 0 || (c.MetadataRefresh > 0 && c.MetadataRefresh.Std() < time.Minute) {
		errs = append(errs, conf.Errorf("metadata_refresh", "must be at least 1m"))
	}
	return errors.Join(errs...)
}

// ValidateAll validates every entry and that names are unique, keys like
// "saml[1].name".
func ValidateAll(cs []Config) error {
	var errs []error
	seen := map[string]bool{}
	for i := range cs {
		key := "[" + itoa(i) + "]"
		if err := cs[i].Validate(); err != nil {
			errs = append(errs, conf.AtKey(key, err))
		}
		if seen[cs[i].Name] {
			errs = append(errs, conf.Errorf(key+".name", "%q is used twice", cs[i].Name))
		}
		seen[cs[i].Name] = true
	}
	return errors.Join(errs...)
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// checkURL accepts an absolute https URL, or http on a loopback address
// when loopbackHTTP.
func checkURL(raw string, loopbackHTTP bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("is not a URL")
	}
	if u.Host == "" || u.User != nil {
		return errors.New("must be an absolute URL without user info")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); loopbackHTTP && (u.Hostname() == "localhost" || ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return errors.New("must be https (http only on a loopback address)")
}
