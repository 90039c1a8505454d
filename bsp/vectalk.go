package bsp

import (
	"context"
	"net/http"
)

// vectalk is Vectalk's proxy at apis.vectalk.com.br/api (whatsapp-calling.md §6b). The instance
// token is bound to one number, so no number id appears in paths, and the proxy injects
// messaging_product and action itself.
//
// Documented: POST /api/calls/terminate {"call_id"} → {"success": true}, and GET
// /api/phone-numbers/settings (POST to update) with the field list of §6b.
//
// Guess: /api/calls/connect, /pre-accept, /accept and /reject. Vectalk's terminate page says the
// call_id comes from "connect or accept", which implies sibling endpoints; we assume the same
// proxy behaviour: Graph's body minus messaging_product and action, Graph's answers. The settings
// update body is assumed to be Graph's {"calling":{...}} with Graph's upper-case enums (Vectalk's
// GET shows lower case and NOT_SET, which GetSettings normalizes). Guess: its GET call_hours also
// carries weekly_operating_hours and holiday_schedule (the page was cut off after "call_icons");
// if it does not, SetCallHours cannot keep holidays it cannot see.
type vectalk struct {
	c *client
}

func newVectalk(c *client) Provider { return &vectalk{c: c} }

const (
	vectalkCalls    = "/api/calls/"
	vectalkSettings = "/api/phone-numbers/settings"
)

func (v *vectalk) Name() string { return ProviderVectalk }

func (v *vectalk) post(ctx context.Context, op, endpoint string, mode retryMode, body graphCallBody) ([]byte, error) {
	return v.c.do(ctx, request{op: op, method: http.MethodPost, path: vectalkCalls + endpoint, body: body, retry: mode, callID: body.CallID})
}

func (v *vectalk) Connect(ctx context.Context, req CallRequest) (string, error) {
	body, err := v.post(ctx, actionConnect, "connect", retryNever, graphCallBody{
		To: normalizeNumber(req.To), Session: &sdpSession{SDPType: "offer", SDP: NormalizeSDP(req.SDPOffer)}, BizOpaque: req.BizOpaque,
	})
	if err != nil {
		return "", err
	}
	return connected(v.c, body)
}

func (v *vectalk) PreAccept(ctx context.Context, call CallRef, sdpAnswer string) error {
	body, err := v.post(ctx, actionPreAccept, "pre-accept", retryUnsent, graphCallBody{
		CallID: call.ID, Session: &sdpSession{SDPType: "answer", SDP: NormalizeSDP(sdpAnswer)},
	})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderVectalk, actionPreAccept, body)
}

func (v *vectalk) Accept(ctx context.Context, call CallRef, sdpAnswer, bizOpaque string) error {
	body, err := v.post(ctx, actionAccept, "accept", retryUnsent, graphCallBody{
		CallID: call.ID, Session: &sdpSession{SDPType: "answer", SDP: NormalizeSDP(sdpAnswer)}, BizOpaque: bizOpaque,
	})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderVectalk, actionAccept, body)
}

func (v *vectalk) Reject(ctx context.Context, call CallRef) error {
	body, err := v.post(ctx, actionReject, "reject", retryIdempotent, graphCallBody{CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderVectalk, actionReject, body)
}

func (v *vectalk) Terminate(ctx context.Context, call CallRef) error {
	body, err := v.post(ctx, actionTerminate, "terminate", retryIdempotent, graphCallBody{CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(ProviderVectalk, actionTerminate, body)
}

func (v *vectalk) GetSettings(ctx context.Context, includeSIPCredentials bool) (*Settings, error) {
	return getSettings(ctx, v.c, vectalkSettings, includeSIPCredentials)
}

func (v *vectalk) SetSettings(ctx context.Context, s *Settings) error {
	w, err := updateBody(s)
	if err != nil {
		return err
	}
	return postSettings(ctx, v.c, vectalkSettings, struct {
		Calling wireCalling `json:"calling"`
	}{w})
}

// CallPermission: Vectalk documents no permission read.
func (v *vectalk) CallPermission(context.Context, string) (*Permission, error) {
	return nil, ErrUnsupported
}
