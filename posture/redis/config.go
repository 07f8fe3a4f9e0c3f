// Package redis is the posture store shared by several gateway replicas
// through Redis (or Valkey).
//
// Every replica keeps the whole store in memory, as the embedded store
// does, so no request waits on the network. Writes go to Redis in one Lua
// script per transaction that checks each record's revision before it
// writes (compare-and-set), so the ordering, tie-break and dedup rules run
// once, in Go ([posture.DB]), and two replicas that receive the same or
// reordered events converge. Each transaction is appended to a Redis
// Stream whose entry ids are the revisions ("0-<rev>"); every replica
// follows the stream to keep its copy current and to drive its
// re-evaluator, resumes from its last revision after a disconnect, and
// reloads everything when it finds a gap (a trimmed stream) or another
// generation (a Redis that restarted empty).
package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"portcullis/internal/conf"
)

// DefaultKeyPrefix is the prefix of every key the store writes.
const DefaultKeyPrefix = "portcullis:"

// DefaultStreamMaxLen is roughly how many transactions the change stream
// keeps. A replica disconnected for longer than they take reloads fully.
const DefaultStreamMaxLen = 100000

// Config is the state.redis section of the configuration file.
type Config struct {
	// URL is "redis://[user@]host:port/db" or "rediss://…" (TLS). Either
	// URL or Addrs is required.
	URL string `yaml:"url"`
	// Addrs are host:port addresses: one for a single server, the
	// Sentinels' with MasterName.
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master's name; set it to use Sentinel.
	MasterName string `yaml:"master_name"`
	// Username is the ACL user, if any.
	Username string `yaml:"username"`
	// PasswordFile is a file holding the password (never in the URL).
	PasswordFile conf.Path `yaml:"password_file"`
	// TLS turns on TLS with Addrs (a rediss:// URL turns it on by itself).
	TLS *TLSConfig `yaml:"tls"`
	// KeyPrefix prefixes every key (default "portcullis:"). Give each
	// deployment sharing a Redis its own. On a Redis Cluster, put the
	// prefix in braces ("{portcullis}:") so every key is in one slot, as
	// the store's scripts require.
	KeyPrefix string `yaml:"key_prefix"`
	// StreamMaxLen is roughly how many transactions the change stream
	// keeps (default 100000).
	StreamMaxLen int64 `yaml:"stream_max_len"`
	// Timeout bounds one command's round trip (default 3s).
	Timeout conf.Duration `yaml:"timeout"`
}

// TLSConfig configures TLS to Redis.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs that sign the server's
	// certificate; empty means the system pool.
	CAFile conf.Path `yaml:"ca_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
}

// Validate reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.URL == "" && len(c.Addrs) == 0:
		errs = append(errs, errors.New("url or addrs is required"))
	case c.URL != "" && len(c.Addrs) > 0:
		errs = append(errs, errors.New("url and addrs are exclusive"))
	case c.URL != "":
		if _, err := goredis.ParseURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("url: %w", err))
		} else if u, err := url.Parse(c.URL); err == nil && u.User != nil {
			if _, set := u.User.Password(); set {
				errs = append(errs, errors.New("url: carries a password; use password_file"))
			}
		}
	}
	if c.MasterName != "" && len(c.Addrs) == 0 {
		errs = append(errs, errors.New("master_name: needs the Sentinels' addrs"))
	}
	if c.StreamMaxLen < 0 {
		errs = append(errs, errors.New("stream_max_len: must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// options builds the client options.
func (c *Config) options() (*goredis.UniversalOptions, error) {
	timeout := c.Timeout.Std()
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	o := &goredis.UniversalOptions{
		Addrs:        c.Addrs,
		MasterName:   c.MasterName,
		Username:     c.Username,
		DialTimeout:  timeout,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		// Fail fast when Redis is down: the feed answers 503 and its
		// sender retries; a pile of queued writes helps no one.
		MaxRetries: 1,
	}
	if c.URL != "" {
		u, err := goredis.ParseURL(c.URL)
		if err != nil {
			return nil, err
		}
		o.Addrs, o.DB, o.TLSConfig = []string{u.Addr}, u.DB, u.TLSConfig
		if u.Username != "" {
			o.Username = u.Username
		}
	}
	if !c.PasswordFile.IsZero() {
		s, err := conf.ReadSecretFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		o.Password = strings.TrimSpace(string(s.Bytes()))
	}
	if c.TLS != nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName}
		if !c.TLS.CAFile.IsZero() {
			pem, err := os.ReadFile(c.TLS.CAFile.String())
			if err != nil {
				return nil, fmt.Errorf("tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls.ca_file: no certificate in %s", c.TLS.CAFile)
			}
		}
		o.TLSConfig = tc
	}
	return o, nil
}
