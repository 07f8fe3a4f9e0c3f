package flow

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLogout(t *testing.T) {
	ended := 0
	h := Logout(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ended++ }))
	tests := []struct {
		name    string
		method  string
		headers map[string]string
		status  int
		ends    bool
	}{
		{"link from another site", "GET", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200, false},
		{"typed address", "GET", map[string]string{"Sec-Fetch-Site": "none"}, 200, false},
		{"head", "HEAD", nil, 200, false},
		{"cross-site form", "POST", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, false},
		{"same-site, other origin", "POST", map[string]string{"Sec-Fetch-Site": "same-site"}, 403, false},
		{"old browser, other origin", "POST", map[string]string{"Origin": "https://evil.example"}, 403, false},
		{"confirmation form", "POST", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200, true},
		{"old browser, same origin", "POST", map[string]string{"Origin": "https://app.example.test"}, 200, true},
		{"not a browser", "POST", nil, 200, true},
		{"put", "PUT", map[string]string{"Sec-Fetch-Site": "same-origin"}, 405, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ended = 0
			r := httptest.NewRequest(tt.method, "https://app.example.test/.portcullis/logout?rd=%2Fbye%22%3E", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status || (ended == 1) != tt.ends {
				t.Fatalf("%s = %d (ended %d), want %d (ends %v): %s", tt.method, w.Code, ended, tt.status, tt.ends, w.Body)
			}
			if tt.method == "GET" {
				body := w.Body.String()
				if !strings.Contains(body, `<form method="post" action="/.portcullis/logout?rd=%2Fbye%22%3E">`) {
					t.Errorf("confirmation page lacks the form posting back: %s", body)
				}
				if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("X-Frame-Options") != "DENY" {
					t.Errorf("confirmation headers = %v", w.Header())
				}
			}
		})
	}
}
