package posture

import (
	"errors"
	"fmt"
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
	// DefaultFeedPathPrefix is where a feed is served when it names no path:
	// DefaultFeedPathPrefix + name.
	DefaultFeedPathPrefix = "/.portcullis/feeds/"
)

// Feed types.
const (
	// FeedWebhook is the signed generic webhook (portcullis.posture.v1,
	// Standard Webhooks signing).
	FeedWebhook = "webhook"
)

// supportedFeedTypes are the feed types this build can run.
var supportedFeedTypes = []string{FeedWebhook}

// plannedFeedTypes are known feed types that are not implemented yet.
var plannedFeedTypes = []string{"okta-event-hook", "ssf"}

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
	// Type is the wire format. Only "webhook" (portcullis.posture.v1 signed
	// with Standard Webhooks) is supported. Required.
	Type string `yaml:"type"`
	// Path is the URL path the feed is served at on the HTTPS listener.
	// Default "/.portcullis/feeds/<name>".
	Path string `yaml:"path"`
	// SecretFile is a file holding the feed's Standard Webhooks secret
	// ("whsec_" followed by the base64 of 24 to 64 random bytes). Required
	// unless SecretFiles is set.
	SecretFile string `yaml:"secret_file"`
	// SecretFiles are further secret files, for rotation: a signature by
	// any of the feed's secrets is accepted. At most two secrets in all.
	SecretFiles []string `yaml:"secret_files"`
	// DeviceCA is the name of the device CA whose devices this feed
	// reports on; device ids in its events are keys under that CA. When
	// only one device CA is configured it is the default.
	DeviceCA string `yaml:"device_ca"`
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// is refused with 413. Default 262144 (256 KiB).
	MaxBody int64 `yaml:"max_body"`
	// Tolerance is how far the webhook-timestamp header may be from the
	// gateway's clock, either way; outside it a delivery is refused with
	// 401, which bounds replays. Default 5m.
	Tolerance conf.Duration `yaml:"tolerance"`
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
		f.MaxBody = DefaultFeedMaxBody
	}
	if f.Tolerance == 0 {
		f.Tolerance = conf.Duration(DefaultFeedTolerance)
	}
}

// Secrets returns the feed's secret files, SecretFile first.
func (f *FeedConfig) Secrets() []string {
	var out []string
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
	if f.MaxBody < 0 {
		errs = append(errs, conf.Errorf("max_body", "must be positive"))
	}
	if f.Tolerance < 0 {
		errs = append(errs, conf.Errorf("tolerance", "must be positive"))
	}
	return errors.Join(errs...)
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
