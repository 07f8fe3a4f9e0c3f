package feeds

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// OktaEnvelopeType is the eventType of every Okta event hook delivery.
const OktaEnvelopeType = "com.okta.event_hook"

// OktaDelivery is the envelope of one Okta event hook delivery: 1..n
// System Log events batched together.
type OktaDelivery struct {
	EventType string // always OktaEnvelopeType
	Source    string // https://{org}/api/v1/eventHooks/{hookId}
	EventID   string // the delivery's id, not an event's
	Events    []json.RawMessage
}

// OktaEvent is the part of a System Log LogEvent the feed uses.
type OktaEvent struct {
	UUID      string      `json:"uuid"`
	Published time.Time   `json:"published"`
	EventType string      `json:"eventType"`
	Actor     OktaActor   `json:"actor"`
	Target    []OktaActor `json:"target"`
	Outcome   struct {
		Result string `json:"result"`
	} `json:"outcome"`
	DebugContext struct {
		DebugData map[string]json.RawMessage `json:"debugData"`
	} `json:"debugContext"`
}

// OktaActor is a LogEvent actor or target.
type OktaActor struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	AlternateID string         `json:"alternateId"`
	DisplayName string         `json:"displayName"`
	DetailEntry map[string]any `json:"detailEntry"`
}

// ErrOktaPayload is wrapped by the errors of [ParseOktaHook] and
// [ParseOktaEvent].
var ErrOktaPayload = errors.New("feeds: invalid Okta payload")

// oktaHookShape is an event hook delivery as far as its member names are
// checked: the envelope and, inside it, every event.
type oktaHookShape struct {
	EventType string `json:"eventType"`
	Source    string `json:"source"`
	EventID   string `json:"eventId"`
	Data      *struct {
		Events []OktaEvent `json:"events"`
	} `json:"data"`
}

// ParseOktaHook parses an event hook delivery's envelope. The whole body,
// events included, is held to the strict JSON rule ([decodeStrict]): a
// duplicate member, or one whose name differs only in case from a member
// the feed reads, refuses the delivery. The events are returned raw: each
// is parsed on its own with [ParseOktaEvent], so that one semantically bad
// event does not refuse the batch.
func ParseOktaHook(body []byte) (*OktaDelivery, error) {
	var raw struct {
		EventType string `json:"eventType"`
		Source    string `json:"source"`
		EventID   string `json:"eventId"`
		Data      *struct {
			Events []json.RawMessage `json:"events"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOktaPayload, err)
	}
	if err := checkStrict(body, reflect.TypeFor[oktaHookShape]()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOktaPayload, err)
	}
	switch {
	case raw.EventType != OktaEnvelopeType:
		return nil, fmt.Errorf("%w: eventType is %q, not %q", ErrOktaPayload, clip(raw.EventType), OktaEnvelopeType)
	case raw.Data == nil || raw.Data.Events == nil:
		return nil, fmt.Errorf("%w: no data.events array", ErrOktaPayload)
	}
	return &OktaDelivery{EventType: raw.EventType, Source: raw.Source, EventID: raw.EventID, Events: raw.Data.Events}, nil
}

// ParseOktaEvent parses one System Log event, strictly ([decodeStrict]);
// it must have a uuid, an eventType and a published time.
func ParseOktaEvent(b []byte) (*OktaEvent, error) {
	var ev OktaEvent
	if err := decodeStrict(b, &ev); err != nil {
		return nil, fmt.Errorf("%w: event: %w", ErrOktaPayload, err)
	}
	if ev.UUID == "" || ev.EventType == "" || ev.Published.IsZero() {
		return nil, fmt.Errorf("%w: event lacks uuid, eventType or published", ErrOktaPayload)
	}
	return &ev, nil
}

// debugString returns a debugData member that is a JSON string.
func (ev *OktaEvent) debugString(key string) string {
	raw, ok := ev.DebugContext.DebugData[key]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// user returns the event's user: the first target of type User, else the
// actor when it is a User.
func (ev *OktaEvent) user() *OktaActor {
	for i := range ev.Target {
		if ev.Target[i].Type == "User" {
			return &ev.Target[i]
		}
	}
	if ev.Actor.Type == "User" {
		return &ev.Actor
	}
	return nil
}

// OktaRisk is a parsed debugData.risk string.
type OktaRisk struct {
	Level, PreviousLevel string // "LOW", "MEDIUM", "HIGH", or "" if absent
	DetectionName        string
}

// Okta writes debugData.risk as "{previousLevel=LOW, level=MEDIUM,
// detectionName=…, reasons=…, issuer=OKTA}": key=value pairs, not JSON,
// and reasons may hold commas. Only the anchored level tokens are read.
var (
	oktaLevelRE     = regexp.MustCompile(`(?:^|[{,]\s*)level=(LOW|MEDIUM|HIGH)\b`)
	oktaPrevLevelRE = regexp.MustCompile(`(?:^|[{,]\s*)previousLevel=(LOW|MEDIUM|HIGH)\b`)
	oktaDetectionRE = regexp.MustCompile(`(?:^|[{,]\s*)detectionName=([^,}]{1,128})`)
)

// ParseOktaRisk reads the levels out of a debugData.risk string. A string
// without a known level gives an empty Level.
func ParseOktaRisk(s string) OktaRisk {
	var r OktaRisk
	if m := oktaLevelRE.FindStringSubmatch(s); m != nil {
		r.Level = m[1]
	}
	if m := oktaPrevLevelRE.FindStringSubmatch(s); m != nil {
		r.PreviousLevel = m[1]
	}
	if m := oktaDetectionRE.FindStringSubmatch(s); m != nil {
		r.DetectionName = strings.TrimSpace(m[1])
	}
	return r
}

// hasDetailValue reports whether any target's detailEntry holds the string
// v (PolicyAction or RuleAction TERMINATE_SESSION).
func (ev *OktaEvent) hasDetailValue(v string) bool {
	for i := range ev.Target {
		for _, x := range ev.Target[i].DetailEntry {
			if s, ok := x.(string); ok && strings.EqualFold(s, v) {
				return true
			}
		}
	}
	return false
}
