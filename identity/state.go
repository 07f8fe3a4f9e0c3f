package identity

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"portcullis/identity/internal/flow"
	"portcullis/identity/saml"
)

// State is the identity state of one gateway that outlives configuration
// reloads: the handoff codes and SAML logins in flight, the SAML
// assertion replay cache (a file in the state directory, opened by the
// first configuration with SAML), and the SAML metrics (registered
// once). It is safe for concurrent use; Close it when the gateway stops.
type State struct {
	reg      prometheus.Registerer
	handoffs *flow.Handoffs

	mu      sync.Mutex // guards the fields below
	replay  *saml.ReplayCache
	tracker *saml.Tracker
	metrics *saml.Metrics
}

// NewState returns an empty state; SAML metrics go to reg (nil: a
// private registry).
func NewState(reg prometheus.Registerer) *State {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &State{reg: reg, handoffs: flow.NewHandoffs(nil)}
}

// samlParts returns the SAML replay cache, tracker and metrics, creating
// them on first use with the replay cache in stateDir.
func (st *State) samlParts(stateDir string) (*saml.ReplayCache, *saml.Tracker, *saml.Metrics, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.replay != nil {
		return st.replay, st.tracker, st.metrics, nil
	}
	replay, err := saml.OpenReplayCache(stateDir)
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := saml.NewMetrics(st.reg)
	if err != nil {
		replay.Close()
		return nil, nil, nil, err
	}
	st.replay, st.tracker, st.metrics = replay, saml.NewTracker(), m
	return st.replay, st.tracker, st.metrics, nil
}

// Close closes the replay cache, if one was opened. A nil State has
// nothing to close.
func (st *State) Close() error {
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.replay == nil {
		return nil
	}
	err := st.replay.Close()
	st.replay = nil
	return err
}
