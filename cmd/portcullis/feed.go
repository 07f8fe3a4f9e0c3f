package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"portcullis/internal/conf"
	"portcullis/posture/feeds"
)

// cmdFeed sends one signed portcullis.posture.v1 event, the way a UEM
// relay would: Standard Webhooks signature over the exact bytes sent.
func cmdFeed(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "post" {
		fmt.Fprintln(stderr, "usage: portcullis feed post --url URL --secret-file FILE --source NAME --device ID [flags]")
		return 2
	}
	fs := flag.NewFlagSet("feed post", flag.ContinueOnError)
	fs.SetOutput(stderr)
	u := fs.String("url", "https://localhost:8443/.portcullis/feeds/uem", "feed endpoint")
	secretFile := fs.String("secret-file", "data/dev/feed.secret", "the feed's whsec_ secret")
	source := fs.String("source", "uem", "feed name (the event's source)")
	device := fs.String("device", "", "device id (required)")
	user := fs.String("user", "", "primary user")
	managed := fs.Bool("managed", true, "the device is managed")
	compliant := fs.String("compliant", "true", "true, false or null")
	threat := fs.String("threat", "none", "none, low, medium, high or critical")
	state := fs.String("state", "active", "active, quarantined, retired, wiped or lost")
	cacert := fs.String("cacert", "data/dev/ca.pem", "CA that signed the gateway's certificate (empty: system roots)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *device == "" {
		fmt.Fprintln(stderr, "portcullis feed post: --device is required")
		return 2
	}
	secret, err := conf.ReadSecretFile(*secretFile)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis feed post: %v\n", err)
		return 1
	}
	key, err := conf.DecodeWebhookSecret(secret)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis feed post: %s: %v\n", *secretFile, err)
		return 1
	}
	var idb [16]byte
	rand.Read(idb[:])
	id := "evt_" + hex.EncodeToString(idb[:])
	now := time.Now().UTC()
	ev := map[string]any{
		"spec": "portcullis.posture.v1", "event_id": id, "source": *source,
		"observed_at": now.Format(time.RFC3339Nano),
		"device":      map[string]any{"id": *device},
		"managed":     *managed,
		"threat":      map[string]any{"level": *threat},
		"state":       *state,
	}
	switch *compliant {
	case "true":
		ev["compliant"] = true
	case "false":
		ev["compliant"] = false
	default:
		ev["compliant"] = nil
	}
	if *user != "" {
		ev["user"] = *user
	}
	body, _ := json.Marshal(ev)

	client := &http.Client{Timeout: 10 * time.Second}
	if *cacert != "" {
		pem, err := os.ReadFile(*cacert)
		if err != nil {
			fmt.Fprintf(stderr, "portcullis feed post: %v\n", err)
			return 1
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	req, _ := http.NewRequest(http.MethodPost, *u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", feeds.SignWebhook(key, id, now, body))
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis feed post: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s\n%s\n", resp.Status, bytes.TrimSpace(out))
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
