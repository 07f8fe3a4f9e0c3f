package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFeedLogLinesAreJSON drives the gateway through every feed (posture
// webhook, Okta hook, SSF push, Universal Logout), accepted and refused,
// and checks that every line it logs is one JSON object whose keys are
// unique at every level (issue 10: lines carried "feed" twice).
func TestFeedLogLinesAreJSON(t *testing.T) {
	e := newEnv(t)
	tx := newTransmitter(t)
	oktaSecret, ssfToken, gtrToken := "okta-"+uuid4(), "ssf-"+uuid4(), "gtr-"+uuid4()
	for name, v := range map[string]string{"okta.secret": oktaSecret, "ssf.token": ssfToken, "gtr.token": gtrToken} {
		os.WriteFile(filepath.Join(e.dir, name), []byte(v), 0o600)
	}
	const aud = "https://pep.example.test/ssf"
	b, _ := os.ReadFile(e.cfgPath)
	cfg := strings.Replace(string(b), "    - {name: uem, type: webhook, secret_file: feed.secret}",
		"    - {name: uem, type: webhook, secret_file: feed.secret}\n"+
			"    - {name: okta, type: okta-event-hook, authorization_file: okta.secret}\n"+
			"    - {name: ssf, type: ssf, issuer: \""+tx.issuer+"\", audience: \""+aud+"\", authorization_file: ssf.token}\n"+
			"    - {name: logout, type: universal-logout, authorization_file: gtr.token}", 1)
	os.WriteFile(e.cfgPath, []byte(cfg), 0o600)
	g := e.start()

	send := func(method, path, contentType string, header map[string]string, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, e.url(path), strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := e.client("", "", true).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	check := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: status %d, want %d", what, got, want)
		}
	}

	// Posture webhook: accepted, and refused for its signature.
	e.setCompliant(e.dev1ID, true)
	id := "evt-" + uuid4()
	code, _ := e.postFeed(id, postureEvent(id, e.dev1ID, false, time.Now()), time.Now(), []byte("not the key at all, 32 bytes...."))
	check("webhook with a bad signature", code, 401)

	// Okta event hook: verification, a delivery, a wrong secret, a body
	// with a duplicate member.
	check("okta verification", send("GET", "/.portcullis/feeds/okta", "", map[string]string{
		"Authorization": oktaSecret, "X-Okta-Verification-Challenge": "c-1"}, ""), 200)
	delivery := oktaRisk(uuid4(), e.dev1User, "LOW", "MEDIUM", time.Now().Add(-time.Second))
	check("okta delivery", send("POST", "/.portcullis/feeds/okta", "application/json", map[string]string{"Authorization": oktaSecret}, delivery), 200)
	check("okta wrong secret", send("POST", "/.portcullis/feeds/okta", "application/json", map[string]string{"Authorization": "nope"}, delivery), 401)
	check("okta duplicate member", send("POST", "/.portcullis/feeds/okta", "application/json", map[string]string{"Authorization": oktaSecret},
		strings.Replace(delivery, `"eventId"`, `"eventId": "x", "eventId"`, 1)), 400)

	// SSF push: an event, a wrong bearer, a forged SET.
	user := map[string]any{"format": "email", "email": e.dev1User}
	set := tx.set(t, aud, user, caepSessionRevoked, map[string]any{"event_timestamp": time.Now().Unix()})
	ssfHeader := map[string]string{"Authorization": "Bearer " + ssfToken}
	check("ssf push", send("POST", "/.portcullis/feeds/ssf", "application/secevent+jwt", ssfHeader, set), 202)
	check("ssf replay", send("POST", "/.portcullis/feeds/ssf", "application/secevent+jwt", ssfHeader, set), 202)
	check("ssf wrong bearer", send("POST", "/.portcullis/feeds/ssf", "application/secevent+jwt", map[string]string{"Authorization": "Bearer nope"}, set), 401)
	forged := newTransmitter(t)
	forged.issuer = tx.issuer
	check("ssf forged SET", send("POST", "/.portcullis/feeds/ssf", "application/secevent+jwt", ssfHeader,
		forged.set(t, aud, user, caepSessionRevoked, map[string]any{})), 400)

	// Universal Logout: a logout, and a wrong token.
	logout := fmt.Sprintf(`{"sub_id":{"format":"email","email":%q}}`, e.dev1User)
	check("universal logout", send("POST", "/.portcullis/feeds/logout", "application/json", map[string]string{"Authorization": "Bearer " + gtrToken}, logout), 204)
	check("universal logout, wrong token", send("POST", "/.portcullis/feeds/logout", "application/json", map[string]string{"Authorization": "Bearer nope"}, logout), 401)

	g.stop()
	lines := strings.Split(strings.TrimSpace(g.logs()), "\n")
	feedsSeen := map[string]bool{}
	for i, line := range lines {
		if err := uniqueKeys([]byte(line)); err != nil {
			t.Errorf("log line %d: %v:\n%s", i+1, err, line)
			continue
		}
		var rec struct {
			Feed string `json:"feed"`
		}
		json.Unmarshal([]byte(line), &rec)
		feedsSeen[rec.Feed] = true
	}
	for _, f := range []string{"uem", "okta", "ssf", "logout"} {
		if !feedsSeen[f] {
			t.Errorf("no log line of feed %q", f)
		}
	}
}

// uniqueKeys checks that b is exactly one JSON object and that no object
// in it holds a key twice.
func uniqueKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	if err := objectKeys(dec); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the object")
	}
	return nil
}

// objectKeys reads an object's members after its '{', recursing into
// nested values, and fails on a repeated key.
func objectKeys(dec *json.Decoder) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		if seen[key] {
			return fmt.Errorf("key %q twice", key)
		}
		seen[key] = true
		if err := skipValue(dec); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

func skipValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return objectKeys(dec)
	case json.Delim('['):
		for dec.More() {
			if err := skipValue(dec); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}
