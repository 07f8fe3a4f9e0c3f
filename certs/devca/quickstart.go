package devca

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"portcullis/certs"
	"portcullis/internal/conf"
)

// The quickstart's identity rules, for the gateway's quickstart
// configuration: the device id is the UUID in the SPIFFE URI SAN and the
// user is the email SAN.
const (
	QuickstartUser            = "dev-user@portcullis.dev"
	QuickstartDeviceIDFrom    = certs.FromURISAN
	QuickstartDeviceIDPattern = `^spiffe://portcullis\.dev/device/([0-9a-f-]{36})$`
	QuickstartUserFrom        = certs.FromEmailSAN
)

// QuickstartCAConfig returns the device CA configuration that accepts the
// quickstart's device certificates, under name, with bundle the path of
// device-ca.pem.
func QuickstartCAConfig(name, bundle string) certs.CAConfig {
	return certs.CAConfig{
		Name:     name,
		Bundle:   conf.Path(bundle),
		DeviceID: certs.IdentityRule{From: QuickstartDeviceIDFrom, Pattern: QuickstartDeviceIDPattern},
		User:     &certs.IdentityRule{From: QuickstartUserFrom},
	}
}

// renewBefore is how close to expiry a quickstart certificate is replaced.
const renewBefore = 7 * 24 * time.Hour

// Quickstart names the files [EnsureQuickstart] made.
type Quickstart struct {
	Dir          string
	CACert       string // ca.pem: the dev CA that signed the server certificate; trust it in clients
	CAKey        string // ca.key
	ServerCert   string // server.pem: for localhost, 127.0.0.1 and ::1
	ServerKey    string // server.key
	DeviceCACert string // device-ca.pem: the device CA bundle
	DeviceCAKey  string // device-ca.key
	DeviceCert   string // device.pem: the sample device
	DeviceKey    string // device.key
	DeviceIDFile string // device.id
	DeviceID     string // the sample device's id, a UUID
	User         string // the user in the sample device's SAN
}

// EnsureQuickstart makes, in dir, what the quickstart needs, keeping what
// is already there and valid: a server-trust dev CA (ca.pem, ca.key), a
// server certificate for localhost, 127.0.0.1 and ::1 (server.pem,
// server.key), a separate device CA (device-ca.pem, device-ca.key), and one
// sample device (device.pem, device.key; its id in device.id) whose user is
// [QuickstartUser]. A certificate that is missing, unreadable, not signed
// by the current CA or within a week of expiry is issued again.
func EnsureQuickstart(dir string) (*Quickstart, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devca: %w", err)
	}
	q := &Quickstart{
		Dir:          dir,
		ServerCert:   filepath.Join(dir, "server.pem"),
		ServerKey:    filepath.Join(dir, "server.key"),
		DeviceCert:   filepath.Join(dir, "device.pem"),
		DeviceKey:    filepath.Join(dir, "device.key"),
		DeviceIDFile: filepath.Join(dir, "device.id"),
		User:         QuickstartUser,
	}
	serverCA, err := InitFiles(dir, "ca", "Portcullis dev server CA")
	if err != nil {
		return nil, err
	}
	deviceCA, err := InitFiles(dir, "device-ca", "Portcullis dev device CA")
	if err != nil {
		return nil, err
	}
	q.CACert, q.CAKey = serverCA.CertFile(), serverCA.KeyFile()
	q.DeviceCACert, q.DeviceCAKey = deviceCA.CertFile(), deviceCA.KeyFile()

	if !usable(q.ServerCert, q.ServerKey, serverCA, "") {
		c, k, _, err := serverCA.IssueServer([]string{"localhost", "127.0.0.1", "::1"}, 0)
		if err != nil {
			return nil, err
		}
		if err := writePair(q.ServerCert, q.ServerKey, c, k); err != nil {
			return nil, err
		}
	}

	q.DeviceID, err = ensureDeviceID(q.DeviceIDFile)
	if err != nil {
		return nil, err
	}
	if !usable(q.DeviceCert, q.DeviceKey, deviceCA, deviceCA.DeviceURI(q.DeviceID)) {
		c, k, _, err := deviceCA.IssueDevice(q.DeviceID, QuickstartUser, 0)
		if err != nil {
			return nil, err
		}
		if err := writePair(q.DeviceCert, q.DeviceKey, c, k); err != nil {
			return nil, err
		}
	}
	return q, nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ensureDeviceID reads the sample device id, or makes a random UUID and
// writes it.
func ensureDeviceID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); uuidRE.MatchString(id) {
			return id, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("devca: %w", err)
	}
	id, err := newUUID()
	if err != nil {
		return "", err
	}
	return id, writeFile(path, []byte(id+"\n"), 0o644)
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("devca: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// usable reports whether the pair loads, was signed by ca, is not close to
// expiry and, when uri is set, names it.
func usable(certFile, keyFile string, ca *CA, uri string) bool {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.CheckSignatureFrom(ca.cert) != nil {
		return false
	}
	if ca.now().Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	if uri != "" && (len(leaf.URIs) != 1 || leaf.URIs[0].String() != uri) {
		return false
	}
	return true
}

func writePair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(certFile, certPEM, 0o644)
}
