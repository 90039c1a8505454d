package pbxsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

// DefaultRing is how long DefaultAnswer rings: long enough that the caller sees 180 before the
// 200, short enough for tests and the demo.
const DefaultRing = 300 * time.Millisecond

// Incoming describes an incoming INVITE to the Answer policy.
type Incoming struct {
	CallID string
	// From and To are the user parts of the From and To URIs; RequestUser is the Request-URI's.
	From, To, RequestUser string
	// Headers are the x-wa-* headers by lower-case name (see Header).
	Headers map[string]string
	// Offer is the SDP offer. (An INVITE without a usable plain-RTP offer is answered 488
	// before the policy runs.)
	Offer *media.Description
}

// Header returns the value of header name (case-insensitive) among Headers, or "".
func (i Incoming) Header(name string) string { return i.Headers[strings.ToLower(name)] }

// Answer is how the PBX handles one incoming call.
type Answer struct {
	// Code is the final response: 200 answers (0 means 200); anything from 300 to 699 rejects
	// the call (486 busy, 603 decline, 480 unavailable, ...).
	Code int
	// Reason is the reason phrase; the standard one for Code when empty.
	Reason string
	// Warning, when set, is sent as a Warning header (399 pbxsim "text") with a failure code.
	Warning string
	// RingFor is how long to ring (180 Ringing) before the final response; 0 answers at once
	// with no 180.
	RingFor time.Duration
	// Echo sends every received RTP packet back (payload bytes untouched, our SSRC, sequence
	// and timestamps), like an Asterisk echo-test extension. It starts when the 200 is sent.
	Echo bool
	// Play are payloads to send, one every 20 ms with the answer's audio payload type, once
	// the 200 is acknowledged.
	Play [][]byte
	// Codecs, when set, are the only codecs of our answer, even ones the offer lacks (a
	// misconfigured PBX, e.g. PCMU only); see answerCodecs. Empty: Config.Codecs negotiated
	// properly, and 488 when nothing matches.
	Codecs []media.Codec
	// NoMedia answers with a normal SDP but sends and echoes nothing: one-way or dead audio.
	NoMedia bool
	// HangupAfter, when positive, sends BYE this long after the call is answered.
	HangupAfter time.Duration
}

// DefaultAnswer is the policy when Config.Answer is nil: ring for DefaultRing, answer 200 and
// echo, so a caller through wabridge hears (and the demo measures) its own audio.
func DefaultAnswer(Incoming) Answer {
	return Answer{Code: sip.StatusOK, RingFor: DefaultRing, Echo: true}
}

// handleIncoming runs the UAS side of a new INVITE, in the INVITE's goroutine, until the final
// response is sent (and, for 200, acknowledged).
func (p *PBX) handleIncoming(req *sip.Request, tx sip.ServerTransaction) {
	callID := callIDOf(req)
	log := p.log.WithField("call_id", callID)
	inc := Incoming{CallID: callID, RequestUser: req.Recipient.User, Headers: waHeaders(req.Headers())}
	if f := req.From(); f != nil {
		inc.From = f.Address.User
	}
	if t := req.To(); t != nil {
		inc.To = t.Address.User
	}
	log = log.WithFields(logrus.Fields{"from": inc.From, "to": inc.RequestUser})

	var offerErr error
	if len(req.Body()) == 0 {
		offerErr = errors.New("no SDP offer in the INVITE (pbxsim does not do late offer)")
	} else if inc.Offer, offerErr = media.ParseDescription(req.Body()); offerErr == nil && inc.Offer.Proto != media.ProtoRTPAVP {
		// A plain trunk has no keys for SRTP: Asterisk answers such an offer 488 too.
		offerErr = errors.New("offer is " + inc.Offer.Proto + "; pbxsim speaks plain RTP/AVP only")
	}
	if offerErr != nil {
		log.WithError(offerErr).Warn("incoming call refused: unusable SDP")
		respond(tx, req, sip.StatusNotAcceptableHere, "Not Acceptable Here", offerErr.Error())
		return
	}

	ans := p.cfg.Answer(inc)
	if ans.Code == 0 {
		ans.Code = sip.StatusOK
	}
	if ans.Code != sip.StatusOK && (ans.Code < 300 || ans.Code > 699) {
		log.WithField("code", ans.Code).Warn("Answer.Code is neither 200 nor 300-699; answering 500")
		ans = Answer{Code: sip.StatusInternalServerError, Reason: "Server Internal Error", Warning: "bad Answer.Code"}
	}

	dlg, err := p.duaFor(req.Transport()).ReadInvite(req, tx)
	if err != nil {
		log.WithError(err).Warn("incoming INVITE refused")
		respond(tx, req, sip.StatusBadRequest, "Bad Request", err.Error())
		return
	}
	c := newCall(p, callID, log)
	c.From, c.To, c.RequestUser, c.Headers, c.Remote = inc.From, inc.To, inc.RequestUser, inc.Headers, inc.Offer
	c.uas = dlg
	c.localTag, _ = dlg.InviteRequest.To().Params.Get("tag")

	// Negotiate and bind media before the Call is published, so its fields never change after.
	if ans.Code == sip.StatusOK {
		if err := p.prepareAnswer(c, ans); errors.Is(err, media.ErrNoCodec) {
			log.WithError(err).Warn("incoming call refused: no common codec")
			// At once, without ringing: Asterisk checks codecs before it runs the dialplan.
			ans = Answer{Code: sip.StatusNotAcceptableHere, Reason: "Not Acceptable Here"}
			// 305 Incompatible media format (RFC 3261 §20.43), what the caller can act on.
			c.rejectWarning = warningHeaderCode(305, err.Error())
		} else if err != nil {
			log.WithError(err).Error("incoming call refused: no media socket")
			ans = Answer{Code: sip.StatusInternalServerError, Reason: "Server Internal Error", Warning: err.Error()}
		}
	}
	p.register(c)
	p.publish(c)
	log.WithFields(logrus.Fields{"code": ans.Code, "ring": ans.RingFor.String()}).Info("incoming call")
	_ = dlg.Respond(sip.StatusTrying, "Trying", nil)

	if ans.RingFor > 0 {
		_ = dlg.Respond(sip.StatusRinging, "Ringing", nil)
		timer := time.NewTimer(ans.RingFor)
		select {
		case <-timer.C:
		case <-dlg.Context().Done():
			// The caller's CANCEL (sipgo has answered it and the INVITE with 487) or a dead
			// transaction.
			timer.Stop()
			log.Info("caller cancelled while ringing")
			c.end(EndedRemoteCancel)
			return
		case <-c.done:
			// A BYE on the early dialog ended it (onBye answered it).
			timer.Stop()
			return
		case <-c.reject:
			timer.Stop()
		case <-p.ctx.Done():
			timer.Stop()
		}
	}

	decline := Answer{Code: sip.StatusGlobalDecline, Reason: "Decline"} // Hangup while ringing
	switch {
	case p.ctx.Err() != nil:
		ans = Answer{Code: sip.StatusTemporarilyUnavailable, Reason: "Temporarily Unavailable", Warning: "PBX shutting down"}
	case c.hangupAsked():
		ans = decline
	case ans.Code == sip.StatusOK && !c.markAnswered():
		// Ended meanwhile (a BYE on the early dialog), or Hangup came just now.
		select {
		case <-c.done:
			return
		default:
		}
		ans = decline
	}
	if ans.Code != sip.StatusOK {
		p.rejectIncoming(c, ans)
		return
	}
	p.answerIncoming(c, ans)
}

// prepareAnswer negotiates codecs and binds the call's RTP socket.
func (p *PBX) prepareAnswer(c *Call, ans Answer) error {
	ours, forced := p.cfg.Codecs, false
	if len(ans.Codecs) > 0 {
		ours, forced = ans.Codecs, true
	}
	codecs, err := answerCodecs(c.Remote.Codecs, ours, forced)
	if err != nil {
		return err
	}
	peer, err := newRTPPeer(p.cfg.MediaIP, c.log)
	if err != nil {
		return err
	}
	peer.configure(c.Remote.RTPAddr(), codecs)
	c.Media, c.codecs = peer, codecs
	c.Local = localDescription(peer.LocalAddr(), codecs)
	c.localSDP = c.Local.Marshal()
	return nil
}

// rejectIncoming sends a failure response and ends the call.
func (p *PBX) rejectIncoming(c *Call, ans Answer) {
	reason := ans.Reason
	if reason == "" {
		reason = reasonPhrase(ans.Code)
	}
	var hdrs []sip.Header
	switch {
	case c.rejectWarning != nil:
		hdrs = append(hdrs, c.rejectWarning)
	case ans.Warning != "":
		hdrs = append(hdrs, warningHeader(ans.Warning))
	}
	c.log.WithFields(logrus.Fields{"code": ans.Code, "reason": reason}).Info("rejecting call")
	// Waits for the ACK (or the transaction's end), so the final response is retransmitted
	// on UDP until the caller confirms it.
	if err := c.uas.Respond(ans.Code, reason, nil, hdrs...); err != nil {
		c.log.WithError(err).Debug("final response not confirmed")
	}
	if p.ctx.Err() != nil {
		c.end(EndedClosed)
		return
	}
	c.end(EndedRejected)
}

// answerIncoming sends 200 with our SDP, waits for the ACK and starts the call's media
// behaviour. The call is already marked answered.
func (p *PBX) answerIncoming(c *Call, ans Answer) {
	// Echo starts with the 200: the caller may send media as soon as it has the answer, before
	// its ACK reaches us.
	if ans.Echo && !ans.NoMedia {
		c.Media.Echo(true)
	}
	c.log.Info("answering 200")
	err := c.uas.RespondSDP(c.localSDP)
	// A BYE that overtook the ACK ends sipgo's dialog, and RespondSDP then reports "No ACK
	// received". onBye does that under c.mu, so EndedBy (which takes c.mu) sees its outcome.
	if c.EndedBy() != "" {
		return
	}
	if err != nil {
		c.log.WithError(err).Warn("200 OK not acknowledged; ending the call")
		if errors.Is(err, sip.ErrTransactionCanceled) {
			c.end(EndedRemoteCancel)
			return
		}
		ctx, cancel := context.WithTimeout(p.ctx, closeByeTimeout)
		_ = c.hangup(ctx, EndedFailed)
		cancel()
		c.end(EndedFailed)
		return
	}
	c.log.Info("call answered")

	if len(ans.Play) > 0 && !ans.NoMedia {
		pt, _ := firstAudio(c.codecs)
		p.goCall(c, func(ctx context.Context) {
			if err := c.Media.Send(ctx, ans.Play, pt, defaultPtime); err != nil && ctx.Err() == nil {
				c.log.WithError(err).Debug("playing stopped")
			}
		})
	}
	if ans.HangupAfter > 0 {
		p.goCall(c, func(ctx context.Context) {
			timer := time.NewTimer(ans.HangupAfter)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
			byeCtx, cancel := context.WithTimeout(p.ctx, closeByeTimeout)
			defer cancel()
			if err := c.Hangup(byeCtx); err != nil {
				c.log.WithError(err).Warn("HangupAfter: BYE failed")
			}
		})
	}
}

// goCall runs f in a goroutine that Close waits for; f's context ends with the call.
func (p *PBX) goCall(c *Call, f func(ctx context.Context)) {
	if !p.enter() {
		return
	}
	go func() {
		defer p.leave()
		f(c.ctx)
	}()
}

// reasonPhrase is the standard reason phrase of a SIP status code (RFC 3261 §21).
func reasonPhrase(code int) string {
	switch code {
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	case 606:
		return "Not Acceptable"
	}
	// Many SIP codes share their HTTP reason (404 Not Found, 403 Forbidden, 503 Service
	// Unavailable, ...).
	if r := http.StatusText(code); r != "" {
		return r
	}
	return "Call Failed"
}
