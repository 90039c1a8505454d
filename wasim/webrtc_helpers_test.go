package wasim

import (
	"context"
	"errors"
	"github.com/wabridge/wabridge/media"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/require"
)

// bizOpts shapes the plain pion PeerConnection that plays wabridge's WebRTC leg.
type bizOpts struct {
	// answerRole is the DTLS role of the business's answers; DTLSRoleClient (a=setup:active,
	// what Meta wants, whatsapp-calling.md §4.5) when zero.
	answerRole webrtc.DTLSRole
	// lite makes the business ICE-lite (a violation: Meta is lite already).
	lite bool
	// dtmfPT is the business's telephone-event payload type (101 when zero).
	dtmfPT uint8
	// opusFmtp is the business's Opus fmtp, "useinbandfec=1" when empty. pion negotiates
	// only the exactly matching codecs when there are any, and an fmtp parameter set to
	// different values makes a match partial: a pion business registering the common
	// "minptime=10;useinbandfec=1" keeps only telephone-event from Meta's offer
	// (minptime=20) and fails to bind its Opus track.
	opusFmtp string
}

// bizPeer is a full-ICE, controlling pion PeerConnection on loopback with an Opus and a
// telephone-event codec: what a correct business side looks like to the edge. Written only
// with pion, not with the package's WebRTC code, so it checks that code independently.
type bizPeer struct {
	t     *testing.T
	pc    *webrtc.PeerConnection
	track *testTrack
	ssrc  uint32

	mu       sync.Mutex
	received []rtp.Packet
	tracks   int
	wg       sync.WaitGroup
	closed   bool

	seq uint16
	ts  uint32
}

func newBizPeer(t *testing.T, o bizOpts) *bizPeer {
	t.Helper()
	if o.answerRole == webrtc.DTLSRoleUnknown {
		o.answerRole = webrtc.DTLSRoleClient
	}
	if o.dtmfPT == 0 {
		o.dtmfPT = 101
	}
	if o.opusFmtp == "" {
		o.opusFmtp = "useinbandfec=1"
	}
	// pion's default logger prints teardown errors to stdout.
	logs := logging.NewDefaultLoggerFactory()
	logs.DefaultLogLevel = logging.LogLevelDisabled
	if testing.Verbose() {
		logs.DefaultLogLevel = logging.LogLevelDebug
	}
	se := webrtc.SettingEngine{LoggerFactory: logs}
	se.SetLite(o.lite)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	require.NoError(t, se.SetAnsweringDTLSRole(o.answerRole))
	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: o.opusFmtp},
		PayloadType: 111}, webrtc.RTPCodecTypeAudio))
	require.NoError(t, me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"},
		PayloadType: webrtc.PayloadType(o.dtmfPT)}, webrtc.RTPCodecTypeAudio))
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "wabridge")
	require.NoError(t, err)
	b := &bizPeer{t: t, pc: pc, track: &testTrack{TrackLocalStaticRTP: local}, seq: 1000, ts: 5000}
	tr, err := pc.AddTransceiverFromTrack(b.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	require.NoError(t, err)
	b.ssrc = uint32(tr.Sender().GetParameters().Encodings[0].SSRC)
	pc.OnTrack(b.onTrack)
	t.Cleanup(b.close)
	return b
}

func (b *bizPeer) onTrack(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.tracks++
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil && (n == 0 || !errors.Is(err, webrtc.ErrCodecNotFound)) {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(append([]byte(nil), buf[:n]...)) == nil {
			b.mu.Lock()
			b.received = append(b.received, pkt)
			b.mu.Unlock()
		}
	}
}

func (b *bizPeer) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	_ = b.pc.GracefulClose()
	b.wg.Wait()
}

// offer returns the business's complete (non-trickle) offer.
func (b *bizPeer) offer(ctx context.Context) []byte {
	b.t.Helper()
	o, err := b.pc.CreateOffer(nil)
	require.NoError(b.t, err)
	return b.setLocal(ctx, o)
}

// answer applies an offer and returns the business's complete answer.
func (b *bizPeer) answer(ctx context.Context, offer []byte) []byte {
	b.t.Helper()
	a, err := b.tryAnswer(ctx, offer)
	require.NoError(b.t, err)
	return a
}

// tryAnswer is answer for goroutines other than the test's.
func (b *bizPeer) tryAnswer(ctx context.Context, offer []byte) ([]byte, error) {
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return nil, err
	}
	a, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	return b.trySetLocal(ctx, a)
}

func (b *bizPeer) setLocal(ctx context.Context, d webrtc.SessionDescription) []byte {
	b.t.Helper()
	sdp, err := b.trySetLocal(ctx, d)
	require.NoError(b.t, err)
	return sdp
}

func (b *bizPeer) trySetLocal(ctx context.Context, d webrtc.SessionDescription) ([]byte, error) {
	done := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(d); err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, errors.New("business ICE gathering did not finish")
	}
	return []byte(b.pc.LocalDescription().SDP), nil
}

func (b *bizPeer) accept(answer []byte) {
	b.t.Helper()
	require.NoError(b.t, b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}))
}

// send sends payloads as 20 ms frames with payload type pt (SSRC as declared unless ssrc is
// set), retrying the first packet until pion's SRTP session runs.
func (b *bizPeer) send(ctx context.Context, pt uint8, ssrc uint32, payloads [][]byte) {
	b.t.Helper()
	if ssrc == 0 {
		ssrc = b.ssrc
	}
	for i, p := range payloads {
		b.seq++
		b.ts += 960
		hdr := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: b.seq, Timestamp: b.ts, SSRC: ssrc, Marker: i == 0}
		require.NoError(b.t, b.track.write(ctx, &hdr, p))
		time.Sleep(2 * time.Millisecond)
	}
}

// sendDTMF sends one RFC 4733 event: two continuation packets and the end packet three times.
func (b *bizPeer) sendDTMF(ctx context.Context, pt uint8, digit rune) {
	b.t.Helper()
	ev, err := media.DTMFEvent(digit)
	require.NoError(b.t, err)
	b.ts += 960
	for i, end := range []bool{false, false, true, true, true} {
		b.seq++
		hdr := rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: b.seq, Timestamp: b.ts, SSRC: b.ssrc, Marker: i == 0}
		require.NoError(b.t, b.track.write(ctx, &hdr, media.EncodeTelephoneEvent(ev, dtmfVolume, end, 320)))
	}
}

// payloadsOf returns the payloads received with payload type pt.
func (b *bizPeer) payloadsOf(pt uint8) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for _, p := range b.received {
		if p.PayloadType == pt {
			out = append(out, p.Payload)
		}
	}
	return out
}

// dtmf decodes the digits of the RFC 4733 end packets received with payload type pt.
func (b *bizPeer) dtmf(pt uint8) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := map[uint32]bool{}
	var out []rune
	for _, p := range b.received {
		if p.PayloadType != pt {
			continue
		}
		if ev, end, _, ok := media.DecodeTelephoneEvent(p.Payload); ok && end && !seen[p.Timestamp] {
			seen[p.Timestamp] = true
			d, _ := media.DTMFDigit(ev)
			out = append(out, d)
		}
	}
	return string(out)
}

func (b *bizPeer) ssrcs() []uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []uint32
	for _, p := range b.received {
		if len(out) == 0 || out[len(out)-1] != p.SSRC {
			out = append(out, p.SSRC)
		}
	}
	return out
}

// testTrack lets the business write packets with any payload type and SSRC (pion's
// TrackLocalStaticRTP rewrites both).
type testTrack struct {
	*webrtc.TrackLocalStaticRTP
	mu sync.Mutex
	w  webrtc.TrackLocalWriter
}

func (t *testTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, err := t.TrackLocalStaticRTP.Bind(ctx)
	t.mu.Lock()
	t.w = ctx.WriteStream()
	t.mu.Unlock()
	return c, err
}

// write retries while pion reports 0 bytes: before its SRTP session runs pion drops what is
// written without an error.
func (t *testTrack) write(ctx context.Context, hdr *rtp.Header, payload []byte) error {
	for {
		t.mu.Lock()
		w := t.w
		t.mu.Unlock()
		if w != nil {
			n, err := w.WriteRTP(hdr, payload)
			if err != nil || n > 0 {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sdpLines returns the lines of an SDP that start with prefix.
func sdpLines(sdp []byte, prefix string) []string {
	var out []string
	for _, l := range strings.Split(string(sdp), "\r\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
