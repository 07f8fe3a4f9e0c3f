package gateway

import (
	"context"

	"portcullis/identity"
	"portcullis/internal/conf"
	"portcullis/posture"
	redisstore "portcullis/posture/redis"
)

// openStore opens the posture store the configuration names: the
// embedded store in stateDir, or the store shared through Redis, whose
// copy is empty until runStore has loaded it.
func (g *Gateway) openStore(cfg *Config, stateDir string) error {
	opts := posture.Options{Logger: g.log.With("component", "posture")}
	if cfg.State.Redis == nil {
		db, err := posture.Open(stateDir, opts)
		if err != nil {
			return conf.Errorf("state.dir", "opening posture store: %v", err)
		}
		g.store = db
		return nil
	}
	rc := *cfg.State.Redis
	s, err := redisstore.Open(rc, redisstore.Options{Logger: g.log.With("component", "posture_redis"), Posture: opts})
	if err != nil {
		return conf.AtKey("state.redis", err)
	}
	g.shared, g.store = s, s.DB()
	return nil
}

// runStore follows the shared store until ctx ends; the embedded store
// needs nothing.
func (g *Gateway) runStore(ctx context.Context) error {
	if g.shared == nil {
		return nil
	}
	return g.shared.Run(ctx)
}

// storeStatus is the store's part of /readyz: whether requests can be
// decided, and the shared store's state.
func (g *Gateway) storeStatus() (bool, any) {
	if g.store == nil {
		return false, nil
	}
	if g.shared == nil {
		return true, map[string]any{"kind": "embedded", "state": "ok"}
	}
	st := g.shared.Status()
	return st.Loaded, map[string]any{"kind": "redis", "state": st.State, "loaded": st.Loaded,
		"since": st.Since, "rev": st.Rev, "error": st.Err}
}

// replay is the replay cache of SAML assertion ids and OIDC logout token
// ids that the replicas share, or nil (one gateway: identity keeps its
// own).
func (g *Gateway) replay() identity.Replay {
	if g.shared == nil {
		return nil
	}
	return g.shared
}
