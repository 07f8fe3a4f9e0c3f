package gateway

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"portcullis/internal/conf"
)

const minimalConfig = `
tls: {certificates: [{cert: s.pem, key: s.key}]}
resources:
  - name: app
    hosts: ["*"]
    upstream: http://127.0.0.1:9000
    policy: {device: {certificate: "off"}}
`

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig("/etc/p/portcullis.yaml", []byte(minimalConfig))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listen[0]
	if l.Address != "127.0.0.1:8443" || l.ClientAuth != "optional" || !slices.Equal(l.Protocols, []Protocol{ProtoHTTP1, ProtoH2, ProtoH3}) {
		t.Errorf("listener defaults = %+v", l)
	}
	if c.Admin.Listen != "127.0.0.1:9090" || c.State.Dir != "/etc/p/data" || c.Shutdown.Std().Seconds() != 15 {
		t.Errorf("defaults: admin %q state %q shutdown %v", c.Admin.Listen, c.State.Dir, c.Shutdown)
	}
	if r := c.Resources[0]; r.Paths[0] != "/" || r.Timeouts.ResponseHeader.Std().Seconds() != 60 {
		t.Errorf("resource defaults = %+v", r)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name, yaml, wantKey, wantMsg string
	}{
		{"bad listener", "listen: [{address: x}]\n" + minimalConfig, "listen[0].address", "host:port"},
		{"required without CAs", "listen: [{address: '127.0.0.1:1', client_auth: required}]\n" + minimalConfig, "listen[0].client_auth", "devices.cas is empty"},
		{"no resources", "tls: {certificates: [{cert: s.pem, key: s.key}]}\n", "resources", "deny everything"},
		{"duplicate route", minimalConfig + "  - name: b\n    hosts: ['*']\n    upstream: http://127.0.0.1:1\n    policy: {device: {certificate: 'off'}}\n", "resources[1].paths[0]", "already routed"},
		{"upstream with path", strings.Replace(minimalConfig, "9000", "9000/x", 1), "resources[0].upstream", "without path"},
		{"unknown idp", strings.Replace(minimalConfig, `policy: {device: {certificate: "off"}}`, `policy: {login: okta, device: {certificate: "off"}}`, 1), "resources[0].policy.login", "unknown identity provider"},
		{"unknown CA", strings.Replace(minimalConfig, `policy: {device: {certificate: "off"}}`, `policy: {device: {cas: [nope]}}`, 1), "resources[0].policy.device.cas[0]", "unknown device CA"},
		{"bad remediation", minimalConfig + "    remediation: javascript:alert(1)\n", "resources[0].remediation", "absolute http"},
		{"no certificate", strings.Replace(minimalConfig, "tls: {certificates: [{cert: s.pem, key: s.key}]}", "", 1), "tls.certificates", "no server certificate"},
		{"console on no listener", "admin: {listen: 'off', console: {enabled: true}}\n" + minimalConfig, "admin.console.enabled", "no admin.console.host"},
		{"console host without login", "admin: {console: {enabled: true, host: c.example, groups: [ops]}}\n" + minimalConfig, "admin.console.login", "missing"},
		{"console host without groups", "admin: {console: {enabled: true, host: c.example, login: okta}}\n" + minimalConfig, "admin.console.groups", "missing"},
		{"console host, unknown idp", "admin: {console: {enabled: true, host: c.example, login: okta, groups: [ops]}}\n" + minimalConfig, "admin.console.login", "unknown identity provider"},
		{"console host, off", "admin: {console: {host: c.example, login: okta, groups: [ops]}}\n" + minimalConfig, "admin.console.host", "enabled: true"},
		{"console host with a port", "admin: {console: {enabled: true, host: 'c.example:443', login: okta, groups: [ops]}}\n" + minimalConfig, "admin.console.host", "invalid host"},
		{"console groups twice", "admin: {console: {enabled: true, host: c.example, login: okta, groups: [ops], policy: {user: {groups: [x]}}}}\n" + minimalConfig, "admin.console.policy.user.groups", "admin.console.groups"},
		{"console login without host", "admin: {console: {enabled: true, login: okta}}\n" + minimalConfig, "admin.console.login", "without host"},
		{"console host taken", "admin: {console: {enabled: true, host: c.example, login: okta, groups: [ops]}}\n" + strings.Replace(minimalConfig, `hosts: ["*"]`, `hosts: [C.example]`, 1), "resources[0].hosts[0]", "admin console"},
		{"console name taken", strings.Replace(minimalConfig, "name: app", "name: admin.console", 1), "resources[0].name", "admin console"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(tt.yaml))
			var found bool
			for _, e := range conf.Flatten(err) {
				var pe *conf.PosError
				if errors.As(e, &pe) && pe.Key == tt.wantKey && strings.Contains(pe.Msg, tt.wantMsg) {
					found = true
					if pe.Line == 0 && tt.wantKey != "resources" && tt.wantKey != "tls.certificates" {
						t.Errorf("%v has no line", pe)
					}
				}
			}
			if !found {
				t.Errorf("want %s: %s…, got %v", tt.wantKey, tt.wantMsg, err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(minimalConfig))
	f.Add([]byte("listen: [{address: '127.0.0.1:1', hosts: {'*.a': required}}]\n" + minimalConfig))
	f.Add([]byte("resources: [{name: a, hosts: ['*.'], paths: [x], upstream: 'h2c://[::1]:1', policy: {when: 'true'}}]"))
	f.Add([]byte("admin: {console: {enabled: true, host: c.example, login: saml:x, groups: [ops], policy: {device: {certificate: optional}}, session_key_file: k}}\n" + minimalConfig))
	f.Add([]byte(tunnelConfig))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig("fuzz.yaml", b)
		if err == nil && (c == nil || len(c.Resources)+len(c.Tunnels) == 0 || len(c.Listen) == 0) {
			t.Fatal("accepted a configuration without resources, tunnels or listeners")
		}
		for _, e := range conf.Flatten(err) {
			var pe *conf.PosError
			if !errors.As(e, &pe) {
				t.Fatalf("error without a position: %v", e)
			}
		}
	})
}
