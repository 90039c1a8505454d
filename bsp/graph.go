package bsp

import (
	"context"
	"net/http"
	"net/url"
)

// Graph's call-action body (whatsapp-calling.md §2.1), also what 360dialog, Vectalk (without
// messaging_product and action) and Positus (partly) take.
type graphCallBody struct {
	MessagingProduct string      `json:"messaging_product,omitempty"`
	To               string      `json:"to,omitempty"`
	CallID           string      `json:"call_id,omitempty"`
	Action           string      `json:"action,omitempty"`
	Session          *sdpSession `json:"session,omitempty"`
	BizOpaque        string      `json:"biz_opaque_callback_data,omitempty"`
}

type sdpSession struct {
	SDPType string `json:"sdp_type"`
	SDP     string `json:"sdp"`
}

// Graph's action names.
const (
	actionConnect   = "connect"
	actionPreAccept = "pre_accept"
	actionAccept    = "accept"
	actionReject    = "reject"
	actionTerminate = "terminate"
)

// parseCallID reads the call id from a connect answer: Graph's {"calls":[{"id":...}]}, or a
// top-level call_id / id, which BSP gateways that flatten Graph's answer might use. "" when
// none is present (Positus).
func parseCallID(provider string, body []byte) (string, error) {
	var a struct {
		Calls []struct {
			ID flexString `json:"id"`
		} `json:"calls"`
		CallID flexString `json:"call_id"`
		ID     flexString `json:"id"`
	}
	if err := decodeResponse(provider, actionConnect, body, &a); err != nil {
		return "", err
	}
	if err := checkSuccess(provider, actionConnect, body); err != nil {
		return "", err
	}
	switch {
	case len(a.Calls) > 0 && a.Calls[0].ID != "":
		return string(a.Calls[0].ID), nil
	case a.CallID != "":
		return string(a.CallID), nil
	}
	return string(a.ID), nil
}

// graph is Graph's calling API shape at some paths: Meta itself, and 360dialog's proxy.
type graph struct {
	c            *client
	callsPath    string
	settingsPath string
	// permission returns the path and query of a call-permission read.
	permission func(userWAID string) (string, url.Values)
}

func (g *graph) Name() string { return g.c.provider }

func (g *graph) action(ctx context.Context, op string, mode retryMode, body graphCallBody) ([]byte, error) {
	body.MessagingProduct = "whatsapp"
	body.Action = op
	return g.c.do(ctx, request{op: op, method: http.MethodPost, path: g.callsPath, body: body, retry: mode, callID: body.CallID})
}

func (g *graph) Connect(ctx context.Context, req CallRequest) (string, error) {
	body, err := g.action(ctx, actionConnect, retryNever, graphCallBody{
		To:        normalizeNumber(req.To),
		Session:   &sdpSession{SDPType: "offer", SDP: NormalizeSDP(req.SDPOffer)},
		BizOpaque: req.BizOpaque,
	})
	if err != nil {
		return "", err
	}
	return connected(g.c, body)
}

// connected reads a connect answer and logs the new call once, for every provider.
func connected(c *client, body []byte) (string, error) {
	id, err := parseCallID(c.provider, body)
	if err != nil {
		return "", err
	}
	if id == "" {
		c.log.Info("business-initiated call created; its id comes with the connect webhook")
	} else {
		c.log.WithField("call_id", id).Info("business-initiated call created")
	}
	return id, nil
}

func (g *graph) PreAccept(ctx context.Context, call CallRef, sdpAnswer string) error {
	body, err := g.action(ctx, actionPreAccept, retryUnsent, graphCallBody{
		CallID: call.ID, Session: &sdpSession{SDPType: "answer", SDP: NormalizeSDP(sdpAnswer)},
	})
	if err != nil {
		return err
	}
	return checkSuccess(g.c.provider, actionPreAccept, body)
}

func (g *graph) Accept(ctx context.Context, call CallRef, sdpAnswer, bizOpaque string) error {
	body, err := g.action(ctx, actionAccept, retryUnsent, graphCallBody{
		CallID: call.ID, Session: &sdpSession{SDPType: "answer", SDP: NormalizeSDP(sdpAnswer)}, BizOpaque: bizOpaque,
	})
	if err != nil {
		return err
	}
	return checkSuccess(g.c.provider, actionAccept, body)
}

func (g *graph) Reject(ctx context.Context, call CallRef) error {
	body, err := g.action(ctx, actionReject, retryIdempotent, graphCallBody{CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(g.c.provider, actionReject, body)
}

func (g *graph) Terminate(ctx context.Context, call CallRef) error {
	body, err := g.action(ctx, actionTerminate, retryIdempotent, graphCallBody{CallID: call.ID})
	if err != nil {
		return err
	}
	return checkSuccess(g.c.provider, actionTerminate, body)
}

func (g *graph) GetSettings(ctx context.Context, includeSIPCredentials bool) (*Settings, error) {
	return getSettings(ctx, g.c, g.settingsPath, includeSIPCredentials)
}

func (g *graph) SetSettings(ctx context.Context, s *Settings) error {
	w, err := updateBody(s)
	if err != nil {
		return err
	}
	return postSettings(ctx, g.c, g.settingsPath, struct {
		Calling wireCalling `json:"calling"`
	}{w})
}

func (g *graph) CallPermission(ctx context.Context, userWAID string) (*Permission, error) {
	path, q := g.permission(normalizeNumber(userWAID))
	body, err := g.c.do(ctx, request{op: "call_permission", method: http.MethodGet, path: path, query: q, retry: retryIdempotent})
	if err != nil {
		return nil, err
	}
	return parsePermission(g.c.provider, body)
}

// getSettings is the settings read every provider with a settings API shares.
func getSettings(ctx context.Context, c *client, path string, includeSIPCredentials bool) (*Settings, error) {
	var q url.Values
	if includeSIPCredentials {
		q = url.Values{"include_sip_credentials": {"true"}}
	}
	body, err := c.do(ctx, request{op: "settings_get", method: http.MethodGet, path: path, query: q, retry: retryIdempotent})
	if err != nil {
		return nil, err
	}
	return parseSettings(c.provider, body)
}

// postSettings sends a settings update. Retried only when unsent: repeating the same body is
// harmless in itself, but a retry that lands after someone else's change would undo it.
func postSettings(ctx context.Context, c *client, path string, body any) error {
	resp, err := c.do(ctx, request{op: "settings_post", method: http.MethodPost, path: path, body: body, retry: retryUnsent})
	if err != nil {
		return err
	}
	if err := checkSuccess(c.provider, "settings_post", resp); err != nil {
		return err
	}
	c.log.Info("calling settings updated")
	return nil
}
