package test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// TestConsoleBrowser drives the admin console in Chromium through the
// built binary: sign in with the admin token, see a live websocket, revoke
// its device from the devices page, and watch the websocket close and the
// decision arrive on the live decisions page; a visitor without the token
// and a cross-site form are refused. It writes a screenshot of every page
// in light and dark mode to $PORTCULLIS_SCREENSHOTS, or to a temporary
// directory it names in the log.
func TestConsoleBrowser(t *testing.T) {
	chromium := requirePeer(t, "chromium")
	e := newEnv(t)
	e.console = true
	e.writeConfig("")
	gw := e.start()
	e.setCompliant(e.dev1ID, true)
	e.setCompliant(e.dev2ID, true)
	tok, err := os.ReadFile(e.adminToken)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	base := "http://" + e.admin

	// A live websocket with alice's device certificate.
	wsCtx, wsCancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer wsCancel()
	ws, _, err := websocket.Dial(wsCtx, fmt.Sprintf("wss://localhost:%d/ws", e.port),
		&websocket.DialOptions{HTTPClient: e.client(e.dev1Cert, e.dev1Key, false)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	wsClosed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(wsCtx); err != nil {
				wsClosed <- err
				return
			}
		}
	}()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelC := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelC()

	text := func(ctx context.Context, sel string) string {
		t.Helper()
		var s string
		if err := chromedp.Run(ctx, chromedp.Text(sel, &s, chromedp.ByQuery)); err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	// waitText waits until the element's text contains every one of want.
	waitText := func(ctx context.Context, sel string, want ...string) string {
		t.Helper()
		var s string
		for deadline := time.Now().Add(30 * time.Second); ; {
			s = text(ctx, sel)
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(s, w)
			}
			if ok {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never showed %q; it shows:\n%s", sel, want, s)
			}
			if err := chromedp.Run(ctx, chromedp.Sleep(200*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Without a session every page sends the browser to sign in, and a
	// wrong token is refused.
	var loc string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/console/live"),
		chromedp.WaitVisible(`#token`, chromedp.ByQuery),
		chromedp.Location(&loc),
	); err != nil {
		t.Fatal(err)
	}
	if loc != base+"/console/login" {
		t.Errorf("the live page without a session went to %s", loc)
	}
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`#token`, "not-the-token", chromedp.ByQuery),
		chromedp.Submit(`#token`, chromedp.ByQuery),
		chromedp.WaitVisible(`.error`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	if s := text(ctx, "main"); !strings.Contains(s, "not the admin token") {
		t.Errorf("a wrong token shows: %s", s)
	}

	// Sign in.
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/console/login"),
		chromedp.WaitVisible(`#token`, chromedp.ByQuery),
		chromedp.SendKeys(`#token`, token, chromedp.ByQuery),
		chromedp.Submit(`#token`, chromedp.ByQuery),
		chromedp.WaitVisible(`.stats`, chromedp.ByQuery),
		chromedp.Location(&loc),
	); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(loc, token) {
		t.Fatal("the token appeared in a URL")
	}

	// The websocket is in the live list.
	if err := chromedp.Run(ctx, chromedp.Navigate(base+"/console/live"), chromedp.WaitVisible(`table`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(ctx, "table", e.dev1ID, e.dev1User, "/ws")

	// Some traffic for the charts: bob allowed, a visitor without a
	// certificate refused.
	for _, c := range []*http.Client{e.client(e.dev2Cert, e.dev2Key, false), e.client("", "", false)} {
		for range 3 {
			resp, err := c.Get(e.url("/hello"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}

	// Screenshots of every page, light and dark.
	shots := os.Getenv("PORTCULLIS_SCREENSHOTS")
	if shots == "" {
		if shots, err = os.MkdirTemp("", "portcullis-console-"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	pages := map[string]string{
		"overview": "/console/", "live": "/console/live", "devices": "/console/devices",
		"device": "/console/device?ca=corp&id=" + e.dev1ID,
		"users":  "/console/users?show=live", "user": "/console/user?u=" + e.dev1User,
		"decisions": "/console/decisions", "feeds": "/console/feeds",
		"explain": "/console/explain?resource=app&user=" + e.dev1User + "&ca=corp&device=" + e.dev1ID,
	}
	for _, scheme := range []string{"light", "dark"} {
		if err := chromedp.Run(ctx, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}})); err != nil {
			t.Fatal(err)
		}
		for name, path := range pages {
			var png []byte
			if err := chromedp.Run(ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(`main h1`, chromedp.ByQuery),
				chromedp.FullScreenshot(&png, 100)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if h1 := text(ctx, "main h1"); h1 == "Error" || strings.Contains(h1, "Not Found") || strings.Contains(h1, "Bad Request") {
				t.Errorf("%s page: %s: %s", name, h1, text(ctx, "main"))
			}
			if err := os.WriteFile(filepath.Join(shots, name+"-"+scheme+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("console screenshots in %s", shots)
	if err := chromedp.Run(ctx, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}})); err != nil {
		t.Fatal(err)
	}

	// A second tab follows the decision stream.
	stream, cancelStream := chromedp.NewContext(ctx)
	defer cancelStream()
	if err := chromedp.Run(stream, chromedp.Navigate(base+"/console/decisions?device="+e.dev1ID), chromedp.WaitVisible(`#decisions`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(stream, "#stream-state", "Live")

	// Revoke alice's device from the devices page.
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/console/devices?q="+e.dev1ID),
		chromedp.WaitVisible(`table a[href*="`+e.dev1ID+`"]`, chromedp.ByQuery),
		chromedp.Click(`table a[href*="`+e.dev1ID+`"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#reason`, chromedp.ByQuery),
		chromedp.SendKeys(`#reason`, "lost laptop <b>", chromedp.ByQuery),
		chromedp.Click(`button.danger[type=submit]:not([aria-label])`, chromedp.ByQuery),
		chromedp.WaitVisible(`#h-rev`, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	waitText(ctx, "main", "revoked", "lost laptop <b>")

	select {
	case <-wsClosed:
	case <-time.After(30 * time.Second):
		t.Fatal("the websocket stayed open after its device was revoked")
	}
	row := waitText(stream, "#decisions tbody", "device.certificate_revoked", e.dev1ID)
	t.Logf("streamed decisions:\n%s", row)

	// The action is in the decision log with the operator.
	gw.waitLog(`"msg":"admin_action","operator":"admin-token","idp":"token","action":"revoke_device","target":"corp/` + e.dev1ID + `","reason":"lost laptop <b>","result":"applied"`)
	// bob's device was not touched.
	if code, dev := e.adminGet(t, "/v1/devices/corp/"+e.dev2ID, true); code != 200 || dev["revoked_before"] != nil {
		t.Errorf("bob's device: %d %v", code, dev)
	}

	// A cross-site form aimed at the console is refused, even from a
	// browser with a console session.
	evil := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/console/device/revoke">
<input type="hidden" name="ca" value="corp"><input type="hidden" name="id" value="%s">
<input type="hidden" name="csrf" value="guess"></form><script>document.forms[0].submit()</script>`, base, e.dev2ID)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go evil.Serve(ln)
	defer evil.Close()
	_, evilPort, _ := net.SplitHostPort(ln.Addr().String())
	if err := chromedp.Run(ctx, chromedp.Navigate("http://localhost:"+evilPort+"/"), chromedp.WaitVisible(`main`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	if s := text(ctx, "main"); !strings.Contains(s, "Sign in") && !strings.Contains(s, "Refused") {
		t.Errorf("the cross-site form got: %s", s)
	}
	if _, dev := e.adminGet(t, "/v1/devices/corp/"+e.dev2ID, true); dev["revoked_before"] != nil {
		t.Error("a cross-site form revoked bob's device")
	}
}
