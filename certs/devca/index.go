package devca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultCRLValidity is how long a CRL is current when a caller passes
// zero.
const DefaultCRLValidity = 7 * 24 * time.Hour

// ErrUnknownSerial says a serial number was not issued by the CA.
var ErrUnknownSerial = errors.New("devca: unknown serial number")

// index is what the CA remembers: every certificate it issued, what it
// revoked, and the last CRL number.
type index struct {
	CRLNumber int64    `json:"crl_number"`
	Issued    []record `json:"issued"`
}

// A record is one issued certificate.
type record struct {
	Serial    string     `json:"serial"` // lower-case hex
	Kind      string     `json:"kind"`   // device or server
	Subject   string     `json:"subject"`
	DeviceID  string     `json:"device_id,omitempty"`
	User      string     `json:"user,omitempty"`
	Hosts     []string   `json:"hosts,omitempty"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

func (ca *CA) indexFile() string { return filepath.Join(ca.dir, ca.prefix+".index.json") }

func (ca *CA) readIndex() (*index, error) {
	b, err := os.ReadFile(ca.indexFile())
	if errors.Is(err, fs.ErrNotExist) {
		return &index{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	var idx index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("devca: %s: %w", ca.indexFile(), err)
	}
	return &idx, nil
}

func (ca *CA) writeIndex(idx *index) error {
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("devca: encoding index: %w", err)
	}
	return writeFile(ca.indexFile(), append(b, '\n'), 0o600)
}

// normalizeSerial accepts hex with or without colons, any case and leading
// zeros, and returns the lower-case hex form without leading zeros.
func normalizeSerial(s string) (string, bool) {
	s = strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	s = strings.TrimPrefix(strings.ToLower(s), "0x")
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return "", false
	}
	return n.Text(16), true
}

// Revoke marks the certificate with serial (hex, as IssueDevice returns
// it; colons and case do not matter) revoked; the next [CA.CRL] lists it.
// Revoking a revoked certificate does nothing. A serial the CA did not
// issue is [ErrUnknownSerial].
func (ca *CA) Revoke(serial string) error {
	s, ok := normalizeSerial(serial)
	if !ok {
		return fmt.Errorf("devca: invalid serial number %q", serial)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return err
	}
	for i := range idx.Issued {
		r := &idx.Issued[i]
		if r.Serial != s {
			continue
		}
		if r.RevokedAt != nil {
			return nil
		}
		now := ca.now().UTC().Truncate(time.Second)
		r.RevokedAt = &now
		return ca.writeIndex(idx)
	}
	return fmt.Errorf("%w: %s", ErrUnknownSerial, s)
}

// CRL returns a new PEM CRL ("X509 CRL") of every revoked certificate,
// signed by the CA, current for validity (zero: [DefaultCRLValidity]). Each
// call uses the next CRL number.
func (ca *CA) CRL(validity time.Duration) ([]byte, error) {
	if validity < 0 {
		return nil, errors.New("devca: negative CRL validity")
	}
	if validity == 0 {
		validity = DefaultCRLValidity
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return nil, err
	}
	idx.CRLNumber++
	now := ca.now()
	rl := &x509.RevocationList{
		Number:     big.NewInt(idx.CRLNumber),
		ThisUpdate: now,
		NextUpdate: now.Add(validity),
	}
	for _, r := range idx.Issued {
		if r.RevokedAt == nil {
			continue
		}
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("devca: index holds a bad serial %q", r.Serial)
		}
		rl.RevokedCertificateEntries = append(rl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: *r.RevokedAt})
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("devca: signing CRL: %w", err)
	}
	// The number is persisted before the CRL is handed out, so that no two
	// CRLs ever share one.
	if err := ca.writeIndex(idx); err != nil {
		return nil, err
	}
	return pemBlock("X509 CRL", der), nil
}
