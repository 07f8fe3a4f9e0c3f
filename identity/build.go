package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"portcullis/identity/internal/flow"
	"portcullis/identity/oidc"
	"portcullis/identity/saml"
	"portcullis/identity/session"
	"portcullis/internal/conf"
	"portcullis/posture"
)

// Store is what logins need of the posture store: the revocation checks
// every session decode makes, and a way to record revocations (logout,
// back-channel and IdP-initiated logout). *posture.DB is one.
type Store interface {
	session.Revocations
	ApplyRevocations(ctx context.Context, batch []posture.RevocationEvent) ([]posture.Outcome, error)
	Revoke(ctx context.Context, r posture.Revocation) (posture.Outcome, error)
}

// Options are what [New] needs beyond the configuration.
type Options struct {
	Logger *slog.Logger
	// Store holds revocations. Required.
	Store Store
	// State outlives reloads ([NewState]). Required.
	State *State
	// StateDir holds the default session key file and SAML keys.
	StateDir string
	// Hosts lists, per policy.login name ("corp", "saml:corp"), the hosts
	// of the resources that log in with it: a login may return only to
	// one of them, or to its provider's own callback or root host.
	Hosts map[string][]string
	// Ports reports whether the gateway serves a port: a return URL may
	// name only those, its provider's callback or root port, or none.
	Ports func(port int) bool
	// Replay, if set, remembers SAML assertion ids and OIDC logout token
	// ids where every replica sees them (the shared store). Nil: a file
	// in StateDir for SAML and a table in memory for OIDC, enough for one
	// gateway.
	Replay Replay
	// SAMLTimeout bounds each SAML IdP's first metadata fetch (default
	// 15 s); a failed fetch is retried on use.
	SAMLTimeout time.Duration
}

// A Replay remembers one-time ids until they expire: it is how an
// assertion or a logout token is accepted once. Seen records key until
// expires (now is the caller's clock) and reports whether it was already
// recorded and still live; an error refuses the login or logout.
type Replay interface {
	Seen(ctx context.Context, key string, expires, now time.Time) (bool, error)
}

// Set is the identity providers of one configuration. It does not
// change once built.
type Set struct {
	logins   map[string]Authenticator
	handlers map[string]http.Handler
}

// New builds every provider of cfg, with one session key set for all of
// them, and the endpoints they answer. Paths in cfg must already be
// absolute or relative to the working directory. An empty cfg yields an
// empty Set.
func New(ctx context.Context, cfg Config, opts Options) (*Set, error) {
	set := &Set{logins: map[string]Authenticator{}, handlers: map[string]http.Handler{}}
	if len(cfg.OIDC) == 0 && len(cfg.SAML) == 0 {
		return set, nil
	}
	if opts.Store == nil || opts.State == nil {
		return nil, errors.New("identity: Store and State are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	keys, err := sessionKeys(cfg.Session, opts.StateDir)
	if err != nil {
		return nil, conf.AtKey("session.key_file", err)
	}
	set.handlers[flow.HandoffPath] = opts.State.handoffs
	var errs []error
	if len(cfg.OIDC) > 0 {
		if err := set.addOIDC(cfg, keys, opts); err != nil {
			errs = append(errs, conf.AtKey("oidc", err))
		}
	}
	if len(cfg.SAML) > 0 {
		if err := set.addSAML(ctx, cfg, keys, opts); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// sessionKeys loads the one session key file every provider seals with:
// the configured one, or session.keys in the state directory, created
// with a new key when missing.
func sessionKeys(c session.Config, stateDir string) ([][]byte, error) {
	if c.KeyFile != "" {
		return session.LoadKeyFile(c.KeyFile.String(), false)
	}
	return session.LoadKeyFile(filepath.Join(stateDir, "session.keys"), true)
}

func (set *Set) addOIDC(cfg Config, keys [][]byte, opts Options) error {
	m, err := oidc.New(cfg.OIDC, oidc.Options{
		Logger:      opts.Logger.With("component", "oidc"),
		Store:       opts.Store,
		SessionKeys: keys,
		Session:     cfg.Session,
		Hosts:       opts.Hosts,
		Ports:       opts.Ports,
		Handoffs:    opts.State.handoffs,
		Replay:      opts.Replay,
	})
	if err != nil {
		return err
	}
	for path, h := range m.Handlers() {
		set.handlers[path] = h
	}
	for _, pc := range cfg.OIDC {
		set.logins[pc.Name] = m.Provider(pc.Name)
	}
	return nil
}

func (set *Set) addSAML(ctx context.Context, cfg Config, keys [][]byte, opts Options) error {
	if err := saml.ValidateAll(cfg.SAML); err != nil {
		return conf.AtKey("saml", err)
	}
	replay, tracker, metrics, err := opts.State.samlParts(opts.StateDir, opts.Replay)
	if err != nil {
		return err
	}
	timeout := opts.SAMLTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	var errs []error
	for i, c := range cfg.SAML {
		key := fmt.Sprintf("saml[%d]", i)
		codec, err := session.NewCodec(saml.CookieName(c.Name), keys, cfg.Session, opts.Store)
		if err != nil {
			errs = append(errs, conf.AtKey(key, err))
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, timeout)
		sp, err := saml.New(fctx, c, saml.Options{StateDir: opts.StateDir, Sessions: codec, Replay: replay, Tracker: tracker,
			Revoker: opts.Store, Hosts: opts.Hosts["saml:"+c.Name], Ports: opts.Ports, Handoffs: opts.State.handoffs,
			Logger: opts.Logger.With("component", "saml"), Metrics: metrics})
		cancel()
		if err != nil {
			errs = append(errs, conf.AtKey(key, err))
			continue
		}
		set.logins[sp.Name()] = sp
		for path, h := range sp.Handlers() {
			set.handlers[path] = h
		}
	}
	return errors.Join(errs...)
}

// Authenticator returns the provider policy.login names, or nil.
func (set *Set) Authenticator(login string) Authenticator {
	if set == nil {
		return nil
	}
	return set.logins[login]
}

// Handlers returns the endpoints to mount, by exact path: the handoff,
// and each provider's start, callback, logout and metadata endpoints.
func (set *Set) Handlers() map[string]http.Handler { return set.handlers }
