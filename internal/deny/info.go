// Package deny renders the gateway's answer to a request it refuses: an
// HTML page for a browser, or an RFC 9457 problem document
// (application/problem+json) for an API client.
//
// Both forms carry the stable reason code and the request id, so a user
// can quote them to support and an operator can find the decision record.
// Neither form echoes anything from the request other than what the
// caller puts in [Info].
package deny

// ProblemTypeBase prefixes the reason code to form a problem document's
// "type" URI. The URIs are identifiers; they need not resolve.
const ProblemTypeBase = "https://portcullis.dev/problems/"

// Info describes one denial. Only Status and Reason are needed; empty
// fields are left out of the response.
type Info struct {
	// Status is the HTTP status: 401 when the device or user must
	// authenticate, 403 when policy denies. A value outside 400–599
	// (including zero) is sent as 403, so a forgotten field fails closed.
	Status int
	// Reason is the stable reason code, e.g. "device.not_compliant".
	Reason string
	// Title is a short, human summary; by default the status text.
	Title string
	// Detail explains this occurrence to a human: why it was denied.
	Detail string
	// RequestID identifies the request in the decision log.
	RequestID string
	// Resource is the name of the resource that was denied.
	Resource string
	// Remediation is a URL where the user can fix the problem, such as
	// the UEM self-service portal.
	Remediation string
	// LoginURL is where the user signs in, when authentication is what is
	// missing. The page links to Remediation when both are set.
	LoginURL string
	// WWWAuthenticate, when set, is sent as the WWW-Authenticate header of
	// a 401 response (e.g. `Bearer realm="portcullis"`). It is never sent
	// with other statuses.
	WWWAuthenticate string
}

// status returns the status to send.
func (in *Info) status() int {
	if in.Status < 400 || in.Status > 599 {
		return 403
	}
	return in.Status
}
