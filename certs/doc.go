// Package certs knows X.509: it verifies device certificates presented over
// mTLS against configured device CAs, checks them against CRLs, extracts the
// device identity the posture store is keyed by, and serves the gateway's
// own certificates, reloading them when their files change.
//
// [Devices] is built from the `devices:` configuration section and plugs
// into a [crypto/tls.Config] through [Devices.VerifyConnection] and
// [Devices.Pool]; [ServerCerts] is built from the `tls:` section and plugs
// in through [ServerCerts.GetCertificate]. The package knows nothing of
// requests or policy.
package certs
