package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"portcullis/enforcement"
	"portcullis/identity/saml"
	"portcullis/identity/session"
	"portcullis/internal/conf"
)

// samlState is the SAML state of one gateway that outlives reloads: the
// replay cache (a bbolt file, opened once), the logins in progress, and
// the metrics (registered once).
type samlState struct {
	replay  *saml.ReplayCache
	tracker *saml.Tracker
	metrics *saml.Metrics
}

// samlStateFor returns g's SAML state, creating it on first use. It lives
// on the Gateway, not in a snapshot: the replay cache must survive reloads.
func (g *Gateway) samlStateFor(stateDir string) (*samlState, error) {
	g.samlMu.Lock()
	defer g.samlMu.Unlock()
	if g.saml != nil {
		return g.saml, nil
	}
	replay, err := saml.OpenReplayCache(stateDir)
	if err != nil {
		return nil, err
	}
	m, err := saml.NewMetrics(g.reg)
	if err != nil {
		replay.Close()
		return nil, err
	}
	g.saml = &samlState{replay: replay, tracker: saml.NewTracker(), metrics: m}
	return g.saml, nil
}

// samlLogin adapts a SAML service provider to the gateway's
// authenticator.
type samlLogin struct{ sp *saml.SP }

func (l samlLogin) Authenticate(r *http.Request, res *resource) *enforcement.Subject {
	return l.sp.Authenticate(nil, r)
}

func (l samlLogin) AuthenticateResponse(w http.ResponseWriter, r *http.Request, res *resource) *enforcement.Subject {
	return l.sp.Authenticate(w, r)
}

func (l samlLogin) Challenge(w http.ResponseWriter, r *http.Request, res *resource, d enforcement.Decision, requestID string) {
	l.sp.Challenge(w, r, d, res.cfg.Policy.User.ACR, requestID, res.name)
}

// buildSAMLLogins compiles the SAML identity providers into s.logins
// (as "saml:NAME") and mounts their endpoints in s.system. sess is the
// identity.session section (its key file seals the session cookies).
// Relative paths in cfgs are resolved against the config file here.
func (g *Gateway) buildSAMLLogins(cfgs []saml.Config, sess session.Config, s *snapshot) error {
	if len(cfgs) == 0 {
		return nil
	}
	if err := saml.ValidateAll(cfgs); err != nil {
		return conf.AtKey("saml", err)
	}
	stateDir := s.cfg.Path(s.cfg.State.Dir)
	keyFile := sess.KeyFile
	if keyFile == "" {
		keyFile = filepath.Join(stateDir, "session.keys")
	} else {
		keyFile = s.cfg.Path(keyFile)
	}
	keys, err := session.LoadKeyFile(keyFile, sess.KeyFile == "")
	if err != nil {
		return conf.AtKey("session.key_file", err)
	}
	st, err := g.samlStateFor(stateDir)
	if err != nil {
		return err
	}
	var errs []error
	for i, c := range cfgs {
		key := fmt.Sprintf("saml[%d]", i)
		if c.IdPMetadataFile != "" {
			c.IdPMetadataFile = s.cfg.Path(c.IdPMetadataFile)
		}
		if c.KeyFile != "" {
			c.KeyFile, c.CertFile = s.cfg.Path(c.KeyFile), s.cfg.Path(c.CertFile)
		}
		var hosts []string
		for j := range s.cfg.Resources {
			if rc := &s.cfg.Resources[j]; rc.Policy.Login == "saml:"+c.Name {
				hosts = append(hosts, rc.Hosts...)
			}
		}
		allowed := func(host string) bool { return hostMatches(hosts, host) }
		codec, err := session.NewCodec(saml.CookieName(c.Name), keys, sess, g.store)
		if err != nil {
			errs = append(errs, conf.AtKey(key, err))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		sp, err := saml.New(ctx, c, saml.Options{StateDir: stateDir, Sessions: codec, Replay: st.replay, Tracker: st.tracker,
			Revoker: g.store, HostAllowed: allowed, Logger: g.log.With("component", "saml"), Metrics: st.metrics})
		cancel()
		if err != nil {
			errs = append(errs, conf.AtKey(key, err))
			continue
		}
		s.logins[sp.Name()] = samlLogin{sp: sp}
		for p, h := range sp.Handlers() {
			s.system[p] = h
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// hostMatches reports whether host (with or without port) is one of the
// resource host patterns: exact, or a one-label wildcard. A catch-all
// "*" never makes every host a safe redirect target.
func hostMatches(patterns []string, host string) bool {
	name := strings.ToLower(host)
	if h, _, err := net.SplitHostPort(name); err == nil {
		name = h
	}
	name = strings.Trim(name, "[]")
	for _, pat := range patterns {
		pat = strings.ToLower(pat)
		if h, _, err := net.SplitHostPort(pat); err == nil {
			pat = h
		}
		switch {
		case pat == "*" || pat == "":
		case strings.HasPrefix(pat, "*."):
			if i := strings.IndexByte(name, '.'); i > 0 && name[i+1:] == pat[2:] {
				return true
			}
		case pat == name:
			return true
		}
	}
	return false
}
