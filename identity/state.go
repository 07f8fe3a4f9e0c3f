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
// them on first use. The replay cache is shared when given (replicas),
// else a file in stateDir.
func (st *State) samlParts(stateDir string, shared Replay) (saml.Replay, *saml.Tracker, *saml.Metrics, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.metrics == nil {
		m, err := saml.NewMetrics(st.reg)
		if err != nil {
			return nil, nil, nil, err
		}
		st.tracker, st.metrics = saml.NewTracker(), m
	}
	if shared != nil {
		return shared, st.tracker, st.metrics, nil
	}
	if st.replay == nil {
		replay, err := saml.OpenReplayCache(stateDir)
		if err != nil {
			return nil, nil, nil, err
		}
		st.replay = replay
	}
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
