package wasim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
)

// Direction says who placed a call.
type Direction string

const (
	// UserInitiated: a WhatsApp user calls the business; the edge sends the INVITE.
	UserInitiated Direction = "user-initiated"
	// BusinessInitiated: the business (wabridge) calls a WhatsApp user.
	BusinessInitiated Direction = "business-initiated"
)

// Call is one call through the edge, in either direction. The exported fields are set
// before the Call is handed out and never change afterwards.
type Call struct {
	WACID     string
	Direction Direction
	Business  string // business number, E.164 with '+'
	User      string // WhatsApp user's number, E.164 with '+'
	CallID    string
	// InviteRequest is the INVITE the edge received (business-initiated) or sent
	// (user-initiated; the authenticated one when wabridge challenged). Read-only.
	InviteRequest *sip.Request
	// Media is the WhatsApp media peer of the call: a *Peer (SDES) or a *WebRTCPeer (DTLS),
	// following the business number's Number.SRTP.
	Media Media

	edge *Edge
	log  *logrus.Entry
	// The transport behind Media, for the offer/answer code; exactly one is set.
	sdes   *Peer
	webrtc *WebRTCPeer
	stream *stream

	mu           sync.Mutex
	localHdr     *sip.FromHeader // our side, as From of requests we send in the dialog
	remoteHdr    *sip.ToHeader   // wabridge's side, as To
	remoteTarget sip.Uri
	dest         string   // where in-dialog requests go (the connection's remote address)
	laddr        sip.Addr // pins the edge-dialed connection (user-initiated)
	cseq         uint32
	inviteCSeq   uint32
	response     *sip.Response // the 2xx sent or received
	answeredAt   time.Time
	awaitingAck  bool
	endedBy      string
	bye          *sip.Request
	violations   []string

	answered chan struct{}
	ackOnce  sync.Once
	acked    chan struct{}
	done     chan struct{}
}

func (e *Edge) newCall(dir Direction, business, user, wacid, callID string, m Media) *Call {
	c := &Call{
		WACID:     wacid,
		Direction: dir,
		Business:  business,
		User:      user,
		CallID:    callID,
		Media:     m,
		edge:      e,
		log: e.log.WithFields(logrus.Fields{
			"wacid": wacid, "direction": string(dir), "business": business, "user": user,
		}),
		answered: make(chan struct{}),
		acked:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	switch m := m.(type) {
	case *Peer:
		c.sdes, c.stream = m, m.stream
	case *WebRTCPeer:
		c.webrtc, c.stream = m, m.stream
	default:
		panic(fmt.Sprintf("wasim: call media %T", m))
	}
	c.stream.setOwner(c.log.WithField("component", "media"), c.recordViolation)
	return c
}

// Answered is closed when the call is answered (200 OK sent or received).
func (c *Call) Answered() <-chan struct{} { return c.answered }

// Done is closed when the call has ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndedBy says why the call ended (EndedRemoteBye, EndedLocalBye, EndedCancel,
// EndedRejected, EndedAckTimeout, EndedFailed), or "" while it is up.
func (c *Call) EndedBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endedBy
}

// Violations returns every way wabridge broke Meta's rules on this call, media included.
func (c *Call) Violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations)
}

// ByeRequest is the BYE wabridge sent, or nil.
func (c *Call) ByeRequest() *sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bye
}

// InviteResponse is the 2xx the edge sent (business-initiated) or received
// (user-initiated), or nil before the answer.
func (c *Call) InviteResponse() *sip.Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.response
}

// violate records a strictness failure.
func (c *Call) violate(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	c.log.WithField("violation", v).Warn("WhatsApp SIP rule broken")
	c.recordViolation(v)
}

func (c *Call) recordViolation(v string) {
	c.mu.Lock()
	c.violations = append(c.violations, v)
	c.mu.Unlock()
	c.edge.recordViolation(c.WACID + ": " + v)
}

// markAnswered records the 2xx and opens the dialog.
func (c *Call) markAnswered(res *sip.Response, awaitAck bool) {
	c.mu.Lock()
	c.response = res
	c.answeredAt = time.Now()
	c.awaitingAck = awaitAck
	c.mu.Unlock()
	close(c.answered)
	if !awaitAck {
		c.markAcked()
	}
}

func (c *Call) markAcked() {
	c.ackOnce.Do(func() {
		c.mu.Lock()
		c.awaitingAck = false
		c.mu.Unlock()
		close(c.acked)
	})
}

// end finishes the call once; later calls are ignored. It reports whether this call ended it.
func (c *Call) end(reason string) bool {
	c.mu.Lock()
	if c.endedBy != "" {
		c.mu.Unlock()
		return false
	}
	c.endedBy = reason
	c.mu.Unlock()
	close(c.done)
	_ = c.Media.Close()
	c.edge.forget(c)
	c.log.WithField("ended_by", reason).Info("call ended")
	return true
}

// matches reports whether an in-dialog request belongs to this call's dialog.
func (c *Call) matches(req *sip.Request) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.localHdr == nil || c.remoteHdr == nil {
		return false
	}
	from, to := req.From(), req.To()
	if from == nil || to == nil {
		return false
	}
	lt, _ := c.localHdr.Params.Get("tag")
	rt, _ := c.remoteHdr.Params.Get("tag")
	ft, _ := from.Params.Get("tag")
	tt, _ := to.Params.Get("tag")
	return ft == rt && tt == lt
}

// checkRoute verifies that an in-dialog request from wabridge carries the route set Meta
// gave it, in order. wabridge must route ACK and BYE through Meta's proxies; a lost or
// reordered route set gets 404 from the real edge and leaves the user in a dead call
// (whatsapp-calling.md §5.2, §5.3 step 6).
func (c *Call) checkRoute(req *sip.Request) {
	got := headerValues(req, "Route")
	want := c.edge.routeSet()
	if !slices.Equal(got, want) {
		c.violate("%s without Meta's route set: Route %q, want %q", req.Method, got, want)
	}
}

// request sends an in-dialog request from the edge and waits for its final response. The
// request goes over the connection the dialog runs on and carries no Route header: Meta's
// proxies consume their own Route entries, so none reach wabridge.
func (c *Call) request(ctx context.Context, method sip.RequestMethod, hdrs ...sip.Header) (*sip.Response, error) {
	c.mu.Lock()
	if c.localHdr == nil || c.remoteHdr == nil {
		c.mu.Unlock()
		return nil, errors.New("wasim: no dialog")
	}
	c.cseq++
	req := sip.NewRequest(method, *c.remoteTarget.Clone())
	req.AppendHeader(sip.HeaderClone(c.localHdr))
	req.AppendHeader(sip.HeaderClone(c.remoteHdr))
	callID := sip.CallIDHeader(c.CallID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: c.cseq, MethodName: method})
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	req.AppendHeader(sip.NewHeader("User-Agent", userAgent))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody(nil)
	req.SetTransport("TLS")
	req.SetDestination(c.dest)
	req.Laddr = c.laddr
	c.mu.Unlock()

	tx, err := c.edge.cli.TransactionRequest(ctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		return nil, fmt.Errorf("wasim: send %s: %w", method, err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, fmt.Errorf("wasim: %s transaction: %w", method, tx.Err())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Hangup sends BYE from the WhatsApp side, with the x-wa-meta-wacid and
// x-wa-meta-call-duration headers Meta adds (whatsapp-calling.md §5.2), and ends the call.
// A business-initiated call is hung up only after wabridge's ACK (RFC 3261 §15). To abandon
// a user-initiated call before the answer, cancel Dial's context instead.
func (c *Call) Hangup(ctx context.Context) error {
	select {
	case <-c.done:
		return fmt.Errorf("wasim: call already ended (%s)", c.EndedBy())
	default:
	}
	select {
	case <-c.answered:
	default:
		return errors.New("wasim: Hangup before the call was answered")
	}
	select {
	case <-c.acked:
	case <-c.done:
		return fmt.Errorf("wasim: call ended (%s) while waiting for ACK", c.EndedBy())
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	secs := int(time.Since(c.answeredAt).Round(time.Second) / time.Second)
	c.mu.Unlock()
	res, err := c.request(ctx, sip.BYE,
		sip.NewHeader(headerWACID, c.WACID),
		sip.NewHeader(headerCallDuration, strconv.Itoa(secs)))
	c.end(EndedLocalBye)
	if err != nil {
		return err
	}
	if res.StatusCode != sip.StatusOK {
		return &CallError{Code: res.StatusCode, Reason: res.Reason, Warning: warningText(res)}
	}
	return nil
}

// onBye handles wabridge's BYE for this call.
func (c *Call) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c.checkRoute(req)
	select {
	case <-c.answered:
	default:
		c.violate("BYE before the call was answered (use CANCEL)")
	}
	c.mu.Lock()
	c.bye = req
	c.mu.Unlock()
	respond(tx, req, sip.StatusOK, "OK", "")
	c.end(EndedRemoteBye)
}

// onAck handles wabridge's ACK for the edge's 2xx (business-initiated calls).
func (c *Call) onAck(req *sip.Request) {
	c.mu.Lock()
	waiting := c.awaitingAck && req.CSeq() != nil && req.CSeq().SeqNo == c.inviteCSeq
	c.mu.Unlock()
	if !waiting {
		return // ACK for a non-2xx final, or a duplicate
	}
	c.checkRoute(req)
	c.markAcked()
}

// onReInvite rejects a re-INVITE or UPDATE: Meta supports neither and answers 500
// (whatsapp-calling.md §0 item 5, §5.4). Session refreshes and hold kill real calls.
func (c *Call) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	what := string(req.Method)
	if req.IsInvite() {
		what = "re-INVITE"
	}
	c.violate("%s received inside the dialog (Meta answers 500; no re-negotiation, session timers or hold)", what)
	res := sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil)
	res.AppendHeader(warningHeader(string(req.Method) + " not supported"))
	if err := tx.Respond(res); err != nil {
		c.log.WithError(err).Warn("respond 500 failed")
	}
}
