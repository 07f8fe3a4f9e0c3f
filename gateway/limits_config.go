package gateway

import (
	"errors"
	"time"

	"portcullis/internal/conf"
)

// Defaults of the limits section. docs/config.md says why each is what it
// is.
const (
	DefaultBodyIdleTimeout   = 30 * time.Second
	DefaultBodyMinRate       = 1024 // bytes per second of waiting
	DefaultBodyMinRateGrace  = 10 * time.Second
	DefaultSystemBodyTimeout = 10 * time.Second
	DefaultMaxStreams        = 100
	DefaultMaxResets         = 200
	DefaultResetWindow       = 10 * time.Second
	DefaultUpstreamPerIP     = 512

	// maxStreamsLimit bounds max_concurrent: more streams than this on one
	// connection is a configuration mistake, not a need.
	maxStreamsLimit = 10000
)

// LimitsConfig bounds what one client can make the gateway hold: request
// bodies that arrive too slowly, concurrent upstream requests per
// connection and per client address, and streams a client opens only to
// reset them (HTTP/2 rapid reset, CVE-2023-44487).
type LimitsConfig struct {
	// Body bounds how slowly a request body may arrive.
	Body BodyLimitsConfig `yaml:"body"`
	// Streams bounds HTTP/2 and HTTP/3 streams per connection.
	Streams StreamLimitsConfig `yaml:"streams"`
	// Upstream bounds concurrent upstream requests.
	Upstream UpstreamLimitsConfig `yaml:"upstream"`
}

// BodyLimitsConfig bounds the time a request body may take.
type BodyLimitsConfig struct {
	// IdleTimeout is how long the gateway waits for the next byte of a
	// request body going upstream (default 30s).
	IdleTimeout conf.Duration `yaml:"idle_timeout"`
	// MinRate is the lowest average rate, in bytes per second of waiting
	// for the client, at which a body going upstream must arrive once
	// MinRateGrace has been spent waiting (default 1024).
	MinRate int64 `yaml:"min_rate"`
	// MinRateGrace is the waiting time allowed before MinRate applies
	// (default 10s).
	MinRateGrace conf.Duration `yaml:"min_rate_grace"`
	// SystemTimeout is how long the whole body of a request to the
	// gateway's own endpoints (feeds, login callbacks) may take
	// (default 10s).
	SystemTimeout conf.Duration `yaml:"system_timeout"`
}

// StreamLimitsConfig bounds the streams of one HTTP/2 or HTTP/3
// connection.
type StreamLimitsConfig struct {
	// MaxConcurrent is the number of streams a client may have open at
	// once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, and
	// the QUIC bidirectional stream limit); default 100.
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxResets is how many streams a client may reset within
	// ResetWindow before the gateway ends the connection (HTTP/2 GOAWAY
	// ENHANCE_YOUR_CALM, HTTP/3 H3_EXCESSIVE_LOAD); default 200.
	MaxResets int `yaml:"max_resets"`
	// ResetWindow is the period MaxResets is counted over (default 10s).
	ResetWindow conf.Duration `yaml:"reset_window"`
}

// UpstreamLimitsConfig bounds concurrent upstream requests.
type UpstreamLimitsConfig struct {
	// PerConnection is how many requests of one client connection may be
	// at an upstream at once (default: Streams.MaxConcurrent).
	PerConnection int `yaml:"per_connection"`
	// PerIP is how many requests from one client address (one IPv6 /64)
	// may be at an upstream at once (default 512).
	PerIP int `yaml:"per_ip"`
}

// ApplyDefaults fills unset keys.
func (c *LimitsConfig) ApplyDefaults() {
	setDur := func(d *conf.Duration, v time.Duration) {
		if *d == 0 {
			*d = conf.Duration(v)
		}
	}
	setDur(&c.Body.IdleTimeout, DefaultBodyIdleTimeout)
	setDur(&c.Body.MinRateGrace, DefaultBodyMinRateGrace)
	setDur(&c.Body.SystemTimeout, DefaultSystemBodyTimeout)
	setDur(&c.Streams.ResetWindow, DefaultResetWindow)
	if c.Body.MinRate == 0 {
		c.Body.MinRate = DefaultBodyMinRate
	}
	if c.Streams.MaxConcurrent == 0 {
		c.Streams.MaxConcurrent = DefaultMaxStreams
	}
	if c.Streams.MaxResets == 0 {
		c.Streams.MaxResets = DefaultMaxResets
	}
	if c.Upstream.PerConnection == 0 {
		c.Upstream.PerConnection = c.Streams.MaxConcurrent
	}
	if c.Upstream.PerIP == 0 {
		c.Upstream.PerIP = DefaultUpstreamPerIP
	}
}

// Validate reports every problem, each naming its key. Limits are
// bounds: none of them can be turned off, only raised.
func (c *LimitsConfig) Validate() error {
	var errs []error
	atLeast := func(key string, d conf.Duration, min time.Duration) {
		if d.Std() < min {
			errs = append(errs, conf.Errorf(key, "must be at least %s", min))
		}
	}
	positive := func(key string, v int64) {
		if v < 1 {
			errs = append(errs, conf.Errorf(key, "must be at least 1"))
		}
	}
	atLeast("body.idle_timeout", c.Body.IdleTimeout, time.Second)
	atLeast("body.min_rate_grace", c.Body.MinRateGrace, 0)
	atLeast("body.system_timeout", c.Body.SystemTimeout, time.Second)
	atLeast("streams.reset_window", c.Streams.ResetWindow, time.Second)
	positive("body.min_rate", c.Body.MinRate)
	positive("streams.max_concurrent", int64(c.Streams.MaxConcurrent))
	positive("streams.max_resets", int64(c.Streams.MaxResets))
	positive("upstream.per_connection", int64(c.Upstream.PerConnection))
	positive("upstream.per_ip", int64(c.Upstream.PerIP))
	if c.Streams.MaxConcurrent > maxStreamsLimit {
		errs = append(errs, conf.Errorf("streams.max_concurrent", "must be at most %d", maxStreamsLimit))
	}
	return errors.Join(errs...)
}
