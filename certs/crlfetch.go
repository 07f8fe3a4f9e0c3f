package certs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Defaults of [RevocationConfig] for CRL URLs.
const (
	DefaultCRLRefresh      = time.Hour
	DefaultCRLFetchTimeout = 30 * time.Second
)

// crlRetry is the longest wait before a failed CRL fetch is tried again.
const crlRetry = time.Minute

// urlState is what [Devices] knows about one CRL URL between fetches.
type urlState struct {
	next      time.Time // when to fetch next; zero: now
	lastFetch time.Time // last successful fetch
	lastErr   error     // of the last attempt; nil after a success
}

// RefreshCRLs fetches every CRL URL now, whatever its schedule, and puts
// the new CRLs in force. A URL that fails keeps its last good copy, and
// the error says why. The gateway may call it before it starts listening,
// so that the first handshakes are not refused for want of a CRL; [Devices.Run]
// does it too.
func (d *Devices) RefreshCRLs(ctx context.Context) error {
	return d.refreshDue(ctx, true)
}

// refreshDue fetches the CRL URLs that are due (all of them with all),
// installs what changed and reports the failures.
func (d *Devices) refreshDue(ctx context.Context, all bool) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	old := d.crl.Load()
	fetched := make([]*crlFile, len(d.crlURLs))
	copy(fetched, old.fetched)
	var errs []error
	changed := false
	for i, u := range d.crlURLs {
		d.urlMu.Lock()
		next := d.urls[i].next
		d.urlMu.Unlock()
		if !all && d.now().Before(next) {
			continue
		}
		f, err := d.fetchCRL(ctx, u)
		now := d.now()
		d.urlMu.Lock()
		st := &d.urls[i]
		if err != nil {
			st.lastErr = err
			st.next = now.Add(min(crlRetry, d.refresh))
		} else {
			st.lastErr, st.lastFetch = nil, now
			st.next = d.nextFetch(f, now)
		}
		d.urlMu.Unlock()
		if err != nil {
			errs = append(errs, err)
			d.log.Error("fetching CRL; keeping the last good copy", "url", u, "error", err)
			continue
		}
		if prev := fetched[i]; prev != nil && sameCRLs(prev, f) {
			continue
		}
		fetched[i] = f
		changed = true
	}
	if changed {
		added := d.install(old, newCRLSet(old.gen+1, old.files, fetched))
		d.log.Info("fetched CRLs", "crl_urls", len(d.crlURLs), "newly_revoked", len(added))
	}
	return errors.Join(errs...)
}

// nextFetch schedules the next fetch of a CRL: at two thirds of its
// validity or after d.refresh, whichever is first, and never sooner than
// a few seconds from now.
func (d *Devices) nextFetch(f *crlFile, now time.Time) time.Time {
	next := now.Add(d.refresh)
	for _, e := range f.crls {
		at := e.rl.ThisUpdate.Add(e.rl.NextUpdate.Sub(e.rl.ThisUpdate) * 2 / 3)
		if at.Before(next) {
			next = at
		}
	}
	if floor := now.Add(crlPollInterval); next.Before(floor) {
		next = floor // a stale CRL: try again soon, not in a loop
	}
	return next
}

// sameCRLs tells whether two fetches of a URL hold the same CRLs.
func sameCRLs(a, b *crlFile) bool {
	if len(a.crls) != len(b.crls) {
		return false
	}
	for i := range a.crls {
		if string(a.crls[i].rl.Raw) != string(b.crls[i].rl.Raw) {
			return false
		}
	}
	return true
}

// fetchCRL downloads and parses the CRLs at url.
func (d *Devices) fetchCRL(ctx context.Context, url string) (*crlFile, error) {
	ctx, cancel := context.WithTimeout(ctx, d.fetchTime)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("CRL %s: %w", url, err)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching CRL: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("CRL %s: server answered %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("CRL %s: %w", url, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("CRL %s: %w", url, errTooLarge)
	}
	crls, err := parseCRLs(data)
	if err != nil {
		return nil, fmt.Errorf("CRL %s: %w", url, err)
	}
	return &crlFile{path: url, crls: crls}, nil
}
