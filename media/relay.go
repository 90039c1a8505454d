package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrInactive ends a relay whose peers stopped sending.
var ErrInactive = errors.New("media inactivity timeout")

// Relay defaults.
const (
	// DefaultSilenceAfter is how long the PBX may be quiet before silence frames are sent toward
	// WhatsApp. Long enough not to interleave silence with a PBX stream that merely jitters,
	// short enough that WhatsApp's jitter buffer never runs dry.
	DefaultSilenceAfter = 100 * time.Millisecond
	// DefaultPtime is Meta's mandatory packetisation time (whatsapp-calling.md §4.2).
	DefaultPtime = 20 * time.Millisecond
	// DefaultClockRate is the Opus RTP clock (RFC 7587 §4.1), what Meta negotiates by default.
	DefaultClockRate = 48000
	// OpusSilenceFrame is one 20 ms Opus frame of silence: TOC 0xf8 (config 31, CELT fullband
	// 20 ms, mono, one frame) followed by the two-byte silent CELT frame libwebrtc sends for DTX.
	// It is used when RelayConfig.SilencePayload is empty and the clock is 48 kHz.
	OpusSilenceFrame = "\xf8\xff\xfe"
)

// SRTPKeys are one leg's SDES (or DTLS-exported) keys.
type SRTPKeys struct {
	Local  Crypto // what we encrypt with (the key we put in our SDP)
	Remote Crypto // what we decrypt with (the peer's key)
}

// LegConfig describes one side of the relay.
type LegConfig struct {
	Endpoint *Endpoint
	// Remote is the RTP destination from the peer's SDP. It may be left invalid only with Latch
	// (the peer's first packet then tells where to send); the WhatsApp leg always needs it
	// because we must send the first packet (whatsapp-calling.md §0 fact 6).
	Remote     netip.AddrPort
	RemoteRTCP netip.AddrPort // RTCP destination; ignored with RTCPMux (and unused while RTCP is terminated)
	RTCPMux    bool
	// Latch enables symmetric RTP: the source of the first valid packet becomes the destination
	// and packets from any other source are dropped afterwards (counted as wrong_source).
	// Without Latch packets are accepted from any source and sent to Remote.
	Latch bool
	SRTP  *SRTPKeys // nil: plain RTP
	// PTMap maps payload types arriving on this leg to payload types sent on the other leg.
	// Packets with an unmapped PT are dropped (counted as unknown_pt). It must not be empty.
	PTMap map[uint8]uint8
}

// RelayConfig joins the WhatsApp leg and the PBX leg of one call.
type RelayConfig struct {
	WhatsApp LegConfig
	PBX      LegConfig
	// Toward WhatsApp the stream keeps one SSRC and continuous sequence numbers and timestamps,
	// whatever the PBX does (Meta supports one SSRC; whatsapp-calling.md §4.2).
	WhatsAppSSRC uint32 // 0: random
	AudioPT      uint8  // audio PT toward WhatsApp, used for silence frames
	ClockRate    uint32 // audio clock toward WhatsApp (48000 for Opus, 8000 for G.711); 0: 48000
	// SilencePayload is sent toward WhatsApp as the first packet and whenever the PBX has been
	// quiet for SilenceAfter, so Meta never goes 20 s without media (whatsapp-calling.md §4.7).
	// Empty: OpusSilenceFrame when ClockRate is 48000, an error otherwise.
	SilencePayload []byte
	SilenceAfter   time.Duration // default 100ms
	Ptime          time.Duration // default 20ms
	// InactivityTimeout ends the relay when nothing valid arrived from either peer for this long.
	// 0 disables it.
	InactivityTimeout time.Duration
	Log               *logrus.Entry
}

// LegStats counts one leg's traffic. Read them with Relay.Stats.
type LegStats struct {
	// PacketsIn/BytesIn count every datagram read on the leg's sockets, valid or not;
	// PacketsOut/BytesOut every datagram sent to the leg's peer (silence included).
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
	RTCPIn                                   uint64 // valid (authenticated) RTCP, terminated here
	SRTPAuthFailures                         uint64
	DroppedWrongSource                       uint64
	DroppedUnknownPT                         uint64
	DroppedMalformed                         uint64
	SilenceSent                              uint64 // WhatsApp leg only
	// SRTPReplayed counts SRTP/SRTCP packets rejected by the replay window (RFC 3711 §3.3.2).
	SRTPReplayed uint64
	// DroppedLate counts PBX packets that arrived after the stream toward WhatsApp had been
	// rebased past them (silence fill or SSRC change); sending them would repeat a sequence
	// number already sent to WhatsApp. PBX leg only.
	DroppedLate uint64
	// SendErrors counts packets toward this leg's peer that could not be encrypted or written.
	SendErrors uint64
}

// Stats is a snapshot of both legs.
type Stats struct{ WhatsApp, PBX LegStats }

type relayState int

const (
	relayIdle relayState = iota
	relayRunning
	relayClosed
)

// Relay moves packets between the legs. It owns both endpoints and closes them.
//
// Goroutines: one reader per socket (WhatsApp RTP/RTCP, PBX RTP/RTCP) and one timer goroutine
// that sends silence, enforces the inactivity timeout and tears everything down. Each SRTP
// context is used by exactly one goroutine (pion contexts are not goroutine-safe, go-libs §3),
// except the one encrypting toward WhatsApp, which the PBX reader and the silence filler share
// under waSender.mu.
type Relay struct {
	log          *logrus.Entry
	wa, pbx      *leg
	toWA         *waSender
	toPBX        *legSender // used only by the WhatsApp RTP reader
	silenceAfter time.Duration
	ptime        time.Duration
	inactivity   time.Duration
	act          *activity

	lifeMu sync.Mutex
	state  relayState

	stopOnce sync.Once
	quit     chan struct{} // closed by stop: goroutines wind down
	errMu    sync.Mutex
	err      error

	readers  sync.WaitGroup
	done     chan struct{} // closed when goroutines have exited and endpoints are closed
	closeErr error         // written before done is closed
}

// activity is the time of the last valid packet from either peer, in nanoseconds since epoch
// (monotonic), for the inactivity timeout.
type activity struct {
	epoch time.Time
	last  atomic.Int64
}

func (a *activity) mark(now time.Time) { a.last.Store(int64(now.Sub(a.epoch))) }

func (a *activity) idle(now time.Time) time.Duration {
	return now.Sub(a.epoch) - time.Duration(a.last.Load())
}

// NewRelay validates cfg and prepares both legs (SRTP contexts, buffers, PT tables). Nothing is
// sent or read until Start. On error the endpoints are left to the caller.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	return newRelay(cfg, cryptoParams)
}

func newRelay(cfg RelayConfig, params srtpParamsFunc) (*Relay, error) {
	log := cfg.Log
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	if cfg.ClockRate == 0 {
		cfg.ClockRate = DefaultClockRate
	}
	if cfg.Ptime <= 0 {
		cfg.Ptime = DefaultPtime
	}
	if cfg.SilenceAfter <= 0 {
		cfg.SilenceAfter = DefaultSilenceAfter
	}
	if cfg.InactivityTimeout < 0 {
		return nil, fmt.Errorf("media relay: negative inactivity timeout %s", cfg.InactivityTimeout)
	}
	if cfg.AudioPT > 127 {
		return nil, fmt.Errorf("media relay: audio payload type %d above 127", cfg.AudioPT)
	}
	silence := cfg.SilencePayload
	if len(silence) == 0 {
		if cfg.ClockRate != DefaultClockRate {
			return nil, fmt.Errorf("media relay: no silence payload for clock rate %d", cfg.ClockRate)
		}
		silence = []byte(OpusSilenceFrame)
	}
	if rtpHeaderSize+len(silence) > maxDatagram {
		return nil, fmt.Errorf("media relay: silence payload of %d bytes too large", len(silence))
	}
	if !cfg.WhatsApp.Remote.IsValid() {
		// Meta waits for our maiden packet (§0 fact 6): we must know where to send it.
		return nil, errors.New("media relay: whatsapp leg has no remote address")
	}

	act := &activity{epoch: time.Now()}
	wa, waEnc, err := newLeg(legWhatsApp, cfg.WhatsApp, params, log, act)
	if err != nil {
		return nil, err
	}
	pbx, pbxEnc, err := newLeg(legPBX, cfg.PBX, params, log, act)
	if err != nil {
		return nil, err
	}

	ssrc := cfg.WhatsAppSSRC
	for ssrc == 0 {
		ssrc = rand.Uint32()
	}
	r := &Relay{
		log:          log,
		wa:           wa,
		pbx:          pbx,
		toPBX:        newLegSender(pbx, pbxEnc),
		silenceAfter: cfg.SilenceAfter,
		ptime:        cfg.Ptime,
		inactivity:   cfg.InactivityTimeout,
		act:          act,
		quit:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	r.toWA = newWASender(newLegSender(wa, waEnc), &pbx.stats.droppedLate, ssrc, cfg.AudioPT, silence, cfg.ClockRate, cfg.Ptime)
	return r, nil
}

// Start sends the first packet toward WhatsApp and begins relaying until ctx ends, Close is
// called or the inactivity timeout fires.
func (r *Relay) Start(ctx context.Context) error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	switch r.state {
	case relayRunning:
		return errors.New("start media relay: already started")
	case relayClosed:
		return errors.New("start media relay: closed")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start media relay: %w", context.Cause(ctx))
	}

	now := time.Now()
	r.act.mark(now)
	// Meta does not send media until the business has sent its maiden packet, for both call
	// directions (whatsapp-calling.md §0 fact 6), so it goes out before we even read.
	if err := r.toWA.sendMaiden(now); err != nil {
		return fmt.Errorf("start media relay: first packet to whatsapp: %w", err)
	}
	r.state = relayRunning

	r.startReader(r.wa.ep.RTP, r.wa.name+" rtp", r.handleWhatsAppRTP)
	if r.wa.ep.RTCP != nil {
		r.startReader(r.wa.ep.RTCP, r.wa.name+" rtcp", r.wa.receiveRTCPSocket)
	}
	r.startReader(r.pbx.ep.RTP, r.pbx.name+" rtp", r.handlePBXRTP)
	if r.pbx.ep.RTCP != nil {
		r.startReader(r.pbx.ep.RTCP, r.pbx.name+" rtcp", r.pbx.receiveRTCPSocket)
	}
	go r.run(ctx)
	return nil
}

// Done is closed when the relay has stopped: its goroutines have exited and both endpoints are
// closed.
func (r *Relay) Done() <-chan struct{} { return r.done }

// Err tells why the relay stopped: ErrInactive, the context's cause, a wrapped socket error, or
// nil while running and after Close.
func (r *Relay) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// Stats is a snapshot of both legs' counters. Safe to call at any time.
func (r *Relay) Stats() Stats {
	return Stats{WhatsApp: r.wa.stats.snapshot(), PBX: r.pbx.stats.snapshot()}
}

// Close stops relaying, waits for the goroutines and closes both endpoints. It is idempotent and
// returns the endpoints' close error.
func (r *Relay) Close() error {
	r.stop(nil)
	r.lifeMu.Lock()
	if r.state == relayIdle {
		r.closeErr = r.closeEndpoints()
		close(r.done)
	}
	r.state = relayClosed
	r.lifeMu.Unlock()
	<-r.done
	return r.closeErr
}

// stop records why the relay ends (the first cause wins) and tells the goroutines.
func (r *Relay) stop(cause error) {
	r.stopOnce.Do(func() {
		r.errMu.Lock()
		r.err = cause
		r.errMu.Unlock()
		close(r.quit)
	})
}

func (r *Relay) stopping() bool {
	select {
	case <-r.quit:
		return true
	default:
		return false
	}
}

// run is the timer goroutine: silence fill, inactivity, and the teardown once the relay stops.
func (r *Relay) run(ctx context.Context) {
	defer r.teardown()
	// The timer sleeps until the next thing can be due — the end of the PBX's silence window,
	// the next silence frame, or the inactivity deadline — instead of ticking every ptime: while
	// the PBX talks it wakes once per SilenceAfter, not 50 times a second (at 1,000 calls that is
	// the difference between 10,000 and 50,000 wake-ups per second).
	timer := time.NewTimer(r.ptime)
	defer timer.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-ctx.Done():
			r.stop(context.Cause(ctx))
			return
		case now := <-timer.C:
			idle := r.act.idle(now)
			if r.inactivity > 0 && idle >= r.inactivity {
				r.log.WithField("timeout", r.inactivity).Info("media inactivity: no valid packet from either leg")
				r.stop(ErrInactive)
				return
			}
			next := r.toWA.fillSilence(now, r.silenceAfter, r.ptime)
			if r.inactivity > 0 && r.inactivity-idle < next {
				next = r.inactivity - idle
			}
			timer.Reset(max(next, time.Millisecond))
		}
	}
}

// teardown unblocks the readers, waits for them, then closes the sockets. Sockets are closed
// only after every goroutine using them has returned, so no write races a close.
func (r *Relay) teardown() {
	past := time.Unix(1, 0)
	for _, c := range r.conns() {
		_ = c.SetReadDeadline(past)
	}
	r.readers.Wait()
	r.closeErr = r.closeEndpoints()
	st := r.Stats()
	r.log.WithFields(logrus.Fields{
		"cause":       r.Err(),
		"wa_in":       st.WhatsApp.PacketsIn,
		"wa_out":      st.WhatsApp.PacketsOut,
		"wa_silence":  st.WhatsApp.SilenceSent,
		"wa_auth_err": st.WhatsApp.SRTPAuthFailures,
		"pbx_in":      st.PBX.PacketsIn,
		"pbx_out":     st.PBX.PacketsOut,
	}).Debug("media relay stopped")
	close(r.done)
}

func (r *Relay) conns() []PacketConn {
	cs := make([]PacketConn, 0, 4)
	for _, ep := range []*Endpoint{r.wa.ep, r.pbx.ep} {
		cs = append(cs, ep.RTP)
		if ep.RTCP != nil {
			cs = append(cs, ep.RTCP)
		}
	}
	return cs
}

func (r *Relay) closeEndpoints() error {
	return errors.Join(r.wa.ep.Close(), r.pbx.ep.Close())
}

func (r *Relay) startReader(c PacketConn, what string, handle func([]byte, netip.AddrPort, time.Time)) {
	r.readers.Add(1)
	go r.readLoop(c, what, handle)
}

// readLoop is one socket's reader. The buffer is allocated once per socket; handle gets the
// datagram and the read time and must not keep the slice.
func (r *Relay) readLoop(c PacketConn, what string, handle func([]byte, netip.AddrPort, time.Time)) {
	defer r.readers.Done()
	// One byte more than the largest datagram we accept, so an oversized one shows as such
	// instead of being silently truncated.
	buf := make([]byte, maxDatagram+1)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if r.stopping() {
				return
			}
			if isTimeout(err) {
				continue
			}
			r.stop(fmt.Errorf("media relay: read %s: %w", what, err))
			return
		}
		handle(buf[:n], from, time.Now())
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// handleWhatsAppRTP is the per-packet work for a datagram from WhatsApp: validate, decrypt,
// remap PT, send to the PBX. The stream's SSRC, sequence numbers and timestamps pass through
// unchanged (one SSRC from Meta, §4.2, so the PBX sees an ordinary stream). It runs on the
// WhatsApp RTP reader only and allocates nothing for valid packets.
func (r *Relay) handleWhatsAppRTP(pkt []byte, from netip.AddrPort, now time.Time) {
	pkt, ok := r.wa.receive(pkt, from, now)
	if !ok {
		return
	}
	_, _ = r.toPBX.write(pkt, now)
}

// handlePBXRTP is the per-packet work for a datagram from the PBX: validate (and decrypt when the
// PBX leg uses SRTP), remap PT, rewrite SSRC/sequence/timestamp into the one continuous stream
// WhatsApp accepts, encrypt, send. It runs on the PBX RTP reader only and allocates nothing for
// valid packets.
func (r *Relay) handlePBXRTP(pkt []byte, from netip.AddrPort, now time.Time) {
	pkt, ok := r.pbx.receive(pkt, from, now)
	if !ok {
		return
	}
	r.toWA.forward(pkt, now)
}
