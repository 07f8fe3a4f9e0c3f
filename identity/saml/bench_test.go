package saml

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// BenchmarkACS measures one login at the ACS: parse the form, verify a
// signed assertion with every check, record it in the (fsynced) replay
// cache, and seal the session cookie.
func BenchmarkACS(b *testing.B) {
	f := newFixture(b, nil)
	const pool = 512
	binding := randomToken(32)
	ids := make([]string, pool)
	bodies := make([]string, pool)
	arm := func() {
		for _, id := range ids {
			f.sp.tracker.addRequest(id, pending{idp: "corp", binding: sha(binding), returnTo: testRoot + "/", expires: t0.Add(time.Hour)}, t0)
		}
	}
	for i := range bodies {
		ids[i] = "id-bench-" + randomToken(8)
		bodies[i] = url.Values{"SAMLResponse": {resp{InResponseTo: ids[i], SignAssertion: true, Groups: []string{"eng"}}.build(b, f)}}.Encode()
	}
	arm()
	cookie := BindingCookie + "=" + binding
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == pool { // every response used: forget them and start over
			b.StopTimer()
			f.sp.replay.(*ReplayCache).Close()
			var err error
			if f.sp.replay, err = OpenReplayCache(b.TempDir()); err != nil {
				b.Fatal(err)
			}
			arm()
			i = 0
			b.StartTimer()
		}
		r := httptest.NewRequest("POST", testRoot+"/.portcullis/saml/corp/acs", strings.NewReader(bodies[i]))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Cookie", cookie)
		w := httptest.NewRecorder()
		f.sp.serveACS(w, r)
		if w.Code != http.StatusSeeOther {
			b.Fatalf("status %d: %s", w.Code, grepReason(w.Body.String()))
		}
		i++
	}
}
