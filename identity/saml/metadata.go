package saml

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	crewsaml "github.com/crewjam/saml"
)

// maxMetadata bounds an IdP metadata document.
const maxMetadata = 1 << 20

// metadataTimeout bounds one metadata fetch.
const metadataTimeout = 10 * time.Second

// idpMeta is one parsed IdP metadata document.
type idpMeta struct {
	desc    *crewsaml.EntityDescriptor
	certs   []*x509.Certificate // signing certificates
	ssoURL  string              // HTTP-Redirect SingleSignOnService
	sloURL  string              // HTTP-Redirect SingleLogoutService, "" if none
	fetched time.Time
}

// metadataSource keeps the last good metadata and refreshes it from a URL.
type metadataSource struct {
	url     string
	client  *http.Client
	refresh time.Duration
	cur     atomic.Pointer[idpMeta]
	running atomic.Bool
	mu      sync.Mutex // serializes fetches
}

// parseMetadata parses an EntityDescriptor (or the first IdP entity of an
// EntitiesDescriptor) and extracts what the SP needs.
func parseMetadata(data []byte) (*idpMeta, error) {
	if len(data) > maxMetadata {
		return nil, errors.New("metadata is larger than 1 MiB")
	}
	var ed crewsaml.EntityDescriptor
	if err := xml.Unmarshal(data, &ed); err != nil {
		var eds crewsaml.EntitiesDescriptor
		if err2 := xml.Unmarshal(data, &eds); err2 != nil {
			return nil, fmt.Errorf("parsing IdP metadata: %w", err)
		}
		found := false
		for i := range eds.EntityDescriptors {
			if len(eds.EntityDescriptors[i].IDPSSODescriptors) > 0 {
				ed, found = eds.EntityDescriptors[i], true
				break
			}
		}
		if !found {
			return nil, errors.New("IdP metadata has no IDPSSODescriptor")
		}
	}
	if ed.EntityID == "" || len(ed.IDPSSODescriptors) == 0 {
		return nil, errors.New("IdP metadata has no entityID or no IDPSSODescriptor")
	}
	m := &idpMeta{desc: &ed}
	for _, d := range ed.IDPSSODescriptors {
		for _, kd := range d.KeyDescriptors {
			if kd.Use != "" && kd.Use != "signing" {
				continue
			}
			for _, c := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Data), ""))
				if err != nil {
					return nil, fmt.Errorf("IdP signing certificate: %w", err)
				}
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, fmt.Errorf("IdP signing certificate: %w", err)
				}
				m.certs = append(m.certs, cert)
			}
		}
		for _, s := range d.SingleSignOnServices {
			if s.Binding == crewsaml.HTTPRedirectBinding && m.ssoURL == "" {
				m.ssoURL = s.Location
			}
		}
		for _, s := range d.SingleLogoutServices {
			if s.Binding == crewsaml.HTTPRedirectBinding && m.sloURL == "" {
				m.sloURL = s.Location
			}
		}
	}
	if len(m.certs) == 0 {
		return nil, errors.New("IdP metadata has no signing certificate")
	}
	if m.ssoURL == "" {
		return nil, errors.New("IdP metadata has no HTTP-Redirect SingleSignOnService")
	}
	if err := checkURL(m.ssoURL, true); err != nil {
		return nil, fmt.Errorf("IdP SingleSignOnService %w", err)
	}
	if m.sloURL != "" && checkURL(m.sloURL, true) != nil {
		m.sloURL = ""
	}
	return m, nil
}

func readMetadataFile(path string) (*idpMeta, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxMetadata+1))
	if err != nil {
		return nil, err
	}
	return parseMetadata(data)
}

// fetch gets and parses the metadata, and keeps it when it is good.
func (s *metadataSource) fetch(ctx context.Context, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching IdP metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching IdP metadata: status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return fmt.Errorf("fetching IdP metadata: %w", err)
	}
	m, err := parseMetadata(data)
	if err != nil {
		return err
	}
	m.fetched = now
	s.cur.Store(m)
	return nil
}

// stale reports whether a refresh is due at now.
func (s *metadataSource) stale(now time.Time) bool {
	if s.url == "" {
		return false
	}
	m := s.cur.Load()
	return m == nil || now.Sub(m.fetched) >= s.refresh
}
