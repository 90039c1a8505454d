package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/media"
	wsip "github.com/wabridge/wabridge/sip"
)

// onWhatsAppInvite handles Meta's INVITE for a user-initiated call (whatsapp-calling.md §5.2):
// authenticate with digest, bridge to the PBX with a plain RTP offer, answer Meta with SDES.
func (s *Server) onWhatsAppInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if to := req.To(); to != nil && to.Params != nil && to.Params.Has("tag") {
		s.onWhatsAppReInvite(req, tx)
		return
	}
	info := wsip.ParseWhatsAppInvite(req)
	log := s.log.WithFields(logrus.Fields{"call_id": callIDOf(req), "wacid": info.WACID,
		"number": info.BusinessNumber, "caller": info.CallerNumber, "leg": "whatsapp"})

	num, ok := s.config().Number(info.BusinessNumber)
	if !ok || num.Mode != config.ModeSIP {
		log.Warn("INVITE for a number not configured in SIP mode")
		s.metrics.Rejected.WithLabelValues("unknown_number").Inc()
		respondErr(tx, req, sipErr(404, "Not Found", "business number not configured", nil))
		return
	}
	password, err := s.sipPassword(num)
	if err != nil {
		log.WithError(err).Error("cannot read the number's SIP password")
		s.metrics.Rejected.WithLabelValues("config").Inc()
		respondErr(tx, req, sipErr(503, "Service Unavailable", "", err))
		return
	}
	// Meta answers a challenge with the business number (digits) and the SIP password (§5.2).
	switch res := s.auth.Check(req, num.DigestUsername(), password); res.Verdict {
	case wsip.AuthOK:
	case wsip.AuthChallenge:
		log.WithField("auth", res.Reason).Debug("challenging INVITE")
		_ = tx.Respond(s.auth.Challenge(req, res.Stale))
		return
	default:
		log.WithFields(logrus.Fields{"auth": res.Reason, "username": res.Username}).Warn("INVITE digest authentication failed")
		s.metrics.Rejected.WithLabelValues("auth").Inc()
		respond(tx, req, 403, "Forbidden")
		return
	}

	offer, err := media.ParseDescription(req.Body())
	if err != nil {
		log.WithError(err).Warn("unusable SDP offer from WhatsApp")
		s.metrics.Rejected.WithLabelValues("sdp").Inc()
		respondErr(tx, req, sipErr(488, "Not Acceptable Here", "SDP: "+err.Error(), err))
		return
	}
	// The number's srtp setting must match srtp_key_exchange_protocol at Meta; a mismatch is a
	// configuration error worth a clear 488 rather than a half-working call.
	var keys *media.SRTPKeys
	switch {
	case num.SIP.SRTP == config.KeyExchangeDTLS && offer.Proto != media.ProtoWebRTC:
		log.WithField("proto", offer.Proto).Warn("WhatsApp offer is not WebRTC but the number is configured for DTLS")
		s.metrics.Rejected.WithLabelValues("sdp").Inc()
		respondErr(tx, req, sipErr(488, "Not Acceptable Here", "number is configured for DTLS (UDP/TLS/RTP/SAVPF), offer is "+offer.Proto, nil))
		return
	case num.SIP.SRTP != config.KeyExchangeDTLS && offer.Proto != media.ProtoRTPSAVP:
		log.WithField("proto", offer.Proto).Warn("WhatsApp offer is not SDES RTP/SAVP")
		s.metrics.Rejected.WithLabelValues("sdp").Inc()
		respondErr(tx, req, sipErr(488, "Not Acceptable Here", "number is configured for SDES (RTP/SAVP), offer is "+offer.Proto, nil))
		return
	case num.SIP.SRTP != config.KeyExchangeDTLS:
		remoteCrypto, localCrypto, err := media.AnswerCrypto(offer.Crypto)
		if err != nil {
			log.WithError(err).Warn("no usable crypto in WhatsApp offer")
			s.metrics.Rejected.WithLabelValues("sdp").Inc()
			respondErr(tx, req, sipErr(488, "Not Acceptable Here", "no supported SDES crypto suite offered", err))
			return
		}
		keys = &media.SRTPKeys{Local: localCrypto, Remote: remoteCrypto}
	}
	if err := s.admit(); err != nil {
		log.WithError(err).Warn("call refused")
		respondErr(tx, req, err)
		return
	}
	c := newCall(s, UserInitiated, num, log)
	c.runUserInitiated(req, tx, info, offer, keys)
}

func (c *Call) runUserInitiated(req *sipmsg.Request, tx sipmsg.ServerTransaction, info wsip.WhatsAppInfo,
	offer *media.Description, keys *media.SRTPKeys) {
	s := c.srv
	dlgWA, err := s.wa.dua.ReadInvite(req, tx)
	if err != nil {
		respondErr(tx, req, err)
		c.fail(err)
		return
	}
	c.mu.Lock()
	c.waIn = dlgWA
	c.waCallID = callIDOf(req)
	c.mu.Unlock()
	s.register(c.waCallID, c)
	s.wa.pins.Pin(req)
	c.log.Info("user-initiated call offered")

	if err := c.openMedia(); err != nil {
		c.rejectWA(err)
		return
	}
	pOffer, err := pbxOffer(offer, s.publicIP, int(c.pbxEP.RTP.LocalAddr().Port()), uint8(c.cfg.PBX.OpusPT), uint8(c.cfg.PBX.DTMFPT))
	if err != nil {
		c.rejectWA(err)
		return
	}
	if c.cfg.PBX.SRTP {
		// RTP/SAVP, not AVP with a=crypto: stock FreeSWITCH answers 488 to the latter (§7).
		if pOffer.Crypto, err = media.OfferCrypto(); err != nil {
			c.rejectWA(sipErr(500, "Server Internal Error", "SRTP keys", err))
			return
		}
		pOffer.Proto = media.ProtoRTPSAVP
	}

	// Meta's CANCEL ends dlgWA's context (sipgo answers 487 itself): cancel the PBX INVITE too.
	inviteCtx, cancelInvite := context.WithCancel(c.ctx)
	defer cancelInvite()
	go func() {
		select {
		case <-dlgWA.Context().Done():
			if c.getState() < stateAnswered {
				c.log.Info("WhatsApp canceled the call")
				cancelInvite()
			}
		case <-inviteCtx.Done():
		}
	}()

	pbxReq, err := c.pbxInvite(info, pOffer)
	if err != nil {
		c.rejectWA(err)
		return
	}
	dlgPBX, err := s.pbx.dua.WriteInvite(inviteCtx, pbxReq)
	if err != nil {
		c.rejectWA(sipErr(503, "Service Unavailable", "PBX unreachable", err))
		return
	}
	c.mu.Lock()
	c.pbxOut = dlgPBX
	c.mu.Unlock()
	s.register(callIDOf(pbxReq), c)

	err = dlgPBX.WaitAnswer(inviteCtx, sipgo.AnswerOptions{OnResponse: func(res *sipmsg.Response) error {
		if res.StatusCode == 180 || res.StatusCode == 183 {
			if c.setState(stateEarly) {
				// The WhatsApp user already hears local ringback; 180 only tells Meta we are alive.
				_ = dlgWA.Respond(180, "Ringing", nil)
			}
		}
		return nil
	}})
	if err != nil {
		if dlgWA.Context().Err() != nil || errors.Is(err, context.Canceled) {
			c.log.WithError(err).Debug("INVITE canceled")
			c.hangup("canceled by WhatsApp")
			return
		}
		c.rejectWA(pbxFailure(err))
		return
	}
	c.mu.Lock()
	c.pbxUp = true
	c.mu.Unlock()

	pbxAns, err := media.ParseDescription(dlgPBX.InviteResponse.Body())
	if err == nil && c.cfg.PBX.SRTP {
		c.pbxKeys, err = answeredKeys("PBX", pOffer.Crypto, pbxAns.Crypto)
	}
	if err == nil {
		var codec audioCodec
		if codec, err = agreeUIC(offer, pbxAns); err == nil {
			err = c.answerWhatsApp(dlgWA, dlgPBX, offer, pbxAns, pOffer, codec, keys)
		}
	} else if !errors.As(err, new(*SIPError)) {
		err = sipErr(488, "Not Acceptable Here", "PBX answered with unusable SDP: "+err.Error(), err)
	}
	if err != nil {
		// The PBX leg is up: ACK it so it can be torn down with BYE.
		_ = dlgPBX.Ack(c.ctx)
		c.rejectWA(err)
	}
}

// answerWhatsApp completes a user-initiated call once the PBX answered.
func (c *Call) answerWhatsApp(dlgWA *sipgo.DialogServerSession, dlgPBX *sipgo.DialogClientSession,
	offer, pbxAns, pOffer *media.Description, codec audioCodec, keys *media.SRTPKeys) error {
	if err := dlgPBX.Ack(c.ctx); err != nil {
		return sipErr(503, "Service Unavailable", "ACK to PBX failed", err)
	}
	var answer *media.Description
	if c.usesDTLS() {
		if err := c.newWebRTCLeg(); err != nil {
			return err
		}
		a, err := c.web.Answer(offer, codecsOf(offer, codec))
		if err != nil {
			return sipErr(488, "Not Acceptable Here", "WebRTC offer: "+err.Error(), err)
		}
		answer = a
	} else {
		answer = waAnswerSDES(offer, codec, c.srv.publicIP, int(c.waEP.RTP.LocalAddr().Port()), keys.Local)
	}
	answer = c.withSSRC(answer)
	c.mu.Lock()
	c.pbxSDP, c.waSDP = pOffer, answer
	c.mu.Unlock()
	if c.ctx.Err() != nil {
		return sipErr(487, "Request Terminated", "", c.ctx.Err())
	}
	// ICE and DTLS start with the 200 OK, not after Meta's ACK: Meta (ice-lite) only answers our
	// checks, and every round trip saved is audio the caller does not lose (§4.10).
	type connected struct {
		wa  waMedia
		err error
	}
	var connCh chan connected
	if c.web != nil {
		connCh = make(chan connected, 1)
		go func() {
			wa, err := c.connectWebRTC(c.ctx)
			connCh <- connected{wa, err}
		}()
	}
	// The leg counts as up from the moment our 200 leaves: a BYE from the PBX that overtakes
	// Meta's ACK must still hang up WhatsApp (sipgo's BYE waits for the ACK by itself).
	c.mu.Lock()
	c.waUp = true
	c.mu.Unlock()
	// RespondSDP retransmits the 200 until Meta's ACK arrives (or 32 s pass). sipgo copies Meta's
	// Record-Route set into it verbatim, which Meta needs to route the ACK (§5.2, §7).
	if err := dlgWA.RespondSDP(answer.Marshal()); err != nil {
		c.log.WithError(err).Warn("WhatsApp did not confirm our 200 OK")
		c.hangup("no ACK from WhatsApp")
		return nil
	}
	wa := c.sdesMedia(offer, keys)
	if connCh != nil {
		res := <-connCh
		if res.err != nil {
			// Both legs are answered: the caller hears the failure as a hang-up on both sides.
			c.log.WithError(res.err).Error("WhatsApp media did not connect")
			c.fail(res.err)
			return nil
		}
		wa = res.wa
	}
	c.setState(stateAnswered)
	c.log.WithField("codec", codec.Name).Info("call answered")
	if err := c.startRelay(codec, wa, pbxAns); err != nil {
		c.log.WithError(err).Error("media relay failed")
		c.hangup("media relay failed")
	}
	return nil
}

// rejectWA answers Meta's INVITE with a failure and ends the call.
func (c *Call) rejectWA(err error) {
	se := asSIPError(err)
	c.mu.Lock()
	dlg := c.waIn
	c.mu.Unlock()
	if dlg != nil && c.getState() < stateAnswered {
		if err := dlg.Respond(se.Code, se.Reason, nil, errHeaders(se)...); err != nil {
			c.log.WithError(err).Debug("could not send final response to WhatsApp")
		}
	}
	c.fail(err)
}

// pbxInvite builds the INVITE toward the PBX trunk, carrying the WhatsApp call data as headers
// so the dialplan can route on it (the PBX kits in examples/ map them to variables).
func (c *Call) pbxInvite(info wsip.WhatsAppInfo, offer *media.Description) (*sipmsg.Request, error) {
	s := c.srv
	host, port, err := splitHostPort(c.cfg.PBX.Address)
	if err != nil {
		return nil, sipErr(503, "Service Unavailable", "pbx.address", err)
	}
	target := sipmsg.Uri{Scheme: "sip", User: c.number.PBXExtension(), Host: host, Port: port}
	if t := c.cfg.PBX.Transport; t != "" && t != config.TransportUDP {
		target.UriParams = sipmsg.NewParams()
		target.UriParams.Add("transport", string(t))
	}
	req := sipmsg.NewRequest(sipmsg.INVITE, target)
	if t := c.cfg.PBX.Transport; t != "" && t != config.TransportUDP {
		req.SetTransport(strings.ToUpper(string(t)))
	}
	caller := info.CallerNumber
	from := &sipmsg.FromHeader{DisplayName: strings.TrimPrefix(caller, "+"),
		Address: sipmsg.Uri{Scheme: "sip", User: caller, Host: s.pbx.host}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: "sip", User: c.number.PBXExtension(), Host: host}})
	hdrs := []struct{ name, value string }{
		{"X-WA-Meta-WACID", info.WACID},
		{"X-WA-Caller", caller},
		{"X-WA-Business-Number", c.number.Number},
		{"X-WA-Meta-CTA-Payload", info.CTAPayload},
		{"X-WA-Meta-Deeplink-Payload", info.DeeplinkPayload},
	}
	for _, h := range hdrs {
		if h.value == "" {
			continue
		}
		v, err := wsip.SafeHeaderValue(h.value)
		if err != nil {
			c.log.WithField("header", h.name).Warn("dropping header with control characters")
			continue
		}
		req.AppendHeader(sipmsg.NewHeader(h.name, v))
	}
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer.Marshal())
	return req, nil
}

// pbxFailure turns the PBX's final failure into what Meta should hear.
func pbxFailure(err error) error {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		code, reason := mapFinalCode(de.Res.StatusCode)
		warn := fmt.Sprintf("PBX answered %d %s", de.Res.StatusCode, de.Res.Reason)
		if w := wsip.Warning(de.Res); w != "" {
			warn += ": " + w
		}
		return sipErr(code, reason, warn, err)
	}
	return sipErr(408, "Request Timeout", "PBX did not answer", err)
}

// onWhatsAppReInvite answers an in-dialog INVITE from the WhatsApp side with our current SDP.
// Meta does not send them (§5.4), but a BSP edge might refresh a session: never renegotiate.
func (s *Server) onWhatsAppReInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c := s.lookup(callIDOf(req))
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.mu.Lock()
	sdp := c.waSDP
	c.mu.Unlock()
	if sdp == nil {
		respond(tx, req, 491, "Request Pending")
		return
	}
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", sdp.Marshal())
	res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(&s.wa.contact)
	_ = tx.Respond(res)
}
