package conf

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Duration is a [time.Duration] written as Go writes it ("15m", "1h30m",
// "250ms").
type Duration time.Duration

// UnmarshalText implements [encoding.TextUnmarshaler].
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want a value such as 30s, 15m or 8h)", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements [encoding.TextMarshaler].
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns d as a [time.Duration].
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as a duration.
func (d Duration) String() string { return time.Duration(d).String() }

// Secret is a value read from a *_file key. It never prints: fmt, %#v and
// slog all show REDACTED.
type Secret struct{ b []byte }

// NewSecret wraps b; the caller must not modify b afterwards.
func NewSecret(b []byte) Secret { return Secret{b: b} }

// ReadSecretFile reads a secret from path (a [Path] or a string),
// trimming surrounding white space (files written by editors end in a
// newline).
func ReadSecretFile[P ~string](path P) (Secret, error) {
	b, err := os.ReadFile(string(path))
	if err != nil {
		return Secret{}, err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return Secret{}, fmt.Errorf("secret file %s is empty", path)
	}
	return Secret{b: b}, nil
}

// Bytes returns the secret's bytes; the caller must not modify them.
func (s Secret) Bytes() []byte { return s.b }

// IsZero reports whether no secret was set.
func (s Secret) IsZero() bool { return len(s.b) == 0 }

func (Secret) String() string       { return "REDACTED" }
func (Secret) GoString() string     { return "REDACTED" }
func (Secret) LogValue() slog.Value { return slog.StringValue("REDACTED") }

// DecodeWebhookSecret decodes a Standard Webhooks secret ("whsec_" followed
// by base64) into its key bytes. A value without the prefix is taken as
// base64 too.
func DecodeWebhookSecret(s Secret) ([]byte, error) {
	v := strings.TrimPrefix(string(s.b), "whsec_")
	key, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("webhook secret is not whsec_<base64>")
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("webhook secret must decode to 24..64 bytes, got %d", len(key))
	}
	return key, nil
}
