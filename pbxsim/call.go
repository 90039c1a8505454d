package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

// Why a call ended, as reported by Call.EndedBy.
const (
	// EndedRemoteBye: the far end (wabridge) sent BYE.
	EndedRemoteBye = "remote-bye"
	// EndedLocalBye: we sent BYE (Hangup or Answer.HangupAfter).
	EndedLocalBye = "local-bye"
	// EndedRemoteCancel: the caller cancelled an incoming call before we answered.
	EndedRemoteCancel = "remote-cancel"
	// EndedRejected: we answered an incoming call with a failure code (the Answer policy, or
	// Hangup while it rang).
	EndedRejected = "rejected"
	// EndedFailed: the dialog broke (no ACK for our 200, a transport error).
	EndedFailed = "failed"
	// EndedClosed: the PBX was closed with the call in progress.
	EndedClosed = "closed"
)

// callState is a call's life; transitions only go forward.
type callState int

const (
	stateRinging  callState = iota // incoming, not answered yet
	stateAnswered                  // 200 sent (incoming) or received (outgoing)
	stateEnding                    // our BYE is on its way
	stateEnded
)

func (s callState) String() string {
	switch s {
	case stateRinging:
		return "ringing"
	case stateAnswered:
		return "answered"
	case stateEnding:
		return "ending"
	default:
		return "ended"
	}
}

// Call is one call of the PBX, incoming (wabridge called us) or outgoing (Dial). The exported
// fields are set before the Call is handed out and never change.
type Call struct {
	// CallID is the SIP Call-ID.
	CallID string
	// From and To are the user parts of the From and To URIs (a number or an extension).
	From, To string
	// RequestUser is the Request-URI user of the INVITE (for an incoming call, what a PBX
	// routes on; for an outgoing one, DialOptions.User).
	RequestUser string
	// Outgoing is true for calls placed with Dial.
	Outgoing bool
	// Headers holds the x-wa-* headers of the INVITE (incoming) or of the 200 OK (outgoing) by
	// lower-case name. Use Header for a case-insensitive lookup.
	Headers map[string]string
	// Media is the call's RTP stream; nil for an incoming call that was not answered with 200.
	Media *RTPPeer
	// Local and Remote are our SDP and the peer's: for an incoming call the answer and the
	// offer, for an outgoing one the offer and the answer. Remote is nil when the peer sent none.
	Local, Remote *media.Description

	pbx      *PBX
	log      *logrus.Entry
	localTag string
	uas      *sipgo.DialogServerSession // incoming calls
	uac      *sipgo.DialogClientSession // outgoing calls
	localSDP []byte                     // our SDP body, repeated in answers to re-INVITEs
	codecs   []media.Codec              // the negotiated codecs (our answer, or the peer's)
	// rejectWarning replaces Answer.Warning when we refuse the offer ourselves (488).
	rejectWarning sip.Header

	answered chan struct{} // closed when the call is answered
	done     chan struct{} // closed when the call has ended
	reject   chan struct{} // closed by Hangup while an incoming call rings
	ctx      context.Context
	cancel   context.CancelFunc // ends the call's own goroutines (Play, HangupAfter)

	// mu serialises the call's in-dialog handling: sipgo runs every request in its own
	// goroutine, so an ACK, a BYE and a re-INVITE of one call can run at once and in any order.
	mu           sync.Mutex
	state        callState
	endedBy      string
	endingReason string // why we are sending BYE (stateEnding)
	// rejectAsked: Hangup came while the call rang. Set under mu together with the state check,
	// so the answering goroutine either sees it or Hangup sees the call answered.
	rejectAsked bool
}

func newCall(p *PBX, callID string, log *logrus.Entry) *Call {
	ctx, cancel := context.WithCancel(p.ctx)
	return &Call{
		CallID:   callID,
		Headers:  map[string]string{},
		pbx:      p,
		log:      log,
		answered: make(chan struct{}),
		done:     make(chan struct{}),
		reject:   make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
}

// Header returns the value of header name (case-insensitive, RFC 3261 §7.3.1) among Headers, or "".
func (c *Call) Header(name string) string { return c.Headers[strings.ToLower(name)] }

// Answered is closed once the call is answered (it stays open for calls that never are).
func (c *Call) Answered() <-chan struct{} { return c.answered }

// Done is closed once the call has ended.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndedBy says why the call ended (one of the Ended* constants); "" while it is up.
func (c *Call) EndedBy() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endedBy
}

// Hangup ends the call from our side: BYE once answered, 603 Decline while an incoming call
// still rings. It returns when the call has ended or ctx ends; hanging up an ended call is a
// no-op.
func (c *Call) Hangup(ctx context.Context) error {
	return c.hangup(ctx, EndedLocalBye)
}

func (c *Call) hangup(ctx context.Context, reason string) error {
	c.mu.Lock()
	state := c.state
	switch state {
	case stateAnswered:
		c.state, c.endingReason = stateEnding, reason
	case stateRinging:
		if !c.rejectAsked {
			c.rejectAsked = true
			close(c.reject)
		}
	}
	c.mu.Unlock()

	switch state {
	case stateRinging:
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("pbxsim: hanging up a ringing call: %w", ctx.Err())
		}
	case stateAnswered:
		c.log.Info("sending BYE")
		var err error
		if c.uas != nil {
			err = c.uas.Bye(ctx)
		} else {
			err = c.uac.Bye(ctx)
		}
		c.end(reason)
		if err != nil {
			return fmt.Errorf("pbxsim: BYE: %w", err)
		}
		return nil
	default: // ending (another Hangup is sending BYE) or ended
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// hangupAsked reports whether Hangup was called while the call rang.
func (c *Call) hangupAsked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejectAsked
}

// markAnswered moves a ringing call to answered; false when it ended meanwhile or Hangup asked
// to reject it.
func (c *Call) markAnswered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateRinging || c.rejectAsked {
		return false
	}
	c.state = stateAnswered
	close(c.answered)
	return true
}

// end finishes the call once: the first reason wins.
func (c *Call) end(reason string) {
	c.mu.Lock()
	if c.state == stateEnded {
		c.mu.Unlock()
		return
	}
	c.state, c.endedBy = stateEnded, reason
	c.mu.Unlock()
	c.release(reason)
}

// release frees what an ended call holds. It runs once, after the switch to stateEnded, and
// without c.mu: closing the media waits for its reader goroutine.
func (c *Call) release(reason string) {
	c.cancel()
	c.pbx.forget(c)
	fields := logrus.Fields{"ended_by": reason}
	if c.Media != nil {
		c.Media.Close()
		s := c.Media.Stats()
		fields["rtp_in"], fields["rtp_out"], fields["lost"] = s.PacketsIn, s.PacketsOut, s.Lost
		fields["jitter"] = s.Jitter.String()
	}
	close(c.done)
	c.log.WithFields(fields).Info("call ended")
}

// ----- in-dialog requests -----

// onAck confirms our 200 to an incoming INVITE or re-INVITE. An ACK that arrives after the
// call ended (a BYE overtook it) is ignored: letting sipgo see it would move its dialog from
// ended back to confirmed.
func (c *Call) onAck(req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateEnded || c.uas == nil {
		return
	}
	if err := c.uas.ReadAck(req, tx); err != nil {
		// CSeq of an older INVITE (go-libs.md §1.5 item 1: a re-INVITE may be handled before
		// the first ACK); the dialog is confirmed by the newer ACK.
		c.log.WithError(err).Debug("ACK ignored")
	}
}

// onBye ends the call at the peer's request.
func (c *Call) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	if c.state == stateEnded {
		c.mu.Unlock()
		respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
		return
	}
	var err error
	if c.uas != nil {
		err = c.uas.ReadBye(req, tx)
	} else {
		err = c.uac.ReadBye(req, tx)
	}
	if errors.Is(err, sipgo.ErrDialogInvalidCseq) {
		c.mu.Unlock()
		// RFC 3261 §12.2.2: a CSeq lower than the last one is answered 500.
		respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", "CSeq out of order")
		return
	}
	reason := EndedRemoteBye
	switch c.state {
	case stateRinging:
		// A BYE before our final answer (allowed on an early dialog, RFC 3261 §15): nothing was
		// answered, so it counts as the caller giving up.
		reason = EndedRemoteCancel
	case stateEnding:
		// The BYEs crossed; the call ends for the reason we were already ending it.
		reason = c.endingReason
	}
	c.state, c.endedBy = stateEnded, reason
	c.mu.Unlock()
	c.log.Info("BYE received")
	if err != nil {
		c.log.WithError(err).Debug("answering BYE failed")
	}
	c.release(reason)
}

// onReInvite answers a re-INVITE with 200 and our SDP unchanged, as a PBX does for a session
// refresh or a hold it does not act on. When the new offer moves the peer's media, we follow it.
func (c *Call) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateEnded {
		respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
		return
	}
	// The UAS dialog tracks the peer's CSeq, and the ACK of this re-INVITE is matched against
	// it. (A UAC dialog's remote CSeq starts from our own INVITE's number in sipgo, a different
	// sequence, so it cannot be checked there.)
	if c.uas != nil {
		if err := c.uas.ReadRequest(req, tx); err != nil {
			// RFC 3261 §14.2: an INVITE that crosses ours or is out of order gets 500.
			respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", "CSeq out of order")
			return
		}
	}
	c.followOffer(req.Body())
	res := sip.NewSDPResponseFromRequest(req, c.localSDP)
	res.AppendHeader(sip.HeaderClone(&c.pbx.duaFor(req.Transport()).ContactHDR))
	if err := tx.Respond(res); err != nil {
		c.log.WithError(err).Warn("answering re-INVITE failed")
		return
	}
	c.log.Info("re-INVITE answered with the same SDP")
}

// onUpdate answers UPDATE: with an SDP body like a re-INVITE, without one (a session-timer
// refresh, RFC 4028 §7.4) with a plain 200.
func (c *Call) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateEnded {
		respond(tx, req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", "")
		return
	}
	var res *sip.Response
	if len(req.Body()) > 0 {
		c.followOffer(req.Body())
		res = sip.NewSDPResponseFromRequest(req, c.localSDP)
	} else {
		res = sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	}
	res.AppendHeader(sip.HeaderClone(&c.pbx.duaFor(req.Transport()).ContactHDR))
	_ = tx.Respond(res)
}

// followOffer points our media at a new offer's address. Codecs stay as negotiated: our answer
// does not change either. c.mu held.
func (c *Call) followOffer(body []byte) {
	if len(body) == 0 || c.Media == nil {
		return
	}
	d, err := media.ParseDescription(body)
	if err != nil {
		c.log.WithError(err).Info("re-offer SDP unusable; media unchanged")
		return
	}
	if d.RTPAddr() != c.Media.RemoteAddr() {
		c.log.WithFields(logrus.Fields{"from": c.Media.RemoteAddr().String(), "to": d.RTPAddr().String()}).Info("peer moved its media")
		c.Media.configure(d.RTPAddr(), c.codecs)
	}
}
