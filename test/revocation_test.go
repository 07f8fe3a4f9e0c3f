package test

import (
	"io"
	"net/http"
	"net/http/httptrace"
	"syscall"
	"testing"
)

// TestUserRevocationLasts: revoking a certificate-only user refuses the
// user's certificate on the connection that is open, after a reload, and
// on new connections, until a new certificate is issued. Before, a reload
// re-established every connection's identity with the sign-in time "now"
// and so re-admitted the user, and a new connection was admitted at once.
func TestUserRevocationLasts(t *testing.T) {
	e := newEnv(t)
	g := e.start()
	e.setCompliant(e.dev1ID, true)

	c := e.client(e.dev1Cert, e.dev1Key, false) // HTTP/1.1: one connection, kept alive
	get := func(c *http.Client, what string, wantReused bool) (int, string) {
		t.Helper()
		reused := false
		req, _ := http.NewRequest("GET", e.url("/"), nil)
		req.Header.Set("Accept", "application/json")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if reused != wantReused {
			t.Fatalf("%s: connection reused = %v, want %v", what, reused, wantReused)
		}
		reason := ""
		if resp.StatusCode != 200 {
			reason = parseProblem(t, string(b)).Reason
		}
		return resp.StatusCode, reason
	}
	if code, _ := get(c, "before the revocation", false); code != 200 {
		t.Fatalf("before the revocation: %d, want 200", code)
	}

	out, code := run(t, binPath, "revoke", "--admin", "http://"+e.admin, "--token-file", e.adminToken, "--user", e.dev1User, "--reason", "test")
	if code != 0 {
		t.Fatalf("revoke: exit %d %s", code, out)
	}
	if code, reason := get(c, "after the revocation", true); code != 401 || reason != "session.revoked" {
		t.Errorf("same connection after the revocation: %d %s, want 401 session.revoked", code, reason)
	}

	g.signal(syscall.SIGHUP)
	g.waitLog("configuration reloaded")
	if code, reason := get(c, "after a reload", true); code != 401 || reason != "session.revoked" {
		t.Errorf("same connection after a reload: %d %s, want 401 session.revoked", code, reason)
	}
	if code, reason := get(e.client(e.dev1Cert, e.dev1Key, true), "a new connection", false); code != 401 || reason != "session.revoked" {
		t.Errorf("new connection with the same certificate: %d %s, want 401 session.revoked", code, reason)
	}
	// Another user's certificate is untouched.
	e.setCompliant(e.dev2ID, true)
	if code, _ := get(e.client(e.dev2Cert, e.dev2Key, false), "another user", false); code != 200 {
		t.Errorf("another user's device: %d, want 200", code)
	}
}
