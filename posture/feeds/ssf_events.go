package feeds

import (
	"math"
	"strings"
	"time"

	"portcullis/posture"
)

// Event type URIs.
const (
	caepBase = "https://schemas.openid.net/secevent/caep/event-type/"
	riscBase = "https://schemas.openid.net/secevent/risc/event-type/"
	ssfBase  = "https://schemas.openid.net/secevent/ssf/event-type/"

	EventSessionRevoked         = caepBase + "session-revoked"
	EventCredentialChange       = caepBase + "credential-change"
	EventAssuranceLevelChange   = caepBase + "assurance-level-change"
	EventTokenClaimsChange      = caepBase + "token-claims-change"
	EventDeviceComplianceChange = caepBase + "device-compliance-change"
	EventRiskLevelChange        = caepBase + "risk-level-change"
	EventAccountDisabled        = riscBase + "account-disabled"
	EventAccountPurged          = riscBase + "account-purged"
	EventCredentialCompromise   = riscBase + "credential-compromise"
	EventSessionsRevoked        = riscBase + "sessions-revoked"
	EventVerification           = ssfBase + "verification"
	EventStreamUpdated          = ssfBase + "stream-updated"
)

// SSFEventTypes are the event types the SSF receiver acts on, the
// default events_requested of a managed stream.
var SSFEventTypes = []string{
	EventSessionRevoked, EventCredentialChange, EventAssuranceLevelChange, EventTokenClaimsChange,
	EventDeviceComplianceChange, EventRiskLevelChange,
	EventAccountDisabled, EventAccountPurged, EventCredentialCompromise, EventSessionsRevoked,
}

// caepEvent holds the members of every CAEP and RISC event the receiver
// reads.
type caepEvent struct {
	Subject          *Subject `json:"subject"`
	EventTimestamp   float64  `json:"event_timestamp"`
	CredentialType   string   `json:"credential_type"`
	ChangeType       string   `json:"change_type"`
	ChangeDirection  string   `json:"change_direction"`
	CurrentLevel     string   `json:"current_level"`
	PreviousLevel    string   `json:"previous_level"`
	CurrentStatus    string   `json:"current_status"`
	PreviousStatus   string   `json:"previous_status"`
	Principal        string   `json:"principal"`
	RiskReason       string   `json:"risk_reason"`
	Reason           string   `json:"reason"`
	InitiatingEntity string   `json:"initiating_entity"`
	State            string   `json:"state"`
	Status           string   `json:"status"`
}

// ssfWrites is what one SET does to the store.
type ssfWrites struct {
	postures []posture.PostureEvent
	risks    []posture.RiskEvent
	revs     []posture.RevocationEvent
	clears   []posture.PostureClear
	ignored  []string // reasons, one per event not acted on
}

func (w *ssfWrites) n() int { return len(w.postures) + len(w.risks) + len(w.revs) + len(w.clears) }

// guard puts every write under g, the SET's (iss, jti).
func (w *ssfWrites) guard(g posture.Guard) {
	for i := range w.postures {
		w.postures[i].Guard = g
	}
	for i := range w.risks {
		w.risks[i].Guard = g
	}
	for i := range w.revs {
		w.revs[i].Guard = g
	}
	for i := range w.clears {
		w.clears[i].Guard = g
	}
}

// mapSET turns a verified SET's event into store writes, all under the
// SET's guard. Verification and stream-updated events are handled by the
// caller and skipped here.
func (s *SSF) mapSET(set *SET) ssfWrites {
	var w ssfWrites
	seq := 0
	id := func() string {
		seq++
		if seq == 1 {
			return set.JTI
		}
		return set.JTI + "#" + itoa(seq)
	}
	s.mapEvent(&w, set, id)
	w.guard(set.guard())
	return w
}

// mapEvent adds the writes of a SET's one event to w, or the reason it
// is not acted on.
func (s *SSF) mapEvent(w *ssfWrites, set *SET, id func() string) {
	uri, ev := set.eventType, &set.event
	if uri == EventVerification || uri == EventStreamUpdated {
		return
	}
	if !contains(SSFEventTypes, uri) {
		w.ignored = append(w.ignored, "unknown_event")
		return
	}
	subj := set.SubID
	if subj == nil {
		subj = ev.Subject
	}
	if criticalUnknown(subj, s.critical()) {
		w.ignored = append(w.ignored, "critical_subject_member")
		return
	}
	at := set.IssuedAt
	if ts := ev.EventTimestamp; ts > 0 && ts < 1e11 {
		sec, frac := math.Modf(ts)
		at = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	cutoff := revocationCutoff(at)
	asDevice := uri == EventRiskLevelChange && strings.EqualFold(ev.Principal, "DEVICE")
	r := s.subjects.resolve(subj, asDevice)
	if r.empty() {
		w.ignored = append(w.ignored, "unknown_subject")
		return
	}
	reasons := []string{uri[strings.LastIndexByte(uri, '/')+1:]}
	revokeUser := func() bool {
		if r.user == "" {
			return false
		}
		w.revs = append(w.revs, posture.RevocationEvent{Revocation: posture.Revocation{
			Kind: posture.RevokeUser, User: r.user, Before: cutoff, Reasons: reasons,
			Source: s.name, EventID: id(), ObservedAt: at,
		}})
		return true
	}
	revokeDevice := func() bool {
		if r.device.ID == "" {
			return false
		}
		w.revs = append(w.revs, posture.RevocationEvent{Revocation: posture.Revocation{
			Kind: posture.RevokeDevice, Device: r.device, User: r.user, Before: cutoff, Reasons: reasons,
			Source: s.name, EventID: id(), ObservedAt: at,
		}})
		return true
	}
	acted := false
	switch uri {
	case EventSessionRevoked, EventSessionsRevoked:
		// A complex subject's members narrow one principal: a session
		// member names that session only.
		if r.session != "" {
			w.revs = append(w.revs, posture.RevocationEvent{Revocation: posture.Revocation{
				Kind: posture.RevokeSession, Session: r.session, User: r.user, Before: cutoff, Reasons: reasons,
				Source: s.name, EventID: id(), ObservedAt: at,
			}})
			acted = true
		} else {
			acted = revokeUser() || revokeDevice()
		}
	case EventCredentialChange:
		acted = revokeUser()
		if ev.CredentialType == "x509" && ev.ChangeType == "revoke" {
			acted = revokeDevice() || acted
		}
	case EventAssuranceLevelChange:
		// A decrease means the session no longer meets the assurance
		// it was issued with: the user must sign in (step up) again.
		if ev.ChangeDirection == "increase" {
			w.ignored = append(w.ignored, "informational")
			return
		}
		acted = revokeUser()
	case EventTokenClaimsChange:
		// Claims are fixed in a session when it is issued; a new
		// sign-in picks up the new ones.
		acted = revokeUser()
	case EventAccountDisabled, EventAccountPurged:
		acted = revokeUser()
	case EventCredentialCompromise:
		acted = revokeUser()
		if r.user != "" {
			w.risks = append(w.risks, posture.RiskEvent{Risk: posture.UserRisk{
				User: r.user, Level: posture.RiskHigh, Reasons: reasons, Source: s.name, EventID: id(), ObservedAt: at,
			}})
		}
	case EventDeviceComplianceChange:
		acted = s.deviceRecord(w, r.device, at, id, ev.CurrentStatus == "compliant", func(p *posture.Posture) {
			p.Compliance = posture.NotCompliant
		}, ":compliance")
	case EventRiskLevelChange:
		level, ok := posture.ParseRiskLevel(strings.ToLower(ev.CurrentLevel))
		if !ok || level == posture.RiskUnknown {
			w.ignored = append(w.ignored, "unknown_level")
			return
		}
		switch {
		case asDevice:
			threat := map[posture.RiskLevel]posture.ThreatLevel{posture.RiskMedium: posture.ThreatMedium, posture.RiskHigh: posture.ThreatHigh}[level]
			acted = s.deviceRecord(w, r.device, at, id, level == posture.RiskLow, func(p *posture.Posture) {
				p.Threat = threat
			}, ":risk")
		case r.user != "":
			if ev.RiskReason != "" {
				reasons = append(reasons, clipN(ev.RiskReason, 256))
			}
			w.risks = append(w.risks, posture.RiskEvent{Risk: posture.UserRisk{
				User: r.user, Level: level, Reasons: reasons, Source: s.name, EventID: id(), ObservedAt: at,
			}})
			acted = true
		}
	}
	if !acted {
		w.ignored = append(w.ignored, "unknown_subject")
	}
}

// deviceRecord writes or clears this feed's record about a device. SSF
// device events are edge-triggered: a record that objects (not compliant,
// risky) is stored under "<feed><suffix>" with the device's other fields
// copied from its other records, and a good event removes that record
// instead of storing one, so that the feed never needs to refresh
// posture it does not own.
func (s *SSF) deviceRecord(w *ssfWrites, key posture.DeviceKey, at time.Time, id func() string, good bool, set func(*posture.Posture), suffix string) bool {
	if key.ID == "" {
		return false
	}
	source := s.name + suffix
	if good {
		w.clears = append(w.clears, posture.PostureClear{Key: key, Source: source, EventID: id(), ObservedAt: at})
		return true
	}
	p := posture.Posture{Source: source, EventID: id(), ObservedAt: at, State: posture.StateActive,
		Compliance: posture.Compliant, Threat: posture.ThreatNone}
	if d := s.db.Device(key); d != nil {
		managed := true
		for i := range d.Records {
			r := &d.Records[i]
			if r.Source == source {
				p.Compliance, p.Threat = r.Compliance, r.Threat
				continue
			}
			managed = managed && r.Managed
		}
		p.Managed = managed
	}
	set(&p)
	w.postures = append(w.postures, posture.PostureEvent{Key: key, Posture: p})
	return true
}

// revocationCutoff is the Before of a revocation caused by an event at t.
// A time given to the whole second says only "during that second", so
// the revocation covers all of it: sessions issued in that second are
// revoked too (fail closed). A finer time is taken as it is. Every feed
// that revokes uses it, so that SSF and Okta agree.
func revocationCutoff(t time.Time) time.Time {
	if t.Nanosecond() == 0 {
		return t.Add(time.Second)
	}
	return t
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
