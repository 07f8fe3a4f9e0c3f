package session

import (
	"errors"
	"time"

	"portcullis/internal/conf"
)

// Defaults for [Config].
const (
	DefaultLifetime    = 12 * time.Hour
	DefaultIdleTimeout = time.Hour
	// RefreshInterval is how often an active session's cookie is
	// re-issued to move its idle deadline: at most once a minute.
	RefreshInterval = time.Minute
)

// Config is the `identity.session:` section.
type Config struct {
	// KeyFile holds the session keys, one per line, each 32 random bytes
	// in base64. The first encrypts; all decrypt. Default: session.keys in
	// the state directory, created with one key when missing.
	KeyFile conf.Path `yaml:"key_file"`
	// Lifetime is the absolute lifetime of a session: after it the user
	// logs in again however active. Default 12h.
	Lifetime conf.Duration `yaml:"lifetime"`
	// IdleTimeout ends a session not used for this long. Default 1h.
	IdleTimeout conf.Duration `yaml:"idle_timeout"`
}

// ApplyDefaults fills unset durations.
func (c *Config) ApplyDefaults() {
	if c.Lifetime == 0 {
		c.Lifetime = conf.Duration(DefaultLifetime)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = conf.Duration(DefaultIdleTimeout)
	}
}

// Validate reports every problem in c.
func (c *Config) Validate() error {
	var errs []error
	if c.Lifetime < 0 {
		errs = append(errs, conf.Errorf("lifetime", "must not be negative"))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, conf.Errorf("idle_timeout", "must not be negative"))
	}
	if c.Lifetime > 0 && c.IdleTimeout > c.Lifetime {
		errs = append(errs, conf.Errorf("idle_timeout", "is longer than lifetime (%s)", c.Lifetime))
	}
	if c.IdleTimeout > 0 && c.IdleTimeout.Std() < 2*RefreshInterval {
		errs = append(errs, conf.Errorf("idle_timeout", "must be at least %s", 2*RefreshInterval))
	}
	return errors.Join(errs...)
}
