package bspsim

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"

	"github.com/wabridge/wabridge/bsp"
)

// Call is the emulator's view of one call.
type Call struct {
	ID          string
	Direction   string // bsp.DirectionUserInitiated | bsp.DirectionBusinessInitiated
	User        string // the WhatsApp user's number
	BizOpaque   string
	Offer       string // the SDP offer: ours (business-initiated) or the user's
	Answer      string // the SDP answer: from pre_accept/accept, or sent in a connect webhook
	PreAccepted bool
	Accepted    bool
	Rejected    bool
	Terminated  bool
}

// Call returns a copy of a call's state.
func (s *Server) Call(id string) (Call, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[id]
	if !ok {
		return Call{}, false
	}
	return *c, true
}

// Calls returns every call.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, 0, len(s.calls))
	for _, c := range s.calls {
		out = append(out, *c)
	}
	return out
}

// AddCall registers a call as if WhatsApp had created it (SendConnect does this for
// user-initiated calls); call actions on ids the emulator does not know are refused.
func (s *Server) AddCall(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := c
	s.calls[c.ID] = &cp
}

// SetPermission sets a user's call permission (bsp.Permission* status); the default is
// "temporary", so business-initiated calls work unless a test says otherwise. A connect to a
// user with no_permission fails with 138006, as at Meta.
func (s *Server) SetPermission(user, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.permissions[user] = status
}

func (s *Server) permissionOf(user string) string {
	if p, ok := s.permissions[user]; ok {
		return p
	}
	return bsp.PermissionTemporary
}

// newCallID makes a wacid-looking id.
func (s *Server) newCallID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return "wacid." + base64.RawURLEncoding.EncodeToString(b)
}

// callFields reads the provider-independent fields of a call body.
type callFields struct {
	from, to, callID, sdp, sdpType, bizOpaque string
}

func (s *Server) fields(body any) callFields {
	f := callFields{
		from: str(body, "from"), to: str(body, "to"), callID: str(body, "call_id"),
		sdp: str(body, "session.sdp"), sdpType: str(body, "session.sdp_type"), bizOpaque: str(body, "biz_opaque_callback_data"),
	}
	if f.sdp == "" {
		f.sdp = str(body, "sdp") // Positus accept, Concepto Móvil
	}
	return f
}

// isNumber: Graph writes user numbers as 6–15 digits without '+'; a business-scoped user id
// (BSUID) looks like "US.13491208655302741918".
func isNumber(s string) bool {
	if len(s) > 3 && s[2] == '.' && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' {
		return allDigits(s[3:]) && len(s) <= 33
	}
	return len(s) >= 6 && len(s) <= 15 && allDigits(s)
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// checkSDP enforces what Meta validates about a session description it is given (error 100 with
// the SDP problem in error_data, §2.6): a real SDP with real CRLF line ends — never the
// double-escaped "\r\n" text (§2.1 notes, §7).
func checkSDP(sdp string) *graphError {
	switch {
	case !strings.HasPrefix(sdp, "v=0\r\n"):
		return invalid("SDP validation failed: the SDP must start with v=0 and use CRLF line ends")
	case strings.Contains(sdp, `\r\n`) || strings.Contains(sdp, `\n`):
		return invalid("SDP validation failed: escaped line ends; send real CRLF")
	case strings.Count(sdp, "\n") != strings.Count(sdp, "\r\n"):
		return invalid("SDP validation failed: line ends must be CRLF")
	case !strings.HasSuffix(sdp, "\r\n"):
		return invalid("SDP validation failed: the last line must end with CRLF")
	}
	return nil
}

// checkCommon applies the value rules every call body shares.
func (s *Server) checkCommon(op string, body any, f callFields) *graphError {
	switch s.cfg.Provider {
	case bsp.ProviderMeta, bsp.Provider360dialog:
		if mp := str(body, "messaging_product"); mp != "whatsapp" {
			return invalid("messaging_product must be \"whatsapp\", not %q", mp)
		}
		if a := str(body, "action"); a != op {
			return invalid("action %q does not match the endpoint", a)
		}
	case bsp.ProviderConceptoMovil:
		if f.from != s.cfg.DisplayNumber {
			return invalid("from must be the business number %s, not %q", s.cfg.DisplayNumber, f.from)
		}
		if !isNumber(f.to) {
			return invalid("to must be the user's number in digits, not %q", f.to)
		}
	}
	if slices.Contains([]string{OpConnect, OpPreAccept, OpAccept}, op) {
		if e := checkSDP(f.sdp); e != nil {
			return e
		}
	}
	if legacy := str(body, "connection.webrtc.sdp"); legacy != "" && legacy != f.sdp {
		return invalid("connection.webrtc.sdp and session.sdp differ")
	}
	if lookup(body, "session") != nil {
		want := "answer"
		if op == OpConnect {
			want = "offer"
		}
		// Positus' own make sample says "answer" (a copy error, §6a); its proxy is assumed to
		// pass sdp_type to Graph, which needs an offer.
		if f.sdpType != want {
			return invalid("session.sdp_type must be %q for %s, not %q", want, op, f.sdpType)
		}
	}
	if b := f.bizOpaque; len(b) > 512 {
		return invalid("biz_opaque_callback_data is longer than 512 characters")
	}
	return nil
}

// callsAllowed applies the number-level rules Meta applies to every call action.
func (s *Server) callsAllowed() *graphError {
	if strings.EqualFold(str(s.settings, "sip.status"), "ENABLED") {
		return &graphError{status: http.StatusBadRequest, code: 131055, message: "Calling API not allowed: the number is configured for SIP"}
	}
	if !strings.EqualFold(str(s.settings, "status"), "ENABLED") {
		return &graphError{status: http.StatusUnauthorized, code: 138000, message: "Calling is not enabled for this business phone number"}
	}
	return nil
}

// connect creates a business-initiated call.
func (s *Server) connect(ep *endpoint, body any) (any, *graphError) {
	f := s.fields(body)
	if e := s.checkCommon(OpConnect, body, f); e != nil {
		return nil, e
	}
	if !isNumber(f.to) {
		return nil, invalid("to must be the user's number in digits, not %q", f.to)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.callsAllowed(); e != nil {
		return nil, e
	}
	switch s.permissionOf(f.to) {
	case bsp.PermissionTemporary, bsp.PermissionPermanent:
	default:
		return nil, &graphError{status: http.StatusUnauthorized, code: 138006, message: "No approved call permission from the recipient"}
	}
	for _, c := range s.calls {
		if c.User == f.to && !c.Terminated {
			return nil, &graphError{status: http.StatusBadRequest, code: 138003, message: "There is already an ongoing call with this user"}
		}
	}
	c := &Call{ID: s.newCallID(), Direction: bsp.DirectionBusinessInitiated, User: f.to, BizOpaque: f.bizOpaque, Offer: f.sdp}
	s.calls[c.ID] = c
	resp, err := s.golden.value(ep.response)
	if err != nil {
		return nil, &graphError{status: http.StatusInternalServerError, code: 1, message: err.Error()}
	}
	if calls, ok := lookup(resp, "calls").([]any); ok && len(calls) > 0 {
		if m, ok := calls[0].(map[string]any); ok {
			m["id"] = c.ID
		}
	}
	return resp, nil
}

// callAction applies pre_accept, accept, reject and terminate to a known call.
func (s *Server) callAction(ep *endpoint, body any) (any, *graphError) {
	f := s.fields(body)
	if e := s.checkCommon(ep.op, body, f); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.callsAllowed(); e != nil {
		return nil, e
	}
	c, ok := s.calls[f.callID]
	if !ok {
		return nil, invalid("Invalid call_id %q", f.callID)
	}
	if s.cfg.Provider == bsp.ProviderConceptoMovil && f.to != c.User {
		return nil, invalid("to %q is not the user of call %s", f.to, c.ID)
	}
	if ep.op != OpTerminate && c.Direction != bsp.DirectionUserInitiated {
		return nil, invalid("%s applies to user-initiated calls only", ep.op)
	}
	switch {
	case ep.op == OpTerminate:
		// Terminating twice is answered like the first time, so retries stay harmless.
		c.Terminated = true
	case c.Terminated:
		return nil, invalid("call %s has already ended", c.ID)
	case ep.op == OpPreAccept:
		if c.Accepted {
			return nil, invalid("call %s is already accepted", c.ID)
		}
		c.PreAccepted, c.Answer = true, f.sdp
	case ep.op == OpAccept:
		if c.Accepted {
			return nil, invalid("call %s is already accepted", c.ID)
		}
		// "The accept SDP must equal the pre_accept SDP" (§2.1 notes).
		if c.PreAccepted && f.sdp != c.Answer {
			return nil, invalid("the SDP of accept differs from the SDP of pre_accept")
		}
		c.Accepted, c.Answer = true, f.sdp
		if f.bizOpaque != "" {
			c.BizOpaque = f.bizOpaque
		}
	case ep.op == OpReject:
		if c.Accepted {
			return nil, invalid("call %s is already accepted; terminate it instead", c.ID)
		}
		c.Rejected, c.Terminated = true, true
	}
	resp, err := s.golden.value(ep.response)
	if err != nil {
		return nil, &graphError{status: http.StatusInternalServerError, code: 1, message: err.Error()}
	}
	return resp, nil
}

// handle dispatches a validated request.
func (s *Server) handle(ep *endpoint, r *http.Request, body any) (any, *graphError) {
	switch ep.op {
	case OpConnect:
		return s.connect(ep, body)
	case OpPreAccept, OpAccept, OpReject, OpTerminate:
		return s.callAction(ep, body)
	case OpSettingsGet:
		return s.getSettings(r.URL.Query().Get("include_sip_credentials") == "true")
	case OpSettingsPost:
		return s.postSettings(ep, body)
	case OpCallPermission:
		return s.permission(ep, r)
	}
	return nil, invalid("unsupported operation %s", ep.op)
}

// permission answers a call-permission read with the golden answer and the user's status.
func (s *Server) permission(ep *endpoint, r *http.Request) (any, *graphError) {
	user := ep.user
	if user == "" {
		user = r.URL.Query().Get("user_wa_id")
	}
	if !isNumber(user) {
		return nil, invalid("user_wa_id must be digits, not %q", user)
	}
	s.mu.Lock()
	status, overridden := s.permissions[user]
	s.mu.Unlock()
	if !overridden && strings.HasSuffix(ep.response, ".jsonc") {
		// Positus' sample verbatim, // comments included: the client must cope (§6a).
		b, err := s.golden.bytes(ep.response)
		if err != nil {
			return nil, &graphError{status: http.StatusInternalServerError, code: 1, message: err.Error()}
		}
		return b, nil
	}
	resp, err := s.golden.value(ep.response)
	if err != nil {
		return nil, &graphError{status: http.StatusInternalServerError, code: 1, message: err.Error()}
	}
	if overridden {
		perm, _ := lookup(resp, "permission").(map[string]any)
		if perm == nil {
			perm, _ = lookup(resp, "calling.permission").(map[string]any)
		}
		if perm != nil {
			perm["status"] = status
			if status != bsp.PermissionTemporary {
				delete(perm, "expiration_time")
			}
		}
	}
	return resp, nil
}
