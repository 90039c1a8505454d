package pbxsim

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	wsip "github.com/wabridge/wabridge/sip"
)

// The PBX's SIP request handlers. sipgo runs each request in its own goroutine (go-libs.md §1.5
// item 1); in-dialog requests are passed to their Call, which serialises them.

func (p *PBX) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if hasToTag(req) {
		if c := p.inDialog(req, tx); c != nil {
			c.onReInvite(req, tx)
		}
		return
	}
	if !p.enter() {
		respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable", "")
		return
	}
	defer p.leave()
	p.handleIncoming(req, tx)
}

func (p *PBX) onAck(req *sip.Request, tx sip.ServerTransaction) {
	// ACKs of our non-2xx answers can land here too (go-libs.md §1.5 item 2), and so can an ACK
	// that lost the race with a BYE: no call, nothing to do.
	if c := p.lookup(req); c != nil {
		c.onAck(req, tx)
	}
}

func (p *PBX) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if c := p.inDialog(req, tx); c != nil {
		c.onBye(req, tx)
	}
}

// onCancel sees only CANCELs that match no INVITE transaction; sipgo answers the others with
// 200 and the INVITE with 487 itself.
func (p *PBX) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
}

// onOptions answers keepalive pings: wabridge (like any SBC) may qualify its trunk with them.
func (p *PBX) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	_ = tx.Respond(res)
}

// onUpdate answers session-timer refreshes (RFC 4028) and, with a body, a media update the
// same way as a re-INVITE.
func (p *PBX) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	if c := p.inDialog(req, tx); c != nil {
		c.onUpdate(req, tx)
	}
}

// onRegister accepts every registration without authentication, so wabridge can be run with
// pbx.register enabled against the simulator. The binding is not kept: calls to wabridge go to
// DialOptions.Target, never to a registered contact.
func (p *PBX) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	expires := defaultRegisterExpires
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			expires = n
		}
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	for _, h := range req.GetHeaders("Contact") {
		// RFC 3261 §10.3 step 8: the 200 lists the current bindings with their expiry.
		if ch, ok := h.(*sip.ContactHeader); ok {
			c := ch.Clone()
			if _, has := c.Params.Get("expires"); !has {
				if c.Params == nil {
					c.Params = sip.NewParams()
				}
				c.Params.Add("expires", strconv.Itoa(expires))
			}
			res.AppendHeader(c)
		}
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	aor := ""
	if to := req.To(); to != nil {
		aor = to.Address.String()
	}
	p.log.WithFields(logrus.Fields{"aor": aor, "expires": expires}).Info("REGISTER accepted")
	_ = tx.Respond(res)
}

func (p *PBX) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	p.log.WithFields(logrus.Fields{"method": req.Method.String(), "call_id": callIDOf(req)}).Info("method not allowed")
	res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowMethods))
	_ = tx.Respond(res)
}

// inDialog finds the call of an in-dialog request, or answers 481 (RFC 3261 §12.2.2).
func (p *PBX) inDialog(req *sip.Request, tx sip.ServerTransaction) *Call {
	if c := p.lookup(req); c != nil {
		return c
	}
	respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
	return nil
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

func callIDOf(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// respond answers req statelessly within tx, with a Warning (RFC 3261 §20.43) when warning is set.
func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason, warning string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if warning != "" {
		res.AppendHeader(warningHeader(warning))
	}
	_ = tx.Respond(res)
}

// warningHeader builds "399 pbxsim "text"" (399: miscellaneous warning, RFC 3261 §20.43).
func warningHeader(text string) sip.Header {
	return warningHeaderCode(399, text)
}

func warningHeaderCode(code int, text string) sip.Header {
	safe, err := wsip.SafeHeaderValue(text)
	if err != nil {
		safe = "invalid characters removed"
	}
	safe = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(safe)
	return sip.NewHeader("Warning", fmt.Sprintf(`%d %s "%s"`, code, userAgent, safe))
}

// waHeaders collects the x-wa-* headers of a message by lower-case name, first occurrence
// winning: what wabridge passes to the PBX about the WhatsApp call (X-WA-Meta-WACID,
// X-WA-Caller, X-WA-Business-Number, ...).
func waHeaders(hdrs []sip.Header) map[string]string {
	out := map[string]string{}
	for _, h := range hdrs {
		name := strings.ToLower(h.Name())
		if !strings.HasPrefix(name, "x-wa-") {
			continue
		}
		if _, seen := out[name]; !seen {
			out[name] = strings.TrimSpace(h.Value())
		}
	}
	return out
}
