package test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"portcullis/posture/feeds"
)

// TestQuickstartFirstReportInSeedSecond starts a fresh quickstart and
// posts a non-compliant report for the seeded device stamped with the
// very second of the seed, as a UEM that sends whole seconds would: the
// two reports tie, the more restrictive wins, and the device is denied.
func TestQuickstartFirstReportInSeedSecond(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "configs"), 0o700)
	src, err := os.ReadFile("../configs/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	port, admin := freePort(t), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := strings.ReplaceAll(string(src), "127.0.0.1:8443", fmt.Sprintf("127.0.0.1:%d", port))
	cfg = strings.ReplaceAll(cfg, "127.0.0.1:9090", admin)
	cfgPath := filepath.Join(dir, "configs", "quickstart.yaml")
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	g := startGateway(t, cfgPath, admin)
	g.waitLog("seeded the sample device's posture")

	var seeded time.Time
	for _, line := range strings.Split(g.logs(), "\n") {
		var rec struct {
			Msg        string    `json:"msg"`
			ObservedAt time.Time `json:"observed_at"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "seeded the sample device's posture" {
			seeded = rec.ObservedAt
		}
	}
	if seeded.IsZero() {
		t.Fatalf("no seed time in the log:\n%s", g.logs())
	}

	devDir := filepath.Join(dir, "data", "dev")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(devDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(read("feed.secret"), "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	deviceID := read("device.id")
	e := &env{t: t, port: port, serverCA: filepath.Join(devDir, "ca.pem")}

	id := "evt-" + uuid4()
	body, _ := json.Marshal(map[string]any{
		"spec": "portcullis.posture.v1", "event_id": id, "source": "uem",
		"observed_at": seeded.UTC().Truncate(time.Second).Format(time.RFC3339),
		"device":      map[string]any{"id": deviceID}, "managed": true, "compliant": false,
	})
	now := time.Now()
	req, _ := http.NewRequest(http.MethodPost, e.url("/.portcullis/feeds/uem"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", feeds.SignWebhook(key, id, now, body))
	resp, err := e.client("", "", false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(reply), `"applied":1`) {
		t.Fatalf("non-compliant report in the seed's second: %d %s, want 200 applied", resp.StatusCode, reply)
	}

	req, _ = http.NewRequest(http.MethodGet, e.url("/"), nil)
	req.Header.Set("Accept", "application/json")
	resp, err = e.client(filepath.Join(devDir, "device.pem"), filepath.Join(devDir, "device.key"), false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || parseProblem(t, string(b)).Reason != "device.not_compliant" {
		t.Errorf("seeded device after a non-compliant report in the same second: %d %s, want 403 device.not_compliant", resp.StatusCode, b)
	}
}
