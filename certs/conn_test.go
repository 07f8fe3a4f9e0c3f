package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
)

// TestHandshake runs real TLS handshakes over a pipe with a server built
// from ServerCerts and Devices, as the gateway builds it.
func TestHandshake(t *testing.T) {
	serverCA := newRoot(t, "Server CA")
	deviceCA := newRoot(t, "Device CA")
	other := newRoot(t, "Other CA")
	dir := t.TempDir()
	c, k := serverPair(t, serverCA, []string{"gw.example"}, nil)
	writePEM(t, dir, "s.pem", c)
	writePEM(t, dir, "s.key", k)
	sc, err := NewServerCerts(ServerConfig{Certificates: []CertificateFiles{{inDir(dir, "s.pem"), inDir(dir, "s.key")}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{testNow}
	d := newTestDevices(t, clock, CAConfig{}, RevocationConfig{}, deviceCA.cert)
	serverCfg := &tls.Config{
		Time:             clock.Now,
		GetCertificate:   sc.GetCertificate,
		ClientAuth:       tls.RequestClientCert,
		ClientCAs:        d.Pool(nil),
		VerifyConnection: d.VerifyConnection(nil),
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)

	clientCert := func(ca *testCA) []tls.Certificate {
		key := newKey(t)
		tmpl := leafTemplate(testDeviceID)
		leaf := mustCreate(t, tmpl, ca.cert, key.Public(), ca.key)
		return []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}}
	}
	tests := []struct {
		name    string
		certs   []tls.Certificate
		wantErr bool
		wantID  string
	}{
		{"device", clientCert(deviceCA), false, testDeviceID},
		{"no certificate", nil, false, ""},
		{"other CA", clientCert(other), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, scn := net.Pipe()
			defer cc.Close()
			defer scn.Close()
			client := tls.Client(cc, &tls.Config{Time: clock.Now, ServerName: "gw.example", RootCAs: roots,
				// Send the certificate even when the server's CA list does
				// not name its issuer.
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if len(tt.certs) == 0 {
						return &tls.Certificate{}, nil
					}
					return &tt.certs[0], nil
				}})
			server := tls.Server(scn, serverCfg)
			errc := make(chan error, 1)
			go func() {
				err := client.HandshakeContext(context.Background())
				if err == nil {
					// TLS 1.3 reports a client certificate rejection on the
					// first read.
					_, err = client.Read(make([]byte, 1))
				}
				errc <- err
				cc.Close()
			}()
			serr := server.HandshakeContext(context.Background())
			if (serr != nil) != tt.wantErr {
				t.Fatalf("server handshake = %v, want error %v", serr, tt.wantErr)
			}
			if serr == nil {
				cs := server.ConnectionState()
				id, err := d.Identity(&cs, nil)
				switch {
				case tt.wantID == "" && err != ErrNoCertificate:
					t.Errorf("Identity = %v, %v; want ErrNoCertificate", id, err)
				case tt.wantID != "" && (err != nil || id.DeviceID != tt.wantID):
					t.Errorf("Identity = %v, %v; want %s", id, err, tt.wantID)
				}
				server.Close()
			}
			<-errc
		})
	}
}
