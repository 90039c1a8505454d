package bsp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
)

// ConceptoMovilPaths are Concepto Móvil's URL paths, configurable because its own pages disagree:
// the calling sample omits the "-ws" suffix its messaging API uses (whatsapp-calling.md §6c).
type ConceptoMovilPaths struct {
	Calls    string // default DefaultConceptoMovilCallsPath
	Settings string // prefix before /{waba}/{phone_number}/call-settings; default DefaultConceptoMovilSettingsPrefix
}

// Concepto Móvil's paths as published: the calling sample (without -ws) and the admin sample.
const (
	DefaultConceptoMovilCallsPath      = "/whatsapp-bsp-api-endpoint/services/v1/call"
	DefaultConceptoMovilSettingsPrefix = "/whatsapp-bsp-admin-ext-endpoint-ws/services/v1/phone-number"
)

// conceptoMovil is Concepto Móvil's "Broadcaster Mobile" API (whatsapp-calling.md §6c): one
// call endpoint with a flattened body {from, to, action, call_id, sdp, biz_opaque_callback_data}
// where from is the business number and sdp_type is implied by the action, and a call-settings
// endpoint taking Graph's calling object without the "calling" wrapper. Bearer token.
//
// Guess: (Concepto's pages could only be read in part)
//   - pre_accept/accept/reject/terminate bodies: the documented pattern — from = business, to =
//     the user, call_id, plus sdp for pre_accept/accept and biz_opaque_callback_data for accept;
//   - answers: Graph's ({"calls":[{"id"}]} for connect, {"success":true} otherwise);
//   - GET on the call-settings path reads the settings (only POST is documented), answering the
//     flattened object; {"calling":{...}} is accepted too;
//   - the token is a static bearer token. Public client code obtains it from .../auth/token with
//     Api-Key/Api-Token headers and caches it for about 24 h; wire such a refresher in as the
//     TokenSource.
type conceptoMovil struct {
	c        *client
	from     string
	calls    string
	settings string // "" when no WABA id is configured
}

func newConceptoMovil(c *client, cfg Config) Provider {
	p := cfg.ConceptoMovil
	if p.Calls == "" {
		p.Calls = DefaultConceptoMovilCallsPath
	}
	if p.Settings == "" {
		p.Settings = DefaultConceptoMovilSettingsPrefix
	}
	m := &conceptoMovil{c: c, from: cfg.DisplayNumber, calls: p.Calls}
	if cfg.WABAID != "" {
		m.settings = p.Settings + "/" + url.PathEscape(cfg.WABAID) + "/" + url.PathEscape(cfg.DisplayNumber) + "/call-settings"
	}
	return m
}

// errConceptoNoWABA: the settings path needs the WABA id, which call actions do not.
var errConceptoNoWABA = errors.New("bsp: conceptomovil: settings need the WABA id (waba_id)")

// conceptoCall is the flattened call body.
type conceptoCall struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Action    string `json:"action"`
	CallID    string `json:"call_id,omitempty"`
	SDP       string `json:"sdp,omitempty"`
	BizOpaque string `json:"biz_opaque_callback_data,omitempty"`
}

func (m *conceptoMovil) Name() string { return ProviderConceptoMovil }

func (m *conceptoMovil) post(ctx context.Context, mode retryMode, b conceptoCall) ([]byte, error) {
	b.From = m.from
	return m.c.do(ctx, request{op: b.Action, method: http.MethodPost, path: m.calls, body: b, retry: mode, callID: b.CallID})
}

func (m *conceptoMovil) Connect(ctx context.Context, req CallRequest) (string, error) {
	body, err := m.post(ctx, retryNever, conceptoCall{To: normalizeNumber(req.To), Action: actionConnect, SDP: NormalizeSDP(req.SDPOffer), BizOpaque: req.BizOpaque})
	if err != nil {
		return "", err
	}
	return connected(m.c, body)
}

func (m *conceptoMovil) PreAccept(ctx context.Context, call CallRef, sdpAnswer string) error {
	body, err := m.post(ctx, retryUnsent, conceptoCall{To: normalizeNumber(call.User), Action: actionPreAccept, CallID: call.ID, SDP: NormalizeSDP(sdpAnswer)})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderConceptoMovil, actionPreAccept, body)
}

func (m *conceptoMovil) Accept(ctx context.Context, call CallRef, sdpAnswer, bizOpaque string) error {
	body, err := m.post(ctx, retryUnsent, conceptoCall{To: normalizeNumber(call.User), Action: actionAccept, CallID: call.ID, SDP: NormalizeSDP(sdpAnswer), BizOpaque: bizOpaque})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderConceptoMovil, actionAccept, body)
}

func (m *conceptoMovil) Reject(ctx context.Context, call CallRef) error {
	body, err := m.post(ctx, retryIdempotent, conceptoCall{To: normalizeNumber(call.User), Action: actionReject, CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderConceptoMovil, actionReject, body)
}

func (m *conceptoMovil) Terminate(ctx context.Context, call CallRef) error {
	body, err := m.post(ctx, retryIdempotent, conceptoCall{To: normalizeNumber(call.User), Action: actionTerminate, CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderConceptoMovil, actionTerminate, body)
}

func (m *conceptoMovil) GetSettings(ctx context.Context, includeSIPCredentials bool) (*Settings, error) {
	if m.settings == "" {
		return nil, errConceptoNoWABA
	}
	return getSettings(ctx, m.c, m.settings, includeSIPCredentials)
}

// SetSettings posts the calling object itself, without Graph's "calling" wrapper (documented).
func (m *conceptoMovil) SetSettings(ctx context.Context, s *Settings) error {
	if m.settings == "" {
		return errConceptoNoWABA
	}
	w, err := updateBody(s)
	if err != nil {
		return err
	}
	return postSettings(ctx, m.c, m.settings, w)
}

// CallPermission: Concepto Móvil documents no permission read.
func (m *conceptoMovil) CallPermission(context.Context, string) (*Permission, error) {
	return nil, ErrUnsupported
}
