package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"
)

// Default validities when a caller passes zero.
const (
	DefaultDeviceValidity = 365 * 24 * time.Hour
	DefaultServerValidity = 365 * 24 * time.Hour
)

var (
	oidExtSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidUPN    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}

	deviceIDRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
	userRE     = regexp.MustCompile(`^[!-~]{1,254}$`) // printable ASCII, no space
)

// DeviceURI returns the URI SAN naming deviceID.
func (ca *CA) DeviceURI(deviceID string) string {
	td := ca.TrustDomain
	if td == "" {
		td = DefaultTrustDomain
	}
	return "spiffe://" + td + "/device/" + deviceID
}

// IssueDevice issues a device certificate with a new P-256 key: extended
// key usage clientAuth, the subject CN and a URI SAN
// spiffe://<trust domain>/device/<deviceID>, and, when user is not empty,
// the user as both an email SAN and a UPN otherName. deviceID may hold
// letters, digits and ". _ ~ -". A zero validity means
// [DefaultDeviceValidity]. It returns the PEM certificate and key and the
// serial in lower-case hex.
func (ca *CA) IssueDevice(deviceID, user string, validity time.Duration) (certPEM, keyPEM []byte, serial string, err error) {
	if !deviceIDRE.MatchString(deviceID) {
		return nil, nil, "", fmt.Errorf("devca: invalid device id %q", deviceID)
	}
	if user != "" && !userRE.MatchString(user) {
		return nil, nil, "", fmt.Errorf("devca: invalid user %q", user)
	}
	if validity == 0 {
		validity = DefaultDeviceValidity
	}
	san, err := deviceSAN(ca.DeviceURI(deviceID), user)
	if err != nil {
		return nil, nil, "", err
	}
	tmpl := &x509.Certificate{
		Subject:         pkix.Name{CommonName: deviceID},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{san},
	}
	return ca.issue(tmpl, validity, record{Kind: "device", DeviceID: deviceID, User: user})
}

// IssueServer issues a server certificate (extended key usage serverAuth)
// with a new P-256 key for hosts, each a DNS name or an IP address. A zero
// validity means [DefaultServerValidity].
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, serial string, err error) {
	if len(hosts) == 0 {
		return nil, nil, "", errors.New("devca: no host names")
	}
	if validity == 0 {
		validity = DefaultServerValidity
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if h == "" {
			return nil, nil, "", errors.New("devca: empty host name")
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	return ca.issue(tmpl, validity, record{Kind: "server", Hosts: hosts})
}

// issue signs tmpl with a new key and records it in the index.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration, rec record) (certPEM, keyPEM []byte, serial string, err error) {
	if validity < 0 {
		return nil, nil, "", errors.New("devca: negative validity")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, "", fmt.Errorf("devca: generating key: %w", err)
	}
	sn, err := newSerial()
	if err != nil {
		return nil, nil, "", err
	}
	now := ca.now()
	tmpl.SerialNumber = sn
	tmpl.NotBefore = now.Add(-5 * time.Minute) // clock skew
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("devca: signing: %w", err)
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, "", err
	}
	rec.Serial = sn.Text(16)
	rec.Subject = tmpl.Subject.CommonName
	rec.NotAfter = tmpl.NotAfter.UTC()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	idx, err := ca.readIndex()
	if err != nil {
		return nil, nil, "", err
	}
	idx.Issued = append(idx.Issued, rec)
	if err := ca.writeIndex(idx); err != nil {
		return nil, nil, "", err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, rec.Serial, nil
}

// deviceSAN builds the SAN extension by hand: crypto/x509 cannot write an
// otherName.
func deviceSAN(uri, user string) (pkix.Extension, error) {
	names := []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}}
	if user != "" {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, Bytes: []byte(user)})
		upn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte(user)})
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("devca: encoding UPN: %w", err)
		}
		oid, err := asn1.Marshal(oidUPN)
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("devca: encoding UPN: %w", err)
		}
		val, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: upn})
		if err != nil {
			return pkix.Extension{}, fmt.Errorf("devca: encoding UPN: %w", err)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, val...)})
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("devca: encoding SAN: %w", err)
	}
	return pkix.Extension{Id: oidExtSAN, Value: der}, nil
}
