package wasim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

// InviteInfo describes a business-initiated INVITE that passed the edge's checks.
type InviteInfo struct {
	Call     *Call
	WACID    string
	Business string // From user, E.164 with '+'
	User     string // Request-URI user, E.164 with '+'
	Request  *sip.Request
	Offer    *media.Description
}

// Answer is EdgeConfig.OnInvite's decision. The zero value answers 200 at once.
type Answer struct {
	// Code is the final response: 200 (default) answers; anything else rejects, e.g. 486
	// "User declined", 480 "Temporarily Unavailable", 403 "No Approved Call Permission
	// Found" (whatsapp-calling.md §5.3).
	Code    int
	Reason  string
	Warning string // text of Meta's Warning header on a rejection
	// RingFor sends 180 Ringing and waits this long before the final response; a CANCEL
	// meanwhile ends the call with 487.
	RingFor time.Duration
	// Suites are the SDES suites the edge accepts (when empty: AES_CM_128_HMAC_SHA1_80/_32
	// and AES_256_CM_HMAC_SHA1_80/_32); an offer with none of them gets 488. SDES numbers only.
	Suites []string
	// DTLSSetup is the edge's a=setup when a DTLS number answers an a=setup:actpass offer:
	// SetupActive (default, Meta's published answer) or SetupPassive. DTLS numbers only.
	DTLSSetup string
	// EditAnswer, when set, rewrites the SDP answer before it is sent, so tests can play an
	// edge whose media never connects (unreachable candidates, a wrong fingerprint).
	EditAnswer func(sdp []byte) []byte
}

// answerTimeout bounds building the WebRTC answer (pion's offer/answer and host-only
// gathering, normally a few milliseconds).
const answerTimeout = 5 * time.Second

// ackTimeout is how long the edge waits for the ACK of its 2xx: 64×T1, after which RFC 3261
// §13.3.1.4 says the UAS gives up on the session.
func ackTimeout() time.Duration { return 64 * sip.T1 }

// businessInvite handles an INVITE from wabridge (a business-initiated call) as Meta's edge
// does (whatsapp-calling.md §5.3): Request-URI, digest, From number and host, SDP, then the
// OnInvite policy. It runs in sipgo's goroutine for the INVITE and returns when the call is
// rejected, cancelled or confirmed by ACK.
func (e *Edge) businessInvite(req *sip.Request, tx sip.ServerTransaction) {
	callID := ""
	if h := req.CallID(); h != nil {
		callID = h.Value()
	}
	log := e.log.WithField("call_id", callID)
	reject := func(code int, reason, warning, why string) {
		log.WithFields(logrus.Fields{"code": code, "why": why}).Info("business-initiated INVITE rejected")
		respond(tx, req, code, reason, warning)
	}

	// 1. Request-URI: sip:+<user>@wa.meta.vc;transport=tls. An IP host gets 404.
	ruri := req.Recipient
	user := ruri.User
	if isIPHost(ruri.Host) || !strings.EqualFold(ruri.Host, MetaDomain) || !isE164(user) {
		reject(sip.StatusNotFound, "Not Found", "", "Request-URI "+ruri.String()+" is not sip:+<E.164>@"+MetaDomain)
		return
	}
	var notes []string
	if tp, _ := ruri.UriParams.Get("transport"); !strings.EqualFold(tp, "tls") {
		notes = append(notes, "Request-URI without ;transport=tls")
	}

	// 2. Digest: Meta challenges every INVITE with 407 (realm wa.meta.vc, qop=auth).
	authz := req.GetHeader("Proxy-Authorization")
	if authz == nil {
		if req.GetHeader("Authorization") != nil {
			e.edgeViolation("INVITE %s answers Meta's 407 with Authorization instead of Proxy-Authorization", callID)
		}
		e.challenge(tx, req, false)
		return
	}
	verdict, username, why := e.auth.verify(authz.Value(), req, func(u string) (string, bool) {
		n, ok := e.cfg.Numbers["+"+u]
		return n.Password, ok
	})
	switch verdict {
	case authChallenge:
		e.challenge(tx, req, true)
		return
	case authFailed:
		reject(sip.StatusForbidden, "Forbidden", "Authentication failed", "digest: "+why)
		return
	}

	// 3. From: user = a business number with SIP on, host = its SIP server or a parent domain.
	from := req.From()
	if from == nil {
		reject(sip.StatusBadRequest, "Bad Request", "Missing From", "no From")
		return
	}
	business := from.Address.User
	num, known := e.cfg.Numbers[business]
	if !known {
		const text = "Asset not found, invalid business phone number"
		reject(sip.StatusBadRequest, text, text, "From user "+business)
		return
	}
	if username != business[1:] {
		reject(sip.StatusForbidden, "Forbidden", "Authentication failed",
			"digest username "+username+" is not the From number "+business)
		return
	}
	if !hostMatches(from.Address.Host, num.Hostname) {
		text := "SIP server " + from.Address.Host + " from INVITE does not match any SIP server configured for phone number id " + num.PhoneNumberID
		reject(sip.StatusForbidden, "Forbidden", text, "From host")
		return
	}
	if req.Contact() == nil {
		reject(sip.StatusBadRequest, "Bad Request", "Missing Contact", "no Contact")
		return
	}

	// 4. SDP, by the number's key exchange (§4.1): SDES wants RTP/SAVP, a usable a=crypto
	// and opus/48000/2; DTLS wants a=fingerprint, UDP/TLS/RTP/SAVPF, ICE credentials and
	// opus/48000/2.
	check := checkOffer
	if num.dtls() {
		check = func(body []byte) (*media.Description, error) {
			d, sdpNotes, err := checkWebRTCOffer(body)
			notes = append(notes, sdpNotes...)
			return d, err
		}
	}
	offer, err := check(req.Body())
	if err != nil {
		reject(sip.StatusNotAcceptableHere, "Not Acceptable Here", err.Error(), err.Error())
		return
	}
	var peer Media
	if num.dtls() {
		peer, err = NewWebRTCPeer(WebRTCPeerConfig{Log: log, IPs: webrtcIPs(e.addr.Addr())})
	} else {
		peer, err = NewPeer(PeerConfig{Log: log, IP: e.addr.Addr()})
	}
	if err != nil {
		reject(sip.StatusServiceUnavailable, "Service Unavailable", "Internal error", err.Error())
		return
	}

	c := e.newCall(BusinessInitiated, business, user, newWACID(), callID, peer)
	c.InviteRequest = req
	for _, n := range notes {
		c.violate("%s", n)
	}
	// Session timers make wabridge refresh with re-INVITE or UPDATE, which Meta answers 500
	// (whatsapp-calling.md §5.4).
	if req.GetHeader("Session-Expires") != nil || hasToken(req, "Require", "timer") {
		c.violate("session timer requested in INVITE (Session-Expires / Require: timer)")
	}
	if !offer.RTCPMux {
		c.violate("SDP offer without a=rtcp-mux (Meta multiplexes RTCP)")
	}

	// The To tag is fixed now so the 180 and the final response share it.
	local := req.Clone()
	localTag := newTag()
	local.To().Params.Add("tag", localTag)
	localFrom := local.To().AsFrom()
	remoteTo := from.AsTo()
	c.localHdr, c.remoteHdr = &localFrom, &remoteTo
	c.remoteTarget = *req.Contact().Address.Clone()
	c.dest = req.Source() // in-dialog requests reuse wabridge's connection
	c.cseq = randUint32() & 0x7fff
	c.inviteCSeq = req.CSeq().SeqNo

	if err := e.register(c); err != nil {
		_ = peer.Close()
		reject(sip.StatusServiceUnavailable, "Service Unavailable", "Internal error", err.Error())
		return
	}
	cancelled := make(chan struct{})
	if !tx.OnCancel(func(*sip.Request) { close(cancelled) }) {
		c.end(EndedCancel)
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
	c.log.Info("business-initiated call offered")
	e.publish(c)

	ans := Answer{Code: sip.StatusOK}
	if e.cfg.OnInvite != nil {
		ans = e.cfg.OnInvite(InviteInfo{Call: c, WACID: c.WACID, Business: business, User: user, Request: req, Offer: offer})
		if ans.Code == 0 {
			ans.Code = sip.StatusOK
		}
	}
	c.run(tx, local, offer, ans, cancelled)
}

// challenge answers 407 with Meta's Proxy-Authenticate.
func (e *Edge) challenge(tx sip.ServerTransaction, req *sip.Request, stale bool) {
	respond(tx, req, sip.StatusProxyAuthRequired, "Proxy Authentication Required", "",
		sip.NewHeader("Proxy-Authenticate", e.auth.challenge(stale)))
}

// run rings, then answers or rejects a business-initiated call according to ans.
func (c *Call) run(tx sip.ServerTransaction, local *sip.Request, offer *media.Description, ans Answer, cancelled <-chan struct{}) {
	e := c.edge
	newResponse := func(code int, reason string, body []byte) *sip.Response {
		res := sip.NewResponseFromRequest(local, code, reason, body)
		for _, rr := range e.rrAnswer {
			res.AppendHeader(sip.HeaderClone(rr))
		}
		res.AppendHeader(e.contact(c.User))
		res.AppendHeader(sip.NewHeader(headerExternalDomain, MetaDomain))
		res.AppendHeader(sip.NewHeader("Allow", allowMethods))
		return res
	}
	if ans.RingFor > 0 {
		if err := tx.Respond(newResponse(sip.StatusRinging, "Ringing", nil)); err != nil {
			c.log.WithError(err).Warn("send 180 failed")
		}
		t := time.NewTimer(ans.RingFor)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cancelled:
			c.end(EndedCancel) // sipgo has answered 200 to the CANCEL and 487 to the INVITE
			return
		case <-tx.Done():
			c.end(EndedFailed)
			return
		case <-c.done: // BYE in the early dialog (recorded as a violation)
			respond(tx, local, sip.StatusRequestTerminated, "Request Terminated", "")
			return
		case <-e.closeCh:
			respond(tx, local, sip.StatusServiceUnavailable, "Service Unavailable", "Shutting down")
			c.end(EndedRejected)
			return
		}
	}

	if ans.Code < 200 || ans.Code >= 300 {
		reason := ans.Reason
		if reason == "" {
			reason = defaultReason(ans.Code)
		}
		res := sip.NewResponseFromRequest(local, ans.Code, reason, nil)
		if ans.Warning != "" {
			res.AppendHeader(warningHeader(ans.Warning))
		}
		_ = tx.Respond(res)
		c.end(EndedRejected)
		return
	}

	var sdp []byte
	var fail *answerFailure
	if c.webrtc != nil {
		sdp, fail = c.answerWebRTC(ans)
	} else {
		sdp, fail = c.answerSDES(offer, ans)
	}
	if fail == nil && ans.EditAnswer != nil {
		sdp = ans.EditAnswer(sdp)
	}
	if fail != nil {
		c.log.WithError(fail.err).WithField("code", fail.code).Info("business-initiated call not answerable")
		res := sip.NewResponseFromRequest(local, fail.code, fail.reason, nil)
		res.AppendHeader(warningHeader(fail.warning))
		_ = tx.Respond(res)
		c.end(fail.ended)
		return
	}
	res := newResponse(sip.StatusOK, "OK", sdp)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	c.markAnswered(res, true)
	if err := tx.Respond(res); err != nil {
		c.log.WithError(err).Warn("send 200 failed")
		c.end(EndedFailed)
		return
	}
	c.log.Info("business-initiated call answered")

	t := time.NewTimer(ackTimeout())
	defer t.Stop()
	select {
	case <-c.acked:
		c.log.Debug("ACK received")
	case <-tx.Acks():
		c.markAcked()
	case <-t.C:
		c.violate("no ACK for the 200 OK within %s (the call dies; check the Route set)", ackTimeout())
		c.end(EndedAckTimeout)
	case <-c.done:
	case <-e.closeCh:
	}
}

// answerFailure is why the edge cannot answer an offer it accepted at first sight.
type answerFailure struct {
	code            int
	reason, warning string
	ended           string
	err             error
}

// answerSDES picks the crypto suite, connects the SDES peer and writes the answer.
func (c *Call) answerSDES(offer *media.Description, ans Answer) ([]byte, *answerFailure) {
	suites := ans.Suites
	if len(suites) == 0 {
		suites = defaultAcceptSuites()
	}
	remoteKey, localKey, err := pickCrypto(offer.Crypto, suites)
	if err != nil {
		return nil, &answerFailure{sip.StatusNotAcceptableHere, "Not Acceptable Here", err.Error(), EndedRejected, err}
	}
	codecs := answerCodecs(offer)
	if err := c.sdes.Connect(Link{Remote: offer.RTPAddr(), LocalKey: localKey, RemoteKey: remoteKey, Codecs: codecs}); err != nil {
		return nil, &answerFailure{sip.StatusServiceUnavailable, "Service Unavailable", "Internal error", EndedFailed, err}
	}
	return metaSDP(c.sdes.LocalAddr(), uint64(randUint32()), codecs, []media.Crypto{localKey}, c.sdes.SSRC()), nil
}

// answerWebRTC applies the business's offer to the WebRTC peer and returns Meta's answer.
// pion refusing the offer is an SDP validation error for Meta too (488).
func (c *Call) answerWebRTC(ans Answer) ([]byte, *answerFailure) {
	switch ans.DTLSSetup {
	case "", SetupActive, SetupPassive:
	default:
		err := fmt.Errorf("wasim: Answer.DTLSSetup %q, want %q or %q", ans.DTLSSetup, SetupActive, SetupPassive)
		return nil, &answerFailure{sip.StatusInternalServerError, "Server Internal Error", err.Error(), EndedFailed, err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
	defer cancel()
	sdp, err := c.webrtc.Answer(ctx, c.InviteRequest.Body(), ans.DTLSSetup)
	if err != nil {
		return nil, &answerFailure{sip.StatusNotAcceptableHere, "Not Acceptable Here",
			"SDP validation error: " + err.Error(), EndedRejected, err}
	}
	return sdp, nil
}

// defaultReason is the reason phrase Meta uses for the rejections it documents (§5.3).
func defaultReason(code int) string {
	switch code {
	case sip.StatusForbidden:
		return "Forbidden"
	case sip.StatusNotFound:
		return "Not Found"
	case sip.StatusRequestTimeout:
		return "RTP Timeout"
	case sip.StatusTemporarilyUnavailable:
		return "Temporarily Unavailable"
	case sip.StatusBusyHere:
		return "User declined"
	case sip.StatusServiceUnavailable:
		return "Service Unavailable"
	case sip.StatusInternalServerError:
		return "Server Internal Error"
	}
	return "Rejected"
}
