package bridge

import (
	"errors"
	"fmt"
)

// SIPError is a failure that knows the SIP status it should produce on the other leg. Errors from
// any layer are turned into one with errors.As; anything else is a 500-class internal failure.
type SIPError struct {
	Code    int
	Reason  string // reason phrase for the status line
	Warning string // free text carried in a Warning: 399 header (Meta's own style, §5.3)
	// RetryAfter (seconds) marks a 503 as wabridge's own refusal (draining, call limit, no
	// ports): a proxy in front (Kamailio's dispatcher) may then try a sibling instance, which
	// it must not do for a WhatsApp-side failure that would ring the user twice.
	RetryAfter int
	Err        error
}

func (e *SIPError) Error() string {
	msg := fmt.Sprintf("%d %s", e.Code, e.Reason)
	if e.Warning != "" {
		msg += ": " + e.Warning
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *SIPError) Unwrap() error { return e.Err }

func sipErr(code int, reason, warning string, err error) *SIPError {
	return &SIPError{Code: code, Reason: reason, Warning: warning, Err: err}
}

// asSIPError gives every error a SIP status. Unknown failures become 500 so the caller hears a
// failure tone instead of a hang until timeout.
func asSIPError(err error) *SIPError {
	var se *SIPError
	if errors.As(err, &se) {
		return se
	}
	return sipErr(500, "Server Internal Error", "", err)
}

// mapFinalCode maps a final failure status from one leg to the status sent on the other. The
// two sides speak different dialects: Meta's edge uses 403 for permission problems and 480 for
// no answer (whatsapp-calling.md §5.3), PBXs use the whole RFC 3261 range. Codes that only make
// sense hop-by-hop (auth challenges, redirects, 488 from the other leg's SDP) must not leak:
// a 407 from Meta means *our* credentials failed, which is a service failure for the PBX.
func mapFinalCode(code int) (int, string) {
	switch {
	case code == 403:
		return 403, "Forbidden"
	case code == 404 || code == 484 || code == 400:
		return 404, "Not Found"
	case code == 401 || code == 407:
		// Credentials for the other leg were rejected: the caller cannot fix that.
		return 503, "Service Unavailable"
	case code == 408:
		return 408, "Request Timeout"
	case code == 480:
		return 480, "Temporarily Unavailable"
	case code == 486 || code == 600:
		return 486, "Busy Here"
	case code == 487:
		return 487, "Request Terminated"
	case code == 488 || code == 606:
		return 488, "Not Acceptable Here"
	case code == 603:
		return 603, "Decline"
	case code >= 300 && code < 400:
		return 480, "Temporarily Unavailable"
	case code >= 500 && code < 600:
		return 503, "Service Unavailable"
	case code >= 400 && code < 500:
		return 480, "Temporarily Unavailable"
	default:
		return 500, "Server Internal Error"
	}
}
