package wasim

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/wabridge/wabridge/media"
)

// DialOptions describes a user-initiated call: a WhatsApp user calling a business number.
type DialOptions struct {
	// Target is wabridge's SIP/TLS listener.
	Target netip.AddrPort
	// ServerName is the TLS name to verify and the Request-URI host: the number's
	// configured SIP hostname (EdgeConfig.Numbers[Business].Hostname when empty).
	ServerName string
	// RootCAs verifies wabridge's certificate (system roots when nil).
	RootCAs *x509.CertPool
	// Business is the called business number and User the calling WhatsApp user, both E.164
	// with '+'.
	Business, User string
	// Password overrides the number's SIP password for answering wabridge's challenge (to
	// test wrong passwords). Empty: EdgeConfig.Numbers[Business].Password.
	Password string
	// CTAPayload and DeeplinkPayload become x-wa-meta-cta-payload and
	// x-wa-meta-deeplink-payload when set.
	CTAPayload, DeeplinkPayload string
	// UserParams are the number's request_uri_user_params, appended to the Request-URI user
	// as ;k=v (sorted by key).
	UserParams map[string]string
	// Suites are the SDES suites offered, in order (when empty: AES_CM_128_HMAC_SHA1_80,
	// then AES_CM_128_HMAC_SHA1_32). Ignored for DTLS numbers (Number.SRTP), which offer
	// Meta's WebRTC profile instead.
	Suites []string
	// AdditionalCodecs adds PCMA and/or PCMU to the offer (calling.audio.additional_codecs).
	AdditionalCodecs []string
	// EditOffer, when set, rewrites the SDP offer before it is sent. Tests use it to send what a
	// broken or future edge might (no crypto, an unknown suite, a WebRTC profile, garbage) and
	// check that wabridge refuses it with 488 and a reason.
	EditOffer func(sdp []byte) []byte
}

// mediaBeforeAnswerSlack: media that arrives this long before the edge processes the 2xx was
// certainly sent before wabridge answered. A packet sent right after the 200 OK can overtake
// it (SIP and RTP take different paths, and sipgo hands responses up in goroutines), so the
// margin is generous: early media ahead of a ringing phase is what this catches.
const mediaBeforeAnswerSlack = time.Second

// noBuild keeps sipgo from adding or changing headers of a request the edge built itself.
func noBuild(*sipgo.Client, *sip.Request) error { return nil }

// Dial places a user-initiated call to wabridge and returns when it is answered (media
// connected) or has failed. The INVITE is shaped like Meta's (whatsapp-calling.md §5.2); a
// 401/407 challenge is answered once with the number's credentials. Cancelling ctx before
// the answer sends CANCEL. The SDP offer follows the number's key exchange: RTP/SAVP with
// a=crypto for SDES numbers, Meta's ICE-lite + DTLS-SRTP offer for DTLS numbers (then
// Call.Media is a *WebRTCPeer, and the business must answer as a full ICE agent).
//
// Errors: *CallError (errors.As) for a non-2xx final response; ErrViolation (errors.Is)
// when wabridge answered but broke a rule that kills real calls (e.g. the Record-Route set
// was not preserved, a session timer was requested, the SDP answer is unusable), in which
// case the edge ACKs and hangs up. Once the INVITE was sent the Call is returned even with
// an error, so its Violations and EndedBy can be inspected.
func (e *Edge) Dial(ctx context.Context, o DialOptions) (*Call, error) {
	if e.cli == nil {
		return nil, errors.New("wasim: Dial before Listen")
	}
	if !isE164(o.Business) || !isE164(o.User) {
		return nil, fmt.Errorf("wasim: business %q and user %q must be E.164 with '+'", o.Business, o.User)
	}
	if !o.Target.IsValid() {
		return nil, errors.New("wasim: no target address")
	}
	num := e.cfg.Numbers[o.Business]
	password := o.Password
	if password == "" {
		password = num.Password
	}
	serverName := o.ServerName
	if serverName == "" {
		serverName = num.Hostname
	}
	if serverName == "" {
		return nil, fmt.Errorf("wasim: no ServerName and %s is not configured", o.Business)
	}
	userPart, err := requestURIUser(o.Business, o.UserParams)
	if err != nil {
		return nil, err
	}
	for name, v := range map[string]string{headerCTAPayload: o.CTAPayload, headerDeeplinkPayload: o.DeeplinkPayload} {
		if err := safeHeaderValue(name, v); err != nil {
			return nil, err
		}
	}
	suites := o.Suites
	if len(suites) == 0 {
		suites = defaultOfferSuites()
	}
	codecs, err := metaCodecs(o.AdditionalCodecs)
	if err != nil {
		return nil, err
	}
	var cryptos []media.Crypto
	var peer Media
	if num.dtls() {
		peer, err = NewWebRTCPeer(WebRTCPeerConfig{Log: e.log, IPs: webrtcIPs(e.addr.Addr()), Codecs: codecs})
	} else {
		cryptos = make([]media.Crypto, 0, len(suites))
		for i, s := range suites {
			c, err := media.NewCrypto(i+1, s)
			if err != nil {
				return nil, fmt.Errorf("wasim: offer suite: %w", err)
			}
			cryptos = append(cryptos, c)
		}
		peer, err = NewPeer(PeerConfig{Log: e.log, IP: e.addr.Addr()})
	}
	if err != nil {
		return nil, err
	}
	wacid := newWACID()
	c := e.newCall(UserInitiated, o.Business, o.User, wacid, callIDPrefix+wacid, peer)
	conn, err := e.upstreamFor(ctx, o.Target, serverName, o.RootCAs, c)
	if err != nil {
		_ = peer.Close()
		return nil, err
	}
	local := conn.LocalAddr().(*net.TCPAddr)

	from := &sip.FromHeader{
		DisplayName: o.User[1:],
		Address:     sip.Uri{Scheme: "sip", User: o.User, Host: MetaDomain},
		Params:      sip.HeaderParams{{K: "tag", V: newTag()}},
	}
	req := sip.NewRequest(sip.INVITE, sip.Uri{
		Scheme: "sip", User: userPart, Host: serverName,
		UriParams: sip.HeaderParams{{K: "transport", V: "tls"}},
	})
	for _, rr := range e.rrInvite {
		req.AppendHeader(sip.HeaderClone(rr))
	}
	maxFwd := sip.MaxForwardsHeader(69) // one hop used by Meta's proxy
	req.AppendHeader(&maxFwd)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: o.Business, Host: serverName}})
	req.AppendHeader(e.contact(o.User))
	callID := sip.CallIDHeader(c.CallID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: randUint32()&0x7fff + 1, MethodName: sip.INVITE})
	req.AppendHeader(sip.NewHeader(headerExternalDomain, MetaDomain))
	req.AppendHeader(sip.NewHeader(headerWACID, wacid))
	if o.CTAPayload != "" {
		req.AppendHeader(sip.NewHeader(headerCTAPayload, o.CTAPayload))
	}
	if o.DeeplinkPayload != "" {
		req.AppendHeader(sip.NewHeader(headerDeeplinkPayload, o.DeeplinkPayload))
	}
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("User-Agent", userAgent))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	var offer []byte
	if c.webrtc != nil {
		if offer, err = c.webrtc.Offer(ctx); err != nil {
			_ = peer.Close()
			return nil, err
		}
	} else {
		offer = metaSDP(c.sdes.LocalAddr(), uint64(randUint32()), codecs, cryptos, c.sdes.SSRC())
	}
	if o.EditOffer != nil {
		offer = o.EditOffer(offer)
	}
	req.SetBody(offer)
	req.SetTransport("TLS")
	req.SetDestination(o.Target.String())
	req.Laddr = sip.Addr{IP: local.IP, Port: local.Port, Hostname: local.IP.String()}

	c.localHdr = from
	c.dest = o.Target.String()
	c.laddr = req.Laddr
	c.InviteRequest = req
	if err := e.register(c); err != nil {
		_ = peer.Close()
		return nil, err
	}
	c.log.WithField("target", o.Target.String()).Info("user-initiated call: sending INVITE")
	digestURI := "sip:" + o.Business + "@" + serverName // Meta's form, without parameters (§5.2)
	return c.dial(ctx, req, o.Business[1:], password, digestURI, codecs, cryptos)
}

// requestURIUser appends request_uri_user_params to the number (§1.2).
func requestURIUser(number string, params map[string]string) (string, error) {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(number)
	for _, k := range keys {
		v := params[k]
		if k == "" || strings.ContainsAny(k+v, ";@=?&<> \t\r\n\"") || len(k) > 128 || len(v) > 128 {
			return "", fmt.Errorf("wasim: Request-URI user param %q=%q is not usable", k, v)
		}
		b.WriteString(";" + k + "=" + v)
	}
	return b.String(), nil
}

// dial runs the INVITE transaction(s) and checks the answer.
func (c *Call) dial(ctx context.Context, base *sip.Request, username, password, digestURI string, codecs []media.Codec, cryptos []media.Crypto) (*Call, error) {
	authTried := false
	var res *sip.Response
	for {
		inv := base.Clone()
		c.InviteRequest = inv
		c.mu.Lock()
		c.inviteCSeq, c.cseq = inv.CSeq().SeqNo, inv.CSeq().SeqNo
		c.mu.Unlock()
		var cancelled bool
		var err error
		res, cancelled, err = c.invite(ctx, inv)
		switch {
		case err != nil:
			reason := EndedFailed
			if cancelled {
				reason = EndedCancel
			}
			c.end(reason)
			return c, err
		case res.IsSuccess() && cancelled:
			// The answer crossed our CANCEL: confirm and hang up at once.
			c.establish(res)
			c.ack(res)
			byeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = c.request(byeCtx, sip.BYE, sip.NewHeader(headerWACID, c.WACID), sip.NewHeader(headerCallDuration, "0"))
			cancel()
			c.end(EndedCancel)
			return c, fmt.Errorf("wasim: call cancelled: %w", context.Cause(ctx))
		case res.IsSuccess():
		case (res.StatusCode == sip.StatusProxyAuthRequired || res.StatusCode == sip.StatusUnauthorized) && !authTried && !cancelled:
			authTried = true
			name, value, err := clientCredentials(res, sip.INVITE.String(), digestURI, username, password)
			if err != nil {
				c.end(EndedRejected)
				return c, errors.Join(err, &CallError{Code: res.StatusCode, Reason: res.Reason, Warning: warningText(res)})
			}
			base.RemoveHeader(name)
			base.AppendHeader(sip.NewHeader(name, value))
			base.CSeq().SeqNo++
			continue
		default:
			if !c.stream.firstRawPacketAt().IsZero() {
				c.violate("media received on a call that was never answered (%d %s)", res.StatusCode, res.Reason)
			}
			ce := &CallError{Code: res.StatusCode, Reason: res.Reason, Warning: warningText(res)}
			if cancelled {
				c.end(EndedCancel)
				return c, errors.Join(fmt.Errorf("wasim: call cancelled: %w", context.Cause(ctx)), ce)
			}
			c.end(EndedRejected)
			return c, ce
		}
		break
	}
	return c.answered2xx(res, codecs, cryptos)
}

// establish records wabridge's side of the dialog from its 2xx.
func (c *Call) establish(res *sip.Response) {
	c.mu.Lock()
	if to := res.To(); to != nil {
		c.remoteHdr = sip.HeaderClone(to).(*sip.ToHeader)
	}
	if ct := res.Contact(); ct != nil {
		c.remoteTarget = *ct.Address.Clone()
	} else {
		c.remoteTarget = *c.InviteRequest.Recipient.Clone()
	}
	c.mu.Unlock()
	c.markAnswered(res, false)
}

// answered2xx checks wabridge's 2xx strictly, ACKs it and starts media.
func (c *Call) answered2xx(res *sip.Response, codecs []media.Codec, cryptos []media.Crypto) (*Call, error) {
	now := time.Now()
	c.establish(res)

	if first := c.stream.firstRawPacketAt(); !first.IsZero() && now.Sub(first) > mediaBeforeAnswerSlack {
		c.violate("media before answer: first packet %s before the 200 OK (the user's call timer starts early)",
			now.Sub(first).Round(time.Millisecond))
	}
	var fatal []string
	if got, want := headerValues(res, "Record-Route"), c.edge.routeSet(); !slices.Equal(got, want) {
		fatal = append(fatal, fmt.Sprintf("Record-Route not preserved in the 200 OK: got %q, want %q (Meta's ACK never arrives; the call dies at ~32 s)", got, want))
	}
	if res.GetHeader("Session-Expires") != nil || hasToken(res, "Require", "timer") {
		fatal = append(fatal, "session timer requested in the 200 OK (Meta answers refreshes with 500)")
	}
	if res.Contact() == nil {
		fatal = append(fatal, "200 OK without Contact")
	}
	if to := res.To(); to == nil || !to.Params.Has("tag") {
		fatal = append(fatal, "200 OK without To tag")
	}
	if c.webrtc != nil {
		_, problems, notes := checkWebRTCAnswer(res.Body(), codecs)
		fatal = append(fatal, problems...)
		for _, n := range notes {
			c.violate("%s", n)
		}
		if len(fatal) == 0 {
			if err := c.webrtc.Accept(res.Body()); err != nil {
				fatal = append(fatal, fmt.Sprintf("SDP answer unusable: %v", err))
			}
		}
	} else {
		answer, accepted, problems := checkAnswer(res.Body(), codecs, cryptos)
		fatal = append(fatal, problems...)
		if len(fatal) == 0 {
			if err := c.sdes.Connect(Link{Remote: answer.RTPAddr(), LocalKey: accepted, RemoteKey: answer.Crypto[0], Codecs: answer.Codecs}); err != nil {
				fatal = append(fatal, fmt.Sprintf("SDP answer unusable: %v", err))
			}
		}
	}
	c.ack(res)
	if len(fatal) == 0 {
		c.log.Info("user-initiated call answered")
		return c, nil
	}
	for _, v := range fatal {
		c.violate("%s", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Hangup(ctx)
	return c, fmt.Errorf("%w: %s", ErrViolation, strings.Join(fatal, "; "))
}

// ack sends the ACK for a 2xx straight to wabridge's Contact over the dialog's connection,
// without Route headers: Meta's proxies consume their own entries.
func (c *Call) ack(res *sip.Response) {
	c.mu.Lock()
	ack := sip.NewRequest(sip.ACK, *c.remoteTarget.Clone())
	ack.AppendHeader(sip.HeaderClone(c.localHdr))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	callID := sip.CallIDHeader(c.CallID)
	ack.AppendHeader(&callID)
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: c.inviteCSeq, MethodName: sip.ACK})
	maxFwd := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&maxFwd)
	ack.AppendHeader(sip.NewHeader("User-Agent", userAgent))
	ack.SetBody(nil)
	ack.SetTransport("TLS")
	ack.SetDestination(c.dest)
	ack.Laddr = c.laddr
	c.mu.Unlock()
	if err := c.edge.cli.WriteRequest(ack, sipgo.ClientRequestAddVia); err != nil {
		c.log.WithError(err).Warn("send ACK failed")
	}
}

// invite runs one INVITE client transaction until its final response. When ctx ends first
// it CANCELs (after a provisional response, RFC 3261 §9.1) and returns the final response
// that follows (normally 487) with cancelled set.
func (c *Call) invite(ctx context.Context, inv *sip.Request) (*sip.Response, bool, error) {
	e := c.edge
	tx, err := e.cli.TransactionRequest(context.Background(), inv, sipgo.ClientRequestAddVia)
	if err != nil {
		return nil, false, fmt.Errorf("wasim: send INVITE: %w", err)
	}
	defer tx.Terminate()
	provisional := false
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				provisional = true
				c.log.WithField("code", res.StatusCode).Debug("provisional response")
				continue
			}
			return res, false, nil
		case <-tx.Done():
			return nil, false, fmt.Errorf("wasim: INVITE transaction: %w", tx.Err())
		case <-ctx.Done():
			return c.cancelInvite(tx, inv, provisional)
		case <-e.closeCh:
			return c.cancelInvite(tx, inv, provisional)
		}
	}
}

func (c *Call) cancelInvite(tx sip.ClientTransaction, inv *sip.Request, provisional bool) (*sip.Response, bool, error) {
	timeout := time.NewTimer(64 * sip.T1)
	defer timeout.Stop()
	for !provisional {
		select {
		case res := <-tx.Responses():
			if !res.IsProvisional() {
				return res, true, nil
			}
			provisional = true
		case <-tx.Done():
			return nil, true, fmt.Errorf("wasim: INVITE transaction: %w", tx.Err())
		case <-timeout.C:
			return nil, true, errors.New("wasim: no response to INVITE to cancel")
		}
	}

	cancelReq := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	cancelReq.AppendHeader(sip.HeaderClone(inv.Via())) // same branch as the INVITE (RFC 3261 §9.1)
	cancelReq.AppendHeader(sip.HeaderClone(inv.From()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.To()))
	cancelReq.AppendHeader(sip.HeaderClone(inv.CallID()))
	cancelReq.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	maxFwd := sip.MaxForwardsHeader(70)
	cancelReq.AppendHeader(&maxFwd)
	cancelReq.AppendHeader(sip.NewHeader("User-Agent", userAgent))
	cancelReq.SetBody(nil)
	cancelReq.SetTransport("TLS")
	cancelReq.SetDestination(inv.Destination())
	cancelReq.Laddr = inv.Laddr
	ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
	defer cancel()
	ctx2, err := c.edge.cli.TransactionRequest(ctx, cancelReq, noBuild)
	if err != nil {
		return nil, true, fmt.Errorf("wasim: send CANCEL: %w", err)
	}
	defer ctx2.Terminate()
	c.log.Info("user-initiated call: CANCEL sent")
	for {
		select {
		case res := <-tx.Responses():
			if !res.IsProvisional() {
				return res, true, nil
			}
		case <-ctx2.Responses():
		case <-tx.Done():
			return nil, true, fmt.Errorf("wasim: INVITE transaction after CANCEL: %w", tx.Err())
		case <-timeout.C:
			return nil, true, errors.New("wasim: no final response after CANCEL")
		}
	}
}
