package certs

import (
	"log/slog"
	"net/http"
	"os"
	"time"
)

// Options are the dependencies of [NewDevices] and [NewServerCerts].
type Options struct {
	// Logger receives reload and revocation events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient fetches CRLs and OCSP responses; nil means a client of
	// its own. Request timeouts come from the configuration.
	HTTPClient *http.Client
	// StateDir is the gateway's state directory; ACME keeps its accounts
	// and certificates under StateDir/acme unless acme.storage says
	// otherwise.
	StateDir string
	// ACMERenewCheck is how often certmagic looks for certificates to
	// renew; zero means certmagic's default (10 minutes). Tests shorten it.
	ACMERenewCheck time.Duration
}

func (o Options) httpClient() *http.Client {
	if o.HTTPClient == nil {
		return &http.Client{}
	}
	return o.HTTPClient
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) clock() func() time.Time {
	if o.Now == nil {
		return time.Now
	}
	return o.Now
}

// A fileStamp tells whether a file changed since it was read.
type fileStamp struct {
	mtime time.Time
	size  int64
	ok    bool // the file existed
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mtime: fi.ModTime(), size: fi.Size(), ok: true}
}

// maxFileSize bounds every certificate, key, bundle and CRL file read.
const maxFileSize = 64 << 20

// readFile reads a file of at most maxFileSize bytes.
func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxFileSize {
		return nil, &os.PathError{Op: "read", Path: path, Err: errTooLarge}
	}
	return os.ReadFile(path)
}
