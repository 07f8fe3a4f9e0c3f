package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"portcullis/internal/conf"
)

// cmdRevoke asks a running gateway's admin API to revoke a user, a device
// or a session; the gateway closes their live connections at once.
func cmdRevoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "http://127.0.0.1:9090", "the gateway's admin listener")
	tokenFile := fs.String("token-file", "", "file holding the admin API token (admin.token_file)")
	user := fs.String("user", "", "revoke every session of this user")
	device := fs.String("device", "", "revoke this device, as CA/ID")
	session := fs.String("session", "", "revoke this session id")
	reason := fs.String("reason", "", "why, for the logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tok, err := conf.ReadSecretFile(*tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis revoke: --token-file: %v\n", err)
		return 2
	}
	body := map[string]string{"user": *user, "session": *session, "reason": *reason}
	if *device != "" {
		ca, id, ok := strings.Cut(*device, "/")
		if !ok {
			fmt.Fprintln(stderr, "portcullis revoke: --device is CA/ID")
			return 2
		}
		body["ca"], body["device"] = ca, id
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, strings.TrimSuffix(*admin, "/")+"/v1/revoke", bytes.NewReader(b))
	if err != nil {
		fmt.Fprintf(stderr, "portcullis revoke: %v\n", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+string(tok.Bytes()))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis revoke: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s\n%s", resp.Status, out)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
