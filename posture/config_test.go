package posture

import (
	"strings"
	"testing"
	"time"

	"portcullis/internal/conf"
)

func TestConfigValidate(t *testing.T) {
	ok := FeedConfig{Name: "uem", Type: "webhook", SecretFile: "s"}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the joined error, in order; nil: valid
	}{
		{"empty", Config{}, nil},
		{"one feed", Config{Feeds: []FeedConfig{ok}}, nil},
		{"rotation", Config{Feeds: []FeedConfig{{Name: "uem", Type: "webhook", SecretFile: "a", SecretFiles: []conf.Path{"b"}}}}, nil},
		{"missing name, type and secret", Config{Feeds: []FeedConfig{{}}},
			[]string{"feeds[0].name: required", "feeds[0].type: required (supported: webhook, okta-event-hook, ssf, universal-logout)", "feeds[0].secret_file: required"}},
		{"okta", Config{Feeds: []FeedConfig{{Name: "okta", Type: "okta-event-hook", AuthorizationFile: "a", OktaOrg: "https://acme.okta.com", APITokenFile: "t"}}}, nil},
		{"okta with webhook secret", Config{Feeds: []FeedConfig{{Name: "okta", Type: "okta-event-hook", SecretFile: "s", OktaOrg: "http://acme.okta.com"}}},
			[]string{"feeds[0].secret_file: only for type webhook", `feeds[0].okta_org: "http://acme.okta.com": must use https`, "feeds[0].authorization_file: required", "feeds[0].api_token_file: required with okta_org"}},
		{"ssf push", Config{Feeds: []FeedConfig{{Name: "ssf", Type: "ssf", Issuer: "https://tx.example", Audience: "https://pep.example/ssf", AuthorizationFile: "a"}}}, nil},
		{"ssf poll", Config{Feeds: []FeedConfig{{Name: "ssf", Type: "ssf", Issuer: "https://tx.example", Audience: "a", Delivery: "poll", PollEndpoint: "https://tx.example/poll"}}}, nil},
		{"ssf incomplete", Config{Feeds: []FeedConfig{{Name: "ssf", Type: "ssf", Delivery: "pull", UserFrom: "upn"}}},
			[]string{`feeds[0].user_from: "upn"`, "feeds[0].issuer: required", "feeds[0].audience: required", `feeds[0].delivery: "pull"`}},
		{"universal logout", Config{Feeds: []FeedConfig{{Name: "gtr", Type: "universal-logout", Issuer: "https://acme.okta.com"}}},
			[]string{"feeds[0].audience: required with issuer", "feeds[0].client_id: required with issuer"}},
		{"unknown type", Config{Feeds: []FeedConfig{{Name: "x", Type: "jamf", SecretFile: "s"}}},
			[]string{`feeds[0].type: unknown feed type "jamf" (supported: webhook, okta-event-hook, ssf, universal-logout)`}},
		{"three secrets", Config{Feeds: []FeedConfig{{Name: "x", Type: "webhook", SecretFile: "a", SecretFiles: []conf.Path{"b", "c"}}}},
			[]string{"feeds[0].secret_files: at most 2 secrets"}},
		{"duplicate name and path", Config{Feeds: []FeedConfig{ok, ok}},
			[]string{`feeds[1].name: "uem" is already the name of feeds[0]`, `feeds[1].path: "/.portcullis/feeds/uem" is already the path of feeds[0]`}},
		{"same path explicitly", Config{Feeds: []FeedConfig{ok, {Name: "b", Type: "webhook", SecretFile: "s", Path: "/.portcullis/feeds/uem"}}},
			[]string{`feeds[1].path: "/.portcullis/feeds/uem" is already the path of feeds[0]`}},
		{"relative path and bad values", Config{MaxAge: -1, Feeds: []FeedConfig{{Name: "a b", Type: "webhook", SecretFile: "s", Path: "feeds/a", MaxBody: -1, Tolerance: -1}}},
			[]string{"max_age: must be positive", `feeds[0].name: "a b": use letters`, `feeds[0].path: "feeds/a" must start with /`, "feeds[0].max_body: must be positive", "feeds[0].tolerance: must be positive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tt.want)
			}
			errs := conf.Flatten(err)
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate = %d errors %q, want %d", len(errs), err, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Feeds: []FeedConfig{{Name: "uem", Type: "webhook", SecretFile: "s"}}}
	c.ApplyDefaults()
	f := c.Feeds[0]
	if c.MaxAge.Std() != 15*time.Minute || f.Path != "/.portcullis/feeds/uem" || f.MaxBody != 262144 || f.Tolerance.Std() != 5*time.Minute {
		t.Errorf("defaults = %+v %+v", c, f)
	}
}

func TestConfigDecode(t *testing.T) {
	var c Config
	_, err := conf.Decode("p.yaml", []byte("max_age: 10m\nfeeds:\n  - {name: uem, type: webhook, secret_file: s, secret_files: [t], device_ca: ivanti, max_body: 1024, tolerance: 1m}\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MaxAge.Std() != 10*time.Minute || c.Feeds[0].DeviceCA != "ivanti" || len(c.Feeds[0].Secrets()) != 2 {
		t.Errorf("decoded %+v", c)
	}
}
