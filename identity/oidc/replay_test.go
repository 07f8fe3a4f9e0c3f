package oidc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

type downReplay struct{}

func (downReplay) Seen(context.Context, string, time.Time, time.Time) (bool, error) {
	return false, errors.New("redis: connection refused")
}

// TestBackchannelReplayCache: a logout token used through one manager is
// refused by another that shares its replay cache (replicas), and a
// cache that cannot answer refuses the token (fail closed) without
// revoking anything.
func TestBackchannelReplayCache(t *testing.T) {
	op := newFakeOP(t)
	shared := &jtiCache{}
	now := time.Now()
	token := op.sign(t, map[string]any{"iss": op.srv.URL, "aud": "portcullis", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": randomString(8), "sid": "idp-session-1", "events": map[string]any{backchannelEvent: map[string]any{}}}, "k1", "logout+jwt")
	post := func(m *Manager) int {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", BackchannelPath, strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		m.Handlers()[BackchannelPath].ServeHTTP(w, r)
		return w.Code
	}

	downStore := &fakeStore{}
	down := newManager(t, op, downStore)
	down.jtis = downReplay{}
	if code := post(down); code != http.StatusBadRequest || len(downStore.revs) != 0 {
		t.Errorf("replay cache down: status %d, revocations %+v; want 400 and none", code, downStore.revs)
	}

	a, b := newManager(t, op, &fakeStore{}), newManager(t, op, &fakeStore{})
	a.jtis, b.jtis = shared, shared
	if code := post(a); code != http.StatusOK {
		t.Fatalf("first use: status %d", code)
	}
	if code := post(b); code != http.StatusBadRequest {
		t.Errorf("the same token on another replica: status %d, want 400", code)
	}
}
