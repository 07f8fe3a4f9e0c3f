package feeds

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Delivery method URNs.
const (
	methodPush = "urn:ietf:rfc:8935"
	methodPoll = "urn:ietf:rfc:8936"
)

// ssfMaxEvents is the maxEvents of a poll request.
const ssfMaxEvents = 100

// ssfVerifyEvery is how often a managed stream is verified.
const ssfVerifyEvery = 15 * time.Minute

// ssfMaxBackoff caps the wait after failures.
const ssfMaxBackoff = 5 * time.Minute

// ErrSSF is wrapped by stream management and polling errors.
var ErrSSF = errors.New("feeds: ssf")

// metadata returns the transmitter configuration, fetching it once.
func (s *SSF) metadata(ctx context.Context) (*ssfMetadata, error) {
	if m := s.meta.Load(); m != nil {
		return m, nil
	}
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	if m := s.meta.Load(); m != nil {
		return m, nil
	}
	var m ssfMetadata
	if err := s.call(ctx, http.MethodGet, s.configURL, nil, false, &m); err != nil {
		return nil, fmt.Errorf("%w: reading configuration %s: %v", ErrSSF, s.configURL, err)
	}
	if m.Issuer != s.verifier.issuer {
		return nil, fmt.Errorf("%w: configuration issuer %q is not %q", ErrSSF, clip(m.Issuer), s.verifier.issuer)
	}
	s.meta.Store(&m)
	return &m, nil
}

// jwksURL is the transmitter's key set URL: jwks_url, else the
// configuration's jwks_uri.
func (s *SSF) jwksURL(ctx context.Context) (string, error) {
	if s.jwksOverride != "" {
		return s.jwksOverride, nil
	}
	m, err := s.metadata(ctx)
	if err != nil {
		return "", err
	}
	if m.JWKSURI == "" {
		return "", fmt.Errorf("%w: the configuration has no jwks_uri", ErrSSF)
	}
	return m.JWKSURI, nil
}

// Run manages the stream (with manage_stream) and, with poll delivery,
// polls until ctx ends. Failures are logged, shown in Status and retried
// with exponential backoff up to 5 minutes. It returns nil when ctx ends.
func (s *SSF) Run(ctx context.Context) error {
	backoff := time.Second
	var lastVerify time.Time
	for ctx.Err() == nil {
		if s.manage && s.now().Sub(lastVerify) >= ssfVerifyEvery {
			if err := s.SetupStream(ctx); err != nil {
				s.failed(ctx, err)
				if !sleepCtx(ctx, backoff) {
					return nil
				}
				backoff = min(backoff*2, ssfMaxBackoff)
				continue
			}
			lastVerify = s.now()
		}
		if s.delivery != "poll" {
			wait := ssfVerifyEvery
			if !s.manage {
				return waitDone(ctx)
			}
			if !sleepCtx(ctx, wait) {
				return nil
			}
			continue
		}
		more, err := s.Poll(ctx)
		switch {
		case err != nil:
			s.failed(ctx, err)
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, ssfMaxBackoff)
		case !more:
			backoff = time.Second
			if !sleepCtx(ctx, s.interval) {
				return nil
			}
		default:
			backoff = time.Second
		}
	}
	return nil
}

func (s *SSF) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s.log.Warn("ssf receiver failed", "err", err)
	s.health.fail(err.Error(), s.now())
}

// SetupStream reads the transmitter configuration, creates the stream or
// updates it (delivery method and requested events), reads its status and
// requests a verification event.
func (s *SSF) SetupStream(ctx context.Context) error {
	m, err := s.metadata(ctx)
	if err != nil {
		return err
	}
	if m.ConfigurationEndpoint == "" {
		return fmt.Errorf("%w: the transmitter has no configuration_endpoint", ErrSSF)
	}
	delivery := map[string]string{"method": methodPoll}
	if s.delivery == "push" {
		delivery = map[string]string{"method": methodPush, "endpoint_url": s.endpoint,
			"authorization_header": "Bearer " + string(s.token.Bytes())}
	}
	type streamConfig struct {
		StreamID string   `json:"stream_id,omitempty"`
		Iss      string   `json:"iss,omitempty"`
		Aud      any      `json:"aud,omitempty"`
		Delivery any      `json:"delivery,omitempty"`
		Events   []string `json:"events_requested,omitempty"`
		Desc     string   `json:"description,omitempty"`
	}
	var got struct {
		StreamID string `json:"stream_id"`
		Iss      string `json:"iss"`
		Delivery struct {
			Method      string `json:"method"`
			EndpointURL string `json:"endpoint_url"`
		} `json:"delivery"`
	}
	req := streamConfig{Delivery: delivery, Events: s.events, Desc: "portcullis feed " + s.name}
	s.mu.Lock()
	id := s.stream.StreamID
	s.mu.Unlock()
	if id == "" {
		id = s.db.Cursor(s.streamCursor())
	}
	if id != "" {
		req.StreamID = id
		err = s.call(ctx, http.MethodPatch, m.ConfigurationEndpoint, req, true, &got)
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusNotFound {
			id, req.StreamID = "", ""
		} else if err != nil {
			return fmt.Errorf("%w: updating stream: %v", ErrSSF, err)
		}
	}
	if id == "" {
		err = s.call(ctx, http.MethodPost, m.ConfigurationEndpoint, req, true, &got)
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusConflict {
			// One stream per receiver, and it exists: take it over.
			var list []struct {
				StreamID string `json:"stream_id"`
			}
			if err := s.call(ctx, http.MethodGet, m.ConfigurationEndpoint, nil, true, &list); err != nil || len(list) == 0 {
				return fmt.Errorf("%w: listing streams after 409: %v", ErrSSF, err)
			}
			req.StreamID = list[0].StreamID
			err = s.call(ctx, http.MethodPatch, m.ConfigurationEndpoint, req, true, &got)
		}
		if err != nil {
			return fmt.Errorf("%w: creating stream: %v", ErrSSF, err)
		}
	}
	if got.StreamID == "" || got.Iss != s.verifier.issuer {
		return fmt.Errorf("%w: the stream configuration has no stream_id or iss %q is not %q", ErrSSF, clip(got.Iss), s.verifier.issuer)
	}
	if err := s.db.SetCursor(ctx, s.streamCursor(), got.StreamID); err != nil {
		return err
	}
	state := randomHex()
	s.mu.Lock()
	s.stream.StreamID = got.StreamID
	if s.delivery == "poll" && got.Delivery.EndpointURL != "" && s.poll == "" {
		s.poll = got.Delivery.EndpointURL
	}
	s.state = state
	s.mu.Unlock()
	if m.StatusEndpoint != "" {
		var st struct {
			Status string `json:"status"`
		}
		if err := s.call(ctx, http.MethodGet, m.StatusEndpoint+"?stream_id="+got.StreamID, nil, true, &st); err == nil {
			s.mu.Lock()
			s.stream.Status = clipN(st.Status, 32)
			s.mu.Unlock()
		}
	}
	if m.VerificationEndpoint != "" {
		err := s.call(ctx, http.MethodPost, m.VerificationEndpoint, map[string]string{"stream_id": got.StreamID, "state": state}, true, nil)
		if err != nil {
			return fmt.Errorf("%w: requesting verification: %v", ErrSSF, err)
		}
	}
	s.log.Info("ssf stream ready", "stream_id", got.StreamID, "delivery", s.delivery)
	return nil
}

func (s *SSF) streamCursor() string { return "ssf-stream/" + s.name }

// Poll makes one RFC 8936 poll request: it acknowledges the SETs stored
// by the previous poll (and reports the ones refused), verifies and stores
// the SETs returned, and queues their acknowledgement for the next
// request. A SET is acknowledged only after it is durable. more reports
// that the transmitter has more, or acknowledgements are pending.
func (s *SSF) Poll(ctx context.Context) (more bool, err error) {
	s.mu.Lock()
	endpoint, acks, errs := s.poll, s.acks, s.errs
	s.mu.Unlock()
	if endpoint == "" {
		return false, fmt.Errorf("%w: no poll endpoint (set poll_endpoint or manage_stream)", ErrSSF)
	}
	req := struct {
		MaxEvents         int                  `json:"maxEvents"`
		ReturnImmediately bool                 `json:"returnImmediately"`
		Ack               []string             `json:"ack,omitempty"`
		SetErrs           map[string]*SETError `json:"setErrs,omitempty"`
	}{ssfMaxEvents, true, acks, errs}
	var raw json.RawMessage
	if err := s.call(ctx, http.MethodPost, endpoint, req, true, &raw); err != nil {
		return false, fmt.Errorf("%w: polling: %v", ErrSSF, err)
	}
	var resp struct {
		Sets          map[string]string `json:"sets"`
		MoreAvailable bool              `json:"moreAvailable"`
	}
	if err := decodeStrict(raw, &resp); err != nil {
		return false, fmt.Errorf("%w: poll response: %w", ErrSSF, err)
	}
	// The transmitter has the acknowledgements now.
	s.mu.Lock()
	s.acks, s.errs = nil, nil
	s.mu.Unlock()

	arrived := s.now()
	var good []*SET
	var newAcks []string
	newErrs := map[string]*SETError{}
	for jti, tok := range resp.Sets {
		set, serr := s.verifier.verify(ctx, tok, arrived)
		if serr == nil && set.JTI != jti {
			serr = setErr(SETInvalidRequest, "the SET's jti does not match its key in sets")
		}
		if serr == nil {
			serr = s.control(set)
		}
		if serr != nil && serr.RetryAfter > 0 {
			// Neither acknowledged nor reported: the transmitter delivers
			// it again (RFC 8936), by when its key can be had.
			s.log.Info("ssf SET deferred", "reason", serr.Code, "description", serr.Description, "jti", clip(jti))
			continue
		}
		if serr != nil {
			s.health.reject()
			s.health.fail(serr.Code+": "+serr.Description, s.now())
			s.m.rejections.WithLabelValues(s.name, "ssf."+serr.Code).Inc()
			s.warns.warn(s.log, s.now(), "ssf SET refused", "reason", serr.Code, "description", serr.Description, "jti", clip(jti))
			newErrs[clipN(jti, 256)] = serr
			continue
		}
		good = append(good, set)
		newAcks = append(newAcks, jti)
	}
	if _, err := s.store(ctx, good); err != nil {
		// Not acknowledged: the transmitter delivers them again.
		return false, err
	}
	s.mu.Lock()
	s.acks = newAcks
	if len(newErrs) > 0 {
		s.errs = newErrs
	}
	s.mu.Unlock()
	return resp.MoreAvailable || len(newAcks) > 0 || len(newErrs) > 0, nil
}

// statusError is an unexpected HTTP status from the transmitter.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }

// call makes one JSON request to the transmitter, with the bearer token
// when auth is set, and decodes a JSON reply into out (nil: ignored).
func (s *SSF) call(ctx context.Context, method, url string, in any, auth bool, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth && !s.token.IsZero() {
		req.Header.Set("Authorization", "Bearer "+string(s.token.Bytes()))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &statusError{resp.StatusCode}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.Unmarshal(b, out)
}

func randomHex() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
