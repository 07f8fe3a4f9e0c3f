package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"portcullis/posture"
)

// oktaPollLookback is how far back the first System Log poll reads, when
// no cursor is saved.
const oktaPollLookback = time.Hour

// oktaMaxPages bounds the pages one Poll reads; the rest waits for the
// next one.
const oktaMaxPages = 100

// oktaMaxPage bounds the size of one System Log page read.
const oktaMaxPage = 16 << 20

// ErrOktaPoll is wrapped by System Log polling errors.
var ErrOktaPoll = errors.New("feeds: okta system log poll")

// Run polls the System Log every poll_interval until ctx ends, when
// okta_org is set; otherwise it only waits. A failed poll is logged,
// shown in Health and retried at the next interval. It returns nil when
// ctx ends.
func (o *OktaHook) Run(ctx context.Context) error {
	if o.org == nil {
		return waitDone(ctx)
	}
	for {
		if _, err := o.Poll(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("okta system log poll failed", "err", err)
			o.health.fail(err.Error(), o.now())
		}
		if !sleepCtx(ctx, o.interval) {
			return nil
		}
	}
}

func (o *OktaHook) cursorName() string { return "okta-system-log/" + o.name }

// Poll reads the System Log from the saved cursor (or from an hour ago),
// follows rel="next" links until a page is empty, stores the events the
// feed acts on, and saves the next link with each page's events, so a
// restart resumes where it stopped. Events the hook already delivered are
// duplicates by uuid. It returns how many events it stored.
func (o *OktaHook) Poll(ctx context.Context) (int, error) {
	if o.org == nil {
		return 0, fmt.Errorf("%w: okta_org is not set", ErrOktaPoll)
	}
	next := o.db.Cursor(o.cursorName())
	if next == "" || o.sameOrgLogs(next) != nil {
		q := url.Values{}
		q.Set("since", o.now().Add(-oktaPollLookback).UTC().Format(time.RFC3339))
		q.Set("filter", oktaFilter())
		q.Set("limit", "1000")
		q.Set("sortOrder", "ASCENDING")
		next = o.org.String() + "/api/v1/logs?" + q.Encode()
	}
	total := 0
	for range oktaMaxPages {
		events, link, err := o.fetchLogs(ctx, next)
		if err != nil {
			return total, err
		}
		var cursor *posture.Cursor
		if link != "" {
			if err := o.sameOrgLogs(link); err != nil {
				return total, fmt.Errorf("%w: refusing next link: %v", ErrOktaPoll, err)
			}
			cursor = &posture.Cursor{Name: o.cursorName(), Value: link}
		}
		n, err := o.store(ctx, events, cursor)
		total += n
		if err != nil {
			return total, err
		}
		if len(events) == 0 || link == "" || link == next {
			return total, nil
		}
		next = link
	}
	return total, nil
}

// oktaFilter is the System Log filter expression for the event types the
// feed acts on.
func oktaFilter() string {
	var parts []string
	for _, t := range OktaEventTypes() {
		parts = append(parts, `eventType eq "`+t+`"`)
	}
	return strings.Join(parts, " or ")
}

// sameOrgLogs checks that a next link points at this org's System Log, so
// the API token is never sent elsewhere.
func (o *OktaHook) sameOrgLogs(link string) error {
	u, err := url.Parse(link)
	if err != nil {
		return err
	}
	if u.Scheme != o.org.Scheme || u.Host != o.org.Host || u.Path != o.org.Path+"/api/v1/logs" || u.User != nil {
		return fmt.Errorf("%q is not this org's /api/v1/logs", clip(link))
	}
	return nil
}

func (o *OktaHook) fetchLogs(ctx context.Context, u string) ([]json.RawMessage, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrOktaPoll, err)
	}
	req.Header.Set("Authorization", "SSWS "+string(o.token.Bytes()))
	req.Header.Set("Accept", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrOktaPoll, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, "", fmt.Errorf("%w: status %d", ErrOktaPoll, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, oktaMaxPage+1))
	if err != nil {
		return nil, "", fmt.Errorf("%w: reading: %v", ErrOktaPoll, err)
	}
	if len(b) > oktaMaxPage {
		return nil, "", fmt.Errorf("%w: page larger than %d bytes", ErrOktaPoll, oktaMaxPage)
	}
	var events []json.RawMessage
	if err := decodeStrict(b, &events); err != nil {
		return nil, "", fmt.Errorf("%w: decoding: %v", ErrOktaPoll, err)
	}
	return events, nextLink(resp.Header.Values("Link")), nil
}

// nextLink returns the target of the rel="next" entry of Link headers.
func nextLink(values []string) string {
	for _, v := range values {
		for _, entry := range strings.Split(v, ",") {
			target, params, ok := strings.Cut(strings.TrimSpace(entry), ";")
			if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
				continue
			}
			for _, p := range strings.Split(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(k, "rel") && strings.Trim(val, `"`) == "next" {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}
