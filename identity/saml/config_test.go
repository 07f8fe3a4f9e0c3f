package saml

import (
	"strings"
	"testing"

	"portcullis/internal/conf"
)

func TestConfigValidate(t *testing.T) {
	good := Config{Name: "corp", IdPMetadataURL: "https://idp.example/md", RootURL: "https://login.example"}
	tests := []struct {
		name string
		mut  func(*Config)
		keys []string
	}{
		{name: "good"},
		{name: "bad name", mut: func(c *Config) { c.Name = "Corp!" }, keys: []string{"name"}},
		{name: "no metadata", mut: func(c *Config) { c.IdPMetadataURL = "" }, keys: []string{"idp_metadata_file"}},
		{name: "both metadata", mut: func(c *Config) { c.IdPMetadataFile = "x.xml" }, keys: []string{"idp_metadata_url"}},
		{name: "http metadata", mut: func(c *Config) { c.IdPMetadataURL = "http://idp.example/md" }, keys: []string{"idp_metadata_url"}},
		{name: "loopback http ok", mut: func(c *Config) { c.IdPMetadataURL = "http://127.0.0.1:9/md" }},
		{name: "root with path", mut: func(c *Config) { c.RootURL = "https://login.example/sso" }, keys: []string{"root_url"}},
		{name: "no root", mut: func(c *Config) { c.RootURL = "" }, keys: []string{"root_url"}},
		{name: "key without cert", mut: func(c *Config) { c.KeyFile = "k" }, keys: []string{"cert_file"}},
		{name: "bad signature mode", mut: func(c *Config) { c.SignatureRequired = "none" }, keys: []string{"signature_required"}},
		{name: "skew too large", mut: func(c *Config) { c.MaxClockSkew.UnmarshalText([]byte("10m")) }, keys: []string{"max_clock_skew"}},
		{name: "refresh too short", mut: func(c *Config) { c.MetadataRefresh.UnmarshalText([]byte("5s")) }, keys: []string{"metadata_refresh"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			if tt.mut != nil {
				tt.mut(&c)
			}
			var got []string
			for _, e := range conf.Flatten(c.Validate()) {
				if fe, ok := e.(*conf.FieldError); ok {
					got = append(got, fe.Key)
				} else {
					got = append(got, e.Error())
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("keys = %v, want %v", got, tt.keys)
			}
		})
	}
	c := good
	c.ApplyDefaults()
	if c.EntityID != "https://login.example/.portcullis/saml/corp/metadata" || c.SignatureRequired != SignAssertion ||
		c.MaxClockSkew.Std() != DefaultMaxClockSkew || c.Attributes.Email != "mail" || c.AllowIdPInitiated {
		t.Errorf("defaults = %+v", c)
	}
	if err := ValidateAll([]Config{good, good}); err == nil || !strings.Contains(err.Error(), "[1].name") {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestCheckReturn(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		in   string
		want string // "" refused
	}{
		{"", testRoot + "/"},
		{"/docs?a=1#frag", testRoot + "/docs?a=1"},
		{"https://app.example.test/x", "https://app.example.test/x"},
		{"https://APP.example.test:443/x", "https://app.example.test/x"},
		{"https://app.example.test:8443/x", "https://app.example.test:8443/x"},
		{"https://app.example.test:1/x", ""},
		{"https://app.example.test//evil.example/x", "https://app.example.test/evil.example/x"},
		{"https://app.example.test@evil.example/", ""},
		{"http://app.example.test/x", ""},
		{"https://evil.example/x", ""},
		{"//evil.example/x", ""},
		{"/\\evil.example", ""},
		{"https://user@app.example.test/", ""},
		{"https://app.example.test/\r\nx", ""},
		{"javascript:alert(1)", ""},
		{"https:evil.example", ""},
	}
	for _, tt := range tests {
		u, err := f.sp.checkReturn(tt.in)
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != tt.want {
			t.Errorf("checkReturn(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
