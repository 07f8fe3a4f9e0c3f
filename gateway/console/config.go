package console

import (
	"time"

	"portcullis/internal/conf"
)

// DefaultSessionMaxAge is how long a console sign-in lasts by default.
const DefaultSessionMaxAge = 8 * time.Hour

// Config is the admin.console section of the configuration.
type Config struct {
	// Enabled serves the console at /console/ on the admin listener.
	// Operators sign in with the admin token (admin.token_file); without
	// one the console only says how to turn sign-in on.
	Enabled bool `yaml:"enabled"`
	// SessionMaxAge is how long a sign-in lasts (default 8h, at most
	// 24h). Sign-ins do not survive a restart.
	SessionMaxAge conf.Duration `yaml:"session_max_age"`
}

// MaxAge returns the session lifetime, with its default applied.
func (c *Config) MaxAge() time.Duration {
	if c.SessionMaxAge <= 0 {
		return DefaultSessionMaxAge
	}
	return c.SessionMaxAge.Std()
}

// Validate reports every problem in c.
func (c *Config) Validate() error {
	if c.SessionMaxAge < 0 || c.SessionMaxAge.Std() > 24*time.Hour {
		return conf.Errorf("session_max_age", "must be between 0 (the default, 8h) and 24h, got %s", c.SessionMaxAge)
	}
	return nil
}
