package certs

// Stable [VerifyError] codes. Released values never change: the gateway maps
// them to reason codes and they appear in logs and metrics.
const (
	CodeUnknownCA         = "unknown_ca"         // no allowed device CA vouches for the chain
	CodeExpired           = "expired"            // a certificate of the chain is past its notAfter
	CodeNotYetValid       = "not_yet_valid"      // a certificate of the chain is before its notBefore
	CodeBadEKU            = "bad_eku"            // the leaf is not for clientAuth
	CodeChainTooDeep      = "chain_too_deep"     // more certificates than max_chain_depth allows
	CodeCAAsLeaf          = "ca_as_leaf"         // the leaf is a CA certificate
	CodeWeakKey           = "weak_key"           // an RSA key under 2048 bits or not a multiple of 8 bits, or a DSA key
	CodeBadSerial         = "bad_serial"         // a zero, negative or over-20-octet serial number
	CodeRevoked           = "revoked"            // on its issuer's CRL, or OCSP says revoked (hard mode: or unknown)
	CodeCRLStale          = "crl_stale"          // the issuer's CRL is past nextUpdate and stale: deny
	CodeCRLInvalid        = "crl_invalid"        // a CRL names the issuer but its signature or issuer's key usage is wrong
	CodeOCSPUnavailable   = "ocsp_unavailable"   // hard OCSP: the responder could not be reached or answered unusably
	CodeNoIdentity        = "no_identity"        // the device_id rule matched nothing
	CodeAmbiguousIdentity = "ambiguous_identity" // a rule matched more than one value
)

// A VerifyError says why a device certificate was not accepted. Code is one
// of the Code constants; Err, which may be nil, is the underlying cause.
type VerifyError struct {
	Code string
	Err  error
}

func (e *VerifyError) Error() string {
	if e.Err == nil {
		return "certs: device certificate " + e.Code
	}
	return "certs: device certificate " + e.Code + ": " + e.Err.Error()
}

// Unwrap returns the underlying cause.
func (e *VerifyError) Unwrap() error { return e.Err }

func verifyErr(code string, err error) *VerifyError { return &VerifyError{Code: code, Err: err} }
