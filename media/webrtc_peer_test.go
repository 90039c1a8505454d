package media

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

// Test peers for the WebRTC leg. metaPeer is the interop check: an independent WebRTC stack
// (pion/webrtc's PeerConnection) configured like Meta's media server. litePeer is a bare pion/ice
// lite agent with pion/dtls, light enough that allocation, memory and goroutine figures measure
// the leg and not a PeerConnection.

const (
	peerWait    = 10 * time.Second // bound on every wait for a peer
	testCodecTE = 126              // Meta's telephone-event PT (§4.3)
)

// metaCodecs are the codecs of Meta's offers (whatsapp-calling.md §4.3), as the bridge puts them
// in an answer.
func metaCodecs() []Codec {
	return []Codec{
		{PT: waOpusPT, Name: CodecOpus, ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
		{PT: testCodecTE, Name: CodecTelEvent, ClockRate: 8000, Fmtp: "0-15"},
	}
}

func ipv6LoopbackAvailable() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// quietPion discards pion's logs: peers' goroutines may log after the test has returned, when
// t.Log would panic.
func quietPion() pionLoggerFactory {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return newPionLoggerFactory(logrus.NewEntry(l))
}

// metaPeer is a pion/webrtc PeerConnection set up like Meta's media server: ICE-lite, hence
// always controlled (§0 fact 4); a=setup:actpass when it offers; Opus PT 111 and
// telephone-event/8000 PT 126; one audio transceiver with a TrackLocalStaticRTP; rtcp-mux and
// BUNDLE (pion's defaults); host candidates on 127.0.0.1 and, where the host has it, ::1 (Meta
// offers one IPv4 and one IPv6 candidate, §4.4).
type metaPeer struct {
	t         testing.TB
	pc        *webrtc.PeerConnection
	track     *webrtc.TrackLocalStaticRTP
	tracks    chan *webrtc.TrackRemote
	connected chan struct{}
	firstPkt  chan time.Time // when OnTrack fired: the first packet arrived
}

// answeringRole: 0 keeps pion's default; webrtc.DTLSRoleClient answers a=setup:active,
// webrtc.DTLSRoleServer a=setup:passive.
func newMetaPeer(t testing.TB, answeringRole webrtc.DTLSRole) *metaPeer {
	t.Helper()
	se := webrtc.SettingEngine{LoggerFactory: quietPion()}
	se.SetLite(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Our SDP names no SSRC, as the SDES leg's does not (Meta takes either and rewrites SSRCs,
	// §4.2). As an offerer pion would wait for an a=ssrc or a MID header extension before it
	// surfaces the stream; this lets it take the one SSRC of the one section, as the WebRTC
	// stacks Meta runs do.
	se.SetHandleUndeclaredSSRCWithoutAnswer(true)
	// One socket per family, as Meta's relay has (§4.3): a UDP mux bound to each loopback address
	// yields exactly one host candidate each. (pion's own gathering never offers ::1: it takes
	// the address for an IPv4-compatible one, RFC 4291 §2.5.5.1.)
	sock4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	muxes := []ice.UDPMux{ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock4, Logger: quietPion().NewLogger("mux")})}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if sock6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock6, Logger: quietPion().NewLogger("mux")}))
		networks = append(networks, webrtc.NetworkTypeUDP6)
	}
	mux := ice.NewMultiUDPMuxDefault(muxes...)
	t.Cleanup(func() { _ = mux.Close() }) // registered first, so it runs after the PeerConnection's close
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes(networks)
	if answeringRole != 0 {
		require.NoError(t, se.SetAnsweringDTLSRole(answeringRole))
	}

	me := &webrtc.MediaEngine{}
	require.NoError(t, me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
		},
		PayloadType: waOpusPT,
	}, webrtc.RTPCodecTypeAudio))
	require.NoError(t, me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-15"},
		PayloadType:        testCodecTE,
	}, webrtc.RTPCodecTypeAudio))
	// The default interceptors send RTCP reports, as Meta does: the relay must take SRTCP too.
	ir := &interceptor.Registry{}
	require.NoError(t, webrtc.RegisterDefaultInterceptors(me, ir))

	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	require.NoError(t, err)
	p := &metaPeer{t: t, pc: pc, tracks: make(chan *webrtc.TrackRemote, 1),
		connected: make(chan struct{}), firstPkt: make(chan time.Time, 1)}
	t.Cleanup(func() { _ = pc.GracefulClose() })

	p.track, err = webrtc.NewTrackLocalStaticRTP(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "WhatsAppTrack1")
	require.NoError(t, err)
	sender, err := pc.AddTrack(p.track)
	require.NoError(t, err)
	go func() { // RTCP for our track; pion needs it read
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case p.firstPkt <- time.Now():
		default:
		}
		select {
		case p.tracks <- tr:
		default:
		}
	})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(p.connected) })
		}
	})
	return p
}

func (p *metaPeer) gatheredLocal() *Description {
	p.t.Helper()
	select {
	case <-webrtc.GatheringCompletePromise(p.pc):
	case <-time.After(peerWait):
		p.t.Fatal("meta peer: gathering did not complete")
	}
	d, err := ParseDescription([]byte(p.pc.LocalDescription().SDP))
	require.NoError(p.t, err)
	return d
}

// offer is Meta's offer for a user-initiated call.
func (p *metaPeer) offer() *Description {
	p.t.Helper()
	o, err := p.pc.CreateOffer(nil)
	require.NoError(p.t, err)
	require.NoError(p.t, p.pc.SetLocalDescription(o))
	return p.gatheredLocal()
}

func (p *metaPeer) setAnswer(d *Description) {
	p.t.Helper()
	require.NoError(p.t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(d.Marshal())}))
}

// answer is Meta's answer to our offer (business-initiated call).
func (p *metaPeer) answer(offer *Description) *Description {
	p.t.Helper()
	require.NoError(p.t, p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer.Marshal())}))
	a, err := p.pc.CreateAnswer(nil)
	require.NoError(p.t, err)
	require.NoError(p.t, p.pc.SetLocalDescription(a))
	return p.gatheredLocal()
}

func (p *metaPeer) waitConnected() {
	p.t.Helper()
	select {
	case <-p.connected:
	case <-time.After(peerWait):
		p.t.Fatalf("meta peer: not connected (state %s)", p.pc.ConnectionState())
	}
}

// remoteTrack waits for our stream (the relay's maiden packet creates it).
func (p *metaPeer) remoteTrack() *webrtc.TrackRemote {
	p.t.Helper()
	select {
	case tr := <-p.tracks:
		return tr
	case <-time.After(peerWait):
		p.t.Fatal("meta peer: no packet from wabridge")
		return nil
	}
}

// readPayloads reads tr until it fails and sends every non-silence payload on the channel.
func readPayloads(tr *webrtc.TrackRemote) <-chan []byte {
	out := make(chan []byte, 256)
	go func() {
		defer close(out)
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			var pkt rtp.Packet
			if pkt.Unmarshal(buf[:n]) != nil || string(pkt.Payload) == OpusSilenceFrame {
				continue
			}
			select {
			case out <- append([]byte(nil), pkt.Payload...):
			default:
			}
		}
	}()
	return out
}

// litePeer is a Meta-like peer without a PeerConnection: a pion/ice lite agent (controlled) on
// its own loopback socket, a DTLS server, and the leg's own demultiplexer.
type litePeer struct {
	t          testing.TB
	mux        *ice.UDPMuxDefault
	agent      *ice.Agent
	cert       *DTLSCertificate
	ufrag, pwd string
	candidates []string
	conn       *iceMediaConn
	dc         *dtls.Conn
	drained    chan struct{}
}

func newLitePeer(t testing.TB, cert *DTLSCertificate) *litePeer {
	t.Helper()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	lf := quietPion()
	p := &litePeer{t: t, cert: cert}
	p.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock, Logger: lf.NewLogger("mux")})
	p.agent, err = ice.NewAgentWithOptions(ice.WithICELite(true), ice.WithUDPMux(p.mux),
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4}),
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled), ice.WithIncludeLoopback(), ice.WithLoggerFactory(lf))
	require.NoError(t, err)
	t.Cleanup(p.close)
	done := make(chan struct{})
	var mu sync.Mutex
	require.NoError(t, p.agent.OnCandidate(func(c ice.Candidate) {
		mu.Lock()
		defer mu.Unlock()
		if c == nil {
			close(done)
			return
		}
		p.candidates = append(p.candidates, c.Marshal())
	}))
	require.NoError(t, p.agent.GatherCandidates())
	<-done
	p.ufrag, p.pwd, err = p.agent.GetLocalUserCredentials()
	require.NoError(t, err)
	return p
}

func (p *litePeer) close() {
	if p.dc != nil {
		_ = p.dc.Close()
		<-p.drained
	}
	_ = p.agent.GracefulClose()
	_ = p.mux.Close()
}

// offer is shaped like Meta's (§4.3): ice-lite, actpass, mid "audio", BUNDLE, rtcp-mux.
func (p *litePeer) offer() *Description {
	d := &Description{Addr: netip.MustParseAddr("127.0.0.1"), Port: 9, Proto: ProtoWebRTC, RTCPMux: true,
		Codecs: metaCodecs(), Direction: DirSendRecv, Ptime: 20,
		SessionExtra: []Attribute{{Key: attrGroup, Value: "BUNDLE audio"}, {Key: attrICELite}},
		Extra: []Attribute{{Key: attrICEUfrag, Value: p.ufrag}, {Key: attrICEPwd, Value: p.pwd},
			{Key: attrFingerprint, Value: p.cert.Fingerprint()}, {Key: attrSetup, Value: setupActpass}, {Key: attrMid, Value: "audio"}}}
	for _, c := range p.candidates {
		d.Extra = append(d.Extra, Attribute{Key: attrCandidate, Value: c})
	}
	return d
}

// connect accepts ICE and serves DTLS, like Meta answering a call we answered.
func (p *litePeer) connect(ctx context.Context, answer *Description) error {
	remote, err := parseRemoteWebRTC(answer, logrus.NewEntry(logrus.New()))
	if err != nil {
		return err
	}
	iceConn, err := p.agent.Accept(ctx, remote.ufrag, remote.pwd)
	if err != nil {
		return err
	}
	pair, err := p.agent.GetSelectedCandidatePair()
	if err != nil {
		return err
	}
	raddr, err := candidateAddr(pair.Remote)
	if err != nil {
		return err
	}
	laddr, err := candidateAddr(pair.Local)
	if err != nil {
		return err
	}
	p.conn = newICEMediaConn(iceConn, laddr, raddr, func() error { return nil })
	pumped := make(chan struct{})
	go p.conn.pump(pumped)
	dc, err := dtls.ServerWithOptions(dtlsnet.PacketConnFromConn(p.conn.dtls), p.conn.dtls.RemoteAddr(),
		dtls.WithCertificates(p.cert.cert), dtls.WithInsecureSkipVerify(true),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM),
		dtls.WithVerifyPeerCertificate(verifyFingerprint(remote.fingerprints)),
		dtls.WithClientAuth(dtls.RequireAnyClientCert), dtls.WithLoggerFactory(quietPion()))
	if err != nil {
		p.conn.stopPump(pumped)
		return err
	}
	err = dc.HandshakeContext(ctx)
	p.conn.stopPump(pumped)
	if err != nil {
		_ = dc.Close()
		return err
	}
	p.dc, p.drained = dc, make(chan struct{})
	go func() {
		defer close(p.drained)
		buf := make([]byte, 1500)
		for {
			if _, err := dc.Read(buf); err != nil {
				return
			}
		}
	}()
	return nil
}

// connectLeg answers p's offer with leg and connects both sides.
func connectLeg(t testing.TB, leg *WebRTCLeg, p *litePeer) (PacketConn, *SRTPKeys) {
	t.Helper()
	ans, err := leg.Answer(p.offer(), metaCodecs())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), peerWait)
	defer cancel()
	peerErr := make(chan error, 1)
	go func() { peerErr <- p.connect(ctx, ans) }()
	conn, keys, err := leg.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, <-peerErr)
	return conn, keys
}
