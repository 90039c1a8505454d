package bridge

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/media"
	"github.com/wabridge/wabridge/metrics"
)

// Direction says who placed the call.
type Direction string

const (
	UserInitiated     Direction = "user-initiated"     // WhatsApp user → business (Meta INVITEs us)
	BusinessInitiated Direction = "business-initiated" // PBX → WhatsApp user (we INVITE Meta)
)

// callState is one call's life. Transitions only move forward and each is logged once.
type callState int

const (
	stateOffered  callState = iota // INVITE received, other leg not yet answering
	stateEarly                     // other leg sent a provisional response
	stateAnswered                  // both legs answered, media flowing
	stateEnding                    // hanging up
	stateEnded
)

func (s callState) String() string {
	return [...]string{"offered", "early", "answered", "ending", "ended"}[s]
}

// Call joins one WhatsApp leg and one PBX leg. The INVITE handler goroutine drives setup; after
// that, BYE handlers and the relay's inactivity timer may end it. Every state change happens under
// mu, and every blocking SIP operation happens outside it.
type Call struct {
	srv    *Server
	cfg    *config.Config // the config when the call started: a reload does not change a call midway
	dir    Direction
	number *config.Number
	log    *logrus.Entry

	ctx    context.Context // ends when the call ends; cancels pending INVITEs toward the other leg
	cancel context.CancelFunc

	mu        sync.Mutex
	state     callState
	started   time.Time
	answered  time.Time
	endReason string
	outcome   string // metrics label: "answered", the failure's SIP code, or "canceled"

	// Exactly one of each pair is set, depending on the direction.
	waIn   *sipgo.DialogServerSession
	waOut  *sipgo.DialogClientSession
	pbxIn  *sipgo.DialogServerSession
	pbxOut *sipgo.DialogClientSession

	waEP, pbxEP *media.Endpoint
	pbxPort     uint16           // our RTP port on the PBX leg
	pbxKeys     *media.SRTPKeys  // SDES toward the PBX (pbx.srtp, or a PBX that offers RTP/SAVP); nil: plain RTP
	web         *media.WebRTCLeg // DTLS numbers: the ICE + DTLS leg, which owns the WhatsApp endpoint
	api         *apiLeg          // API-mode numbers: call actions and webhook events instead of SIP
	ssrc        uint32           // the one SSRC we send toward WhatsApp
	waCallID    string
	relay       *media.Relay
	pbxSDP      *media.Description // our current SDP on the PBX leg (answers PBX re-INVITEs)
	waSDP       *media.Description // our SDP on the WhatsApp leg

	waUp, pbxUp bool // the leg has an established dialog that still needs a BYE
	done        chan struct{}
}

func newCall(s *Server, dir Direction, num *config.Number, log *logrus.Entry) *Call {
	ctx, cancel := context.WithCancel(s.ctx)
	s.metrics.ActiveCalls.WithLabelValues(string(dir), string(num.Mode)).Inc()
	return &Call{srv: s, cfg: s.config(), dir: dir, number: num, ssrc: randomSSRC(), log: log.WithField("direction", string(dir)),
		ctx: ctx, cancel: cancel, started: time.Now(), done: make(chan struct{})}
}

// provider names the WhatsApp side for metrics: Meta's own edge, or the BSP edge's host.
func (c *Call) provider() string {
	if c.number.Mode == config.ModeAPI {
		return c.number.API.Provider
	}
	if h := c.number.SIP.Edge.Host; h != "" && h != config.DefaultEdgeHost {
		return h
	}
	return "meta"
}

// setState moves the call forward and logs the change once.
func (c *Call) setState(to callState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if to <= c.state {
		return false
	}
	from := c.state
	c.state = to
	if to == stateAnswered {
		c.answered = time.Now()
		c.outcome = "answered"
		c.srv.metrics.ObserveSetup(string(c.dir), string(c.number.Mode), c.answered.Sub(c.started))
	}
	c.log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("call state")
	return true
}

func (c *Call) getState() callState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// openMedia binds both legs' ports up front: the SDP we send on each leg must name them.
func (c *Call) openMedia() error {
	var err error
	if c.waEP, err = c.srv.ports.Open(c.ctx); err != nil {
		se := localRefusal("no free RTP port")
		se.Err = err
		return se
	}
	if c.pbxEP, err = c.srv.ports.Open(c.ctx); err != nil {
		se := localRefusal("no free RTP port")
		se.Err = err
		return se
	}
	c.pbxPort = c.pbxEP.RTP.LocalAddr().Port()
	return nil
}

// startRelay joins the legs. Called when the WhatsApp leg is answered: the relay's first act is
// the maiden packet toward WhatsApp, which Meta waits for (whatsapp-calling.md §0.6).
func (c *Call) startRelay(codec audioCodec, wa waMedia, pbxRemote *media.Description) error {
	fromWA, fromPBX := codec.ptMaps()
	cfg := media.RelayConfig{
		WhatsApp: media.LegConfig{Endpoint: wa.endpoint, Remote: wa.remote, RemoteRTCP: wa.remoteRTCP,
			RTCPMux: wa.rtcpMux, Latch: wa.latch, SRTP: wa.keys, PTMap: fromWA},
		WhatsAppSSRC: c.ssrc,
		PBX: media.LegConfig{Endpoint: c.pbxEP, Remote: pbxRemote.RTPAddr(), RemoteRTCP: pbxRemote.RTCPAddr(),
			RTCPMux: pbxRemote.RTCPMux, Latch: true, SRTP: c.pbxKeys, PTMap: fromPBX},
		AudioPT:           codec.WAPT,
		ClockRate:         codec.ClockRate,
		SilencePayload:    codec.silence(),
		InactivityTimeout: time.Duration(c.cfg.Media.InactivityTimeout),
		Log:               c.log,
	}
	r, err := media.NewRelay(cfg)
	if err != nil {
		return sipErr(500, "Server Internal Error", "media relay", err)
	}
	c.mu.Lock()
	c.relay = r
	c.waEP, c.pbxEP = nil, nil // the relay owns the endpoints now
	c.mu.Unlock()
	if err := r.Start(c.ctx); err != nil {
		return sipErr(500, "Server Internal Error", "media relay start", err)
	}
	go func() {
		select {
		case <-r.Done():
			// Any stop we did not ask for (inactivity, a dead socket) ends both legs: a call
			// without media is worse than no call, and Meta would drop it after 20 s anyway.
			switch err := r.Err(); {
			case errors.Is(err, media.ErrInactive):
				c.hangup("media inactivity timeout")
			case err != nil && !errors.Is(err, context.Canceled):
				c.log.WithError(err).Error("media relay stopped")
				c.hangup("media relay stopped")
			}
		case <-c.done:
		}
	}()
	return nil
}

// readAck confirms the dialog an ACK belongs to.
func (c *Call) readAck(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c.mu.Lock()
	waIn, pbxIn := c.waIn, c.pbxIn
	c.mu.Unlock()
	for _, d := range []*sipgo.DialogServerSession{waIn, pbxIn} {
		if d != nil && d.InviteRequest.CallID().Value() == callIDOf(req) {
			// A reordered ACK (go-libs §1.5.1) fails the CSeq check; the dialog is confirmed anyway.
			_ = d.ReadAck(req, tx)
		}
	}
}

// readBye answers a BYE from either leg and ends the other.
func (c *Call) readBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	id := callIDOf(req)
	c.mu.Lock()
	var err error
	var leg string
	switch {
	case c.waIn != nil && c.waIn.InviteRequest.CallID().Value() == id:
		leg, c.waUp = "whatsapp", false
		err = c.waIn.ReadBye(req, tx)
	case c.waOut != nil && c.waOut.InviteRequest.CallID().Value() == id:
		leg, c.waUp = "whatsapp", false
		err = c.waOut.ReadBye(req, tx)
	case c.pbxIn != nil && c.pbxIn.InviteRequest.CallID().Value() == id:
		leg, c.pbxUp = "pbx", false
		err = c.pbxIn.ReadBye(req, tx)
	case c.pbxOut != nil && c.pbxOut.InviteRequest.CallID().Value() == id:
		leg, c.pbxUp = "pbx", false
		err = c.pbxOut.ReadBye(req, tx)
	default:
		c.mu.Unlock()
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.mu.Unlock()
	if err != nil {
		// A BYE that fails dialog checks (e.g. old CSeq) still means the peer is gone.
		c.log.WithError(err).WithField("leg", leg).Warn("BYE did not match dialog state; ending call anyway")
		respond(tx, req, 200, "OK")
	}
	fields := logrus.Fields{"leg": leg}
	if d := req.GetHeader("x-wa-meta-call-duration"); d != nil {
		fields["wa_call_duration"] = d.Value()
	}
	c.log.WithFields(fields).Info("BYE received")
	c.hangup(leg + " hung up")
}

// hangup ends the call: pending INVITEs are canceled, answered legs get BYE, media stops.
// Safe to call from any goroutine, any number of times.
func (c *Call) hangup(reason string) {
	c.mu.Lock()
	if c.state >= stateEnding {
		c.mu.Unlock()
		return
	}
	from := c.state
	c.state = stateEnding
	c.endReason = reason
	waUp, pbxUp := c.waUp, c.pbxUp
	c.waUp, c.pbxUp = false, false
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"from": from.String(), "to": stateEnding.String(), "reason": reason}).Info("call state")

	c.cancel() // cancels a pending INVITE on the other leg (sipgo sends CANCEL)
	var wg sync.WaitGroup
	if waUp {
		wg.Add(1)
		go func() { defer wg.Done(); c.bye("whatsapp", c.waIn, c.waOut) }()
	}
	if pbxUp {
		wg.Add(1)
		go func() { defer wg.Done(); c.bye("pbx", c.pbxIn, c.pbxOut) }()
	}
	if c.api != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.endAPILeg() }()
	}
	wg.Wait()
	c.finish()
}

// fail ends a call that never got answered on both legs.
func (c *Call) fail(err error) {
	se := asSIPError(err)
	c.mu.Lock()
	if c.outcome == "" {
		c.outcome = strconv.Itoa(se.Code)
	}
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"code": se.Code, "reason": se.Reason, "warning": se.Warning}).
		WithError(se.Err).Info("call failed")
	c.hangup(se.Error())
}

func (c *Call) bye(leg string, in *sipgo.DialogServerSession, out *sipgo.DialogClientSession) {
	ctx, cancel := context.WithTimeout(context.Background(), byeTimeout)
	defer cancel()
	var err error
	if in != nil {
		err = in.Bye(ctx)
	} else if out != nil {
		err = out.Bye(ctx)
	}
	if err != nil {
		c.log.WithError(err).WithField("leg", leg).Warn("BYE failed")
	}
}

// finish releases everything the call holds. Runs once, from hangup.
func (c *Call) finish() {
	c.mu.Lock()
	relay, waEP, pbxEP, web := c.relay, c.waEP, c.pbxEP, c.web
	c.state = stateEnded
	outcome := c.outcome
	c.mu.Unlock()
	if outcome == "" {
		outcome = "canceled"
	}
	m := c.srv.metrics
	m.ActiveCalls.WithLabelValues(string(c.dir), string(c.number.Mode)).Dec()
	m.CallsTotal.WithLabelValues(string(c.dir), string(c.number.Mode), c.provider(), outcome).Inc()
	fields := logrus.Fields{"reason": c.endReason, "duration": time.Since(c.started).Round(time.Millisecond).String()}
	if relay != nil {
		_ = relay.Close()
		st := relay.Stats()
		fields["wa_pkts_in"], fields["wa_pkts_out"] = st.WhatsApp.PacketsIn, st.WhatsApp.PacketsOut
		fields["pbx_pkts_in"], fields["pbx_pkts_out"] = st.PBX.PacketsIn, st.PBX.PacketsOut
		fields["srtp_auth_failures"] = st.WhatsApp.SRTPAuthFailures
		countMedia(m, "whatsapp", st.WhatsApp)
		countMedia(m, "pbx", st.PBX)
	}
	if web != nil {
		_ = web.Close() // idempotent: the relay may have closed it through its conn already
	}
	for _, ep := range []*media.Endpoint{waEP, pbxEP} {
		if ep != nil {
			_ = ep.Close()
		}
	}
	if c.waIn != nil {
		_ = c.waIn.Close()
	}
	if c.pbxIn != nil {
		_ = c.pbxIn.Close()
	}
	if c.waOut != nil {
		_ = c.waOut.Close()
	}
	if c.pbxOut != nil {
		_ = c.pbxOut.Close()
	}
	if c.waCallID != "" {
		c.srv.wa.pins.Unpin(c.waCallID)
	}
	if c.api != nil {
		c.srv.releaseAPICall(c)
	}
	c.log.WithFields(fields).Info("call ended")
	close(c.done)
	c.srv.release(c)
}

func countMedia(m *metrics.Metrics, leg string, s media.LegStats) {
	m.Packets.WithLabelValues(leg, "in").Add(float64(s.PacketsIn))
	m.Packets.WithLabelValues(leg, "out").Add(float64(s.PacketsOut))
	m.Bytes.WithLabelValues(leg, "in").Add(float64(s.BytesIn))
	m.Bytes.WithLabelValues(leg, "out").Add(float64(s.BytesOut))
	m.SRTPAuthFailures.WithLabelValues(leg).Add(float64(s.SRTPAuthFailures))
	for reason, n := range map[string]uint64{"wrong_source": s.DroppedWrongSource, "unknown_pt": s.DroppedUnknownPT,
		"malformed": s.DroppedMalformed, "replayed": s.SRTPReplayed, "late": s.DroppedLate} {
		if n > 0 {
			m.Dropped.WithLabelValues(leg, reason).Add(float64(n))
		}
	}
}

// Done is closed once the call has fully ended.
func (c *Call) Done() <-chan struct{} { return c.done }
