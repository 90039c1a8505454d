package bspsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/wabridge/wabridge/bsp"
)

// endpoint is one documented operation at one provider.
type endpoint struct {
	op            string
	shape         *shape   // request body contract; nil = no body
	query         []string // allowed query parameters
	requiredQuery []string
	response      string // golden answer file
	user          string // the user id taken from the path (360dialog's permission read)
}

// Graph's call bodies (whatsapp-calling.md §2.1), also taken unchanged by 360dialog.
func graphCall(action string) *endpoint {
	req := []string{"messaging_product", "action"}
	switch action {
	case OpConnect:
		req = append(req, "to", "session.sdp_type", "session.sdp")
	case OpPreAccept, OpAccept:
		req = append(req, "call_id", "session.sdp_type", "session.sdp")
	case OpReject, OpTerminate:
		req = append(req, "call_id")
	default:
		return nil
	}
	resp := "meta/calls-action-response.json"
	if action == OpConnect {
		resp = "meta/calls-connect-response.json"
	}
	return &endpoint{op: action, shape: &shape{file: "meta/calls-" + action + "-request.json", required: req}, response: resp}
}

// graphSettingsPost is §1.1's body, wrapped in "calling" unless root says the body is the
// calling object itself (Concepto Móvil). request_uri_user_params keys are the operator's.
func graphSettingsPost(file, root string, required []string, response string) *endpoint {
	free := "calling.sip.servers[].request_uri_user_params"
	if root == "calling" {
		free = "sip.servers[].request_uri_user_params"
	}
	return &endpoint{op: OpSettingsPost, response: response, shape: &shape{
		file: file, root: root, required: required, freeform: []string{free},
	}}
}

// route maps a request to its endpoint. Graph answers unknown paths and methods with 400.
func (s *Server) route(r *http.Request, body []byte) (*endpoint, *graphError) {
	path := r.URL.EscapedPath()
	var ep *endpoint
	switch s.cfg.Provider {
	case bsp.ProviderMeta:
		ep = s.routeGraph(r, body, "/"+url.PathEscape(s.cfg.APIVersion)+"/"+url.PathEscape(s.cfg.PhoneNumberID), path,
			"/calls", "/settings", "/call_permissions")
	case bsp.Provider360dialog:
		ep = s.routeGraph(r, body, "", path, "/calling/calls", "/calling/settings", "/calling/permissions/")
	case bsp.ProviderPositus:
		ep = s.routePositus(r, path)
	case bsp.ProviderVectalk:
		ep = s.routeVectalk(r, path)
	case bsp.ProviderConceptoMovil:
		ep = s.routeConcepto(r, body, path)
	}
	if ep == nil {
		return nil, invalid("Unsupported %s request to %s: unknown path, method or action", r.Method, path)
	}
	return ep, nil
}

// action peeks at a body's "action" to pick the call endpoint. Only the first JSON value is
// read: the shape check refuses trailing data with a precise message.
func action(body []byte) string {
	var a struct {
		Action any `json:"action"`
	}
	_ = json.NewDecoder(bytes.NewReader(body)).Decode(&a)
	v, _ := a.Action.(string)
	return v
}

func (s *Server) routeGraph(r *http.Request, body []byte, prefix, path, calls, settings, permissions string) *endpoint {
	switch {
	case path == prefix+calls && r.Method == http.MethodPost:
		return graphCall(action(body))
	case path == prefix+settings && r.Method == http.MethodGet:
		return &endpoint{op: OpSettingsGet, query: []string{"include_sip_credentials"}}
	case path == prefix+settings && r.Method == http.MethodPost:
		return graphSettingsPost("meta/settings-request.json", "", []string{"calling"}, "meta/settings-update-response.json")
	case r.Method == http.MethodGet && strings.HasSuffix(permissions, "/") && strings.HasPrefix(path, prefix+permissions):
		// 360dialog: /calling/permissions/{consumer_whatsapp_id}
		user, err := url.PathUnescape(strings.TrimPrefix(path, prefix+permissions))
		if err != nil || user == "" || strings.Contains(user, "/") {
			return nil
		}
		return &endpoint{op: OpCallPermission, response: "meta/call-permissions-response.json", user: user}
	case path == prefix+permissions && r.Method == http.MethodGet:
		return &endpoint{op: OpCallPermission, query: []string{"user_wa_id"}, requiredQuery: []string{"user_wa_id"},
			response: "meta/call-permissions-response.json"}
	}
	return nil
}

// routePositus: §6a's table, bodies as in positusapps/quick-docs.
func (s *Server) routePositus(r *http.Request, path string) *endpoint {
	prefix := "/v2/whatsapp/numbers/" + url.PathEscape(s.cfg.PhoneNumberID) + "/calls/"
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return nil
	}
	if rest == "call-permissions" && r.Method == http.MethodGet {
		return &endpoint{op: OpCallPermission, query: []string{"user_wa_id"}, requiredQuery: []string{"user_wa_id"},
			response: "positus/calls-permission-response.jsonc"}
	}
	if r.Method != http.MethodPost {
		return nil
	}
	switch rest {
	case "make":
		return &endpoint{op: OpConnect, response: "positus/calls-make-response.json", shape: &shape{file: "positus/calls-make-body.json",
			required: []string{"to", "connection.webrtc.sdp", "session.sdp_type", "session.sdp"}}}
	case "accept":
		return &endpoint{op: OpAccept, response: "positus/calls-accept-response.json", shape: &shape{file: "positus/calls-accept-body.json",
			required: []string{"call_id", "sdp"}}}
	case "reject":
		return &endpoint{op: OpReject, response: "positus/calls-reject-response.json", shape: &shape{file: "positus/calls-reject-body.json",
			required: []string{"call_id"}}}
	case "hang-up":
		return &endpoint{op: OpTerminate, response: "positus/calls-hang-up-response.json", shape: &shape{file: "positus/calls-hang-up-body.json",
			required: []string{"call_id"}}}
	}
	return nil
}

// routeVectalk: §6b. Only terminate and settings are documented; the other call endpoints
// follow the guessed golden files.
func (s *Server) routeVectalk(r *http.Request, path string) *endpoint {
	if path == "/api/phone-numbers/settings" {
		switch r.Method {
		case http.MethodGet:
			return &endpoint{op: OpSettingsGet, query: []string{"include_sip_credentials"}}
		case http.MethodPost:
			return graphSettingsPost("vectalk/settings-request.guess.json", "", []string{"calling"}, "vectalk/settings-update-response.guess.json")
		}
		return nil
	}
	rest, ok := strings.CutPrefix(path, "/api/calls/")
	if !ok || r.Method != http.MethodPost {
		return nil
	}
	const resp = "vectalk/calls-terminate-response.json"
	switch rest {
	case "connect":
		return &endpoint{op: OpConnect, response: "vectalk/calls-connect-response.guess.json", shape: &shape{file: "vectalk/calls-connect-request.guess.json",
			required: []string{"to", "session.sdp_type", "session.sdp"}}}
	case "pre-accept":
		return &endpoint{op: OpPreAccept, response: resp, shape: &shape{file: "vectalk/calls-pre-accept-request.guess.json",
			required: []string{"call_id", "session.sdp_type", "session.sdp"}}}
	case "accept":
		return &endpoint{op: OpAccept, response: resp, shape: &shape{file: "vectalk/calls-accept-request.guess.json",
			required: []string{"call_id", "session.sdp_type", "session.sdp"}}}
	case "reject":
		return &endpoint{op: OpReject, response: resp, shape: &shape{file: "vectalk/calls-reject-request.guess.json", required: []string{"call_id"}}}
	case "terminate":
		return &endpoint{op: OpTerminate, response: resp, shape: &shape{file: "vectalk/calls-terminate-request.json", required: []string{"call_id"}}}
	}
	return nil
}

// routeConcepto: §6c. One call endpoint, the action in the flattened body; call-settings takes
// Graph's calling object without its wrapper.
func (s *Server) routeConcepto(r *http.Request, body []byte, path string) *endpoint {
	settings := s.cfg.ConceptoMovil.Settings + "/" + url.PathEscape(s.cfg.WABAID) + "/" + url.PathEscape(s.cfg.DisplayNumber) + "/call-settings"
	switch {
	case path == settings && r.Method == http.MethodGet:
		return &endpoint{op: OpSettingsGet, query: []string{"include_sip_credentials"}}
	case path == settings && r.Method == http.MethodPost:
		return graphSettingsPost("meta/settings-request.json", "calling", nil, "conceptomovil/call-settings-update-response.guess.json")
	case path == s.cfg.ConceptoMovil.Calls && r.Method == http.MethodPost:
		act := action(body)
		req := []string{"from", "to", "action"}
		file := "conceptomovil/call-" + act + "-request.guess.json"
		resp := "conceptomovil/call-action-response.guess.json"
		switch act {
		case OpConnect:
			file, resp = "conceptomovil/call-connect-request.json", "conceptomovil/call-connect-response.guess.json"
			req = append(req, "sdp")
		case OpPreAccept, OpAccept:
			req = append(req, "call_id", "sdp")
		case OpReject, OpTerminate:
			req = append(req, "call_id")
		default:
			return nil
		}
		return &endpoint{op: act, response: resp, shape: &shape{file: file, required: req}}
	}
	return nil
}
