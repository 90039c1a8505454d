package wasim

import (
	"github.com/emiago/sipgo/sip"
)

// registerHandlers wires the edge's SIP methods. sipgo runs every request handler in its own
// goroutine (go-libs.md §1.1); the handlers only find the call and hand the request to it.
func (e *Edge) registerHandlers() {
	e.srv.OnInvite(e.onInvite)
	e.srv.OnAck(e.onAck)
	e.srv.OnBye(e.onBye)
	e.srv.OnCancel(e.onCancel)
	e.srv.OnOptions(e.onOptions)
	e.srv.OnRegister(e.onRegister)
	e.srv.OnUpdate(e.onUpdate)
	e.srv.OnNotify(e.onNotify)
	e.srv.OnNoRoute(e.onNoRoute)
}

// respond answers a request, with Meta's Warning header when warning is set.
func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason, warning string, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if warning != "" {
		res.AppendHeader(warningHeader(warning))
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

func hasToTag(req *sip.Request) bool {
	to := req.To()
	return to != nil && to.Params.Has("tag")
}

// inDialog finds the call an in-dialog request belongs to; nil after answering 481.
func (e *Edge) inDialog(req *sip.Request, tx sip.ServerTransaction) *Call {
	if c := e.lookup(req); c != nil && c.matches(req) {
		return c
	}
	respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
	return nil
}

func (e *Edge) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if hasToTag(req) {
		if c := e.inDialog(req, tx); c != nil {
			c.onReInvite(req, tx)
		}
		return
	}
	e.businessInvite(req, tx)
}

func (e *Edge) onAck(req *sip.Request, _ sip.ServerTransaction) {
	// ACKs for the edge's non-2xx answers reach here too on TLS (go-libs.md §1.5 item 2).
	if c := e.lookup(req); c != nil && c.matches(req) {
		c.onAck(req)
	}
}

func (e *Edge) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if c := e.inDialog(req, tx); c != nil {
		c.onBye(req, tx)
	}
}

// onCancel sees only CANCELs that match no INVITE transaction (sipgo answers the others with
// 200 and 487 itself).
func (e *Edge) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
}

func (e *Edge) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	respond(tx, req, sip.StatusOK, "OK", "",
		sip.NewHeader("Allow", allowMethods), sip.NewHeader("Accept", "application/sdp"))
}

// onRegister: business numbers belong to the business's domain; Meta answers REGISTER with
// 403 (whatsapp-calling.md §0 item 18).
func (e *Edge) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	e.edgeViolation("REGISTER sent to Meta (never register toward wa.meta.vc)")
	respond(tx, req, sip.StatusForbidden, "Forbidden", "REGISTER is not supported")
}

func (e *Edge) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	if c := e.inDialog(req, tx); c != nil {
		c.onReInvite(req, tx)
	}
}

func (e *Edge) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	if c := e.inDialog(req, tx); c != nil {
		respond(tx, req, sip.StatusOK, "OK", "")
	}
}

// onNoRoute answers methods Meta does not allow (INFO, REFER, MESSAGE, PRACK, ...).
func (e *Edge) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if c := e.lookup(req); c != nil {
		c.violate("%s sent inside the dialog; Meta allows only %s", req.Method, allowMethods)
	} else {
		e.edgeViolation("%s sent to Meta; allowed methods are %s", req.Method, allowMethods)
	}
	respond(tx, req, sip.StatusMethodNotAllowed, "Method Not Allowed", "", sip.NewHeader("Allow", allowMethods))
}
