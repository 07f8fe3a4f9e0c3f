package feeds

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Reason codes of feed rejections: the reason member of the problem
// document, the reason label of portcullis_feed_rejections_total and the
// reason key of the log line. Released values never change.
const (
	ReasonMethodNotAllowed = "feed.method_not_allowed" // 405: not POST
	ReasonUnsupportedMedia = "feed.unsupported_media"  // 415: not application/json
	ReasonTooLarge         = "feed.too_large"          // 413: body over max_body
	ReasonReadFailed       = "feed.read_failed"        // 400: the body could not be read
	ReasonMissingHeaders   = "feed.missing_headers"    // 401: a webhook-* header is missing
	ReasonStaleTimestamp   = "feed.stale_timestamp"    // 401: webhook-timestamp outside the window or malformed
	ReasonBadSignature     = "feed.bad_signature"      // 401: no v1 signature matches an active key
	ReasonInvalidPayload   = "feed.invalid_payload"    // 400: not a valid portcullis.posture.v1 payload
	ReasonFutureObserved   = "feed.future_observed_at" // 400: observed_at more than 5 minutes ahead
	ReasonIDMismatch       = "feed.id_mismatch"        // 400: event_id differs from webhook-id
	ReasonSourceMismatch   = "feed.source_mismatch"    // 400: source differs from the feed's name
	ReasonStoreUnavailable = "feed.store_unavailable"  // 503: the store is closed or shutting down
	ReasonStoreFailed      = "feed.store_failed"       // 500: the store could not commit
	ReasonBadAuthorization = "feed.bad_authorization"  // 401: the shared secret or token is missing or wrong
	ReasonBadChallenge     = "feed.bad_challenge"      // 400: an Okta verification GET without a usable challenge
	ReasonBadSubject       = "feed.bad_subject"        // 400: a Universal Logout subject that is missing or malformed
	ReasonUnknownUser      = "feed.unknown_user"       // 404: a Universal Logout subject that names no user of ours
	ReasonKeyUnavailable   = "feed.key_unavailable"    // 503: a token's signing key cannot be had yet; retry
)

var reasonTitles = map[string]string{
	ReasonMethodNotAllowed: "Method not allowed",
	ReasonUnsupportedMedia: "Content-Type must be application/json",
	ReasonTooLarge:         "Payload too large",
	ReasonReadFailed:       "Request body could not be read",
	ReasonMissingHeaders:   "Missing webhook headers",
	ReasonStaleTimestamp:   "Timestamp outside the replay window",
	ReasonBadSignature:     "Bad signature",
	ReasonInvalidPayload:   "Invalid payload",
	ReasonFutureObserved:   "observed_at is in the future",
	ReasonIDMismatch:       "event_id does not match webhook-id",
	ReasonSourceMismatch:   "source does not match the feed",
	ReasonStoreUnavailable: "Posture store unavailable",
	ReasonStoreFailed:      "Posture store failed",
	ReasonBadAuthorization: "Bad authorization",
	ReasonBadChallenge:     "Bad verification challenge",
	ReasonBadSubject:       "Bad subject",
	ReasonUnknownUser:      "Unknown user",
	ReasonKeyUnavailable:   "Signing key not available yet",
}

// problemTypePrefix + reason is the problem document's type URI.
const problemTypePrefix = "https://portcullis.dev/problems/" // as the gateway's deny documents

// problem is an RFC 9457 problem document with Portcullis's reason
// extension member.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Reason string `json:"reason"`
}

func writeProblem(w http.ResponseWriter, status int, reason, detail string) {
	b, err := json.Marshal(problem{
		Type:   problemTypePrefix + reason,
		Title:  reasonTitles[reason],
		Status: status,
		Detail: detail,
		Reason: reason,
	})
	if err != nil { // cannot happen: all fields are strings and ints
		b = []byte(`{"status":` + strconv.Itoa(status) + `}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		// The store is down or shutting down: nothing was stored, and
		// senders that honour Retry-After come back soon.
		h.Set("Retry-After", "5")
	}
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
