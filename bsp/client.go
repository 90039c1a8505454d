package bsp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// RetryPolicy bounds retries. Which actions may be retried at all is decided per action, never by
// the policy (see retryMode).
type RetryPolicy struct {
	Attempts       int           // total attempts including the first; 1 disables retries
	InitialBackoff time.Duration // delay before the second attempt; doubles per attempt, with jitter
	MaxBackoff     time.Duration // cap on one delay, also on a provider's Retry-After
}

// Retry defaults: three attempts spread over about a second. Terminate and reject are the
// actions that matter most to retry (billing, and the caller hearing a ring that will never be
// answered), and a WhatsApp call's own timers are tens of seconds, so a short schedule is enough;
// a longer one would hold a PBX channel on a dead provider.
const (
	DefaultRetryAttempts       = 3
	DefaultRetryInitialBackoff = 200 * time.Millisecond
	DefaultRetryMaxBackoff     = 2 * time.Second
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = DefaultRetryAttempts
	}
	if p.InitialBackoff <= 0 {
		p.InitialBackoff = DefaultRetryInitialBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultRetryMaxBackoff
	}
	return p
}

// retryMode is how safe an action is to send twice.
type retryMode int

const (
	// retryNever: connect. A second connect after a lost answer rings the user a second time and
	// counts against the number's limits; a failed connect is reported and the PBX decides.
	retryNever retryMode = iota
	// retryUnsent: pre_accept, accept, settings POST. Sending them twice is not harmless (a
	// second accept of an accepted call errors and the first one's answer is lost to us), so
	// they are retried only when the request provably never left: the connection failed before
	// the request was written (httptrace WroteRequest never fired).
	retryUnsent
	// retryIdempotent: terminate, reject and every GET. Repeating them changes nothing at the
	// provider; at worst the repeat reports that the call is already gone.
	retryIdempotent
)

// maxResponseBytes bounds a provider's answer. Graph's largest calling answer (settings with
// several SIP servers) is a few KiB.
const maxResponseBytes = 1 << 20

// authFunc puts the credential on a request.
type authFunc func(*http.Request) error

func bearer(ts TokenSource) authFunc {
	return func(r *http.Request) error {
		tok, err := ts()
		if err != nil {
			return fmt.Errorf("reading token: %w", err)
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
}

func headerAuth(name string, ts TokenSource) authFunc {
	return func(r *http.Request) error {
		tok, err := ts()
		if err != nil {
			return fmt.Errorf("reading token: %w", err)
		}
		r.Header.Set(name, tok)
		return nil
	}
}

// client is the HTTP side shared by every adapter: per-attempt timeouts, retries by action class,
// error envelopes and logging with credentials redacted.
type client struct {
	provider string
	base     *url.URL
	http     *http.Client
	auth     authFunc
	timeout  time.Duration
	retry    RetryPolicy
	log      *logrus.Entry
}

// request is one provider action.
type request struct {
	op     string // "connect", "terminate", "settings_get", ... for logs and errors
	method string
	path   string // appended to the base URL; segments already escaped
	query  url.Values
	body   any // JSON-encoded; nil sends no body
	retry  retryMode
	callID string // for logs
}

// sendError is a transport failure of one attempt.
type sendError struct {
	err  error
	sent bool // the whole request was written before the failure
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// do sends r, retrying as its retryMode allows, and returns the body of the 2xx answer.
func (c *client) do(ctx context.Context, r request) ([]byte, error) {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("bsp: %s %s: encoding request: %w", c.provider, r.op, err)
		}
	}
	// r.path's segments are already escaped (ids may hold any character); keep that spelling on
	// the wire and give URL the unescaped form it expects alongside.
	u := *c.base
	u.RawPath = strings.TrimRight(c.base.EscapedPath(), "/") + r.path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, fmt.Errorf("bsp: %s %s: bad path %q: %w", c.provider, r.op, u.RawPath, err)
	}
	u.Path = p
	u.RawQuery = r.query.Encode()
	log := c.log.WithField("op", r.op)
	if r.callID != "" {
		log = log.WithField("call_id", r.callID)
	}
	policy := c.retry.withDefaults()
	for attempt := 1; ; attempt++ {
		body, retryAfter, err := c.attempt(ctx, log.WithField("attempt", attempt), r, u.String(), payload)
		if err == nil {
			return body, nil
		}
		err = fmt.Errorf("bsp: %s %s: %w", c.provider, r.op, err)
		if attempt >= policy.Attempts || ctx.Err() != nil || !retryable(r.retry, err) {
			return nil, err
		}
		delay := backoff(policy, attempt, retryAfter)
		log.WithError(err).WithFields(logrus.Fields{"attempt": attempt, "retry_in": delay}).Warn("provider request failed; retrying")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		}
	}
}

// attempt sends one request. retryAfter is the provider's Retry-After, when it sent one.
func (c *client) attempt(ctx context.Context, log *logrus.Entry, r request, target string, payload []byte) (body []byte, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(actx, trace), r.method, target, rd)
	if err != nil {
		return nil, 0, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "wabridge")
	if err := c.auth(req); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		log.WithFields(logrus.Fields{"method": r.method, "url": target, "headers": redactHeaders(req.Header)}).Debug("provider request")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			// Our per-attempt timeout, not the caller's context: say so, and keep
			// context.DeadlineExceeded in the chain for ToSIP.
			err = fmt.Errorf("no answer within %s: %w", c.timeout, context.DeadlineExceeded)
		}
		return nil, 0, &sendError{err: err, sent: wrote.Load()}
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	fields := logrus.Fields{"status": resp.StatusCode, "duration": time.Since(start).Round(time.Millisecond)}
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("answer not complete within %s: %w", c.timeout, context.DeadlineExceeded)
		}
		// The request arrived (there is a status line), so it counts as sent.
		return nil, 0, &sendError{err: fmt.Errorf("reading answer: %w", err), sent: true}
	}
	if resp.StatusCode/100 == 2 {
		log.WithFields(fields).Debug("provider answered")
		return body, 0, nil
	}
	apiErr := parseErrorBody(c.provider, resp.StatusCode, body)
	log.WithFields(fields).WithFields(logrus.Fields{"code": apiErr.Code, "message": apiErr.Message}).Debug("provider refused")
	return nil, parseRetryAfter(resp.Header.Get("Retry-After")), apiErr
}

// retryable applies the action's retryMode to a failure.
func retryable(mode retryMode, err error) bool {
	var se *sendError
	isSend := errors.As(err, &se)
	switch mode {
	case retryUnsent:
		return isSend && !se.sent
	case retryIdempotent:
		if isSend {
			return true
		}
		var ae *APIError
		if errors.As(err, &ae) {
			switch ae.HTTPStatus {
			case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
				http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				return true
			}
		}
	}
	return false
}

// backoff is exponential with full jitter (so many calls failing together do not retry in step),
// at least the provider's Retry-After, and never above MaxBackoff.
func backoff(p RetryPolicy, attempt int, retryAfter time.Duration) time.Duration {
	d := p.InitialBackoff << (attempt - 1)
	if d <= 0 || d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	if retryAfter > d {
		d = retryAfter
	}
	return min(d, p.MaxBackoff)
}

func parseRetryAfter(v string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// credentialHeaders are never logged.
func isCredentialHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Authorization", "D360-Api-Key", "Api-Key", "Api-Token", "Cookie", "Proxy-Authorization":
		return true
	}
	return false
}

// redactHeaders copies h with every credential replaced, for debug logs.
func redactHeaders(h http.Header) http.Header {
	out := h.Clone()
	for k := range out {
		if isCredentialHeader(k) {
			out[k] = []string{"[redacted]"}
		}
	}
	return out
}

// decodeResponse decodes a 2xx answer. An empty body decodes as nothing: some gateways answer
// 200 or 204 without one.
func decodeResponse(provider, op string, body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("bsp: %s %s: unreadable answer: %w", provider, op, err)
	}
	return nil
}

// successAnswer is Graph's action answer, {"messaging_product":"whatsapp","success":true}; the
// BSPs answer {"success":true}.
type successAnswer struct {
	Success *bool `json:"success"`
}

// checkSuccess treats an explicit "success": false in a 2xx answer as a failure. A missing field
// is success: the HTTP status already said so.
func checkSuccess(provider, op string, body []byte) error {
	var a successAnswer
	if err := decodeResponse(provider, op, body, &a); err != nil {
		return err
	}
	if a.Success != nil && !*a.Success {
		return fmt.Errorf("bsp: %s %s: %w", provider, op, &APIError{Provider: provider, HTTPStatus: http.StatusOK, Message: `answer said "success": false`})
	}
	return nil
}
