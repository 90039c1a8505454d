package bspsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wabridge/wabridge/bsp"
)

// CallWebhook describes one call webhook to send. Zero fields take defaults from the call the
// emulator knows (direction, user, biz_opaque_callback_data) and from the clock.
type CallWebhook struct {
	CallID          string // "" in SendConnect: a new user-initiated call
	Direction       string // bsp.Direction*; default: the known call's, else user-initiated
	User            string // the WhatsApp user's number
	SDP             string // connect: the user's offer or WhatsApp's answer
	SDPType         string // default "offer" for user-initiated, "answer" for business-initiated
	BizOpaque       string
	CTAPayload      string
	DeeplinkPayload string
	ContactName     string
	Status          string // status: RINGING|ACCEPTED|REJECTED; terminate: COMPLETED (default)|FAILED
	Timestamp       time.Time
	Duration        time.Duration // terminate of an answered call: start_time, end_time, duration
	Errors          []WebhookError
}

// WebhookError is an entry of a webhook's errors[] (§3.6).
type WebhookError struct {
	Code    int
	Message string
	Details string
}

// DeliveryError is a webhook the receiver did not answer with 200.
type DeliveryError struct {
	Status int
	Body   string
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("bspsim: webhook answered %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// bare reports whether the provider uses Positus' bare envelope.
func (s *Server) bare() bool { return s.cfg.Provider == bsp.ProviderPositus }

// fill completes w from the known call.
func (s *Server) fill(w *CallWebhook) {
	s.mu.Lock()
	if c, ok := s.calls[w.CallID]; ok {
		if w.Direction == "" {
			w.Direction = c.Direction
		}
		if w.User == "" {
			w.User = c.User
		}
		if w.BizOpaque == "" {
			w.BizOpaque = c.BizOpaque
		}
	}
	s.mu.Unlock()
	if w.Direction == "" {
		w.Direction = bsp.DirectionUserInitiated
	}
	if w.Timestamp.IsZero() {
		w.Timestamp = time.Now()
	}
}

// template loads a webhook golden file and returns it with the value object to edit.
func (s *Server) template(meta, positus string) (env any, value map[string]any, err error) {
	name := meta
	if s.bare() {
		name = positus
	}
	env, err = s.golden.value(name)
	if err != nil {
		return nil, nil, err
	}
	if s.bare() {
		return env, env.(map[string]any), nil
	}
	if e, ok := lookup(env, "entry.0").(map[string]any); ok {
		e["id"] = s.cfg.WABAID
	}
	value, _ = lookup(env, "entry.0.changes.0.value").(map[string]any)
	if value == nil {
		return nil, nil, fmt.Errorf("bspsim: %s has no entry[0].changes[0].value", name)
	}
	value["metadata"] = map[string]any{"display_phone_number": s.cfg.DisplayNumber, "phone_number_id": s.cfg.PhoneNumberID}
	return env, value, nil
}

func first(value map[string]any, key string) map[string]any {
	l, _ := value[key].([]any)
	if len(l) == 0 {
		return nil
	}
	m, _ := l[0].(map[string]any)
	return m
}

// setOrDelete writes v, or removes the key when v is empty: the documented payloads carry
// optional fields only when they have a value.
func setOrDelete(m map[string]any, k, v string) {
	if v == "" {
		delete(m, k)
		return
	}
	m[k] = v
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// parties returns from and to for a call event.
func (s *Server) parties(w CallWebhook) (from, to string) {
	if w.Direction == bsp.DirectionBusinessInitiated {
		return s.cfg.DisplayNumber, w.User
	}
	return w.User, s.cfg.DisplayNumber
}

// ConnectBody builds a connect webhook (§3.3, §3.4; Positus: connect-webhook.json). A
// user-initiated connect without a call id gets a new one, returned.
func (s *Server) ConnectBody(w CallWebhook) ([]byte, string, error) {
	if w.CallID == "" {
		w.CallID = s.newCallID()
	}
	s.fill(&w)
	if w.SDPType == "" {
		w.SDPType = "offer"
		if w.Direction == bsp.DirectionBusinessInitiated {
			w.SDPType = "answer"
		}
	}
	tmpl := "meta/webhook-connect-uic.json"
	if w.Direction == bsp.DirectionBusinessInitiated {
		tmpl = "meta/webhook-connect-bic.json"
	}
	env, value, err := s.template(tmpl, "positus/webhooks/connect-webhook.json")
	if err != nil {
		return nil, "", err
	}
	c := first(value, "calls")
	from, to := s.parties(w)
	c["id"], c["from"], c["to"] = w.CallID, from, to
	c["session"] = map[string]any{"sdp_type": w.SDPType, "sdp": w.SDP}
	if s.bare() {
		// Positus' sample: a plain copy of the SDP in the legacy field, no direction or timestamp.
		c["connection"] = map[string]any{"webrtc": map[string]any{"sdp": w.SDP}}
	} else {
		c["timestamp"], c["direction"] = unix(w.Timestamp), w.Direction
		if w.Direction == bsp.DirectionBusinessInitiated {
			// Meta's legacy copy: a JSON string holding {"sdp","type"} (§2.1 notes).
			legacy, _ := json.Marshal(map[string]string{"sdp": w.SDP, "type": w.SDPType})
			c["connection"] = map[string]any{"webrtc": map[string]any{"sdp": string(legacy)}}
			setOrDelete(c, "biz_opaque_callback_data", w.BizOpaque)
		} else {
			setOrDelete(c, "cta_payload", w.CTAPayload)
			setOrDelete(c, "deeplink_payload", w.DeeplinkPayload)
			name := w.ContactName
			if name == "" {
				name = "WhatsApp User"
			}
			value["contacts"] = []any{map[string]any{"profile": map[string]any{"name": name}, "wa_id": w.User}}
		}
	}
	b, err := json.Marshal(env)
	return b, w.CallID, err
}

// StatusBody builds a status webhook (§3.5; Positus: guessed bare statuses[]).
func (s *Server) StatusBody(w CallWebhook) ([]byte, error) {
	s.fill(&w)
	env, value, err := s.template("meta/webhook-status.json", "positus/webhooks/status-webhook.guess.json")
	if err != nil {
		return nil, err
	}
	st := first(value, "statuses")
	st["id"], st["timestamp"], st["status"], st["recipient_id"] = w.CallID, unix(w.Timestamp), w.Status, w.User
	setOrDelete(st, "biz_opaque_callback_data", w.BizOpaque)
	return json.Marshal(env)
}

// TerminateBody builds a terminate webhook (§3.6; Positus: terminate-webhook.json).
func (s *Server) TerminateBody(w CallWebhook) ([]byte, error) {
	s.fill(&w)
	if w.Status == "" {
		w.Status = bsp.StatusCompleted
	}
	env, value, err := s.template("meta/webhook-terminate.json", "positus/webhooks/terminate-webhook.json")
	if err != nil {
		return nil, err
	}
	c := first(value, "calls")
	from, to := s.parties(w)
	c["id"], c["from"], c["to"], c["direction"] = w.CallID, from, to, w.Direction
	c["timestamp"], c["status"] = unix(w.Timestamp), w.Status
	if w.Duration > 0 {
		c["start_time"], c["end_time"] = unix(w.Timestamp.Add(-w.Duration)), unix(w.Timestamp)
		c["duration"] = int(w.Duration.Seconds())
	} else {
		// Only answered calls carry start/end/duration (§3.6).
		delete(c, "start_time")
		delete(c, "end_time")
		delete(c, "duration")
	}
	if !s.bare() {
		setOrDelete(c, "biz_opaque_callback_data", w.BizOpaque)
		setOrDelete(c, "cta_payload", w.CTAPayload)
		setOrDelete(c, "deeplink_payload", w.DeeplinkPayload)
	}
	if len(w.Errors) > 0 {
		errs := make([]any, 0, len(w.Errors))
		for _, e := range w.Errors {
			errs = append(errs, map[string]any{"code": e.Code, "message": e.Message,
				"href":       "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
				"error_data": map[string]any{"details": e.Details}})
		}
		value["errors"] = errs
	}
	return json.Marshal(env)
}

// SendConnect sends a connect webhook and returns the call id. A user-initiated connect registers
// the call, so the adapter's pre_accept/accept/reject are accepted; a business-initiated one
// records WhatsApp's answer on the call the adapter's connect created.
func (s *Server) SendConnect(ctx context.Context, w CallWebhook) (string, error) {
	body, id, err := s.ConnectBody(w)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	c, ok := s.calls[id]
	if !ok {
		dir := w.Direction
		if dir == "" {
			dir = bsp.DirectionUserInitiated
		}
		c = &Call{ID: id, Direction: dir, User: w.User, BizOpaque: w.BizOpaque}
		s.calls[id] = c
	}
	if c.Direction == bsp.DirectionUserInitiated {
		c.Offer = w.SDP
	} else {
		c.Answer = w.SDP
	}
	s.mu.Unlock()
	return id, s.SendWebhook(ctx, body)
}

// SendStatus sends a status webhook for a business-initiated call.
func (s *Server) SendStatus(ctx context.Context, w CallWebhook) error {
	body, err := s.StatusBody(w)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if c, ok := s.calls[w.CallID]; ok {
		switch w.Status {
		case bsp.StatusAccepted:
			c.Accepted = true
		case bsp.StatusRejected:
			c.Rejected = true
		}
	}
	s.mu.Unlock()
	return s.SendWebhook(ctx, body)
}

// SendTerminate sends a terminate webhook and ends the call.
func (s *Server) SendTerminate(ctx context.Context, w CallWebhook) error {
	body, err := s.TerminateBody(w)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if c, ok := s.calls[w.CallID]; ok {
		c.Terminated = true
	}
	s.mu.Unlock()
	return s.SendWebhook(ctx, body)
}

// WebhookHeaders returns the headers the provider sends with body: the signature where it signs.
func (s *Server) WebhookHeaders(body []byte) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "facebookexternalua")
	if s.cfg.AppSecret == "" {
		return h
	}
	sig := bsp.Sign(s.cfg.AppSecret, body)
	switch s.cfg.Provider {
	case bsp.ProviderPositus:
		// Positus documents no signing.
	case bsp.Provider360dialog:
		// Guess: bare hex in 360dialog's own header.
		h.Set(bsp.SignatureHeader360dialog, strings.TrimPrefix(sig, "sha256="))
	default:
		h.Set(bsp.SignatureHeaderMeta, sig)
	}
	return h
}

// SendWebhook posts body to the configured webhook URL with the provider's headers.
func (s *Server) SendWebhook(ctx context.Context, body []byte) error {
	return s.Post(ctx, body, s.WebhookHeaders(body))
}

// Post sends body with exactly the given headers (tests forge bad signatures with it).
func (s *Server) Post(ctx context.Context, body []byte, h http.Header) error {
	s.mu.Lock()
	target := s.cfg.WebhookURL
	s.mu.Unlock()
	if target == "" {
		return errors.New("bspsim: no webhook URL configured")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = h.Clone()
	resp, err := s.wh.Do(req)
	if err != nil {
		return fmt.Errorf("bspsim: sending webhook: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return &DeliveryError{Status: resp.StatusCode, Body: string(b)}
	}
	return nil
}

// SetWebhookURL changes where webhooks go (the receiver often starts after the emulator).
func (s *Server) SetWebhookURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.WebhookURL = u
}
