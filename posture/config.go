package posture

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"portcullis/internal/conf"
)

// Defaults of the posture section.
const (
	DefaultMaxAge        = 15 * time.Minute
	DefaultFeedMaxBody   = 256 << 10 // 262144 bytes
	DefaultFeedTolerance = 5 * time.Minute
	// DefaultOktaMaxBody is the body limit of an Okta event hook (Okta
	// batches up to 50 System Log events in one delivery).
	DefaultOktaMaxBody = 1 << 20
	// DefaultSSFMaxBody is the body limit of one pushed SET and of a
	// Universal Logout request.
	DefaultSSFMaxBody = 64 << 10
	// DefaultOktaHeader is the header an Okta event hook's secret comes in.
	DefaultOktaHeader = "Authorization"
	// DefaultOktaPollInterval is how often the Okta System Log is polled.
	DefaultOktaPollInterval = 5 * time.Minute
	// DefaultSSFPollInterval is how long an SSF poller waits after an
	// empty poll before it polls again.
	DefaultSSFPollInterval = 30 * time.Second
	// DefaultUniversalLogoutSkew is the clock skew allowed on a Universal
	// Logout token's exp, nbf and iat.
	DefaultUniversalLogoutSkew = time.Minute
	// DefaultFeedPathPrefix is where a feed is served when it names no path:
	// DefaultFeedPathPrefix + name.
	DefaultFeedPathPrefix = "/.portcullis/feeds/"
)

// Feed types.
const (
	// FeedWebhook is the signed generic webhook (portcullis.posture.v1,
	// Standard Webhooks signing).
	FeedWebhook = "webhook"
	// FeedOktaHook is an Okta event hook, with optional System Log polling.
	FeedOktaHook = "okta-event-hook"
	// FeedSSF is an OpenID Shared Signals (CAEP/RISC) receiver, push or poll.
	FeedSSF = "ssf"
	// FeedUniversalLogout is the endpoint Okta Universal Logout (global
	// token revocation) calls.
	FeedUniversalLogout = "universal-logout"
)

// SSF delivery methods.
const (
	DeliveryPush = "push" // RFC 8935
	DeliveryPoll = "poll" // RFC 8936
)

// How feeds name users.
const (
	// UserFromEmail: the user id is the lower-cased email (Okta login,
	// RFC 9493 email or acct: URI).
	UserFromEmail = "email"
	// UserFromSub: the user id is the lower-cased IdP subject (Okta user
	// id, iss_sub sub).
	UserFromSub = "sub"
)

// supportedFeedTypes are the feed types this build can run.
var supportedFeedTypes = []string{FeedWebhook, FeedOktaHook, FeedSSF, FeedUniversalLogout}

// plannedFeedTypes are known feed types that are not implemented yet.
var plannedFeedTypes = []string{}

// Config is the posture section of the configuration file.
type Config struct {
	// MaxAge is how old posture may be before it is stale. Stale posture
	// denies; a resource may only lower this value. Default 15m.
	MaxAge conf.Duration `yaml:"max_age"`
	// Feeds are the receivers that write device posture and user risk.
	Feeds []FeedConfig `yaml:"feeds"`
}

// FeedConfig is one posture feed: an HTTP endpoint a UEM, an MTD or a
// relay posts to.
type FeedConfig struct {
	// Name identifies the feed. It is the "source" every event the feed
	// accepts must carry, and the feed label of its metrics. Required.
	Name string `yaml:"name"`
	// Type is the wire format: "webhook" (portcullis.posture.v1 signed
	// with Standard Webhooks), "okta-event-hook", "ssf" or
	// "universal-logout". Required.
	Type string `yaml:"type"`
	// Path is the URL path the feed is served at on the HTTPS listener.
	// Default "/.portcullis/feeds/<name>".
	Path string `yaml:"path"`
	// SecretFile is a file holding the feed's Standard Webhooks secret
	// ("whsec_" followed by the base64 of 24 to 64 random bytes). Required
	// unless SecretFiles is set.
	SecretFile conf.Path `yaml:"secret_file"`
	// SecretFiles are further secret files, for rotation: a signature by
	// any of the feed's secrets is accepted. At most two secrets in all.
	SecretFiles []conf.Path `yaml:"secret_files"`
	// DeviceCA is the name of the device CA whose devices this feed
	// reports on; device ids in its events are keys under that CA. When
	// only one device CA is configured it is the default.
	DeviceCA string `yaml:"device_ca"`
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// is refused with 413. Default 262144 (256 KiB).
	MaxBody int64 `yaml:"max_body"`
	// Tolerance is how far the webhook-timestamp header may be from the
	// gateway's clock, either way; outside it a delivery is refused with
	// 401, which bounds replays. For ssf it is how far in the future a
	// SET's iat may be. Default 5m.
	Tolerance conf.Duration `yaml:"tolerance"`

	// AuthorizationFile (okta-event-hook, ssf, universal-logout) is a
	// file holding the shared secret the sender presents. okta-event-hook:
	// the exact value of Header. ssf: the bearer token the transmitter
	// sends on push ("Authorization: Bearer <token>") and that the
	// gateway sends on poll and stream management. universal-logout: a
	// static bearer token (instead of a signed JWT).
	AuthorizationFile conf.Path `yaml:"authorization_file"`
	// AuthorizationFiles are further secret files accepted during a
	// rotation (not sent). At most two in all.
	AuthorizationFiles []conf.Path `yaml:"authorization_files"`
	// Header (okta-event-hook) is the header that carries the secret.
	// Default "Authorization".
	Header string `yaml:"header"`
	// OktaOrg (okta-event-hook) is the Okta org URL, e.g.
	// "https://acme.okta.com". When set, the System Log is polled to
	// fill the gaps hooks leave.
	OktaOrg string `yaml:"okta_org"`
	// APITokenFile (okta-event-hook) is a file holding an Okta API token
	// (SSWS) with read access to the System Log. Required with okta_org.
	APITokenFile conf.Path `yaml:"api_token_file"`
	// PollInterval is how often the Okta System Log is polled (default
	// 5m), or how long an SSF poller waits after an empty poll (default
	// 30s).
	PollInterval conf.Duration `yaml:"poll_interval"`
	// UserFrom says how a feed names users: "email" (the lower-cased
	// login or email, the default) or "sub" (the IdP's subject id). It
	// must match how the gateway names logged-in users.
	UserFrom string `yaml:"user_from"`

	// Issuer (ssf) is the transmitter's issuer; every SET's iss must equal
	// it. (universal-logout) the Okta org whose signed tokens are
	// accepted.
	Issuer string `yaml:"issuer"`
	// ConfigURL (ssf) is the transmitter's configuration metadata.
	// Default: the issuer's /.well-known/ssf-configuration.
	ConfigURL string `yaml:"config_url"`
	// JWKSURL (ssf, universal-logout) is where the signing keys are; for
	// ssf it overrides the configuration's jwks_uri. universal-logout
	// default: <issuer>/oauth2/v1/keys.
	JWKSURL string `yaml:"jwks_url"`
	// Audience (ssf) is the audience every SET must name. (universal-logout)
	// the endpoint's public URL, which tokens must name as aud.
	Audience string `yaml:"audience"`
	// Delivery (ssf) is "push" (the default) or "poll".
	Delivery string `yaml:"delivery"`
	// PollEndpoint (ssf, poll) is the transmitter's poll URL; default the
	// one the stream configuration returns.
	PollEndpoint string `yaml:"poll_endpoint"`
	// EndpointURL (ssf, push) is this feed's public URL, which the
	// receiver registers as the stream's push endpoint.
	EndpointURL string `yaml:"endpoint_url"`
	// ManageStream (ssf) makes the receiver create or update its stream
	// at the transmitter's configuration_endpoint and request a
	// verification event. Default false: the stream is set up out of band.
	ManageStream bool `yaml:"manage_stream"`
	// Events (ssf) are the event type URIs requested when the stream is
	// managed. Default: every type the receiver acts on.
	Events []string `yaml:"events"`
	// ClientID (universal-logout) is our application's client_id at the
	// IdP; a signed token's sub must equal it.
	ClientID string `yaml:"client_id"`
}

// AuthorizationSecrets returns the feed's authorization files,
// AuthorizationFile first.
func (f *FeedConfig) AuthorizationSecrets() []conf.Path {
	var out []conf.Path
	if f.AuthorizationFile != "" {
		out = append(out, f.AuthorizationFile)
	}
	return append(out, f.AuthorizationFiles...)
}

// ApplyDefaults fills every unset key with its default. It leaves
// DeviceCA alone: the caller knows the device CAs.
func (c *Config) ApplyDefaults() {
	if c.MaxAge == 0 {
		c.MaxAge = conf.Duration(DefaultMaxAge)
	}
	for i := range c.Feeds {
		c.Feeds[i].ApplyDefaults()
	}
}

// ApplyDefaults fills every unset key of the feed with its default.
func (f *FeedConfig) ApplyDefaults() {
	if f.Path == "" && f.Name != "" {
		f.Path = DefaultFeedPathPrefix + f.Name
	}
	if f.MaxBody == 0 {
		switch f.Type {
		case FeedOktaHook:
			f.MaxBody = DefaultOktaMaxBody
		case FeedSSF, FeedUniversalLogout:
			f.MaxBody = DefaultSSFMaxBody
		default:
			f.MaxBody = DefaultFeedMaxBody
		}
	}
	if f.Tolerance == 0 {
		f.Tolerance = conf.Duration(DefaultFeedTolerance)
	}
	if f.UserFrom == "" {
		f.UserFrom = UserFromEmail
	}
	switch f.Type {
	case FeedOktaHook:
		if f.Header == "" {
			f.Header = DefaultOktaHeader
		}
		if f.PollInterval == 0 {
			f.PollInterval = conf.Duration(DefaultOktaPollInterval)
		}
	case FeedSSF:
		if f.Delivery == "" {
			f.Delivery = DeliveryPush
		}
		if f.PollInterval == 0 {
			f.PollInterval = conf.Duration(DefaultSSFPollInterval)
		}
	}
}

// Secrets returns the feed's secret files, SecretFile first.
func (f *FeedConfig) Secrets() []conf.Path {
	var out []conf.Path
	if f.SecretFile != "" {
		out = append(out, f.SecretFile)
	}
	return append(out, f.SecretFiles...)
}

// Validate reports every problem, each naming its key. Unset keys that
// have defaults are accepted, so Validate may run before or after
// ApplyDefaults. It reads no files.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxAge < 0 {
		errs = append(errs, conf.Errorf("max_age", "must be positive"))
	}
	names := map[string]int{}
	paths := map[string]int{}
	for i, f := range c.Feeds {
		key := fmt.Sprintf("feeds[%d]", i)
		errs = append(errs, conf.AtKey(key, f.Validate()))
		if f.Name != "" {
			if j, dup := names[f.Name]; dup {
				errs = append(errs, conf.Errorf(key+".name", "%q is already the name of feeds[%d]", f.Name, j))
			} else {
				names[f.Name] = i
			}
		}
		p := f.Path
		if p == "" && f.Name != "" {
			p = DefaultFeedPathPrefix + f.Name
		}
		if p != "" {
			if j, dup := paths[p]; dup {
				errs = append(errs, conf.Errorf(key+".path", "%q is already the path of feeds[%d]", p, j))
			} else {
				paths[p] = i
			}
		}
	}
	return errors.Join(errs...)
}

// Validate reports every problem of one feed, keys relative to it.
func (f *FeedConfig) Validate() error {
	var errs []error
	switch {
	case f.Name == "":
		errs = append(errs, conf.Errorf("name", "required"))
	case !validName(f.Name):
		errs = append(errs, conf.Errorf("name", "%q: use letters, digits, '.', '_' and '-' only", f.Name))
	}
	switch {
	case f.Type == "":
		errs = append(errs, conf.Errorf("type", "required (supported: %s)", strings.Join(supportedFeedTypes, ", ")))
	case slices.Contains(supportedFeedTypes, f.Type):
	case slices.Contains(plannedFeedTypes, f.Type):
		errs = append(errs, conf.Errorf("type", "%q is not implemented yet (supported: %s)", f.Type, strings.Join(supportedFeedTypes, ", ")))
	default:
		errs = append(errs, conf.Errorf("type", "unknown feed type %q (supported: %s)", f.Type, strings.Join(supportedFeedTypes, ", ")))
	}
	if f.Path != "" && !strings.HasPrefix(f.Path, "/") {
		errs = append(errs, conf.Errorf("path", "%q must start with /", f.Path))
	}
	if strings.ContainsAny(f.Path, " \t\r\n?#") {
		errs = append(errs, conf.Errorf("path", "%q must not contain spaces, '?' or '#'", f.Path))
	}
	if f.Type == FeedWebhook || f.Type == "" {
		switch n := len(f.Secrets()); {
		case n == 0:
			errs = append(errs, conf.Errorf("secret_file", "required"))
		case n > 2:
			errs = append(errs, conf.Errorf("secret_files", "at most 2 secrets in all (secret_file and secret_files), got %d", n))
		}
		for i, s := range f.SecretFiles {
			if s == "" {
				errs = append(errs, conf.Errorf(fmt.Sprintf("secret_files[%d]", i), "empty file name"))
			}
		}
	} else if slices.Contains(supportedFeedTypes, f.Type) {
		errs = append(errs, f.validateSignal()...)
	}
	if f.MaxBody < 0 {
		errs = append(errs, conf.Errorf("max_body", "must be positive"))
	}
	if f.Tolerance < 0 {
		errs = append(errs, conf.Errorf("tolerance", "must be positive"))
	}
	return errors.Join(errs...)
}

// validateSignal checks the keys of the okta-event-hook, ssf and
// universal-logout types.
func (f *FeedConfig) validateSignal() []error {
	var errs []error
	if len(f.Secrets()) > 0 {
		errs = append(errs, conf.Errorf("secret_file", "only for type webhook; use authorization_file"))
	}
	if n := len(f.AuthorizationSecrets()); n > 2 {
		errs = append(errs, conf.Errorf("authorization_files", "at most 2 secrets in all (authorization_file and authorization_files), got %d", n))
	}
	for i, s := range f.AuthorizationFiles {
		if s == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("authorization_files[%d]", i), "empty file name"))
		}
	}
	switch f.UserFrom {
	case "", UserFromEmail, UserFromSub:
	default:
		errs = append(errs, conf.Errorf("user_from", "%q: use %q or %q", f.UserFrom, UserFromEmail, UserFromSub))
	}
	if f.PollInterval < 0 {
		errs = append(errs, conf.Errorf("poll_interval", "must be positive"))
	}
	checkURL := func(key, v string) {
		if v != "" {
			if err := checkHTTPSURL(v); err != nil {
				errs = append(errs, conf.Errorf(key, "%q: %v", v, err))
			}
		}
	}
	for _, kv := range [][2]string{{"okta_org", f.OktaOrg}, {"issuer", f.Issuer}, {"config_url", f.ConfigURL},
		{"jwks_url", f.JWKSURL}, {"poll_endpoint", f.PollEndpoint}, {"endpoint_url", f.EndpointURL}} {
		checkURL(kv[0], kv[1])
	}
	switch f.Type {
	case FeedOktaHook:
		if f.AuthorizationFile == "" {
			errs = append(errs, conf.Errorf("authorization_file", "required: Okta sends this secret on every delivery"))
		}
		if f.OktaOrg != "" && f.APITokenFile == "" {
			errs = append(errs, conf.Errorf("api_token_file", "required with okta_org (System Log polling)"))
		}
		if f.OktaOrg == "" && f.APITokenFile != "" {
			errs = append(errs, conf.Errorf("okta_org", "required with api_token_file"))
		}
	case FeedSSF:
		if f.Issuer == "" {
			errs = append(errs, conf.Errorf("issuer", "required"))
		}
		if f.Audience == "" {
			errs = append(errs, conf.Errorf("audience", "required"))
		}
		switch f.Delivery {
		case "", DeliveryPush:
			if f.AuthorizationFile == "" {
				errs = append(errs, conf.Errorf("authorization_file", "required for push delivery: the transmitter's bearer token"))
			}
			if f.ManageStream && f.EndpointURL == "" {
				errs = append(errs, conf.Errorf("endpoint_url", "required to manage a push stream"))
			}
		case DeliveryPoll:
			if f.PollEndpoint == "" && !f.ManageStream {
				errs = append(errs, conf.Errorf("poll_endpoint", "required for poll delivery unless manage_stream is set"))
			}
		default:
			errs = append(errs, conf.Errorf("delivery", "%q: use %q or %q", f.Delivery, DeliveryPush, DeliveryPoll))
		}
	case FeedUniversalLogout:
		if f.AuthorizationFile == "" && f.Issuer == "" {
			errs = append(errs, conf.Errorf("issuer", "required unless authorization_file is set"))
		}
		if f.Issuer != "" {
			if f.Audience == "" {
				errs = append(errs, conf.Errorf("audience", "required with issuer: the endpoint's public URL"))
			}
			if f.ClientID == "" {
				errs = append(errs, conf.Errorf("client_id", "required with issuer"))
			}
		}
	}
	return errs
}

// checkHTTPSURL accepts an absolute https URL without a fragment. Plain
// http is accepted for loopback hosts only (tests, local relays).
func checkHTTPSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Host == "":
		return errors.New("must be an absolute URL")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return errors.New("must use https")
}

// isLoopback reports whether host is "localhost" or a loopback IP
// literal (127.0.0.0/8, ::1). A name that merely starts with "127." is
// not: it resolves wherever its owner likes.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func validName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return len(s) <= 64
}
