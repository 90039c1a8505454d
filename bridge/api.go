package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/media"
	"github.com/wabridge/wabridge/metrics"
	wsip "github.com/wabridge/wabridge/sip"
)

// apiCallInfo is the WhatsApp call data of a connect webhook, for the PBX INVITE's headers.
func apiCallInfo(ev bsp.Event, num *config.Number) wsip.WhatsAppInfo {
	return wsip.WhatsAppInfo{WACID: ev.CallID, CallerNumber: "+" + strings.TrimPrefix(ev.From, "+"),
		BusinessNumber: num.Number, CTAPayload: ev.CTAPayload, DeeplinkPayload: ev.DeeplinkPayload}
}

// apiRingTimeout bounds how long a business-initiated call in API mode waits for WhatsApp to
// answer. Meta documents no ring timeout for BIC (whatsapp-calling.md §8 q1); a minute matches
// what PBX users expect of any outbound trunk.
const apiRingTimeout = 60 * time.Second

// apiState is the API-mode plumbing of a Server: one provider client per number and the
// webhook receivers that feed call events back.
type apiState struct {
	providers map[string]bsp.Provider // by E.164 number
	handlers  []*bsp.WebhookHandler
	mux       *http.ServeMux
	seq       *bsp.Sequencer

	mu           sync.Mutex
	calls        map[string]*Call  // by wacid, or "user:<digits>" while a Positus connect has no id yet
	sipPasswords map[string]string // sip.password_from_api, by number
}

// apiLeg is the WhatsApp leg of a call in API mode: call actions out, webhook events in.
type apiLeg struct {
	provider bsp.Provider
	ref      bsp.CallRef
	events   chan bsp.Event

	mu       sync.Mutex
	accepted bool // accept returned 200 (user-initiated) or WhatsApp answered (business-initiated)
	ended    bool // WhatsApp already ended the call (terminate webhook) or we sent terminate/reject
}

// setupAPI builds the provider clients and webhook receivers for the config's API numbers.
func (s *Server) setupAPI(cfg *config.Config) error {
	s.api = &apiState{providers: map[string]bsp.Provider{}, mux: http.NewServeMux(),
		seq: bsp.NewSequencer(0, 0), calls: map[string]*Call{}, sipPasswords: map[string]string{}}
	usedProviders := map[string]bool{}
	for i := range cfg.Numbers {
		n := &cfg.Numbers[i]
		if n.API.Provider == "" {
			continue
		}
		p, err := NewProvider(n, s.log)
		if err != nil {
			return fmt.Errorf("numbers[%d].api: %w", i, err)
		}
		s.api.providers[n.Number] = p
		if n.Mode == config.ModeAPI {
			usedProviders[n.API.Provider] = true
		}
	}
	if err := s.fetchSIPPasswords(cfg); err != nil {
		return err
	}
	if len(usedProviders) == 0 {
		return nil
	}
	verify, err := cfg.Webhook.VerifyToken()
	if err != nil {
		return err
	}
	secret, err := cfg.Webhook.AppSecret()
	if err != nil {
		return err
	}
	if err := s.metrics.Register(webhookCollector{s.api}); err != nil {
		return fmt.Errorf("webhook metrics: %w", err)
	}
	base := strings.TrimSuffix(cfg.Webhook.Path, "/")
	for name := range usedProviders {
		wc := bsp.WebhookConfig{Provider: name, AppSecret: secret, VerifyToken: verify,
			Known: s.knownAPINumber, OnEvent: s.onAPIEvent, Log: s.log.WithField("provider", name)}
		if bsp.SignatureHeaderFor(name) == "" {
			// A provider that does not sign its webhooks (Positus, docs/bsp.md): the verify
			// token travels in the URL instead (?token=...), and its bare envelope names no
			// number, so the URL is bound to the (first) number at that provider.
			wc.AppSecret, wc.URLToken = "", verify
			for i := range cfg.Numbers {
				if n := &cfg.Numbers[i]; n.Mode == config.ModeAPI && n.API.Provider == name {
					wc.Number, wc.PhoneNumberID = strings.TrimPrefix(n.Number, "+"), n.PhoneNumberID
					break
				}
			}
		}
		h, err := bsp.NewWebhookHandler(wc)
		if err != nil {
			return fmt.Errorf("webhook for %s: %w", name, err)
		}
		s.api.handlers = append(s.api.handlers, h)
		// Each provider has its own URL (its envelope and signature differ); Meta's is also
		// served on the bare path, which is what Meta's app dashboard is usually given.
		s.api.mux.Handle(base+"/"+name, h)
		if name == bsp.ProviderMeta {
			s.api.mux.Handle(base, h)
		}
	}
	return nil
}

// NewProvider is the provider client for a number's api block (call actions and settings).
func NewProvider(n *config.Number, log *logrus.Entry) (bsp.Provider, error) {
	return bsp.New(bsp.Config{
		Provider: n.API.Provider, BaseURL: n.API.BaseURL, APIVersion: n.API.APIVersion,
		PhoneNumberID: n.PhoneNumberID, DisplayNumber: strings.TrimPrefix(n.Number, "+"), WABAID: n.API.WABAID,
		Token: n.APIToken, Log: log.WithFields(logrus.Fields{"number": n.Number, "provider": n.API.Provider}),
	})
}

// fetchSIPPasswords reads the SIP password of numbers with sip.password_from_api from the
// settings API (GET settings?include_sip_credentials=true; the password is per number and app).
func (s *Server) fetchSIPPasswords(cfg *config.Config) error {
	for i := range cfg.Numbers {
		n := &cfg.Numbers[i]
		if n.Mode != config.ModeSIP || !n.SIP.PasswordFromAPI {
			continue
		}
		p := s.api.providers[n.Number]
		if p == nil {
			return fmt.Errorf("numbers[%d].sip.password_from_api: the number has no api block", i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		st, err := p.GetSettings(ctx, true)
		cancel()
		if err != nil {
			return fmt.Errorf("numbers[%d]: reading the SIP password from the settings API: %w", i, err)
		}
		var pw string
		if st.SIP != nil {
			for _, srv := range st.SIP.Servers {
				if srv.Password != "" && (srv.Hostname == "" || strings.EqualFold(srv.Hostname, n.SIP.Hostname)) {
					pw = string(srv.Password)
					break
				}
			}
		}
		if pw == "" {
			return fmt.Errorf("numbers[%d]: the settings API returned no SIP password for %s (is sip.servers set for this app?)", i, n.SIP.Hostname)
		}
		s.api.mu.Lock()
		s.api.sipPasswords[n.Number] = pw
		s.api.mu.Unlock()
		s.log.WithField("number", n.Number).Info("SIP password read from the settings API")
	}
	return nil
}

// sipPassword is the number's SIP password, from the config or from the settings API.
func (s *Server) sipPassword(n *config.Number) (string, error) {
	if !n.SIP.PasswordFromAPI {
		return n.SIPPassword()
	}
	s.api.mu.Lock()
	defer s.api.mu.Unlock()
	if pw, ok := s.api.sipPasswords[n.Number]; ok {
		return pw, nil
	}
	return "", fmt.Errorf("number %s: no SIP password from the settings API yet", n.Number)
}

// WebhookHandler serves the API-mode webhooks (nil when no number is in API mode). Mount it on
// the HTTP listener at webhook.path.
func (s *Server) WebhookHandler() http.Handler {
	if s.api == nil || len(s.api.handlers) == 0 {
		return nil
	}
	return s.api.mux
}

func (s *Server) closeAPI() {
	if s.api == nil {
		return
	}
	for _, h := range s.api.handlers {
		h.Close()
	}
}

// apiNumber finds the configured API number an event is for.
func (s *Server) apiNumber(phoneNumberID, display string) *config.Number {
	cfg := s.config()
	for i := range cfg.Numbers {
		n := &cfg.Numbers[i]
		if n.Mode != config.ModeAPI {
			continue
		}
		if (phoneNumberID != "" && n.PhoneNumberID == phoneNumberID) ||
			(display != "" && strings.TrimPrefix(n.Number, "+") == strings.TrimPrefix(display, "+")) {
			return n
		}
	}
	return nil
}

func (s *Server) knownAPINumber(phoneNumberID, display string) bool {
	return s.apiNumber(phoneNumberID, display) != nil
}

// onAPIEvent routes one webhook event. It runs on the webhook worker: it must not block.
func (s *Server) onAPIEvent(ev bsp.Event) {
	log := s.log.WithFields(logrus.Fields{"wacid": ev.CallID, "provider": ev.Provider, "event": string(ev.Kind),
		"status": ev.Status})
	if !s.api.seq.Admit(ev) {
		log.Info("webhook event dropped: repeated or out of order")
		return
	}
	if ev.Kind == bsp.EventConnect && ev.Direction == bsp.DirectionUserInitiated {
		s.startAPIUserInitiated(ev, log)
		return
	}
	s.api.mu.Lock()
	c := s.api.calls[ev.CallID]
	if c == nil && ev.CallID != "" {
		// A business-initiated call whose connect returned no id (Positus): the first webhook
		// names it; WhatsApp allows one call per business-user pair, so the user identifies it.
		if c = s.api.calls["user:"+ev.User()]; c != nil {
			delete(s.api.calls, "user:"+ev.User())
			s.api.calls[ev.CallID] = c
			c.api.mu.Lock()
			c.api.ref.ID = ev.CallID
			c.api.mu.Unlock()
		}
	}
	s.api.mu.Unlock()
	if c == nil {
		log.Info("webhook event for no call in progress: ignored")
		return
	}
	select {
	case c.api.events <- ev:
	default:
		log.Warn("call's event queue full: event dropped")
	}
}

func (s *Server) registerAPICall(key string, c *Call) {
	s.api.mu.Lock()
	s.api.calls[key] = c
	s.api.mu.Unlock()
}

func (s *Server) releaseAPICall(c *Call) {
	s.api.mu.Lock()
	for k, cc := range s.api.calls {
		if cc == c {
			delete(s.api.calls, k)
		}
	}
	s.api.mu.Unlock()
}

// startAPIUserInitiated handles a connect webhook carrying a WhatsApp user's offer.
func (s *Server) startAPIUserInitiated(ev bsp.Event, log *logrus.Entry) {
	num := s.apiNumber(ev.PhoneNumberID, ev.DisplayNumber)
	if num == nil {
		log.Warn("connect webhook for a number not configured in API mode")
		return
	}
	log = log.WithFields(logrus.Fields{"number": num.Number, "caller": "+" + ev.From, "leg": "whatsapp"})
	provider := s.api.providers[num.Number]
	ref := bsp.CallRef{ID: ev.CallID, User: ev.From}
	if err := s.admit(); err != nil {
		log.WithError(err).Warn("call refused")
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
			defer cancel()
			_ = provider.Reject(ctx, ref)
		}()
		return
	}
	c := newCall(s, UserInitiated, num, log)
	c.api = &apiLeg{provider: provider, ref: ref, events: make(chan bsp.Event, 16)}
	s.registerAPICall(ev.CallID, c)
	go c.runAPIUserInitiated(ev)
}

// runAPIUserInitiated: pre_accept with our answer at once (ICE and DTLS then run while the PBX
// rings, which cuts clipping, §4.10), INVITE the PBX, accept with the same SDP when it answers,
// and start media only after accept returned 200 (§2.2).
func (c *Call) runAPIUserInitiated(ev bsp.Event) {
	s := c.srv
	c.log.Info("user-initiated call offered (API)")
	offer, err := media.ParseDescription([]byte(ev.SDP))
	if err != nil {
		c.fail(sipErr(488, "Not Acceptable Here", "WhatsApp offer: "+err.Error(), err))
		return
	}
	opus, ok := findByName(offer.Codecs, media.CodecOpus)
	if !ok {
		c.fail(sipErr(488, "Not Acceptable Here", "WhatsApp offer has no Opus", media.ErrNoCodec))
		return
	}
	// The answer goes out before the PBX has chosen, so it is Opus (always offered by Meta).
	codecs := []media.Codec{opus}
	if te, ok := offer.DTMF(); ok {
		codecs = append(codecs, te)
	}
	if err := c.openMedia(); err != nil {
		c.fail(err)
		return
	}
	if err := c.newWebRTCLeg(); err != nil {
		c.fail(err)
		return
	}
	answer, err := c.web.Answer(offer, codecs)
	if err != nil {
		c.fail(sipErr(488, "Not Acceptable Here", "WhatsApp offer: "+err.Error(), err))
		return
	}
	sdp := string(c.withSSRC(answer).Marshal())
	start := time.Now()
	err = c.api.provider.PreAccept(c.ctx, c.api.ref, sdp)
	c.observe("pre_accept", start, err)
	if err != nil && !errors.Is(err, bsp.ErrUnsupported) {
		c.fail(providerFailure("pre_accept", err))
		return
	}
	type connected struct {
		wa  waMedia
		err error
	}
	connCh := make(chan connected, 1)
	go func() {
		wa, err := c.connectWebRTC(c.ctx)
		connCh <- connected{wa, err}
	}()

	inviteCtx, cancelInvite := context.WithCancel(c.ctx)
	defer cancelInvite()
	go c.watchAPIEvents(cancelInvite)

	pOffer, err := pbxOffer(&media.Description{Codecs: codecs}, s.publicIP, int(c.pbxPort), uint8(c.cfg.PBX.OpusPT), uint8(c.cfg.PBX.DTMFPT))
	if err != nil {
		c.fail(err)
		return
	}
	info := apiCallInfo(ev, c.number)
	pbxReq, err := c.pbxInvite(info, pOffer)
	if err != nil {
		c.fail(err)
		return
	}
	dlgPBX, err := s.pbx.dua.WriteInvite(inviteCtx, pbxReq)
	if err != nil {
		c.fail(sipErr(503, "Service Unavailable", "PBX unreachable", err))
		return
	}
	c.mu.Lock()
	c.pbxOut = dlgPBX
	c.mu.Unlock()
	s.register(callIDOf(pbxReq), c)
	if err := dlgPBX.WaitAnswer(inviteCtx, sipgo.AnswerOptions{}); err != nil {
		if c.ctx.Err() != nil || errors.Is(err, context.Canceled) {
			c.hangup("WhatsApp ended the call")
			return
		}
		c.fail(pbxFailure(err))
		return
	}
	c.mu.Lock()
	c.pbxUp = true
	c.pbxSDP = pOffer
	c.mu.Unlock()
	pbxAns, err := media.ParseDescription(dlgPBX.InviteResponse.Body())
	var codec audioCodec
	if err == nil {
		codec, err = agreeUIC(&media.Description{Codecs: codecs}, pbxAns)
	}
	_ = dlgPBX.Ack(c.ctx)
	if err != nil {
		c.fail(err)
		return
	}
	start = time.Now()
	err = c.api.provider.Accept(c.ctx, c.api.ref, sdp, "")
	c.observe("accept", start, err)
	if err != nil {
		c.fail(providerFailure("accept", err))
		return
	}
	c.api.mu.Lock()
	c.api.accepted = true
	c.api.mu.Unlock()
	res := <-connCh
	if res.err != nil {
		c.log.WithError(res.err).Error("WhatsApp media did not connect")
		c.fail(res.err)
		return
	}
	c.setState(stateAnswered)
	c.log.WithField("codec", codec.Name).Info("call answered")
	if err := c.startRelay(codec, res.wa, pbxAns); err != nil {
		c.log.WithError(err).Error("media relay failed")
		c.hangup("media relay failed")
	}
}

// watchAPIEvents ends a user-initiated API call when WhatsApp terminates it.
func (c *Call) watchAPIEvents(cancelInvite context.CancelFunc) {
	for {
		select {
		case ev := <-c.api.events:
			if ev.Kind == bsp.EventTerminate {
				c.api.mu.Lock()
				c.api.ended = true
				c.api.mu.Unlock()
				c.log.WithField("status", ev.Status).Info("WhatsApp terminated the call")
				cancelInvite()
				c.hangup("WhatsApp ended the call")
				return
			}
		case <-c.done:
			return
		}
	}
}

// runAPIBusinessInitiated: connect with our offer, wait for the answer SDP and the status
// webhooks, and answer the PBX when WhatsApp has accepted and media is up.
func (c *Call) runAPIBusinessInitiated(dlgPBX *sipgo.DialogServerSession, user string, pbxOffer *media.Description) {
	s := c.srv
	c.log.Info("business-initiated call offered (API)")
	if err := c.openMedia(); err != nil {
		c.rejectPBX(err)
		return
	}
	waOffer, err := waOfferSDES(pbxOffer, nil, s.publicIP, int(c.waEP.RTP.LocalAddr().Port()), nil)
	if err != nil {
		c.rejectPBX(err)
		return
	}
	if err := c.newWebRTCLeg(); err != nil {
		c.rejectPBX(err)
		return
	}
	offer, err := c.web.Offer(waOffer.Codecs)
	if err != nil {
		c.rejectPBX(sipErr(500, "Server Internal Error", "WebRTC offer", err))
		return
	}
	digits := strings.TrimPrefix(user, "+")
	if c.number.API.CheckPermission {
		start := time.Now()
		perm, err := c.api.provider.CallPermission(c.ctx, digits)
		c.observe("call_permission", start, err)
		switch {
		case errors.Is(err, bsp.ErrUnsupported):
			// The provider cannot tell: let connect find out.
		case err != nil:
			c.log.WithError(err).Warn("call permission check failed; trying connect anyway")
		case !perm.CanStartCall():
			c.api.mu.Lock()
			c.api.ended = true
			c.api.mu.Unlock()
			c.rejectPBX(sipErr(403, "Forbidden", "No Approved Call Permission Found (permission: "+perm.Status+")", nil))
			return
		}
	}
	c.api.ref.User = digits
	s.registerAPICall("user:"+digits, c)
	start := time.Now()
	id, err := c.api.provider.Connect(c.ctx, bsp.CallRequest{To: digits, SDPOffer: string(c.withSSRC(offer).Marshal())})
	c.observe("connect", start, err)
	if err != nil {
		c.api.mu.Lock()
		c.api.ended = true // nothing to terminate
		c.api.mu.Unlock()
		c.rejectPBX(providerFailure("connect", err))
		return
	}
	if id != "" {
		c.api.mu.Lock()
		c.api.ref.ID = id
		c.api.mu.Unlock()
		s.api.mu.Lock()
		delete(s.api.calls, "user:"+digits)
		s.api.calls[id] = c
		s.api.mu.Unlock()
		// c.log is read by other goroutines (BYE handlers): log the id rather than re-bind it.
		c.log.WithField("wacid", id).Info("WhatsApp call created by connect")
	}

	var (
		answered  *media.Description
		wa        waMedia
		connected bool
		accepted  bool
		connCh    = make(chan error, 1)
		ring      = time.NewTimer(apiRingTimeout)
	)
	defer ring.Stop()
	for !(connected && accepted) {
		select {
		case ev := <-c.api.events:
			switch {
			case ev.Kind == bsp.EventConnect && answered == nil:
				ans, err := media.ParseDescription([]byte(ev.SDP))
				if err == nil {
					err = c.web.SetAnswer(ans)
				}
				if err != nil {
					c.rejectPBX(sipErr(488, "Not Acceptable Here", "WhatsApp's answer: "+err.Error(), err))
					return
				}
				answered = ans
				go func() {
					var err error
					wa, err = c.connectWebRTC(c.ctx)
					connCh <- err
				}()
			case ev.Kind == bsp.EventStatus && ev.Status == bsp.StatusRinging:
				if c.setState(stateEarly) {
					_ = dlgPBX.Respond(180, "Ringing", nil)
				}
			case ev.Kind == bsp.EventStatus && ev.Status == bsp.StatusAccepted:
				accepted = true
			case ev.Kind == bsp.EventStatus && ev.Status == bsp.StatusRejected:
				c.rejectPBX(sipErr(603, "Decline", "the WhatsApp user declined", nil))
				return
			case ev.Kind == bsp.EventTerminate:
				c.api.mu.Lock()
				c.api.ended = true
				c.api.mu.Unlock()
				c.rejectPBX(terminateFailure(ev))
				return
			}
		case err := <-connCh:
			if err != nil {
				c.rejectPBX(err)
				return
			}
			connected = true
		case <-dlgPBX.Context().Done():
			c.hangup("canceled by PBX")
			return
		case <-ring.C:
			c.rejectPBX(sipErr(480, "Temporarily Unavailable", "WhatsApp user did not answer", nil))
			return
		case <-c.ctx.Done():
			return
		}
	}
	c.api.mu.Lock()
	c.api.accepted = true
	c.api.mu.Unlock()
	codec, err := agreeBIC(pbxOffer, answered)
	if err != nil {
		c.rejectPBX(err)
		return
	}
	c.setState(stateAnswered)
	if err := c.startRelay(codec, wa, pbxOffer); err != nil {
		c.rejectPBX(err)
		return
	}
	answer := pbxAnswer(pbxOffer, codec, s.publicIP, int(c.relayPBXPort()))
	if c.pbxKeys != nil {
		answer.Proto = pbxOffer.Proto
		answer.Crypto = []media.Crypto{c.pbxKeys.Local}
	}
	c.mu.Lock()
	c.pbxSDP = answer
	c.mu.Unlock()
	go c.watchAPIEvents(func() {})
	c.log.WithField("codec", codec.Name).Info("call answered")
	// Up from the moment our 200 leaves: WhatsApp hanging up before the PBX's ACK arrives
	// must still reach the PBX (found with Kamailio in front, where the ACK takes longer).
	c.mu.Lock()
	c.pbxUp = true
	c.mu.Unlock()
	if err := dlgPBX.RespondSDP(answer.Marshal()); err != nil {
		c.log.WithError(err).Warn("PBX did not confirm our 200 OK")
		c.hangup("no ACK from PBX")
		return
	}
}

// endAPILeg tells the provider the call is over: reject before accept, terminate after — always,
// since terminate affects billing (§0 fact 10). Called from hangup.
func (c *Call) endAPILeg() {
	c.api.mu.Lock()
	if c.api.ended {
		c.api.mu.Unlock()
		return
	}
	c.api.ended = true
	accepted, ref := c.api.accepted, c.api.ref
	c.api.mu.Unlock()
	if ref.ID == "" {
		return // a connect that never produced a call id
	}
	ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
	defer cancel()
	var err error
	action := "terminate"
	start := time.Now()
	if c.dir == UserInitiated && !accepted {
		action = "reject"
		err = c.api.provider.Reject(ctx, ref)
	} else {
		err = c.api.provider.Terminate(ctx, ref)
	}
	c.observe(action, start, err)
	if err != nil {
		c.log.WithError(err).WithField("action", action).Warn("provider call action failed")
		return
	}
	c.log.WithField("action", action).Info("WhatsApp leg ended through the provider")
}

// webhookCollector exports the webhook receivers' counters as
// wabridge_webhook_deliveries_total{provider, result}.
type webhookCollector struct{ api *apiState }

func (webhookCollector) Describe(ch chan<- *prometheus.Desc) { ch <- metrics.WebhookDeliveriesDesc() }

func (w webhookCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range w.api.handlers {
		st := h.Stats()
		for result, n := range map[string]uint64{"accepted": st.Deliveries, "event": st.Events, "duplicate": st.Duplicates,
			"unrouted": st.Unrouted, "unauthorized": st.Unauthorized, "forbidden": st.Forbidden,
			"too_large": st.TooLarge, "malformed": st.Malformed, "queue_full": st.QueueFull} {
			ch <- prometheus.MustNewConstMetric(metrics.WebhookDeliveriesDesc(), prometheus.CounterValue, float64(n), h.Provider(), result)
		}
	}
}

// observe times a provider call action for wabridge_provider_request_seconds.
func (c *Call) observe(action string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = strconv.Itoa(bsp.ToSIP(err).Code)
		if errors.Is(err, bsp.ErrUnsupported) {
			result = "unsupported"
		}
	}
	c.srv.metrics.ProviderRequests.WithLabelValues(c.api.provider.Name(), action, result).Observe(time.Since(start).Seconds())
}

// providerFailure gives a failed call action its SIP meaning (bsp's one table, §2.6).
func providerFailure(action string, err error) error {
	st := bsp.ToSIP(err)
	warn := action + " failed"
	if st.Warning != "" {
		warn += ": " + st.Warning
	}
	return sipErr(st.Code, st.Reason, warn, err)
}

// terminateFailure explains a terminate webhook that arrived before the call was answered.
func terminateFailure(ev bsp.Event) error {
	if len(ev.Errors) > 0 {
		e := ev.Errors[0]
		st := bsp.ToSIP(&e)
		return sipErr(st.Code, st.Reason, st.Warning, &e)
	}
	return sipErr(480, "Temporarily Unavailable", "WhatsApp ended the call before it was answered", nil)
}
