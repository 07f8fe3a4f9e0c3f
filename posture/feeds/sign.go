package feeds

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SignWebhook returns the webhook-signature header value ("v1,<base64>")
// for a delivery with the given id, timestamp and raw body, signed with
// key (the decoded bytes of a whsec_ secret, not the string). Senders,
// tests and the CLI use it.
func SignWebhook(key []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(webhookMAC(key, id, strconv.FormatInt(ts.Unix(), 10), body))
}

// webhookMAC is HMAC-SHA256(key, id "." timestamp "." body) over the raw
// header and body bytes.
func webhookMAC(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// verifySignature reports whether any v1 entry of the space-separated
// signature header is the MAC of the delivery under any of keys. Entries
// with other version tags are ignored. Comparison is constant time.
func verifySignature(keys [][]byte, id, ts, header string, body []byte) bool {
	macs := make([][]byte, len(keys))
	for i, k := range keys {
		macs[i] = webhookMAC(k, id, ts, body)
	}
	var buf [sha256.Size + 3]byte
	for _, entry := range strings.Fields(header) {
		version, value, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" || base64.StdEncoding.DecodedLen(len(value)) > len(buf) {
			continue
		}
		n, err := base64.StdEncoding.Decode(buf[:], []byte(value))
		if err != nil {
			continue
		}
		for _, mac := range macs {
			if hmac.Equal(buf[:n], mac) {
				return true
			}
		}
	}
	return false
}
