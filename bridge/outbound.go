package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/media"
	wsip "github.com/wabridge/wabridge/sip"
)

// headerBusinessNumber lets a PBX pick the business number a call goes out from when the From
// user is an extension rather than the business number.
const headerBusinessNumber = "X-WA-Business-Number"

// onPBXInvite handles the PBX's INVITE for a business-initiated call (whatsapp-calling.md §5.3):
// the Request-URI user is the WhatsApp user's number; we INVITE Meta and answer the PBX when
// WhatsApp answers.
func (s *Server) onPBXInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if to := req.To(); to != nil && to.Params != nil && to.Params.Has("tag") {
		s.onPBXReInvite(req, tx)
		return
	}
	log := s.log.WithFields(logrus.Fields{"call_id": callIDOf(req), "leg": "pbx"})
	user, err := wsip.NormalizeNumber(req.Recipient.User)
	if err != nil {
		log.WithField("ruri_user", req.Recipient.User).Warn("PBX INVITE does not name a WhatsApp number")
		s.metrics.Rejected.WithLabelValues("bad_request_uri").Inc()
		respondErr(tx, req, sipErr(404, "Not Found", "Request-URI user must be the WhatsApp user's E.164 number", err))
		return
	}
	num, err := s.businessNumberFor(req)
	if err != nil {
		log.WithError(err).Warn("no business number for PBX call")
		s.metrics.Rejected.WithLabelValues("unknown_number").Inc()
		respondErr(tx, req, err)
		return
	}
	log = log.WithFields(logrus.Fields{"number": num.Number, "callee": user})
	var password string
	if num.Mode == config.ModeSIP {
		if password, err = s.sipPassword(num); err != nil {
			log.WithError(err).Error("cannot read the number's SIP password")
			s.metrics.Rejected.WithLabelValues("config").Inc()
			respondErr(tx, req, sipErr(503, "Service Unavailable", "", err))
			return
		}
	}
	offer, err := media.ParseDescription(req.Body())
	if err != nil {
		log.WithError(err).Warn("unusable SDP offer from PBX")
		s.metrics.Rejected.WithLabelValues("sdp").Inc()
		respondErr(tx, req, sipErr(488, "Not Acceptable Here", "SDP: "+err.Error(), err))
		return
	}
	pbxKeys, err := s.pbxOfferKeys(offer)
	if err != nil {
		log.WithError(err).Warn("PBX offer's SRTP is unusable")
		s.metrics.Rejected.WithLabelValues("sdp").Inc()
		respondErr(tx, req, err)
		return
	}
	if err := s.admit(); err != nil {
		log.WithError(err).Warn("call refused")
		respondErr(tx, req, err)
		return
	}
	c := newCall(s, BusinessInitiated, num, log)
	c.pbxKeys = pbxKeys
	if num.Mode == config.ModeAPI {
		c.api = &apiLeg{provider: s.api.providers[num.Number], events: make(chan bsp.Event, 16)}
	}
	c.runBusinessInitiated(req, tx, user, password, offer)
}

// pbxOfferKeys answers SDES on the PBX leg: a PBX that offers RTP/SAVP gets SRTP whatever
// pbx.srtp says (RFC 3264 does not allow answering SAVP with plain RTP), and with pbx.srtp set a
// plain offer is refused so a misconfigured trunk fails loudly instead of sending cleartext.
func (s *Server) pbxOfferKeys(offer *media.Description) (*media.SRTPKeys, error) {
	if offer.Proto != media.ProtoRTPSAVP && len(offer.Crypto) == 0 {
		if s.config().PBX.SRTP {
			return nil, sipErr(488, "Not Acceptable Here", "pbx.srtp is set: offer RTP/SAVP with a=crypto", media.ErrNoCrypto)
		}
		return nil, nil
	}
	remote, local, err := media.AnswerCrypto(offer.Crypto)
	if err != nil {
		return nil, sipErr(488, "Not Acceptable Here", "no supported SDES crypto suite offered", err)
	}
	return &media.SRTPKeys{Local: local, Remote: remote}, nil
}

// businessNumberFor picks the business number a PBX call goes out from: an explicit header,
// else the From user, else the only SIP-mode number configured.
func (s *Server) businessNumberFor(req *sipmsg.Request) (*config.Number, error) {
	cfg := s.config()
	if h := req.GetHeader(headerBusinessNumber); h != nil {
		n, err := wsip.NormalizeNumber(h.Value())
		if err != nil {
			return nil, sipErr(404, "Not Found", headerBusinessNumber+" is not an E.164 number", err)
		}
		num, ok := cfg.Number(n)
		if !ok {
			return nil, sipErr(404, "Not Found", "business number "+n+" is not configured", nil)
		}
		return num, nil
	}
	if from := req.From(); from != nil {
		if n, err := wsip.NormalizeNumber(from.Address.User); err == nil {
			if num, ok := cfg.Number(n); ok {
				return num, nil
			}
		}
	}
	var only *config.Number
	for i := range cfg.Numbers {
		if only != nil {
			return nil, sipErr(404, "Not Found", "several business numbers configured: set "+headerBusinessNumber+" or the From user", nil)
		}
		only = &cfg.Numbers[i]
	}
	if only == nil {
		return nil, sipErr(404, "Not Found", "no business number configured", nil)
	}
	return only, nil
}

func (c *Call) runBusinessInitiated(req *sipmsg.Request, tx sipmsg.ServerTransaction, user, password string, offer *media.Description) {
	s := c.srv
	dlgPBX, err := s.pbx.dua.ReadInvite(req, tx)
	if err != nil {
		respondErr(tx, req, err)
		c.fail(err)
		return
	}
	c.mu.Lock()
	c.pbxIn = dlgPBX
	c.mu.Unlock()
	s.register(callIDOf(req), c)
	_ = dlgPBX.Respond(100, "Trying", nil)
	if c.api != nil {
		c.runAPIBusinessInitiated(dlgPBX, user, offer)
		return
	}
	c.log.Info("business-initiated call offered")

	if err := c.openMedia(); err != nil {
		c.rejectPBX(err)
		return
	}
	cryptos, err := media.OfferCrypto()
	if err != nil {
		c.rejectPBX(sipErr(500, "Server Internal Error", "SRTP keys", err))
		return
	}
	waOffer, err := waOfferSDES(offer, c.number.SIP.AdditionalCodecs, s.publicIP, int(c.waEP.RTP.LocalAddr().Port()), cryptos)
	if err != nil {
		c.rejectPBX(err)
		return
	}
	if c.usesDTLS() {
		// Same codecs, but ICE + DTLS: actpass, and we follow the role Meta's answer picks.
		cryptos = nil
		if err := c.newWebRTCLeg(); err != nil {
			c.rejectPBX(err)
			return
		}
		if waOffer, err = c.web.Offer(waOffer.Codecs); err != nil {
			c.rejectPBX(sipErr(500, "Server Internal Error", "WebRTC offer", err))
			return
		}
	}
	waOffer = c.withSSRC(waOffer)

	// The PBX's CANCEL ends dlgPBX's context (sipgo answers 487): cancel the INVITE to Meta too.
	inviteCtx, cancelInvite := context.WithCancel(c.ctx)
	defer cancelInvite()
	go func() {
		select {
		case <-dlgPBX.Context().Done():
			if c.getState() < stateAnswered {
				c.log.Info("PBX canceled the call")
				cancelInvite()
			}
		case <-inviteCtx.Done():
		}
	}()

	waReq := c.whatsAppInvite(user, waOffer)
	s.wa.pins.Follow(callIDOf(waReq), c.number.EdgeAddress())
	dlgWA, err := s.wa.dua.WriteInvite(inviteCtx, waReq)
	if err != nil {
		c.rejectPBX(sipErr(503, "Service Unavailable", "WhatsApp SIP edge unreachable", err))
		return
	}
	c.mu.Lock()
	c.waOut = dlgWA
	c.waCallID = callIDOf(waReq)
	c.mu.Unlock()
	s.register(c.waCallID, c)

	err = dlgWA.WaitAnswer(inviteCtx, sipgo.AnswerOptions{
		Username: c.number.DigestUsername(), Password: password,
		OnResponse: func(res *sipmsg.Response) error {
			if (res.StatusCode == 180 || res.StatusCode == 183) && c.setState(stateEarly) {
				_ = dlgPBX.Respond(180, "Ringing", nil)
			}
			return nil
		}})
	if err != nil {
		if dlgPBX.Context().Err() != nil || errors.Is(err, context.Canceled) {
			c.log.WithError(err).Debug("INVITE canceled")
			c.hangup("canceled by PBX")
			return
		}
		c.rejectPBX(whatsAppFailure(err))
		return
	}
	c.mu.Lock()
	c.waUp = true
	c.mu.Unlock()
	s.wa.pins.Pin(dlgWA.InviteResponse)
	if err := c.answerPBX(dlgPBX, dlgWA, offer, waOffer, cryptos); err != nil {
		c.rejectPBX(err)
	}
}

// whatsAppInvite builds the INVITE to Meta: Request-URI on Meta's domain (an IP there gets 404),
// From on the SIP hostname configured for the number (else 403), sent to the edge address.
func (c *Call) whatsAppInvite(user string, offer *media.Description) *sipmsg.Request {
	edgeHost := c.number.SIP.Edge.Host
	uri := sipmsg.Uri{Scheme: "sip", User: user, Host: edgeHost, UriParams: sipmsg.NewParams()}
	uri.UriParams.Add("transport", "tls")
	req := sipmsg.NewRequest(sipmsg.INVITE, uri)
	req.SetTransport("TLS")
	req.SetDestination(c.number.EdgeAddress())
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: c.number.Number, Host: c.number.SIP.Hostname},
		Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: "sip", User: user, Host: edgeHost}})
	// Our own Call-ID up front, so the connection pinner can follow the dialog from its first request.
	callID := sipmsg.CallIDHeader(uuid.NewString())
	req.AppendHeader(&callID)
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer.Marshal())
	return req
}

// answerPBX completes a business-initiated call once WhatsApp answered.
func (c *Call) answerPBX(dlgPBX *sipgo.DialogServerSession, dlgWA *sipgo.DialogClientSession,
	offer, waOffer *media.Description, cryptos []media.Crypto) error {
	waAns, err := media.ParseDescription(dlgWA.InviteResponse.Body())
	if err != nil {
		_ = dlgWA.Ack(c.ctx)
		return sipErr(488, "Not Acceptable Here", "WhatsApp answered with unusable SDP", err)
	}
	if err := dlgWA.Ack(c.ctx); err != nil {
		return sipErr(503, "Service Unavailable", "ACK to WhatsApp failed", err)
	}
	codec, err := agreeBIC(offer, waAns)
	if err != nil {
		return err
	}
	var wa waMedia
	if c.web != nil {
		if err := c.web.SetAnswer(waAns); err != nil {
			return sipErr(488, "Not Acceptable Here", "WhatsApp's WebRTC answer: "+err.Error(), err)
		}
		if wa, err = c.connectWebRTC(c.ctx); err != nil {
			return err
		}
	} else {
		keys, err := answeredKeys("WhatsApp", cryptos, waAns.Crypto)
		if err != nil {
			return err
		}
		wa = c.sdesMedia(waAns, keys)
	}
	c.setState(stateAnswered)
	// WhatsApp answered: the maiden packet goes out now, before the PBX is even told.
	if err := c.startRelay(codec, wa, offer); err != nil {
		return err
	}
	answer := pbxAnswer(offer, codec, c.srv.publicIP, int(c.relayPBXPort()))
	if c.pbxKeys != nil {
		answer.Proto = offer.Proto
		answer.Crypto = []media.Crypto{c.pbxKeys.Local}
	}
	c.mu.Lock()
	c.pbxSDP, c.waSDP = answer, waOffer
	c.mu.Unlock()
	if c.ctx.Err() != nil {
		return sipErr(487, "Request Terminated", "", c.ctx.Err())
	}
	c.log.WithField("codec", codec.Name).Info("call answered")
	// Up from the moment our 200 leaves: WhatsApp hanging up before the PBX's ACK arrives
	// must still reach the PBX (found with Kamailio in front, where the ACK takes longer).
	c.mu.Lock()
	c.pbxUp = true
	c.mu.Unlock()
	if err := dlgPBX.RespondSDP(answer.Marshal()); err != nil {
		c.log.WithError(err).Warn("PBX did not confirm our 200 OK")
		c.hangup("no ACK from PBX")
		return nil
	}
	return nil
}

// answeredKeys finds which of our offered crypto lines the peer accepted (matched by tag,
// RFC 4568 §5.1.2). leg names the peer in errors.
func answeredKeys(leg string, offered, answered []media.Crypto) (*media.SRTPKeys, error) {
	if len(answered) == 0 {
		return nil, sipErr(488, "Not Acceptable Here", leg+" answer has no crypto", media.ErrNoCrypto)
	}
	remote := answered[0]
	for _, o := range offered {
		if o.Tag == remote.Tag && o.Suite == remote.Suite {
			return &media.SRTPKeys{Local: o, Remote: remote}, nil
		}
	}
	return nil, sipErr(488, "Not Acceptable Here",
		fmt.Sprintf("%s answered crypto tag %d %s that was not offered", leg, remote.Tag, remote.Suite), media.ErrNoCrypto)
}

// relayPBXPort is our RTP port on the PBX leg (the relay owns the endpoint once started).
func (c *Call) relayPBXPort() uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pbxPort
}

// rejectPBX answers the PBX's INVITE with a failure and ends the call.
func (c *Call) rejectPBX(err error) {
	se := asSIPError(err)
	c.mu.Lock()
	dlg := c.pbxIn
	c.mu.Unlock()
	if dlg != nil && c.getState() < stateAnswered {
		if err := dlg.Respond(se.Code, se.Reason, nil, errHeaders(se)...); err != nil {
			c.log.WithError(err).Debug("could not send final response to PBX")
		}
	}
	c.fail(err)
}

// whatsAppFailure turns Meta's final failure into what the PBX should hear, keeping Meta's
// Warning text (e.g. "No Approved Call Permission Found") so the PBX admin sees the cause.
func whatsAppFailure(err error) error {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		code, reason := mapFinalCode(de.Res.StatusCode)
		warn := wsip.Warning(de.Res)
		if warn == "" {
			warn = de.Res.Reason
		}
		return sipErr(code, reason, fmt.Sprintf("WhatsApp answered %d: %s", de.Res.StatusCode, warn), err)
	}
	return sipErr(503, "Service Unavailable", "WhatsApp SIP edge did not answer", err)
}

// onPBXReInvite answers a PBX re-INVITE (hold, unhold, codec or session refresh) locally with
// the mirrored direction. It never reaches Meta, whose edge answers re-INVITE with 500 (§5.4).
func (s *Server) onPBXReInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c := s.lookup(callIDOf(req))
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.answerPBXRefresh(req, tx)
}

// answerPBXRefresh answers a PBX re-INVITE or UPDATE with our PBX-leg SDP.
func (c *Call) answerPBXRefresh(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c.mu.Lock()
	local := c.pbxSDP
	c.mu.Unlock()
	if local == nil {
		respond(tx, req, 491, "Request Pending")
		return
	}
	answer := *local
	answer.Direction = media.DirSendRecv
	if len(req.Body()) > 0 {
		offer, err := media.ParseDescription(req.Body())
		if err != nil {
			c.log.WithError(err).Warn("unusable SDP in PBX re-INVITE")
			respondErr(tx, req, sipErr(488, "Not Acceptable Here", "SDP: "+err.Error(), err))
			return
		}
		// A changed PBX media address needs no action: the PBX leg latches onto where packets come from.
		answer.Direction = answerDirection(offer.Direction)
	}
	c.mu.Lock()
	local.SessionVer++
	answer.SessionVer = local.SessionVer
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"method": req.Method.String(), "direction": answer.Direction}).
		Info("PBX session refresh answered locally")
	var body []byte
	if req.Method == sipmsg.INVITE || len(req.Body()) > 0 {
		body = answer.Marshal()
	}
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", body)
	if body != nil {
		res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	}
	res.AppendHeader(&c.srv.pbx.contact)
	_ = tx.Respond(res)
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", hp, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("%q: bad port: %w", hp, err)
	}
	return strings.Trim(host, "[]"), port, nil
}
