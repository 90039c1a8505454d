package bsp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// SIPStatus is the SIP final response a PBX should get for a failed provider action.
type SIPStatus struct {
	Code   int
	Reason string // reason phrase for the status line
	// Warning is the provider's own words ("WhatsApp error 138006: ..."), for a Warning: 399
	// header, the way Meta's SIP edge explains its own rejections (whatsapp-calling.md §5.3).
	Warning string
}

// codeEntry is one row of the provider-code table.
type codeEntry struct {
	sip    int
	reason string
}

// graphCodeSIP is THE table mapping Graph's calling error codes (whatsapp-calling.md §2.6) to
// SIP. It is a switch rather than a map so the package keeps no mutable globals. Guess: only
// 138006's SIP form is documented by Meta; the rest is our choice. Choices follow
// what Meta's own SIP edge answers for the same condition where we know it, and otherwise what a
// PBX does usefully with the code: 403 and 404 are final for the dialled number, 408/486 mean
// "try this user later", and 503 means "this route is broken, try another trunk" — the right
// answer for anything an operator (not the caller) has to fix.
func graphCodeSIP(code int) (codeEntry, bool) {
	switch code {
	case 138006:
		// Meta's SIP edge answers a missing permission with exactly this line (§0 fact 21); the
		// PBX user learns they must request permission first.
		return codeEntry{403, "No Approved Call Permission Found"}, true
	case 138001:
		// Not on WhatsApp / ToS not accepted / client too old: the user cannot be reached through
		// this trunk at all, like an unknown number. 404 rather than 480 so PBX retry logic does
		// not hammer it.
		return codeEntry{404, "Not Found"}, true
	case 138003:
		// There already is a call between the business and this user (§2.4): busy with us.
		return codeEntry{486, "Busy Here"}, true
	case 138002, 138005:
		// Limits of the business number (1000 concurrent calls, 10 000 initiations a day), not of
		// the user: 486 would wrongly say the user is busy; 503 lets the PBX use another route.
		return codeEntry{503, "Service Unavailable"}, true
	case 138004, 138019, 138020:
		// Meta's connection error, call-setup and relay failures (the last two in terminate
		// webhooks): WhatsApp's side failed.
		return codeEntry{503, "Service Unavailable"}, true
	case 138007, 138021, 138022, 138023:
		// The SDP was not applied in time (§2.2), or media never flowed: the far end timed out.
		return codeEntry{408, "Request Timeout"}, true
	case 138000, 138009, 138012, 138013, 138017, 131009, 131030, 131044:
		// Policy refusals, final like 138006: calling not enabled on the number (138000 is 403 in
		// Meta's SIP dialect), permission-request limit, 100 connected calls a day with this user
		// (error_data has the next allowed time), BIC not available in the country, test-number
		// allow list, no payment method on the WABA.
		return codeEntry{403, "Forbidden"}, true
	case 138014, 131055, 138015, 138018:
		// The number cannot call now for a reason only the operator can fix: calling paused for
		// low quality, the number is in SIP mode so Graph call actions are refused (§0 fact 1),
		// calling not enabled / prerequisites missing.
		return codeEntry{503, "Service Unavailable"}, true
	case 100:
		// Invalid parameter; for call actions nearly always SDP validation (§2.6): SIP's 488.
		return codeEntry{488, "Not Acceptable Here"}, true
	case 613, 4, 80007, 130429:
		// Rate limits (call-permission reads, app, WABA and throughput throttling).
		return codeEntry{503, "Service Unavailable"}, true
	case 190, 10, 200:
		// Our token or app permissions were refused: an operator problem, as a 407 from Meta is
		// in SIP mode (bridge.mapFinalCode).
		return codeEntry{503, "Service Unavailable"}, true
	case 1, 2:
		// Graph's transient "unknown error" and "service temporarily unavailable".
		return codeEntry{503, "Service Unavailable"}, true
	}
	return codeEntry{}, false
}

// httpStatusSIP maps an HTTP status when the body had no known Graph code (BSPs that do not
// pass Graph's envelope through, proxies, load balancers).
func httpStatusSIP(status int) codeEntry {
	switch {
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		return codeEntry{408, "Request Timeout"}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Our credentials: operator problem, not the caller's.
		return codeEntry{503, "Service Unavailable"}
	case status == http.StatusNotFound:
		// A wrong base URL or number id in our config; a 404 to the PBX would wrongly say the
		// WhatsApp user does not exist.
		return codeEntry{503, "Service Unavailable"}
	case status == http.StatusTooManyRequests:
		return codeEntry{503, "Service Unavailable"}
	case status >= 500:
		return codeEntry{503, "Service Unavailable"}
	case status >= 400:
		// A 4xx we cannot explain means our request was wrong: our bug, not the callee's.
		return codeEntry{500, "Server Internal Error"}
	}
	return codeEntry{500, "Server Internal Error"}
}

// SIPStatus returns the SIP status for e: by Graph code first (graphCodeSIP), by HTTP status
// when the code is unknown.
func (e *APIError) SIPStatus() SIPStatus {
	ent, ok := graphCodeSIP(e.Code)
	if !ok {
		ent = httpStatusSIP(e.HTTPStatus)
		if e.HTTPStatus == 0 {
			// A webhook error with an unknown code: the call failed on WhatsApp's side.
			ent = codeEntry{503, "Service Unavailable"}
		}
	}
	w := "WhatsApp"
	if e.Provider != "" && e.Provider != ProviderMeta {
		w += " via " + e.Provider
	}
	if e.Code != 0 {
		w += fmt.Sprintf(" error %d", e.Code)
	} else if e.HTTPStatus != 0 {
		w += fmt.Sprintf(" HTTP %d", e.HTTPStatus)
	}
	if e.Message != "" {
		w += ": " + e.Message
	}
	return SIPStatus{Code: ent.sip, Reason: ent.reason, Warning: w}
}

// ToSIP maps any error from this package to the SIP status the PBX should get. It is the one
// place the bridge asks; nil maps to 200.
func ToSIP(err error) SIPStatus {
	if err == nil {
		return SIPStatus{Code: 200, Reason: "OK"}
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.SIPStatus()
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		// The provider did not answer in time. For connect this is the PBX's "no answer from the
		// far end" (408); the call may or may not exist at WhatsApp, which is why connect is
		// never retried (client.go).
		return SIPStatus{Code: 408, Reason: "Request Timeout", Warning: "WhatsApp provider did not answer in time"}
	case errors.Is(err, context.Canceled):
		// Our side gave up (the PBX cancelled): RFC 3261's answer to a cancelled request.
		return SIPStatus{Code: 487, Reason: "Request Terminated"}
	case errors.Is(err, ErrUnsupported):
		return SIPStatus{Code: 501, Reason: "Not Implemented", Warning: err.Error()}
	}
	// Connection refused, DNS failure, TLS failure, unreadable answer: the provider is
	// unreachable from here, which is a route failure for the PBX.
	return SIPStatus{Code: 503, Reason: "Service Unavailable", Warning: "WhatsApp provider unreachable"}
}
