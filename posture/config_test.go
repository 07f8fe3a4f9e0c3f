package posture

import (
	"errors"
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

// problems decodes src as a posture section and validates it, returning
// every problem as "line:col key: message".
func problems(t *testing.T, src string) []string {
	t.Helper()
	var c Config
	pos, err := conf.Decode("/etc/p/posture.yaml", []byte(src), &c)
	var out []string
	for _, e := range conf.Locate("/etc/p/posture.yaml", pos, errors.Join(err, c.Validate())) {
		out = append(out, strings.TrimPrefix(e.Error(), "/etc/p/posture.yaml:"))
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings of each problem, in order; nil: valid
	}{
		{"empty", ``, nil},
		{"one feed", `feeds: [{name: uem, type: webhook, secret_file: s}]`, nil},
		{"rotation", `feeds: [{name: uem, type: webhook, secret_file: a, secret_files: [b]}]`, nil},
		{"missing name, type and secret", `feeds: [{path: /x}]`,
			[]string{"1:9: feeds[0].name: required", "1:9: feeds[0].type: required (one of webhook, okta-event-hook, ssf or universal-logout)"}},
		{"webhook without secret", `feeds: [{name: uem, type: webhook}]`, []string{"feeds[0].secret_file: required"}},
		{"okta", `feeds: [{name: okta, type: okta-event-hook, authorization_file: a, okta_org: "https://acme.okta.com", api_token_file: t}]`, nil},
		{"okta with webhook secret", `feeds: [{name: okta, type: okta-event-hook, secret_file: s, okta_org: "http://acme.okta.com"}]`,
			[]string{"1:9: feeds[0].authorization_file: required", "1:9: feeds[0].api_token_file: required with okta_org",
				"1:45: feeds[0].secret_file: not a key of a okta-event-hook feed (only of type webhook)",
				"1:71: feeds[0].okta_org: \"http://acme.okta.com\": must use https"}},
		{"ssf push", `feeds: [{name: ssf, type: ssf, issuer: "https://tx.example", audience: "https://pep.example/ssf", authorization_file: a}]`, nil},
		{"ssf poll", `feeds: [{name: ssf, type: ssf, issuer: "https://tx.example", audience: a, delivery: poll, poll_endpoint: "https://tx.example/poll"}]`, nil},
		{"ssf bad values", `feeds: [{name: ssf, type: ssf, delivery: pull, user_from: upn}]`,
			[]string{"feeds[0].issuer: required", "feeds[0].audience: required", "feeds[0].authorization_file: required for push",
				`1:42: feeds[0].delivery: unknown value "pull" (want push or poll)`, `1:59: feeds[0].user_from: unknown value "upn" (want email or sub)`}},
		{"ssf incomplete", `feeds: [{name: ssf, type: ssf}]`,
			[]string{"feeds[0].issuer: required", "feeds[0].audience: required", "feeds[0].authorization_file: required for push"}},
		{"universal logout", `feeds: [{name: gtr, type: universal-logout, issuer: "https://acme.okta.com"}]`,
			[]string{"feeds[0].audience: required with issuer", "feeds[0].client_id: required with issuer"}},
		{"unknown type", `feeds: [{name: x, type: jamf, secret_file: s, secert: x}]`,
			[]string{`1:25: feeds[0].type: unknown value "jamf" (want webhook, okta-event-hook, ssf or universal-logout)`,
				"1:25: feeds[0].type: required", // the gateway drops it: the key failed to decode
				"1:47: feeds[0].secert: unknown key"}},
		{"three secrets", `feeds: [{name: x, type: webhook, secret_file: a, secret_files: [b, c]}]`,
			[]string{"feeds[0].secret_files: at most 2 secrets"}},
		{"duplicate name and path", `feeds: [{name: uem, type: webhook, secret_file: s}, {name: uem, type: webhook, secret_file: s}]`,
			[]string{`1:53: feeds[1].path: "/.portcullis/feeds/uem" is already the path of feeds[0]`, `1:60: feeds[1].name: "uem" is already the name of feeds[0]`}},
		{"relative path and bad values", "max_age: -1s\nfeeds: [{name: a b, type: webhook, secret_file: s, path: feeds/a, max_body: -1, tolerance: -1s}]",
			[]string{"max_age: must be positive", `feeds[0].name: "a b": use letters`, `feeds[0].path: "feeds/a" must start with /`, "feeds[0].max_body: must be positive", "feeds[0].tolerance: must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problems(t, tt.src)
			if len(got) != len(tt.want) {
				t.Fatalf("problems =\n%s\nwant %d like\n%s", strings.Join(got, "\n"), len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestFeedKeysBelongToTheirType: a key of another feed type is an error at
// its line naming the key, whatever the type; the webhook keys issue #10
// found passing silently are among them.
func TestFeedKeysBelongToTheirType(t *testing.T) {
	for _, tt := range []struct {
		typ, key, value, want string
	}{
		{"webhook", "delivery", "poll", "only of type ssf"},
		{"webhook", "client_id", "x", "only of type universal-logout"},
		{"webhook", "events", "[x]", "only of type ssf"},
		{"webhook", "manage_stream", "true", "only of type ssf"},
		{"webhook", "authorization_file", "a", "only of type okta-event-hook, ssf or universal-logout"},
		{"okta-event-hook", "device_ca", "corp", "only of type webhook or ssf"},
		{"okta-event-hook", "issuer", "https://x.example", "only of type ssf or universal-logout"},
		{"ssf", "okta_org", "https://x.example", "only of type okta-event-hook"},
		{"ssf", "secret_file", "s", "only of type webhook"},
		{"universal-logout", "poll_interval", "1m", "only of type okta-event-hook or ssf"},
		{"universal-logout", "delivery", "push", "only of type ssf"},
	} {
		t.Run(tt.typ+"/"+tt.key, func(t *testing.T) {
			src := "feeds:\n  - name: f\n    type: " + tt.typ + "\n    " + tt.key + ": " + tt.value + "\n"
			var c Config
			_, err := conf.Decode("/etc/p/posture.yaml", []byte(src), &c)
			want := "/etc/p/posture.yaml:4:5: feeds[0]." + tt.key + ": not a key of a " + tt.typ + " feed (" + tt.want + ")"
			if err == nil || err.Error() != want {
				t.Errorf("decode error = %v, want %s", err, want)
			}
		})
	}
}

// TestFeedValidateRefusesStrayKeys: a feed built in code, which no decoder
// checked, is held to its type's keys too.
func TestFeedValidateRefusesStrayKeys(t *testing.T) {
	f := FeedConfig{FeedBase: FeedBase{Name: "uem", Type: FeedWebhook}, WebhookKeys: WebhookKeys{SecretFile: "/s"},
		SSFKeys: SSFKeys{Delivery: DeliveryPoll}}
	err := f.Validate()
	if err == nil || !strings.Contains(err.Error(), "delivery: not a key of a webhook feed") {
		t.Errorf("Validate = %v", err)
	}
}

func TestReportsDevices(t *testing.T) {
	for typ, want := range map[FeedType]bool{FeedWebhook: true, FeedSSF: true, FeedOktaHook: false, FeedUniversalLogout: false, "": false} {
		f := FeedConfig{FeedBase: FeedBase{Type: typ}}
		if got := f.ReportsDevices(); got != want {
			t.Errorf("%q: ReportsDevices = %v, want %v", typ, got, want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Feeds: []FeedConfig{{FeedBase: FeedBase{Name: "uem", Type: FeedWebhook}, WebhookKeys: WebhookKeys{SecretFile: "s"}}}}
	c.ApplyDefaults()
	f := c.Feeds[0]
	if c.MaxAge.Std() != 15*time.Minute || f.Path != "/.portcullis/feeds/uem" || f.MaxBody != 262144 || f.Tolerance.Std() != 5*time.Minute {
		t.Errorf("defaults = %+v %+v", c, f)
	}
}

func TestConfigDecode(t *testing.T) {
	var c Config
	_, err := conf.Decode("/etc/p/p.yaml", []byte("max_age: 10m\nfeeds:\n  - {name: uem, type: webhook, secret_file: s, secret_files: [t], device_ca: ivanti, max_body: 1024, tolerance: 1m}\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxAge.Std() != 10*time.Minute || c.Feeds[0].DeviceCA != "ivanti" || len(c.Feeds[0].Secrets()) != 2 || c.Feeds[0].SecretFile != "/etc/p/s" {
		t.Errorf("decoded %+v", c)
	}
}

func FuzzDecodeFeeds(f *testing.F) {
	f.Add([]byte("feeds: [{name: uem, type: webhook, secret_file: s}]\n"))
	f.Add([]byte("feeds: [{name: s, type: ssf, delivery: poll, client_id: x, issuer: 'https://a'}]\n"))
	f.Add([]byte("feeds: [{type: [x]}, {type: *a}, &a {type: okta-event-hook, okta_org: 1}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		_, err := conf.Decode("/etc/p/p.yaml", b, &c)
		for _, e := range conf.Flatten(err) {
			var pe *conf.PosError
			if !errors.As(e, &pe) {
				t.Fatalf("error without position: %v", e)
			}
		}
		if err != nil {
			return
		}
		for _, fc := range c.Feeds {
			if errs := fc.strayKeys(); len(errs) > 0 {
				t.Fatalf("decoded a %s feed with another type's keys: %v", fc.Type, errs)
			}
		}
	})
}
