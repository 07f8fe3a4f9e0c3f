package posture

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"reflect"
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

// FeedType is a feed's wire format, the value of its `type` key. It
// selects the keys the feed may have.
type FeedType string

// Feed types.
const (
	// FeedWebhook is the signed generic webhook (portcullis.posture.v1,
	// Standard Webhooks signing).
	FeedWebhook FeedType = "webhook"
	// FeedOktaHook is an Okta event hook, with optional System Log polling.
	FeedOktaHook FeedType = "okta-event-hook"
	// FeedSSF is an OpenID Shared Signals (CAEP/RISC) receiver, push or poll.
	FeedSSF FeedType = "ssf"
	// FeedUniversalLogout is the endpoint Okta Universal Logout (global
	// token revocation) calls.
	FeedUniversalLogout FeedType = "universal-logout"
)

// feedTypes are the feed types this build can run.
var feedTypes = []FeedType{FeedWebhook, FeedOktaHook, FeedSSF, FeedUniversalLogout}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (t *FeedType) UnmarshalText(b []byte) (err error) {
	*t, err = conf.Enum(b, feedTypes...)
	return err
}

// Delivery is how an SSF receiver gets its events.
type Delivery string

// SSF delivery methods.
const (
	DeliveryPush Delivery = "push" // RFC 8935
	DeliveryPoll Delivery = "poll" // RFC 8936
)

// UnmarshalText implements [encoding.TextUnmarshaler].
func (d *Delivery) UnmarshalText(b []byte) (err error) {
	*d, err = conf.Enum(b, DeliveryPush, DeliveryPoll)
	return err
}

// UserFrom says how a feed names users.
type UserFrom string

// How feeds name users.
const (
	// UserFromEmail: the user id is the lower-cased email (Okta login,
	// RFC 9493 email or acct: URI).
	UserFromEmail UserFrom = "email"
	// UserFromSub: the user id is the lower-cased IdP subject (Okta user
	// id, iss_sub sub).
	UserFromSub UserFrom = "sub"
)

// UnmarshalText implements [encoding.TextUnmarshaler].
func (u *UserFrom) UnmarshalText(b []byte) (err error) {
	*u, err = conf.Enum(b, UserFromEmail, UserFromSub)
	return err
}

// Config is the posture section of the configuration file.
type Config struct {
	// MaxAge is how old posture may be before it is stale. Stale posture
	// denies; a resource may only lower this value. Default 15m.
	MaxAge conf.Duration `yaml:"max_age"`
	// Feeds are the receivers that write device posture and user risk.
	Feeds []FeedConfig `yaml:"feeds"`
}

// FeedConfig is one posture feed: an HTTP endpoint a UEM, an MTD, an IdP
// or a relay posts to. Its keys are those of [FeedBase] and of the groups
// its type has (see [FeedConfig.UnmarshalConfig]); a key of another type
// is an error. The groups are embedded, so a feed's keys read as fields of
// FeedConfig.
type FeedConfig struct {
	FeedBase
	// Device: webhook and ssf (feeds that report on devices).
	DeviceKeys
	// Webhook: webhook.
	WebhookKeys
	// Signal: okta-event-hook, ssf and universal-logout.
	SignalKeys
	// Poll: okta-event-hook and ssf.
	PollKeys
	// Okta: okta-event-hook.
	OktaKeys
	// Token: ssf and universal-logout (signed tokens).
	TokenKeys
	// SSF: ssf.
	SSFKeys
	// Logout: universal-logout.
	LogoutKeys
}

// FeedBase holds the keys every feed has.
type FeedBase struct {
	// Name identifies the feed. It is the "source" every event the feed
	// accepts must carry, and the feed label of its metrics. Required.
	Name string `yaml:"name"`
	// Type is the wire format: "webhook" (portcullis.posture.v1 signed
	// with Standard Webhooks), "okta-event-hook", "ssf" or
	// "universal-logout". Required.
	Type FeedType `yaml:"type"`
	// Path is the URL path the feed is served at on the HTTPS listener.
	// Default "/.portcullis/feeds/<name>".
	Path string `yaml:"path"`
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// is refused with 413. Default 262144 (256 KiB); 1 MiB for
	// okta-event-hook; 64 KiB for ssf and universal-logout.
	MaxBody int64 `yaml:"max_body"`
}

// DeviceKeys are the keys of feeds that report on devices (webhook, ssf).
type DeviceKeys struct {
	// DeviceCA is the name of the device CA whose devices this feed
	// reports on; device ids in its events are keys under that CA. When
	// only one device CA is configured it is the default.
	DeviceCA string `yaml:"device_ca"`
	// Tolerance is how far the webhook-timestamp header may be from the
	// gateway's clock, either way; outside it a delivery is refused with
	// 401, which bounds replays. For ssf it is how far in the future a
	// SET's iat may be. Default 5m.
	Tolerance conf.Duration `yaml:"tolerance"`
}

// WebhookKeys are the keys of a webhook feed.
type WebhookKeys struct {
	// SecretFile is a file holding the feed's Standard Webhooks secret
	// ("whsec_" followed by the base64 of 24 to 64 random bytes). Required
	// unless SecretFiles is set.
	SecretFile conf.Path `yaml:"secret_file"`
	// SecretFiles are further secret files, for rotation: a signature by
	// any of the feed's secrets is accepted. At most two secrets in all.
	SecretFiles []conf.Path `yaml:"secret_files"`
}

// SignalKeys are the keys of the identity signal feeds (okta-event-hook,
// ssf, universal-logout).
type SignalKeys struct {
	// AuthorizationFile is a file holding the shared secret the sender
	// presents. okta-event-hook: the exact value of Header. ssf: the
	// bearer token the transmitter sends on push ("Authorization: Bearer
	// <token>") and that the gateway sends on poll and stream
	// management. universal-logout: a static bearer token (instead of a
	// signed JWT).
	AuthorizationFile conf.Path `yaml:"authorization_file"`
	// AuthorizationFiles are further secret files accepted during a
	// rotation (not sent). At most two in all.
	AuthorizationFiles []conf.Path `yaml:"authorization_files"`
	// UserFrom says how a feed names users: "email" (the lower-cased
	// login or email, the default) or "sub" (the IdP's subject id). It
	// must match how the gateway names logged-in users.
	UserFrom UserFrom `yaml:"user_from"`
}

// PollKeys are the keys of feeds that poll (okta-event-hook, ssf).
type PollKeys struct {
	// PollInterval is how often the Okta System Log is polled (default
	// 5m), or how long an SSF poller waits after an empty poll (default
	// 30s).
	PollInterval conf.Duration `yaml:"poll_interval"`
}

// OktaKeys are the keys of an okta-event-hook feed.
type OktaKeys struct {
	// Header is the header that carries the secret. Default
	// "Authorization".
	Header string `yaml:"header"`
	// OktaOrg is the Okta org URL, e.g. "https://acme.okta.com". When set,
	// the System Log is polled to fill the gaps hooks leave.
	OktaOrg string `yaml:"okta_org"`
	// APITokenFile is a file holding an Okta API token (SSWS) with read
	// access to the System Log. Required with okta_org.
	APITokenFile conf.Path `yaml:"api_token_file"`
}

// TokenKeys are the keys of feeds that verify signed tokens (ssf,
// universal-logout).
type TokenKeys struct {
	// Issuer (ssf) is the transmitter's issuer; every SET's iss must equal
	// it. (universal-logout) the Okta org whose signed tokens are
	// accepted.
	Issuer string `yaml:"issuer"`
	// JWKSURL is where the signing keys are; for ssf it overrides the
	// configuration's jwks_uri. universal-logout default:
	// <issuer>/oauth2/v1/keys.
	JWKSURL string `yaml:"jwks_url"`
	// Audience (ssf) is the audience every SET must name.
	// (universal-logout) the endpoint's public URL, which tokens must name
	// as aud.
	Audience string `yaml:"audience"`
}

// SSFKeys are the keys of an ssf feed.
type SSFKeys struct {
	// ConfigURL is the transmitter's configuration metadata. Default: the
	// issuer's /.well-known/ssf-configuration.
	ConfigURL string `yaml:"config_url"`
	// Delivery is "push" (the default) or "poll".
	Delivery Delivery `yaml:"delivery"`
	// PollEndpoint (poll) is the transmitter's poll URL; default the one
	// the stream configuration returns.
	PollEndpoint string `yaml:"poll_endpoint"`
	// EndpointURL (push) is this feed's public URL, which the receiver
	// registers as the stream's push endpoint.
	EndpointURL string `yaml:"endpoint_url"`
	// ManageStream makes the receiver create or update its stream at the
	// transmitter's configuration_endpoint and request a verification
	// event. Default false: the stream is set up out of band.
	ManageStream bool `yaml:"manage_stream"`
	// Events are the event type URIs requested when the stream is
	// managed. Default: every type the receiver acts on.
	Events []string `yaml:"events"`
}

// LogoutKeys are the keys of a universal-logout feed.
type LogoutKeys struct {
	// ClientID is our application's client_id at the IdP; a signed
	// token's sub must equal it.
	ClientID string `yaml:"client_id"`
}

// keyGroups returns, for type t, pointers to the groups of f whose keys a
// feed of that type has; nil for an unknown type.
func (f *FeedConfig) keyGroups(t FeedType) []any {
	switch t {
	case FeedWebhook:
		return []any{&f.FeedBase, &f.DeviceKeys, &f.WebhookKeys}
	case FeedOktaHook:
		return []any{&f.FeedBase, &f.SignalKeys, &f.PollKeys, &f.OktaKeys}
	case FeedSSF:
		return []any{&f.FeedBase, &f.DeviceKeys, &f.SignalKeys, &f.PollKeys, &f.TokenKeys, &f.SSFKeys}
	case FeedUniversalLogout:
		return []any{&f.FeedBase, &f.SignalKeys, &f.TokenKeys, &f.LogoutKeys}
	}
	return nil
}

// UnmarshalConfig implements [conf.Unmarshaler]: it decodes the feed's
// type first, then the whole feed strictly into the key groups of that
// type, so that a key of another type (delivery on a webhook) is an error
// placed at its line that says which types have it. A feed without a
// valid type is decoded against every key, so that its other problems
// are still reported.
func (f *FeedConfig) UnmarshalConfig(n *conf.Node) {
	var groups []any
	if t := n.Field("type"); t != nil && t.Decode(&f.Type) {
		groups = f.keyGroups(f.Type)
	}
	var all FeedConfig
	if groups == nil {
		// type was decoded (and its problem reported) above.
		var typ struct {
			Type string `yaml:"type"`
		}
		n.DecodeStruct(nil, &typ, &all.FeedBase, &all.DeviceKeys, &all.WebhookKeys, &all.SignalKeys, &all.PollKeys,
			&all.OktaKeys, &all.TokenKeys, &all.SSFKeys, &all.LogoutKeys)
		all.Type = f.Type
		*f = all
		return
	}
	n.DecodeStruct(func(key string) string {
		var has []FeedType
		for _, t := range feedTypes {
			if t != f.Type && all.hasKey(t, key) {
				has = append(has, t)
			}
		}
		if len(has) == 0 {
			return ""
		}
		return fmt.Sprintf("not a key of a %s feed (only of type %s)", f.Type, conf.OneOf(has...))
	}, groups...)
}

// ReportsDevices reports whether f's type reports on devices, and so has
// a device_ca.
func (f *FeedConfig) ReportsDevices() bool {
	return slices.Contains(f.keyGroups(f.Type), any(&f.DeviceKeys))
}

// strayKeys reports keys set in groups f's type does not have. The
// decoder refuses them in a file; this catches configurations built in
// code.
func (f *FeedConfig) strayKeys() []error {
	own := f.keyGroups(f.Type)
	if own == nil {
		return nil
	}
	var errs []error
	v := reflect.ValueOf(f).Elem()
	for i := range v.NumField() {
		g := v.Field(i)
		if slices.Contains(own, g.Addr().Interface()) {
			continue
		}
		for j := range g.NumField() {
			if !g.Field(j).IsZero() {
				key, _, _ := strings.Cut(g.Type().Field(j).Tag.Get("yaml"), ",")
				errs = append(errs, conf.Errorf(key, "not a key of a %s feed", f.Type))
			}
		}
	}
	return errs
}

// hasKey reports whether feeds of type t have key.
func (f *FeedConfig) hasKey(t FeedType, key string) bool {
	for _, g := range f.keyGroups(t) {
		rt := reflect.TypeOf(g).Elem()
		for i := range rt.NumField() {
			if name, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ","); name == key {
				return true
			}
		}
	}
	return false
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
	// Only the keys of the feed's type get defaults: another type's keys
	// are refused.
	if f.Tolerance == 0 && (f.Type == FeedWebhook || f.Type == FeedSSF) {
		f.Tolerance = conf.Duration(DefaultFeedTolerance)
	}
	if f.UserFrom == "" && f.Type != FeedWebhook && f.Type != "" {
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

// Validate reports every problem of one feed, keys relative to it. The
// decoder has already refused keys of other types and unknown values of
// type, delivery and user_from.
func (f *FeedConfig) Validate() error {
	var errs []error
	switch {
	case f.Name == "":
		errs = append(errs, conf.Errorf("name", "required"))
	case !validName(f.Name):
		errs = append(errs, conf.Errorf("name", "%q: use letters, digits, '.', '_' and '-' only", f.Name))
	}
	if f.Type == "" {
		errs = append(errs, conf.Errorf("type", "required (one of %s)", conf.OneOf(feedTypes...)))
	}
	errs = append(errs, f.strayKeys()...)
	if f.Path != "" && !strings.HasPrefix(f.Path, "/") {
		errs = append(errs, conf.Errorf("path", "%q must start with /", f.Path))
	}
	if strings.ContainsAny(f.Path, " \t\r\n?#") {
		errs = append(errs, conf.Errorf("path", "%q must not contain spaces, '?' or '#'", f.Path))
	}
	if f.MaxBody < 0 {
		errs = append(errs, conf.Errorf("max_body", "must be positive"))
	}
	if f.Tolerance < 0 {
		errs = append(errs, conf.Errorf("tolerance", "must be positive"))
	}
	if f.PollInterval < 0 {
		errs = append(errs, conf.Errorf("poll_interval", "must be positive"))
	}
	if n := len(f.Secrets()); n > 2 {
		errs = append(errs, conf.Errorf("secret_files", "at most 2 secrets in all (secret_file and secret_files), got %d", n))
	}
	for i, s := range f.SecretFiles {
		if s == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("secret_files[%d]", i), "empty file name"))
		}
	}
	if n := len(f.AuthorizationSecrets()); n > 2 {
		errs = append(errs, conf.Errorf("authorization_files", "at most 2 secrets in all (authorization_file and authorization_files), got %d", n))
	}
	for i, s := range f.AuthorizationFiles {
		if s == "" {
			errs = append(errs, conf.Errorf(fmt.Sprintf("authorization_files[%d]", i), "empty file name"))
		}
	}
	for _, kv := range [][2]string{{"okta_org", f.OktaOrg}, {"issuer", f.Issuer}, {"config_url", f.ConfigURL},
		{"jwks_url", f.JWKSURL}, {"poll_endpoint", f.PollEndpoint}, {"endpoint_url", f.EndpointURL}} {
		if kv[1] == "" {
			continue
		}
		if err := checkHTTPSURL(kv[1]); err != nil {
			errs = append(errs, conf.Errorf(kv[0], "%q: %v", kv[1], err))
		}
	}
	switch f.Type {
	case FeedWebhook:
		if f.SecretFile == "" && len(f.SecretFiles) == 0 {
			errs = append(errs, conf.Errorf("secret_file", "required"))
		}
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
		if f.Delivery == DeliveryPoll {
			if f.PollEndpoint == "" && !f.ManageStream {
				errs = append(errs, conf.Errorf("poll_endpoint", "required for poll delivery unless manage_stream is set"))
			}
		} else {
			if f.AuthorizationFile == "" {
				errs = append(errs, conf.Errorf("authorization_file", "required for push delivery: the transmitter's bearer token"))
			}
			if f.ManageStream && f.EndpointURL == "" {
				errs = append(errs, conf.Errorf("endpoint_url", "required to manage a push stream"))
			}
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
	return errors.Join(errs...)
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
