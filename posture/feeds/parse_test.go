package feeds

import (
	"errors"
	"strings"
	"testing"
	"time"

	"portcullis/posture"
)

func TestParsePostureEvents(t *testing.T) {
	const base = `"spec":"portcullis.posture.v1","event_id":"e1","source":"uem","observed_at":"2026-09-14T08:19:55Z","device":{"id":"d1"},"managed":true`
	obj := func(extra string) string { return "{" + base + extra + "}" }
	tests := []struct {
		name   string
		body   string
		reason string // "" when accepted
		detail string
		check  func(t *testing.T, p posture.Posture)
	}{
		{name: "minimal, compliant null", body: obj(`,"compliant":null`), check: func(t *testing.T, p posture.Posture) {
			if p.Compliance != posture.ComplianceUnknown || p.Threat != posture.ThreatUnknown || p.State != posture.StateUnreported {
				t.Errorf("unreported fields = %v %v %v", p.Compliance, p.Threat, p.State)
			}
		}},
		{name: "full", body: obj(`,"compliant":false,"grace_until":"2026-09-15T00:00:00+02:00","user":"A.B@X.example","threat":{"level":"low","names":["x"]},"os":{"platform":"android","version":"14"},"state":"quarantined","reasons":["r"],"unknown":[1,{"a":null}]`),
			check: func(t *testing.T, p posture.Posture) {
				if p.Compliance != posture.NotCompliant || !p.GraceUntil.Equal(time.Date(2026, 9, 14, 22, 0, 0, 0, time.UTC)) ||
					p.User != "a.b@x.example" || p.Threat != posture.ThreatLow || p.State != posture.StateQuarantined ||
					p.Platform != "android" || p.OSVersion != "14" || len(p.Reasons) != 1 || len(p.ThreatNames) != 1 {
					t.Errorf("posture = %+v", p)
				}
			}},
		{name: "leading space", body: "  \n" + obj(`,"compliant":true`), check: func(t *testing.T, p posture.Posture) {
			if p.Compliance != posture.Compliant {
				t.Errorf("compliance = %v", p.Compliance)
			}
		}},
		{name: "empty", body: "", reason: ReasonInvalidPayload, detail: "empty body"},
		{name: "string", body: `"x"`, reason: ReasonInvalidPayload, detail: "must be a JSON object"},
		{name: "trailing garbage", body: obj(`,"compliant":true`) + "x", reason: ReasonInvalidPayload, detail: "malformed JSON"},
		{name: "empty batch", body: `[]`, reason: ReasonInvalidPayload, detail: "empty batch"},
		{name: "batch of a number", body: `[1]`, reason: ReasonInvalidPayload, detail: "event 0: an event must be a JSON object"},
		{name: "no spec", body: `{"event_id":"e"}`, reason: ReasonInvalidPayload, detail: "spec: required"},
		{name: "compliant missing", body: obj(``), reason: ReasonInvalidPayload, detail: "compliant: required"},
		{name: "compliant string", body: obj(`,"compliant":"yes"`), reason: ReasonInvalidPayload, detail: "compliant: want true, false or null"},
		{name: "device id missing", body: strings.Replace(obj(`,"compliant":true`), `"id":"d1"`, `"serial":"s"`, 1), reason: ReasonInvalidPayload, detail: "device.id: required"},
		{name: "device a string", body: strings.Replace(obj(`,"compliant":true`), `{"id":"d1"}`, `"d1"`, 1), reason: ReasonInvalidPayload, detail: "device: want a JSON object"},
		{name: "event id a number", body: strings.Replace(obj(`,"compliant":true`), `"e1"`, `1`, 1), reason: ReasonInvalidPayload, detail: "event_id: want a JSON string"},
		{name: "bad time", body: strings.Replace(obj(`,"compliant":true`), `2026-09-14T08:19:55Z`, `yesterday`, 1), reason: ReasonInvalidPayload, detail: "observed_at"},
		{name: "bad platform", body: obj(`,"compliant":true,"os":{"platform":"beos"}`), reason: ReasonInvalidPayload, detail: "os.platform: unknown"},
		{name: "empty threat level", body: obj(`,"compliant":true,"threat":{"level":""}`), reason: ReasonInvalidPayload, detail: "threat.level"},
		{name: "empty state", body: obj(`,"compliant":true,"state":""`), reason: ReasonInvalidPayload, detail: "state: unknown"},
		{name: "bad alias kind", body: strings.Replace(obj(`,"compliant":true`), `{"id":"d1"}`, `{"id":"d1","aliases":[{"kind":"imsi","value":"1"}]}`, 1), reason: ReasonInvalidPayload, detail: "device.aliases[0].kind"},
		{name: "control character", body: strings.Replace(obj(`,"compliant":true`), `"d1"`, `"d\u0000"`, 1), reason: ReasonInvalidPayload, detail: "control character"},
		{name: "future", body: strings.Replace(obj(`,"compliant":true`), `08:19:55Z`, `08:31:00Z`, 1), reason: ReasonFutureObserved},
		{name: "slightly future", body: strings.Replace(obj(`,"compliant":true`), `08:19:55Z`, `08:24:00Z`, 1)},
		// Issue 16 item 8: a relay that reads names case-insensitively, or
		// keeps the first duplicate, must not see another event.
		{name: "duplicate and case-folded names", body: obj(`,"compliant":true,"Compliant":false,"STATE":"lost"`), reason: ReasonInvalidPayload,
			detail: `duplicate key "Compliant" (it differs from "compliant" only in case)`},
		{name: "duplicate name", body: obj(`,"compliant":true,"compliant":false`), reason: ReasonInvalidPayload, detail: `duplicate key "compliant"`},
		{name: "known name in another case", body: obj(`,"compliant":true,"STATE":"lost"`), reason: ReasonInvalidPayload,
			detail: `unknown key "STATE" (names are case-sensitive: "state")`},
		{name: "nested duplicate", body: strings.Replace(obj(`,"compliant":true`), `{"id":"d1"}`, `{"id":"d1","id":"d2"}`, 1), reason: ReasonInvalidPayload,
			detail: `device: duplicate key "id"`},
		{name: "duplicate in a batch", body: "[" + obj(`,"compliant":true,"compliant":false`) + "]", reason: ReasonInvalidPayload,
			detail: `[0]: duplicate key "compliant"`},
	}
	now := time.Date(2026, 9, 14, 8, 20, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := ParsePostureEvents([]byte(tt.body), now)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if len(evs) != 1 || evs[0].Key.ID != "d1" || evs[0].Posture.EventID != "e1" || evs[0].Posture.Source != "uem" || evs[0].Key.CA != "" {
					t.Fatalf("events = %+v", evs)
				}
				if tt.check != nil {
					tt.check(t, evs[0].Posture)
				}
				return
			}
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PayloadError", err)
			}
			if pe.Reason != tt.reason || !strings.Contains(pe.Detail, tt.detail) {
				t.Errorf("err = %s %q, want %s containing %q", pe.Reason, pe.Detail, tt.reason, tt.detail)
			}
		})
	}
}

func FuzzParsePostureEvents(f *testing.F) {
	now := time.Date(2026, 9, 14, 8, 20, 0, 0, time.UTC)
	f.Add([]byte(event("e1", now, nil)))
	f.Add(batchBody(event("e1", now, nil), event("e2", now.Add(-time.Hour), func(m map[string]any) { m["compliant"] = nil })))
	f.Add([]byte(`{"spec":"portcullis.posture.v1","event_id":"x","source":"s","observed_at":"2026-09-14T08:19:55.123+01:00","device":{"id":"d"},"managed":false,"compliant":null}`))
	f.Add([]byte(`[{}]`))
	f.Add([]byte(`{"compliant":tru}`))
	f.Add([]byte(`[[[[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := ParsePostureEvents(body, now)
		if err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) || pe.Reason == "" || pe.Detail == "" {
				t.Fatalf("error %v is not a complete *PayloadError", err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("accepted a body with no events")
		}
		for _, e := range evs {
			p := e.Posture
			if p.EventID == "" || p.Source == "" || e.Key.ID == "" || p.ObservedAt.IsZero() {
				t.Fatalf("accepted an incomplete event: %+v", e)
			}
			if p.ObservedAt.Sub(now) > MaxFutureSkew {
				t.Fatalf("accepted observed_at %v", p.ObservedAt)
			}
			if p.User != strings.ToLower(p.User) {
				t.Fatalf("user %q not lower-cased", p.User)
			}
		}
	})
}
