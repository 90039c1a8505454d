package wasim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

// DTLS roles the WebRTC peer can take when it answers an offer with a=setup:actpass
// (RFC 4145 §4, RFC 5763 §5).
const (
	// SetupActive: the WhatsApp side is the DTLS client, as in Meta's published answer to a
	// business-initiated offer (whatsapp-calling.md §4.3, §4.5).
	SetupActive = "active"
	// SetupPassive: the WhatsApp side is the DTLS server; exercises the other role.
	SetupPassive = "passive"
)

// Names in the WhatsApp side's SDP (whatsapp-calling.md §4.3): Meta's a=msid ends in
// WhatsAppTrack1 and its a=ssrc carries cname:WhatsAppAudioStream1.
const (
	webrtcTrackID  = "WhatsAppTrack1"
	webrtcStreamID = sdpCNAME
)

// pionReceiveMTU is what pion's TrackRemote.Read needs as a buffer (its default receive MTU,
// 1460, rounded up).
const pionReceiveMTU = 1500

// WebRTCPeerConfig configures NewWebRTCPeer.
type WebRTCPeerConfig struct {
	Log *logrus.Entry
	// IPs are the addresses to bind, one UDP socket each, and to advertise as host candidates
	// (127.0.0.1 when empty). Meta advertises one IPv4 and one IPv6 candidate (§4.4). An
	// address that cannot be bound (no IPv6 on the host) is skipped as long as one can.
	IPs []netip.Addr
	// Codecs are the only codecs registered with pion and offered, in order. Empty: Meta's,
	// Opus/48000/2 PT 111 and telephone-event/8000 PT 126 (§0 item 3).
	Codecs []media.Codec
}

// WebRTCPeer is the WhatsApp side of an ICE + DTLS-SRTP media stream (Meta's default media
// profile), built on a pion PeerConnection configured the way Meta's media server behaves:
// ICE-lite and therefore always ICE-controlled, host candidates only (no STUN, TURN or mDNS),
// non-trickle SDP, one audio transceiver with one SSRC, BUNDLE with one mid, rtcp-mux, no
// interceptors (no NACK, TWCC or RTCP reports: Meta's relay rewrites the stream anyway).
// Recording and sending are the embedded stream's, shared with the SDES Peer.
//
// Use it as offerer (Offer, then Accept with the business's answer) or as answerer (Answer),
// once. Like Meta it never sends before the business's first packet.
type WebRTCPeer struct {
	*stream
	cfg   WebRTCPeerConfig
	mux   *ice.MultiUDPMuxDefault
	local []netip.AddrPort
	track *rtpTrack

	mu      sync.Mutex
	pc      *webrtc.PeerConnection
	used    bool // Offer or Answer was called
	closing bool
	tracks  int // remote tracks pion handed to OnTrack

	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

// NewWebRTCPeer binds one UDP socket per address (OS-chosen ports). The PeerConnection is
// created by Offer or Answer, because the DTLS role of an answer depends on the offer.
func NewWebRTCPeer(cfg WebRTCPeerConfig) (*WebRTCPeer, error) {
	if len(cfg.IPs) == 0 {
		cfg.IPs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	}
	if len(cfg.Codecs) == 0 {
		cfg.Codecs, _ = metaCodecs(nil)
	}
	p := &WebRTCPeer{stream: newStream(cfg.Log, false), cfg: cfg}
	p.send = p.sendRTP

	var muxes []ice.UDPMux
	var bindErrs []error
	for _, ip := range cfg.IPs {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), 0)))
		if err != nil {
			bindErrs = append(bindErrs, err)
			p.logger().WithError(err).WithField("ip", ip.String()).Debug("WebRTC media address skipped")
			continue
		}
		p.local = append(p.local, conn.LocalAddr().(*net.UDPAddr).AddrPort())
		// A mux per socket makes pion gather exactly one host candidate on it and nothing
		// else: no interface enumeration, no loopback filtering (MultiUDPMuxDefault keeps
		// loopback addresses, go-libs.md §4.1).
		muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn}))
	}
	if len(muxes) == 0 {
		return nil, fmt.Errorf("wasim: WebRTC media sockets: %w", errors.Join(bindErrs...))
	}
	p.mux = ice.NewMultiUDPMuxDefault(muxes...)

	track, err := webrtc.NewTrackLocalStaticRTP(pionCapability(cfg.Codecs[0]), webrtcTrackID, webrtcStreamID)
	if err != nil {
		_ = p.mux.Close()
		return nil, fmt.Errorf("wasim: WebRTC track: %w", err)
	}
	p.track = &rtpTrack{TrackLocalStaticRTP: track}
	return p, nil
}

// LocalAddrs are the addresses of the peer's host candidates.
func (p *WebRTCPeer) LocalAddrs() []netip.AddrPort { return append([]netip.AddrPort(nil), p.local...) }

// Offer creates the PeerConnection and returns a complete, non-trickle SDP offer shaped like
// Meta's user-initiated offer (whatsapp-calling.md §4.3): ice-lite, both host candidates,
// a=setup:actpass, mid "audio".
func (p *WebRTCPeer) Offer(ctx context.Context) ([]byte, error) {
	pc, tr, err := p.newPeerConnection(webrtc.DTLSRoleAuto)
	if err != nil {
		return nil, err
	}
	if err := tr.SetMid(sdpMidName); err != nil {
		return nil, fmt.Errorf("wasim: WebRTC mid: %w", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("wasim: WebRTC offer: %w", err)
	}
	local, err := p.gather(ctx, pc, offer)
	if err != nil {
		return nil, err
	}
	sess, err := sessionFromPion(local, p.ssrc, p.cfg.Codecs, true)
	if err != nil {
		return nil, err
	}
	return metaWebRTCSDP(sess, true), nil
}

// Accept applies the business's SDP answer to our offer. ICE and DTLS then run in pion's
// goroutines; media flows once the business has connected.
func (p *WebRTCPeer) Accept(answer []byte) error {
	p.mu.Lock()
	pc := p.pc
	p.mu.Unlock()
	if pc == nil || pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return errors.New("wasim: Accept without a pending offer")
	}
	d, err := media.ParseDescription(answer)
	if err != nil {
		return err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return fmt.Errorf("wasim: WebRTC answer: %w", err)
	}
	p.negotiated(d.Codecs)
	return nil
}

// Answer creates the PeerConnection, applies the business's offer and returns a complete SDP
// answer shaped like Meta's. setup is the DTLS role taken when the offer leaves the choice to
// us (a=setup:actpass, or no a=setup): SetupActive when empty. An offer that fixes a role
// gets the other one.
func (p *WebRTCPeer) Answer(ctx context.Context, offer []byte, setup string) ([]byte, error) {
	var role webrtc.DTLSRole
	switch setup {
	case "", SetupActive:
		role = webrtc.DTLSRoleClient
	case SetupPassive:
		role = webrtc.DTLSRoleServer
	default:
		return nil, fmt.Errorf("wasim: DTLS setup %q, want %q or %q", setup, SetupActive, SetupPassive)
	}
	if s := setupOf(offer); s != "" && s != "actpass" {
		role = webrtc.DTLSRoleAuto // pion answers with the opposite of the offer's role
	}
	pc, _, err := p.newPeerConnection(role)
	if err != nil {
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return nil, fmt.Errorf("wasim: WebRTC offer: %w", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("wasim: WebRTC answer: %w", err)
	}
	local, err := p.gather(ctx, pc, answer)
	if err != nil {
		return nil, err
	}
	sess, err := sessionFromPion(local, p.ssrc, p.cfg.Codecs, false)
	if err != nil {
		return nil, err
	}
	p.negotiated(sess.codecs)
	return metaWebRTCSDP(sess, false), nil
}

// setupOf returns the first a=setup value of an SDP ("" when absent or unparseable).
func setupOf(body []byte) string {
	d, err := media.ParseDescription(body)
	if err != nil {
		return ""
	}
	v, _ := sdpAttr(d, "setup")
	return v
}

// newPeerConnection builds pion the way Meta's media server behaves. answerRole is the DTLS
// role of our answer to an actpass offer (DTLSRoleAuto: unused or pion's choice).
func (p *WebRTCPeer) newPeerConnection(answerRole webrtc.DTLSRole) (*webrtc.PeerConnection, *webrtc.RTPTransceiver, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closing:
		return nil, nil, ErrPeerClosed
	case p.used:
		return nil, nil, errors.New("wasim: WebRTC peer already negotiated")
	}
	p.used = true

	se := webrtc.SettingEngine{LoggerFactory: pionLogs{peer: p}}
	// Meta's media server is ICE-lite: it never sends checks and is always controlled; the
	// business must be full ICE and controlling (whatsapp-calling.md §0 item 4, §4.4).
	se.SetLite(true)
	se.SetICEUDPMux(p.mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	// An answer without a=ssrc lines (legal, and common from SIP stacks) would otherwise make
	// pion drop the business's media when we offered: it wants a MID header extension to map
	// an undeclared SSRC to a transceiver unless told to use the only media section.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	// pion ignores the offer's a=setup when an answering role is set, so it is set only for
	// actpass offers (see Answer); otherwise pion answers with the role the offer leaves.
	if answerRole != webrtc.DTLSRoleAuto {
		if err := se.SetAnsweringDTLSRole(answerRole); err != nil {
			return nil, nil, fmt.Errorf("wasim: DTLS role: %w", err)
		}
	}

	me := &webrtc.MediaEngine{}
	for _, c := range p.cfg.Codecs {
		params := webrtc.RTPCodecParameters{RTPCodecCapability: pionCapability(c), PayloadType: webrtc.PayloadType(c.PT)}
		if err := me.RegisterCodec(params, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, nil, fmt.Errorf("wasim: register %s: %w", c.Name, err)
		}
	}
	// An empty registry, not a missing one: without WithInterceptorRegistry pion installs its
	// default NACK, RTCP report and TWCC interceptors (go-libs.md §4.1).
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{}) // no STUN or TURN, like Meta
	if err != nil {
		return nil, nil, fmt.Errorf("wasim: PeerConnection: %w", err)
	}
	// Set before any description, or pion drops the first remote track.
	pc.OnTrack(p.onTrack)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.logger().WithField("state", s.String()).Debug("WebRTC connection state")
	})
	tr, err := pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{
		Direction: webrtc.RTPTransceiverDirectionSendrecv,
		// Our own SSRC, so SSRC() is right before negotiation and the SDP states it.
		SendEncodings: []webrtc.RTPEncodingParameters{{RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: webrtc.SSRC(p.ssrc)}}},
	})
	if err != nil {
		_ = pc.Close()
		return nil, nil, fmt.Errorf("wasim: WebRTC transceiver: %w", err)
	}
	p.pc = pc
	// RTCP about our stream (receiver reports) arrives on the sender; read it so it is
	// counted and pion's buffers never fill.
	p.wg.Add(1)
	go p.drainRTCP(tr.Sender().Read)
	return pc, tr, nil
}

// gather sets the local description and waits for candidate gathering to finish: Meta's SDP
// carries its candidates and it never trickles (whatsapp-calling.md §4.4).
func (p *WebRTCPeer) gather(ctx context.Context, pc *webrtc.PeerConnection, desc webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("wasim: WebRTC local description: %w", err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return "", fmt.Errorf("wasim: ICE gathering: %w", ctx.Err())
	case <-p.closed:
		return "", ErrPeerClosed
	}
	return pc.LocalDescription().SDP, nil
}

// negotiated starts the call's media clock (Meta's 20 s and 30 s timers) once both
// descriptions are applied.
func (p *WebRTCPeer) negotiated(codecs []media.Codec) {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	p.markConnected(codecs)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(watchdogTick)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				p.watchdog(now)
			case <-p.closed:
				return
			}
		}
	}()
}

// onTrack runs in its own goroutine (pion starts one per call) and reads the business's
// audio until the PeerConnection closes.
func (p *WebRTCPeer) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	p.tracks++
	n := p.tracks
	p.wg.Add(2)
	p.mu.Unlock()
	if n > 1 {
		p.violate(fmt.Sprintf("the business sends a second RTP stream (SSRC %d); Meta supports exactly one SSRC per call (whatsapp-calling.md §4.2)", track.SSRC()))
	}
	p.logger().WithFields(logrus.Fields{"ssrc": uint32(track.SSRC()), "pt": uint8(track.PayloadType())}).Debug("business media stream started")
	go p.drainRTCP(receiver.Read)
	defer p.wg.Done()
	buf := make([]byte, pionReceiveMTU)
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		// pion reports a payload type it did not negotiate as an error but still returns
		// the packet; Meta's relay would pass it on, so it is recorded like any other.
		if err != nil && (n == 0 || !errors.Is(err, webrtc.ErrCodecNotFound)) {
			return
		}
		now := time.Now()
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			p.stats.malformed.Add(1)
			continue
		}
		p.record(&pkt, now)
	}
}

// drainRTCP counts SRTCP packets until pion closes the stream.
func (p *WebRTCPeer) drainRTCP(read func([]byte) (int, interceptor.Attributes, error)) {
	defer p.wg.Done()
	buf := make([]byte, pionReceiveMTU)
	for {
		if _, _, err := read(buf); err != nil {
			return
		}
		p.stats.rtcpIn.Add(1)
	}
}

// sendRTP is the stream's wire: the bound pion track. stream.txMu is held.
func (p *WebRTCPeer) sendRTP(hdr *rtp.Header, payload []byte) error {
	return p.track.writeRTP(hdr, payload)
}

// Close closes the PeerConnection (waiting for pion's goroutines) and the sockets, and waits
// for the peer's readers. What was received stays readable.
func (p *WebRTCPeer) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		pc := p.pc
		p.mu.Unlock()
		close(p.closed)
		var errs []error
		if pc != nil {
			errs = append(errs, pc.GracefulClose())
		}
		// pion does not close a UDP mux it was given.
		errs = append(errs, p.mux.Close())
		p.wg.Wait()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// pionCapability is a codec as pion's MediaEngine and tracks name it, without its fmtp.
// pion negotiates a media section with only the codecs that match exactly when any does,
// and fmtp parameters both sides set to different values (minptime=20 against the common
// minptime=10) make a match partial: with Meta's Opus fmtp registered, a business answering
// Opus/minptime=10 plus telephone-event would get telephone-event alone. Meta accepts any
// Opus fmtp, so pion matches on name, clock rate and channels only, and Meta's fmtp is
// written into the SDP by metaWebRTCSDP.
func pionCapability(c media.Codec) webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: "audio/" + c.Name, ClockRate: c.ClockRate, Channels: c.Channels}
}

// rtpTrack is the WhatsApp side's one audio track. pion's TrackLocalStaticRTP overwrites the
// payload type of every packet with the bound codec's, which would turn DTMF (PT 126) into
// Opus, so rtpTrack keeps its binding logic (codec choice, SSRC) and writes the packets
// itself through the stream pion bound it to, payload type untouched.
type rtpTrack struct {
	*webrtc.TrackLocalStaticRTP

	mu sync.RWMutex
	w  webrtc.TrackLocalWriter
}

// Bind is called by pion once the codecs are negotiated.
func (t *rtpTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := t.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return codec, err
	}
	t.mu.Lock()
	t.w = ctx.WriteStream()
	t.mu.Unlock()
	return codec, nil
}

// Unbind is called by pion when the sender stops.
func (t *rtpTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return t.TrackLocalStaticRTP.Unbind(ctx)
}

// errSRTPNotRunning: pion accepted a packet before its SRTP session started and dropped it.
var errSRTPNotRunning = errors.New("wasim: media send: DTLS-SRTP not established yet")

// writeRTP encrypts and sends one packet. pion drops a packet written before its SRTP session
// runs, returning 0 bytes and no error; that is made an error here. The stream never writes
// before the business's maiden packet, which proves SRTP runs.
func (t *rtpTrack) writeRTP(hdr *rtp.Header, payload []byte) error {
	t.mu.RLock()
	w := t.w
	t.mu.RUnlock()
	if w == nil {
		return errors.New("wasim: WebRTC media not negotiated")
	}
	n, err := w.WriteRTP(hdr, payload)
	switch {
	case err != nil:
		return fmt.Errorf("wasim: media send: %w", err)
	case n == 0:
		return errSRTPNotRunning
	}
	return nil
}

// webrtcIPs are the host candidate addresses of the edge's WebRTC peers: the edge's own
// address and, when it is a loopback one, the other family's loopback, so offers and answers
// carry one IPv4 and one IPv6 candidate like Meta's (whatsapp-calling.md §4.3).
func webrtcIPs(edge netip.Addr) []netip.Addr {
	edge = edge.Unmap()
	switch {
	case edge == netip.AddrFrom4([4]byte{127, 0, 0, 1}):
		return []netip.Addr{edge, netip.IPv6Loopback()}
	case edge == netip.IPv6Loopback():
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), edge}
	}
	return []netip.Addr{edge}
}
