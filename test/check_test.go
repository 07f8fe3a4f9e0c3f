package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// checkBase is a configuration serve accepts once its referenced files
// exist: the dev directory supplies the server certificate, and a resource
// logs in with an OIDC provider whose secret is a file.
const checkBase = `listen: [{address: "127.0.0.1:1"}]
admin: {listen: "127.0.0.1:2"}
dev: {dir: dev}
identity:
  oidc:
    - name: okta
      issuer: https://okta.example.test
      client_id: pep
      client_secret_file: okta.secret
      redirect_url: https://app.example.test/.portcullis/oidc/callback
resources:
  - name: app
    hosts: ["*"]
    upstream: http://127.0.0.1:3
    policy: {login: okta, device: {certificate: "off"}}
`

// TestCheckLoadsWhatServeLoads: check runs serve's build, so every file a
// configuration names is read by check too, and a missing one is placed
// at its key. Each case is also given to serve, which must refuse it with
// the same key: one build, one verdict.
func TestCheckLoadsWhatServeLoads(t *testing.T) {
	tests := []struct {
		name  string
		cfg   string   // replaces or extends checkBase
		files []string // created (with content) before the run
		want  []string // lines of check's output, after the file name
	}{
		{
			name: "oidc client secret missing",
			cfg:  checkBase,
			want: []string{":9:27: identity.oidc[0].client_secret_file: open "},
		},
		{
			name:  "webhook feed secret, device CA bundle and upstream CA missing",
			files: []string{"okta.secret"},
			cfg: strings.Replace(checkBase, "resources:\n", `devices:
  cas:
    - name: corp
      bundle: corp-ca.pem
      device_id: {from: subject_cn}
posture:
  feeds:
    - {name: uem, type: webhook, secret_file: uem.secret}
resources:
  - name: api
    hosts: [api.example.test]
    upstream: https://127.0.0.1:4
    upstream_tls: {ca_file: upstream-ca.pem}
    policy: {device: {certificate: "off"}, user: {}}
`, 1),
			want: []string{
				":14:15: devices.cas[0].bundle: device CA \"corp\": reading bundle: ",
				":18:7: posture.feeds[0]: ",
				":22:15: resources[0].upstream: reading upstream CA: ",
			},
		},
		{
			name:  "admin token and session keys missing",
			files: []string{"okta.secret"},
			cfg: strings.Replace(strings.Replace(checkBase, `admin: {listen: "127.0.0.1:2"}`, `admin: {listen: "127.0.0.1:2", token_file: admin.token}`, 1),
				"identity:\n", "identity:\n  session: {key_file: session.keys}\n", 1),
			want: []string{
				":2:44: admin.token_file: ",
				":5:23: identity.session.key_file: ",
			},
		},
		{
			name:  "saml metadata file missing",
			files: []string{"okta.secret"},
			cfg: strings.Replace(checkBase, "identity:\n", `identity:
  saml:
    - {name: corp, idp_metadata_file: idp.xml, root_url: "https://app.example.test"}
`, 1),
			want: []string{":6:7: identity.saml[0]: "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				os.WriteFile(filepath.Join(dir, f), []byte("s3cret-value\n"), 0o600)
			}
			cfg := filepath.Join(dir, "portcullis.yaml")
			os.WriteFile(cfg, []byte(tt.cfg), 0o600)
			cmd := exec.Command(binPath, "check", "--config", cfg)
			b, _ := cmd.CombinedOutput()
			out := string(b)
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Fatalf("check exit %d, want 1:\n%s", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, cfg+w) {
					t.Errorf("check output lacks %q:\n%s", cfg+w, out)
				}
			}
			if want := fmt.Sprintf("%s: %d problem(s)", cfg, len(tt.want)); !strings.Contains(out, want) {
				t.Errorf("check output lacks %q:\n%s", want, out)
			}
			// check wrote nothing beside the configuration: the dev
			// directory serve would provision is not there.
			if _, err := os.Stat(filepath.Join(dir, "dev")); err == nil {
				t.Errorf("check created %s", filepath.Join(dir, "dev"))
			}
			// serve refuses the same file for the same reasons.
			cmd = exec.Command(binPath, "serve", "--config", cfg)
			b, _ = cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("serve exit %d, want 1:\n%s", code, b)
			}
			for _, w := range tt.want {
				_, key, _ := strings.Cut(w[1:], ": ") // drop ":line:col"
				key, _, _ = strings.Cut(key, ": ")
				if !strings.Contains(string(b), key+": ") {
					t.Errorf("serve output lacks %q:\n%s", key, b)
				}
			}
		})
	}
}

// TestCheckWritesNothing: a configuration that passes check leaves no
// state behind; serve creates it on its first start.
func TestCheckWritesNothing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "okta.secret"), []byte("s3cret\n"), 0o600)
	cfg := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfg, []byte(checkBase), 0o600)
	out, code := run(t, binPath, "check", "--config", cfg)
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("check exit %d:\n%s", code, out)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory after check holds %v, want only the config and the secret", names)
	}
}
