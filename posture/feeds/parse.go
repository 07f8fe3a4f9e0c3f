package feeds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"portcullis/posture"
)

// Spec is the value of the spec member this package understands.
const Spec = "portcullis.posture.v1"

// MaxFutureSkew is how far in the future observed_at may lie (a source's
// clock may run a little ahead of ours, but not more).
const MaxFutureSkew = 5 * time.Minute

// Bounds on what one event may hold, so that a record in the store stays
// small whatever a sender posts.
const (
	maxBatch     = 10000
	maxStringLen = 1024
	maxListLen   = 64
)

// A PayloadError says why a body is not an acceptable portcullis.posture.v1
// payload.
type PayloadError struct {
	Reason string // ReasonInvalidPayload or ReasonFutureObserved
	Detail string // for the sender: which event and field, and what is wrong
}

func (e *PayloadError) Error() string { return "feeds: " + e.Reason + ": " + e.Detail }

func invalid(format string, args ...any) *PayloadError {
	return &PayloadError{Reason: ReasonInvalidPayload, Detail: fmt.Sprintf(format, args...)}
}

// wireEvent is the JSON form of one event. Pointers tell "missing" from a
// zero value; unknown members are ignored, known ones must have their type
// and their exact name (see [decodeStrict]).
type wireEvent struct {
	Spec       *string         `json:"spec"`
	EventID    *string         `json:"event_id"`
	Source     *string         `json:"source"`
	ObservedAt *string         `json:"observed_at"`
	Device     *wireDevice     `json:"device"`
	User       *string         `json:"user"`
	Managed    *bool           `json:"managed"`
	Compliant  json.RawMessage `json:"compliant"` // true, false or null; required
	GraceUntil *string         `json:"grace_until"`
	Threat     *wireThreat     `json:"threat"`
	OS         *wireOS         `json:"os"`
	State      *string         `json:"state"`
	Reasons    []string        `json:"reasons"`
}

type wireDevice struct {
	ID      *string     `json:"id"`
	Aliases []wireAlias `json:"aliases"`
}

type wireAlias struct {
	Kind  *string `json:"kind"`
	Value *string `json:"value"`
}

type wireThreat struct {
	Level *string  `json:"level"`
	Names []string `json:"names"`
}

type wireOS struct {
	Platform *string `json:"platform"`
	Version  *string `json:"version"`
}

var platforms = []string{"ios", "ipados", "android", "macos", "windows", "linux", "chromeos"}

var aliasKinds = []string{"serial", "udid", "imei", "intune_device_id", "entra_device_id", "mac", "cert_sha256"}

// ParsePostureEvents parses a portcullis.posture.v1 body: one event object,
// or a JSON array of them (a batch). It checks the spec, the required
// members, the types of known members, the enumerations and that
// observed_at is at most [MaxFutureSkew] after now. The events' Key.CA is
// left empty for the caller (the feed knows its device CA); user ids are
// lower-cased. A rejected body yields a *[PayloadError].
func ParsePostureEvents(body []byte, now time.Time) ([]posture.PostureEvent, error) {
	events, _, err := parsePostureEvents(body, now)
	return events, err
}

// parsePostureEvents is ParsePostureEvents that also says whether the body
// was a batch (an array).
func parsePostureEvents(body []byte, now time.Time) ([]posture.PostureEvent, bool, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, invalid("empty body")
	}
	if trimmed[0] != '[' {
		e, err := parseEvent(body, now)
		if err != nil {
			return nil, false, err
		}
		return []posture.PostureEvent{e}, false, nil
	}
	var raws []json.RawMessage
	if err := decodeStrict(body, &raws); err != nil {
		return nil, true, jsonError("", err)
	}
	switch {
	case len(raws) == 0:
		return nil, true, invalid("empty batch")
	case len(raws) > maxBatch:
		return nil, true, invalid("batch of %d events, at most %d", len(raws), maxBatch)
	}
	events := make([]posture.PostureEvent, 0, len(raws))
	for i, raw := range raws {
		e, err := parseEvent(raw, now)
		if err != nil {
			var pe *PayloadError
			if errors.As(err, &pe) {
				pe.Detail = fmt.Sprintf("event %d: %s", i, pe.Detail)
			}
			return nil, true, err
		}
		events = append(events, e)
	}
	return events, true, nil
}

func jsonError(prefix string, err error) *PayloadError {
	var ke *KeyError
	if errors.As(err, &ke) {
		return invalid("%s%s", prefix, ke.Error())
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return invalid("%swant a JSON %s, got %s", prefix, typeName(te.Type.Kind().String()), te.Value)
		}
		return invalid("%s%s: want a JSON %s, got %s", prefix, te.Field, typeName(te.Type.Kind().String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("%smalformed JSON at byte %d", prefix, se.Offset)
	}
	return invalid("%smalformed JSON", prefix)
}

func typeName(kind string) string {
	switch kind {
	case "ptr", "struct":
		return "object"
	case "slice":
		return "array"
	case "int", "float64":
		return "number"
	}
	return kind
}

func parseEvent(raw []byte, now time.Time) (posture.PostureEvent, error) {
	var zero posture.PostureEvent
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return zero, invalid("an event must be a JSON object")
	}
	var w wireEvent
	if err := decodeStrict(raw, &w); err != nil {
		return zero, jsonError("", err)
	}
	switch {
	case w.Spec == nil:
		return zero, invalid("spec: required")
	case *w.Spec != Spec:
		return zero, invalid("spec: unknown %q, want %q", clip(*w.Spec), Spec)
	}
	eventID, err := requiredString("event_id", w.EventID)
	if err != nil {
		return zero, err
	}
	source, err := requiredString("source", w.Source)
	if err != nil {
		return zero, err
	}
	if w.ObservedAt == nil {
		return zero, invalid("observed_at: required")
	}
	observed, err := parseTime("observed_at", *w.ObservedAt)
	if err != nil {
		return zero, err
	}
	if observed.Sub(now) > MaxFutureSkew {
		return zero, &PayloadError{Reason: ReasonFutureObserved,
			Detail: fmt.Sprintf("observed_at %s is more than %s ahead of the gateway's clock", observed.Format(time.RFC3339), MaxFutureSkew)}
	}
	if w.Device == nil {
		return zero, invalid("device: required")
	}
	deviceID, err := requiredString("device.id", w.Device.ID)
	if err != nil {
		return zero, err
	}
	if len(w.Device.Aliases) > maxListLen {
		return zero, invalid("device.aliases: at most %d entries", maxListLen)
	}
	for i, a := range w.Device.Aliases {
		key := fmt.Sprintf("device.aliases[%d]", i)
		kind, err := requiredString(key+".kind", a.Kind)
		if err != nil {
			return zero, err
		}
		if !slices.Contains(aliasKinds, kind) {
			return zero, invalid("%s.kind: unknown %q (want one of %s)", key, clip(kind), strings.Join(aliasKinds, ", "))
		}
		if _, err := requiredString(key+".value", a.Value); err != nil {
			return zero, err
		}
	}
	if w.Managed == nil {
		return zero, invalid("managed: required")
	}
	p := posture.Posture{
		Source:     source,
		EventID:    eventID,
		Managed:    *w.Managed,
		ObservedAt: observed,
	}
	switch string(bytes.TrimSpace(w.Compliant)) {
	case "":
		return zero, invalid("compliant: required (true, false or null)")
	case "true":
		p.Compliance = posture.Compliant
	case "false":
		p.Compliance = posture.NotCompliant
	case "null":
		p.Compliance = posture.ComplianceUnknown
	default:
		return zero, invalid("compliant: want true, false or null")
	}
	if w.GraceUntil != nil {
		if p.GraceUntil, err = parseTime("grace_until", *w.GraceUntil); err != nil {
			return zero, err
		}
	}
	if w.User != nil {
		if err := checkString("user", *w.User); err != nil {
			return zero, err
		}
		p.User = strings.ToLower(*w.User)
	}
	if w.Threat != nil {
		if w.Threat.Level != nil {
			l, ok := posture.ParseThreatLevel(*w.Threat.Level)
			if !ok || l == posture.ThreatUnknown {
				return zero, invalid("threat.level: unknown %q (want none, low, medium, high or critical)", clip(*w.Threat.Level))
			}
			p.Threat = l
		}
		if p.ThreatNames, err = checkList("threat.names", w.Threat.Names); err != nil {
			return zero, err
		}
	}
	if w.OS != nil {
		if w.OS.Platform != nil {
			if !slices.Contains(platforms, *w.OS.Platform) {
				return zero, invalid("os.platform: unknown %q (want one of %s)", clip(*w.OS.Platform), strings.Join(platforms, ", "))
			}
			p.Platform = *w.OS.Platform
		}
		if w.OS.Version != nil {
			if err := checkString("os.version", *w.OS.Version); err != nil {
				return zero, err
			}
			p.OSVersion = *w.OS.Version
		}
	}
	if w.State != nil {
		s, ok := posture.ParseDeviceState(*w.State)
		if !ok || s == posture.StateUnreported {
			return zero, invalid("state: unknown %q (want active, quarantined, retired, wiped or lost)", clip(*w.State))
		}
		p.State = s
	}
	if p.Reasons, err = checkList("reasons", w.Reasons); err != nil {
		return zero, err
	}
	return posture.PostureEvent{Key: posture.DeviceKey{ID: deviceID}, Posture: p}, nil
}

func requiredString(key string, s *string) (string, error) {
	if s == nil || *s == "" {
		return "", invalid("%s: required", key)
	}
	return *s, checkString(key, *s)
}

// checkString bounds a string and refuses control characters, which have no
// place in identifiers and would only confuse logs and deny pages.
func checkString(key, s string) error {
	if len(s) > maxStringLen {
		return invalid("%s: longer than %d bytes", key, maxStringLen)
	}
	if !utf8.ValidString(s) {
		return invalid("%s: not valid UTF-8", key)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return invalid("%s: contains a control character", key)
		}
	}
	return nil
}

func checkList(key string, list []string) ([]string, error) {
	if len(list) > maxListLen {
		return nil, invalid("%s: at most %d entries", key, maxListLen)
	}
	for i, s := range list {
		if err := checkString(fmt.Sprintf("%s[%d]", key, i), s); err != nil {
			return nil, err
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	return list, nil
}

func parseTime(key, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalid("%s: %q is not an RFC 3339 time", key, clip(s))
	}
	return t.UTC(), nil
}

// clip shortens a value quoted back to the sender.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
