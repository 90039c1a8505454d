package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
	wsip "github.com/wabridge/wabridge/sip"
)

// noResponseGrace is how long a cancelled Dial still waits for a first response, so that it can
// CANCEL properly (see Dial). A live peer sends 100 Trying within 200 ms (RFC 3261 §17.2.1).
const noResponseGrace = time.Second

// DialOptions describes an outgoing call (the business calling a WhatsApp user through
// wabridge).
type DialOptions struct {
	// Target is where the INVITE goes: wabridge's PBX-side SIP listener.
	Target netip.AddrPort
	// User is the Request-URI and To user: the WhatsApp user's number in E.164 (+15551234567).
	User string
	// From is the From user: an extension or the business number; "pbxsim" when empty.
	From string
	// Headers are added to the INVITE, e.g. {"X-WA-Business-Number": "+15550001111"}. Values
	// with control characters are refused (CRLF injection).
	Headers map[string]string
	// Codecs are offered in this order; Config.Codecs when empty.
	Codecs []media.Codec
	// Transport is "udp" (default) or "tcp" (needs Config.ListenTCP).
	Transport string
}

// CallError is a call that failed with a SIP final response.
type CallError struct {
	Code   int
	Reason string
	// Warning is the text of the response's Warning header (RFC 3261 §20.43), where wabridge
	// and Meta explain a failure; "" when there is none.
	Warning string
	// Err is the cause on our side when there is one: context.Canceled when we cancelled the
	// call (Code 487).
	Err error
}

func (e *CallError) Error() string {
	s := fmt.Sprintf("pbxsim: call failed: %d %s", e.Code, e.Reason)
	if e.Warning != "" {
		s += " (" + e.Warning + ")"
	}
	return s
}

func (e *CallError) Unwrap() error { return e.Err }

// Dial places a call and returns once it is answered; the ACK has been sent and media runs.
//
// A final failure response returns a *CallError. Cancelling ctx before the answer sends CANCEL
// and returns a *CallError with Code 487 (when the peer confirms with 487, as it must) that
// wraps ctx's error. A peer that has not responded at all cannot be cancelled (RFC 3261 §9.1):
// Dial then gives up one second after ctx ends, with an error wrapping ctx's. Provisional
// responses (100, 180, 183) are logged and otherwise waited through. Close aborts a Dial in
// progress the same way.
func (p *PBX) Dial(ctx context.Context, o DialOptions) (*Call, error) {
	if !p.enter() {
		return nil, ErrClosed
	}
	defer p.leave()
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if !started {
		return nil, errors.New("pbxsim: Dial before Start")
	}
	req, dua, codecs, err := p.newInvite(o)
	if err != nil {
		return nil, err
	}
	// Close aborts a dial in progress like the caller's ctx would.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	callID := callIDOf(req)
	log := p.log.WithFields(logrus.Fields{"call_id": callID, "to": o.User})
	peer, err := newRTPPeer(p.cfg.MediaIP, log)
	if err != nil {
		return nil, err
	}
	offer := localDescription(peer.LocalAddr(), codecs)
	body := offer.Marshal()
	req.SetBody(body)

	log.WithField("target", o.Target.String()).Info("dialling")
	dlg, err := dua.WriteInvite(ctx, req)
	if err != nil {
		peer.Close()
		return nil, fmt.Errorf("pbxsim: sending INVITE: %w", err)
	}
	// WaitAnswer sends CANCEL when its context ends. RFC 3261 §9.1 allows a CANCEL only after a
	// provisional response, so sipgo first waits for one, for up to Timer B (32 s) if the peer
	// is dead. Its context is therefore ours with a twist: when nothing at all has come back
	// noResponseGrace after ctx ended, the wait is abandoned without CANCEL (sipgo's
	// WaitAnswerForceCancelErr), which keeps Dial bounded by ctx.
	firstResponse, waitDone := make(chan struct{}), make(chan struct{})
	var once sync.Once
	waitCtx, stopWait := context.WithCancelCause(context.Background())
	defer stopWait(nil)
	stopAfter := context.AfterFunc(ctx, func() {
		grace := time.NewTimer(noResponseGrace)
		defer grace.Stop()
		select {
		case <-firstResponse:
			stopWait(context.Cause(ctx))
		case <-grace.C:
			stopWait(sipgo.WaitAnswerForceCancelErr)
		case <-waitDone:
		}
	})
	defer stopAfter()
	err = dlg.WaitAnswer(waitCtx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		once.Do(func() { close(firstResponse) })
		if res.IsProvisional() {
			log.WithField("code", res.StatusCode).Debug("provisional response")
		}
		return nil
	}})
	close(waitDone)
	if err != nil {
		peer.Close()
		return nil, p.dialFailed(ctx, log, dlg, err)
	}

	res := dlg.InviteResponse
	c := newCall(p, callID, log)
	c.Outgoing, c.RequestUser, c.Headers = true, o.User, waHeaders(res.Headers())
	c.From, c.To = req.From().Address.User, req.To().Address.User
	c.uac, c.Local, c.localSDP, c.Media = dlg, offer, body, peer
	c.localTag, _ = req.From().Params.Get("tag")
	c.state = stateAnswered
	close(c.answered)

	answer, perr := media.ParseDescription(res.Body())
	if perr == nil {
		c.Remote = answer
		c.codecs = answer.Codecs
		peer.configure(answer.RTPAddr(), answer.Codecs)
	}

	// Registered before the ACK goes out and under the call's lock, so a BYE the peer sends
	// right after its 200 finds the call and waits for the ACK to be on its way.
	c.mu.Lock()
	p.register(c)
	ackErr := dlg.Ack(ctx)
	c.mu.Unlock()
	if ackErr != nil {
		log.WithError(ackErr).Warn("sending ACK failed")
	}
	if perr != nil {
		// RFC 3261 §13.2.2.4 with RFC 3264 §5: an answer we cannot use still gets its ACK, then
		// the session is ended with BYE.
		log.WithError(perr).Warn("answer SDP unusable; hanging up")
		byeCtx, byeCancel := context.WithTimeout(p.ctx, closeByeTimeout)
		_ = c.hangup(byeCtx, EndedFailed)
		byeCancel()
		return nil, &CallError{Code: sip.StatusNotAcceptableHere, Reason: "Not Acceptable Here",
			Warning: "unusable SDP answer: " + perr.Error(), Err: perr}
	}
	log.WithFields(logrus.Fields{"codecs": codecList(c.codecs), "remote_media": peer.RemoteAddr().String()}).Info("call answered")
	return c, nil
}

// newInvite builds the INVITE for o (without body) and picks the dialog UA and the codecs to
// offer.
func (p *PBX) newInvite(o DialOptions) (*sip.Request, *sipgo.DialogUA, []media.Codec, error) {
	if !o.Target.IsValid() {
		return nil, nil, nil, errors.New("pbxsim: DialOptions.Target is not set")
	}
	if o.User == "" || strings.ContainsAny(o.User, "@:;<>\" \t\r\n") {
		return nil, nil, nil, fmt.Errorf("pbxsim: DialOptions.User %q is not a SIP URI user", o.User)
	}
	from := o.From
	if from == "" {
		from = userAgent
	}
	if strings.ContainsAny(from, "@:;<>\" \t\r\n") {
		return nil, nil, nil, fmt.Errorf("pbxsim: DialOptions.From %q is not a SIP URI user", o.From)
	}
	codecs := o.Codecs
	if len(codecs) == 0 {
		codecs = p.cfg.Codecs
	}
	if _, ok := firstAudio(codecs); !ok {
		return nil, nil, nil, errors.New("pbxsim: DialOptions.Codecs has no audio codec")
	}
	var dua *sipgo.DialogUA
	var transport string
	switch strings.ToLower(o.Transport) {
	case "", "udp":
		dua, transport = p.udpDUA, "UDP"
	case "tcp":
		if p.tcpDUA == nil {
			return nil, nil, nil, errors.New("pbxsim: TCP dial needs Config.ListenTCP")
		}
		dua, transport = p.tcpDUA, "TCP"
	default:
		return nil, nil, nil, fmt.Errorf("pbxsim: transport %q, want udp or tcp", o.Transport)
	}

	host := o.Target.Addr().String()
	ruri := sip.Uri{Scheme: "sip", User: o.User, Host: host, Port: int(o.Target.Port())}
	if transport == "TCP" {
		ruri.UriParams = sip.NewParams()
		ruri.UriParams.Add("transport", "tcp")
	}
	req := sip.NewRequest(sip.INVITE, ruri)
	req.SetTransport(transport)
	fromHdr := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: p.host}, Params: sip.NewParams()}
	fromHdr.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(fromHdr)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: o.User, Host: host}})
	// Sorted so the INVITE is the same from run to run (maps iterate randomly).
	names := make([]string, 0, len(o.Headers))
	for name := range o.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if name == "" || strings.ContainsAny(name, ": \t\r\n") {
			return nil, nil, nil, fmt.Errorf("pbxsim: header name %q is invalid", name)
		}
		v, err := wsip.SafeHeaderValue(o.Headers[name])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("pbxsim: header %s: %w", name, err)
		}
		req.AppendHeader(sip.NewHeader(name, v))
	}
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	// sipgo fills Via, Call-ID, CSeq and Max-Forwards when the request is sent; the Call-ID is
	// set here because the logs need it before.
	callID := sip.CallIDHeader(sip.GenerateTagN(24) + "@" + p.host)
	req.AppendHeader(&callID)
	return req, dua, codecs, nil
}

// dialFailed turns WaitAnswer's error into Dial's.
func (p *PBX) dialFailed(ctx context.Context, log *logrus.Entry, dlg *sipgo.DialogClientSession, err error) error {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		ce := &CallError{Code: de.Res.StatusCode, Reason: de.Res.Reason, Warning: wsip.Warning(de.Res)}
		log.WithFields(logrus.Fields{"code": ce.Code, "reason": ce.Reason, "warning": ce.Warning}).Info("call failed")
		return ce
	}
	if ctx.Err() != nil {
		// WaitAnswer sent CANCEL and waited for the INVITE's final response.
		res := dlg.InviteResponse
		switch {
		case res != nil && res.StatusCode == sip.StatusRequestTerminated:
			log.Info("call cancelled (487)")
			return &CallError{Code: res.StatusCode, Reason: res.Reason, Warning: wsip.Warning(res), Err: ctx.Err()}
		case res != nil && res.IsSuccess():
			// The 200 crossed our CANCEL: the call exists at the far end, so confirm and end it
			// (RFC 3261 §9.1 leaves the UAC to send BYE).
			log.Info("200 OK crossed our CANCEL; sending ACK and BYE")
			byeCtx, cancel := context.WithTimeout(context.Background(), closeByeTimeout)
			defer cancel()
			_ = dlg.Ack(byeCtx)
			_ = dlg.Bye(byeCtx)
			return fmt.Errorf("pbxsim: call cancelled after it was answered: %w", ctx.Err())
		case res != nil && !res.IsProvisional():
			return &CallError{Code: res.StatusCode, Reason: res.Reason, Warning: wsip.Warning(res), Err: ctx.Err()}
		case res == nil:
			log.Info("no response before the dial was cancelled")
			return fmt.Errorf("pbxsim: no response to INVITE: %w", ctx.Err())
		}
	}
	log.WithError(err).Info("call failed")
	return fmt.Errorf("pbxsim: INVITE: %w", err)
}
