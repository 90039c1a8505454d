package bsp

import (
	"context"
	"net/http"
	"net/url"
)

// positus is Positus' v2 calling API (whatsapp-calling.md §6a, positusapps/quick-docs
// calling/api-calling): one path per action under /v2/whatsapp/numbers/{NUMBER_ID}/calls/, with
// flattened bodies.
//
// Guess: auth. The calling page states none; every other Positus endpoint takes
// "Authorization: Bearer {access_token}", so that is what we send.
type positus struct {
	c      *client
	prefix string
}

func newPositus(c *client, cfg Config) Provider {
	return &positus{c: c, prefix: "/v2/whatsapp/numbers/" + url.PathEscape(cfg.PhoneNumberID) + "/calls"}
}

func (p *positus) Name() string { return ProviderPositus }

// positusMake is calls-make-body.json: Graph's session plus the legacy connection.webrtc.sdp,
// both required by Positus' sample, so both carry our offer.
type positusMake struct {
	To         string        `json:"to"`
	Connection positusWebRTC `json:"connection"`
	Session    sdpSession    `json:"session"`
}

type positusWebRTC struct {
	WebRTC struct {
		SDP string `json:"sdp"`
	} `json:"webrtc"`
}

// positusCall is calls-accept-body.json (with sdp) and calls-reject/hang-up-body.json (without).
type positusCall struct {
	CallID string `json:"call_id"`
	SDP    string `json:"sdp,omitempty"`
}

func (p *positus) post(ctx context.Context, op, path string, mode retryMode, callID string, body any) ([]byte, error) {
	return p.c.do(ctx, request{op: op, method: http.MethodPost, path: p.prefix + path, body: body, retry: mode, callID: callID})
}

// Connect sends calls/make. Guess: Positus' sample labels the session "answer" — a copy error,
// since Graph needs an offer for connect — so we send sdp_type "offer" (§6a note). Positus
// documents no biz_opaque_callback_data on make; it is not sent. Its answer is {"success":true}
// without the wacid, so the id is "" unless Positus adds Graph's calls[] (read if present).
func (p *positus) Connect(ctx context.Context, req CallRequest) (string, error) {
	sdp := NormalizeSDP(req.SDPOffer)
	b := positusMake{To: normalizeNumber(req.To), Session: sdpSession{SDPType: "offer", SDP: sdp}}
	b.Connection.WebRTC.SDP = sdp
	if req.BizOpaque != "" {
		p.c.log.Debug("positus documents no biz_opaque_callback_data on calls/make; not sent")
	}
	body, err := p.post(ctx, actionConnect, "/make", retryNever, "", b)
	if err != nil {
		return "", err
	}
	return connected(p.c, body)
}

// PreAccept: Positus documents no pre_accept endpoint (§6a). The bridge goes straight to Accept.
func (p *positus) PreAccept(context.Context, CallRef, string) error { return ErrUnsupported }

// Accept sends calls/accept {call_id, sdp}; Positus documents no biz_opaque_callback_data here.
func (p *positus) Accept(ctx context.Context, call CallRef, sdpAnswer, _ string) error {
	body, err := p.post(ctx, actionAccept, "/accept", retryUnsent, call.ID, positusCall{CallID: call.ID, SDP: NormalizeSDP(sdpAnswer)})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderPositus, actionAccept, body)
}

func (p *positus) Reject(ctx context.Context, call CallRef) error {
	body, err := p.post(ctx, actionReject, "/reject", retryIdempotent, call.ID, positusCall{CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderPositus, actionReject, body)
}

// Terminate is Positus' calls/hang-up.
func (p *positus) Terminate(ctx context.Context, call CallRef) error {
	body, err := p.post(ctx, actionTerminate, "/hang-up", retryIdempotent, call.ID, positusCall{CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderPositus, actionTerminate, body)
}

// GetSettings: Positus has no settings API; calling is configured in its workspace.
func (p *positus) GetSettings(context.Context, bool) (*Settings, error) { return nil, ErrUnsupported }

// SetSettings: see GetSettings.
func (p *positus) SetSettings(context.Context, *Settings) error { return ErrUnsupported }

// CallPermission reads calls/call-permissions?user_wa_id=, Graph's answer wrapped in
// {"number":{...},"calling":{...}}.
func (p *positus) CallPermission(ctx context.Context, userWAID string) (*Permission, error) {
	body, err := p.c.do(ctx, request{op: "call_permission", method: http.MethodGet, path: p.prefix + "/call-permissions",
		query: url.Values{"user_wa_id": {normalizeNumber(userWAID)}}, retry: retryIdempotent})
	if err != nil {
		return nil, err
	}
	return parsePermission(ProviderPositus, body)
}
