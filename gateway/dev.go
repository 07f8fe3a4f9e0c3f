package gateway

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"portcullis/certs/devca"
)

// devFiles is what the quickstart provisions under dev.dir.
type devFiles struct {
	server tls.Certificate
}

// provisionDev creates, when missing, the quickstart's dev CA, server and
// device certificates, and the demo feed's webhook secret. Existing files
// are kept, so restarts keep the same identities.
func provisionDev(cfg *Config) (*devFiles, error) {
	dir := cfg.Dev.Dir.String()
	q, err := devca.EnsureQuickstart(dir)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(q.ServerCert, q.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("loading dev server certificate: %w", err)
	}
	if err := ensureWebhookSecret(filepath.Join(dir, "feed.secret")); err != nil {
		return nil, err
	}
	return &devFiles{server: cert}, nil
}

// ensureWebhookSecret writes a new Standard Webhooks secret ("whsec_" and
// 32 random bytes in base64) to path unless the file exists.
func ensureWebhookSecret(path string) error {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("whsec_"+base64.StdEncoding.EncodeToString(key[:])+"\n"), 0o600)
}
