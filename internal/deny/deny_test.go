package deny

import (
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

var (
	denied = Info{
		Status:      403,
		Reason:      "device.not_compliant",
		Title:       "Device not compliant",
		Detail:      "Your device does not meet the security policy for this resource.",
		RequestID:   "01JD7Q6X3M8Z5N0R2T4V6W8Y9A",
		Resource:    "wiki",
		Remediation: "https://uem.example.com/self-service?device=42&x=1",
	}
	login = Info{
		Status:          401,
		Reason:          "session.missing",
		RequestID:       "01JD7Q6X3M8Z5N0R2T4V6W8Y9B",
		Resource:        "wiki",
		LoginURL:        "https://wiki.example.com/.portcullis/login?rd=%2F",
		WWWAuthenticate: `Bearer realm="portcullis"`,
	}
	hostile = Info{
		Status:      403,
		Reason:      `x"/<script>`,
		Title:       `<script>alert(1)</script>`,
		Detail:      "line\nbreak \"quoted\" & <b>bold</b> \xff \u2028",
		RequestID:   `id"><img src=x>`,
		Resource:    `res</title>`,
		Remediation: "javascript:alert(1)",
	}
	minimal = Info{}
)

func TestWriteGolden(t *testing.T) {
	tests := []struct {
		name   string
		info   Info
		accept string
		file   string
	}{
		{"denied json", denied, "application/json", "denied.json"},
		{"denied html", denied, "text/html", "denied.html"},
		{"login json", login, "", "login.json"},
		{"login html", login, "text/html,*/*;q=0.8", "login.html"},
		{"hostile json", hostile, "application/problem+json", "hostile.json"},
		{"hostile html", hostile, "text/html", "hostile.html"},
		{"minimal json", minimal, "*/*", "minimal.json"},
		{"minimal html", minimal, "text/html", "minimal.html"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://wiki.example.com/", nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			w := httptest.NewRecorder()
			Write(w, r, tt.info)
			golden(t, tt.file, w.Body.Bytes())
			if strings.HasSuffix(tt.file, ".json") {
				var m map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
					t.Fatalf("body is not JSON: %v", err)
				}
				for _, k := range []string{"type", "title", "status"} {
					if _, ok := m[k]; !ok {
						t.Errorf("problem lacks %q", k)
					}
				}
			}
		})
	}
}

func TestWriteHeaders(t *testing.T) {
	tests := []struct {
		name       string
		info       Info
		accept     string
		status     int
		ctype      string
		csp        bool
		authHeader string
	}{
		{"json 403", denied, "application/json", 403, "application/problem+json", false, ""},
		{"html 403", denied, "text/html", 403, "text/html; charset=utf-8", true, ""},
		{"json 401 challenge", login, "application/json", 401, "application/problem+json", false, `Bearer realm="portcullis"`},
		{"html 401 challenge", login, "text/html", 401, "text/html; charset=utf-8", true, `Bearer realm="portcullis"`},
		{"401 without challenge", Info{Status: 401}, "", 401, "application/problem+json", false, ""},
		{"challenge ignored on 403", Info{Status: 403, WWWAuthenticate: "Bearer"}, "", 403, "application/problem+json", false, ""},
		{"zero status fails closed", Info{}, "", 403, "application/problem+json", false, ""},
		{"success status fails closed", Info{Status: 200}, "", 403, "application/problem+json", false, ""},
		{"502 kept", Info{Status: 502}, "", 502, "application/problem+json", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			w := httptest.NewRecorder()
			Write(w, r, tt.info)
			res := w.Result()
			if res.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.status)
			}
			h := res.Header
			for k, want := range map[string]string{
				"Content-Type":           tt.ctype,
				"Cache-Control":          "no-store",
				"X-Content-Type-Options": "nosniff",
				"Vary":                   "Accept",
				"WWW-Authenticate":       tt.authHeader,
			} {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			csp := h.Get("Content-Security-Policy")
			if tt.csp != (csp != "") || (tt.csp && !strings.HasPrefix(csp, "default-src 'none'; style-src 'unsafe-inline'")) {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if got, want := h.Get("Content-Length"), w.Body.Len(); got != strings.TrimSpace(itoa(want)) {
				t.Errorf("Content-Length = %s, body is %d bytes", got, want)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestWriteHead(t *testing.T) {
	r := httptest.NewRequest("HEAD", "/", nil)
	w := httptest.NewRecorder()
	Write(w, r, denied)
	if w.Body.Len() != 0 {
		t.Errorf("HEAD got a %d-byte body", w.Body.Len())
	}
	if w.Header().Get("Content-Length") == "0" {
		t.Error("HEAD Content-Length should be that of the GET body")
	}
}

func TestHTMLEscapes(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept", "text/html")
	w := httptest.NewRecorder()
	Write(w, r, hostile)
	body := w.Body.String()
	for _, bad := range []string{"<script>", "<img", "res</title>", "javascript:", "<b>"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains unescaped %q", bad)
		}
	}
	for _, external := range []string{"<img", "<link", "<script", "@import", "url("} {
		if strings.Contains(body, external) {
			t.Errorf("page references an external resource: %q", external)
		}
	}
}

func TestHTMLAction(t *testing.T) {
	tests := []struct {
		name string
		info Info
		want string
	}{
		{"remediation", Info{Remediation: "https://uem.example/fix"}, `href="https://uem.example/fix">Fix this device<`},
		{"login", Info{LoginURL: "https://idp.example/login"}, `href="https://idp.example/login">Sign in<`},
		{"remediation wins", Info{Remediation: "https://uem.example/fix", LoginURL: "https://idp.example/"}, `href="https://uem.example/fix"`},
		{"none", Info{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Accept", "text/html")
			w := httptest.NewRecorder()
			Write(w, r, tt.info)
			body := w.Body.String()
			if tt.want == "" {
				if strings.Contains(body, `class="action"`) {
					t.Error("page has an action link with no URL set")
				}
				return
			}
			if !strings.Contains(body, tt.want) {
				t.Errorf("page lacks %q:\n%s", tt.want, body)
			}
		})
	}
}

func TestPrefersJSON(t *testing.T) {
	const (
		chrome  = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
		firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
		safari  = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	)
	tests := []struct {
		accept []string
		want   bool
	}{
		{nil, true},
		{[]string{""}, true},
		{[]string{"*/*"}, true},              // curl
		{[]string{"application/json"}, true}, // API client
		{[]string{"application/problem+json"}, true},
		{[]string{"application/json, text/plain, */*"}, true}, // axios
		{[]string{chrome}, false},
		{[]string{firefox}, false},
		{[]string{safari}, false},
		{[]string{"text/html"}, false},
		{[]string{"TEXT/HTML"}, false},
		{[]string{"text/*"}, false},
		{[]string{"text/html, */*"}, false},
		{[]string{"text/html;q=0.5, application/json"}, true},
		{[]string{"text/html, application/json;q=0.5"}, false},
		{[]string{"text/html, application/json"}, true}, // tie, both explicit: JSON
		{[]string{"application/*"}, true},
		{[]string{"application/json;q=0, */*"}, false},
		{[]string{"text/html;q=0, */*"}, true},
		{[]string{"text/html;q=0, application/json;q=0"}, true},
		{[]string{"image/png"}, true},
		{[]string{"text/html;level=1;q=0.2, application/json;q=0.1"}, false},
		{[]string{"text/html;q=1.5, application/json;q=0.1"}, true}, // bad q is 0
		{[]string{"text/html;q=abc"}, true},
		{[]string{"text/html", "application/json;q=0.9"}, false}, // two header lines
		{[]string{"application/json;q=0.3, application/problem+json;q=0.9, text/html;q=0.5"}, true},
		{[]string{"application/json;q=0.3, */*;q=0.9, text/html;q=0.5"}, false},
		{[]string{",,;,"}, true},
		{[]string{"text/html ; q = 0.4 , application/json ; q=0.6"}, true},
	}
	for _, tt := range tests {
		if got := PrefersJSON(tt.accept); got != tt.want {
			t.Errorf("PrefersJSON(%q) = %v, want %v", tt.accept, got, tt.want)
		}
	}
}

func TestParseQ(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"1", 1000}, {"1.0", 1000}, {"1.000", 1000}, {"0", 0}, {"0.5", 500},
		{"0.25", 250}, {"0.001", 1}, {"1.001", 0}, {"0.0001", 0}, {"", 0},
		{"2", 0}, {".5", 0}, {"0.x", 0}, {"0,5", 0},
	}
	for _, tt := range tests {
		if got := parseQ(tt.in); got != tt.want {
			t.Errorf("parseQ(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzPrefersJSON(f *testing.F) {
	for _, s := range []string{"*/*", "text/html,*/*;q=0.8", "application/json;q=0.5", "a/b;q=1.000;x=y", ";;,", "text/html;q="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		PrefersJSON([]string{s})
	})
}

func FuzzProblemJSON(f *testing.F) {
	f.Add("device.not_compliant", "detail", "\xff\u2028<>&\"\\\x00")
	f.Fuzz(func(t *testing.T, reason, detail, title string) {
		b := appendProblem(nil, &Info{Reason: reason, Detail: detail, Title: title}, 403)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if reason != "" && utf8.ValidString(reason) && m["reason"] != reason {
			t.Errorf("reason = %q, want %q", m["reason"], reason)
		}
	})
}

// discard is a ResponseWriter that keeps nothing, so benchmarks measure
// Write and not the recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func TestWriteJSONAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Accept", "application/json")
	w := &discard{h: http.Header{}}
	Write(w, r, denied) // warm the pool
	got := testing.AllocsPerRun(100, func() {
		clear(w.h)
		Write(w, r, denied)
	})
	// Content-Length: strconv.Itoa and its []string in the header.
	if got > 2 {
		t.Errorf("Write (JSON) allocates %.0f objects, want at most 2", got)
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, bm := range []struct{ name, accept string }{
		{"json", "application/json"},
		{"html", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Accept", bm.accept)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				Write(w, r, denied)
			}
		})
	}
}

func BenchmarkPrefersJSON(b *testing.B) {
	accept := []string{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"}
	b.ReportAllocs()
	for b.Loop() {
		PrefersJSON(accept)
	}
}
