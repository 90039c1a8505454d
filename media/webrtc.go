package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/ice/v4"
	"github.com/sirupsen/logrus"
)

// Errors of the WebRTC leg. Connect's errors wrap one of them (or the context's error when the
// caller gave up); test with errors.Is.
var (
	// ErrICEFailed: no candidate pair answered within the connect timeout, or consent was lost
	// mid-call (RFC 7675).
	ErrICEFailed = errors.New("ICE failed")
	// ErrDTLSFailed: the DTLS handshake failed or timed out.
	ErrDTLSFailed = errors.New("DTLS handshake failed")
	// ErrFingerprintMismatch: the peer's DTLS certificate does not hash to any a=fingerprint of
	// its SDP. Connect's error wraps both this and ErrDTLSFailed.
	ErrFingerprintMismatch = errors.New("DTLS certificate does not match the SDP fingerprint")
	// ErrDTLSClosed: the peer ended the DTLS session (close_notify or a fatal alert) after the
	// handshake. The PacketConn's reads return it, which stops the relay and so ends the call.
	ErrDTLSClosed = errors.New("DTLS session closed by the peer")
)

// errConnectTimeout is the cause of Connect's context when WebRTCConfig.ConnectTimeout expires,
// so that it can be told apart from the caller's own deadline.
var errConnectTimeout = fmt.Errorf("webrtc connect timeout: %w", context.DeadlineExceeded)

// errLegClosed is the cause of Connect's context when Close interrupts it.
var errLegClosed = fmt.Errorf("webrtc leg closed: %w", net.ErrClosed)

const (
	// DefaultConnectTimeout bounds ICE plus DTLS. Meta's DTLS alone typically needs about 3 s,
	// with retransmissions after 1, 2 and 4 s (whatsapp-calling.md §4.5); 10 s leaves room for
	// two lost flights while the caller still hears ringing.
	DefaultConnectTimeout = 10 * time.Second
	// iceCheckInterval paces connectivity checks while connecting: RFC 8445 §14's default Ta
	// of 50 ms, not pion's 200 ms, because pion nominates one tick after the first success and
	// that tick delays the call's first audio (whatsapp-calling.md §4.10). Once connected pion
	// switches to its keepalive interval.
	iceCheckInterval = 50 * time.Millisecond
	// gatherTimeout bounds host candidate gathering, which over our own socket is immediate.
	gatherTimeout = 5 * time.Second
)

// WebRTCConfig configures one WhatsApp leg with ICE and DTLS-SRTP (whatsapp-calling.md §4.1,
// the default media profile).
type WebRTCConfig struct {
	// Endpoint is this leg's socket pair from Ports.Open. ICE, DTLS and SRTP all run on
	// Endpoint.RTP (rtcp-mux only, §0 fact 5); Endpoint.RTCP stays unused. Endpoint.RTP must be
	// the *UDPConn Ports.Open returns. The leg owns the Endpoint from NewWebRTCLeg on, even when
	// NewWebRTCLeg fails, and closes it exactly once.
	Endpoint *Endpoint
	// PublicIPs are advertised as host candidates in place of the socket's address (a 1:1 NAT or
	// a wildcard bind). Only those of the socket's address family are used, because one socket
	// has one family. Empty: the bound address, or every interface address for a wildcard bind.
	// Meta also accepts peer-reflexive addresses (§4.4), so a missing public IP degrades rather
	// than breaks, but the SDP should carry one.
	PublicIPs []netip.Addr
	// Certificate is presented in the DTLS handshake; one per process (NewDTLSCertificate).
	Certificate *DTLSCertificate
	// ConnectTimeout bounds ICE plus DTLS in Connect. 0: DefaultConnectTimeout.
	ConnectTimeout time.Duration
	Log            *logrus.Entry
}

type legState int

const (
	legNew        legState = iota
	legOffered             // Offer returned; waiting for SetAnswer
	legNegotiated          // the peer's description is in; Connect may run
	legConnecting
	legConnected
	legClosed
)

// dtlsRole is our side of the DTLS handshake, from the a=setup exchange (RFC 5763 §5).
type dtlsRole int

const (
	dtlsClient dtlsRole = iota + 1 // a=setup:active on our side
	dtlsServer                     // a=setup:passive on our side
)

func (r dtlsRole) String() string {
	if r == dtlsServer {
		return "server"
	}
	return "client"
}

// WebRTCLeg is the WhatsApp leg of a call when Meta's media profile is ICE + DTLS-SRTP. It is
// built on pion/ice and pion/dtls directly, not on a PeerConnection, because the relay already
// does SRTP with plain srtp Contexts over the PacketConn seam: the leg's job ends with a
// PacketConn that carries only SRTP/SRTCP on the ICE-selected pair and the SRTP keys exported from
// DTLS (SRTPKeys), which the existing Relay consumes unchanged.
//
// Use: NewWebRTCLeg; then Answer (Meta offered) or Offer and SetAnswer (we offer); then Connect;
// then give the PacketConn and keys to NewRelay with RelayConfig.WhatsApp set to
// LegConfig{Endpoint: &Endpoint{RTP: conn}, Remote: leg.RemoteAddr(), RTCPMux: true, SRTP: keys}
// (Latch off: ICE already fixed the path). Close when the call ends; the relay closing the
// PacketConn closes the leg too.
//
// Goroutines: pion's (the agent's loop and check timer, one reader per local candidate, the UDP
// mux's socket reader, pion/dtls's handshake and record readers) and one of ours that drains the
// DTLS connection after the handshake; 10 in all (performance.md, "DTLS leg"). The relay's reader
// reads media straight from the ICE connection: the leg adds no goroutine or copy to the media
// path (iceconn.go), though pion's mux and agent add two hand-offs under it.
type WebRTCLeg struct {
	log     *logrus.Entry
	ep      *Endpoint
	cert    *DTLSCertificate
	timeout time.Duration
	mux     *ice.UDPMuxDefault
	agent   *ice.Agent
	pionLog pionLoggerFactory

	// Fixed by NewWebRTCLeg.
	local       netip.AddrPort // the socket's address
	defaultAddr netip.Addr     // c= address: the first advertised candidate's
	candidates  []string       // our a=candidate values
	ufrag, pwd  string

	mu            sync.Mutex
	state         legState
	remote        *remoteWebRTC
	role          dtlsRole
	mid           string
	cancelConnect context.CancelCauseFunc
	dtls          *dtls.Conn
	conn          *iceMediaConn
	remoteAddr    netip.AddrPort
	iceTook       time.Duration // how long ICE took in Connect (logged; benchmarks read it)
	drained       chan struct{} // closed when the DTLS drain goroutine returns

	closeOnce sync.Once
	closeErr  error
}

// NewWebRTCLeg prepares a leg: it starts an ICE agent on the Endpoint's RTP socket and gathers
// its host candidates, so that Offer and Answer return at once with every candidate in the SDP
// (non-trickle: Meta's SDP exchange is a single offer and answer, §4.3).
func NewWebRTCLeg(cfg WebRTCConfig) (*WebRTCLeg, error) {
	if cfg.Endpoint == nil || cfg.Endpoint.RTP == nil {
		return nil, errors.New("webrtc leg: no endpoint")
	}
	log := cfg.Log
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	log = log.WithField("leg", legWhatsApp) // the relay's name for this side
	l, err := newWebRTCLeg(cfg, log)
	if err != nil {
		_ = cfg.Endpoint.Close()
		return nil, fmt.Errorf("webrtc leg: %w", err)
	}
	return l, nil
}

func newWebRTCLeg(cfg WebRTCConfig, log *logrus.Entry) (*WebRTCLeg, error) {
	if cfg.Certificate == nil {
		return nil, errors.New("no DTLS certificate")
	}
	// The agent must own the socket's reads. Going through the UDPConn's socket (same package)
	// keeps the port that Ports.Open reserved; closing it and letting pion bind the same port
	// would leave a window in which another call or process could take it.
	udp, ok := cfg.Endpoint.RTP.(*UDPConn)
	if !ok {
		return nil, fmt.Errorf("endpoint RTP is a %T, want the *UDPConn from Ports.Open", cfg.Endpoint.RTP)
	}
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	l := &WebRTCLeg{
		log:     log,
		ep:      cfg.Endpoint,
		cert:    cfg.Certificate,
		timeout: timeout,
		local:   udp.LocalAddr(),
		pionLog: newPionLoggerFactory(log),
	}

	bound := l.local.Addr().Unmap()
	network := ice.NetworkTypeUDP4
	if bound.Is6() {
		network = ice.NetworkTypeUDP6
	}
	var public []string
	for _, ip := range cfg.PublicIPs {
		if ip = ip.Unmap(); ip.IsValid() && ip.Is4() == bound.Is4() {
			public = append(public, ip.String())
		}
	}
	if len(cfg.PublicIPs) > 0 && len(public) == 0 {
		return nil, fmt.Errorf("none of the public IPs %v is of the socket's family (%s)", cfg.PublicIPs, l.local)
	}

	l.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: udp.conn, Logger: l.pionLog.NewLogger("ice-mux")})
	opts := []ice.AgentOption{
		ice.WithUDPMux(l.mux),
		ice.WithNetworkTypes([]ice.NetworkType{network}),
		// Host candidates only: Meta provides no STUN/TURN and needs none (§4.4).
		ice.WithCandidateTypes([]ice.CandidateType{ice.CandidateTypeHost}),
		// mDNS candidates (.local) hide the address from the peer; Meta needs a routable one.
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithCheckInterval(iceCheckInterval),
		ice.WithLoggerFactory(l.pionLog),
	}
	if len(public) > 0 {
		opts = append(opts, ice.WithAddressRewriteRules(ice.AddressRewriteRule{
			External: public, AsCandidateType: ice.CandidateTypeHost, Mode: ice.AddressRewriteReplace,
		}))
	}
	if bound.IsLoopback() {
		// pion skips loopback addresses; a socket bound to one (tests, the demo) has nothing else.
		opts = append(opts, ice.WithIncludeLoopback())
	}
	agent, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		_ = l.mux.Close()
		return nil, fmt.Errorf("ice agent: %w", err)
	}
	l.agent = agent
	if err := l.gather(bound); err != nil {
		l.closeICE()
		return nil, err
	}
	if err := agent.OnConnectionStateChange(l.onICEState); err != nil {
		l.closeICE()
		return nil, fmt.Errorf("ice agent: %w", err)
	}
	l.log.WithFields(logrus.Fields{"local": l.local, "candidates": l.candidates}).Debug("webrtc leg ready")
	return l, nil
}

// gather collects the agent's host candidates, keeping those of the socket's family: a wildcard
// IPv6 socket makes pion list IPv4 interface addresses too, which that socket cannot use.
func (l *WebRTCLeg) gather(bound netip.Addr) error {
	var (
		mu    sync.Mutex
		found []ice.Candidate
		done  = make(chan struct{})
	)
	err := l.agent.OnCandidate(func(c ice.Candidate) {
		mu.Lock()
		defer mu.Unlock()
		if c == nil {
			close(done) // gathering complete (pion's end-of-candidates signal)
			return
		}
		found = append(found, c)
	})
	if err != nil {
		return fmt.Errorf("ice agent: %w", err)
	}
	if err := l.agent.GatherCandidates(); err != nil {
		return fmt.Errorf("gather ICE candidates: %w", err)
	}
	select {
	case <-done:
	case <-time.After(gatherTimeout):
		return fmt.Errorf("gather ICE candidates: not complete after %s", gatherTimeout)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range found {
		addr, err := netip.ParseAddr(c.Address())
		if err != nil || addr.Unmap().Is4() != bound.Is4() {
			continue
		}
		if !l.defaultAddr.IsValid() {
			l.defaultAddr = addr.Unmap()
		}
		l.candidates = append(l.candidates, c.Marshal())
	}
	if len(l.candidates) == 0 {
		return fmt.Errorf("no host candidate for socket %s (%d gathered)", l.local, len(found))
	}
	l.ufrag, l.pwd, err = l.agent.GetLocalUserCredentials()
	if err != nil {
		return fmt.Errorf("ice credentials: %w", err)
	}
	return nil
}

// onICEState runs on pion's notifier goroutine.
func (l *WebRTCLeg) onICEState(s ice.ConnectionState) {
	l.log.WithField("ice_state", s.String()).Debug("ice state")
	if s != ice.ConnectionStateFailed {
		return
	}
	l.mu.Lock()
	state, cancel, conn := l.state, l.cancelConnect, l.conn
	l.mu.Unlock()
	switch state {
	case legConnecting:
		cancel(ErrICEFailed)
	case legConnected:
		// Consent lost (RFC 7675 §5.1: stop sending). Meta cannot re-handshake a leg (§4.7), so
		// the call ends: the relay's next read returns this.
		l.log.Warn("ice failed mid-call: the peer stopped answering consent checks")
		conn.fail(fmt.Errorf("%w: consent lost", ErrICEFailed))
	}
}

// RemoteAddr is the peer's address on the ICE-selected pair; valid once Connect has returned.
func (l *WebRTCLeg) RemoteAddr() netip.AddrPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.remoteAddr
}

// Connect runs ICE and then DTLS, and returns the PacketConn for the relay with the SRTP keys.
//
// ICE: we are the full agent and CONTROLLING from the first check, whichever side offered:
// Meta is ICE-lite and always controlled, and an agent that starts controlled meets 487 role
// conflicts (whatsapp-calling.md §0 fact 4, §7's FreeSWITCH rows). Against a full-ICE peer
// that is also controlling (baresip, tested in bridge's netns test) RFC 8445 §7.3.1.1's
// tie-breaker settles the conflict either way and the call connects. Nomination is regular
// (RFC 8445 §8.1.1), and the selected pair is never switched afterwards (pion renominates only
// when told to). DTLS starts only once ICE has selected a pair (§4.4).
//
// DTLS: client or server as a=setup decided; the peer's certificate must match its
// a=fingerprint. Profiles offered: SRTP_AEAD_AES_128_GCM, SRTP_AES128_CM_HMAC_SHA1_80.
//
// Connect returns as soon as the handshake completes, because Meta waits for our first packet
// (§0 fact 6) and the relay sends it the moment it starts. On error the leg is closed. Errors
// wrap ErrICEFailed or ErrDTLSFailed (with context.DeadlineExceeded when ConnectTimeout expired,
// and ErrFingerprintMismatch for a wrong certificate), or the caller's context error.
func (l *WebRTCLeg) Connect(ctx context.Context) (PacketConn, *SRTPKeys, error) {
	l.mu.Lock()
	switch l.state {
	case legNegotiated:
	case legClosed:
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("webrtc connect: %w", net.ErrClosed)
	case legNew, legOffered:
		l.mu.Unlock()
		return nil, nil, errors.New("webrtc connect: no remote description yet (Answer or SetAnswer first)")
	default:
		l.mu.Unlock()
		return nil, nil, errors.New("webrtc connect: already connecting or connected")
	}
	timeoutCtx, cancelTimeout := context.WithTimeoutCause(ctx, l.timeout, errConnectTimeout)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(timeoutCtx)
	defer cancel(nil)
	l.state, l.cancelConnect = legConnecting, cancel
	remote, role := l.remote, l.role
	l.mu.Unlock()

	conn, keys, err := l.connect(ctx, remote, role)
	if err != nil {
		_ = l.Close()
		return nil, nil, err
	}
	return conn, keys, nil
}

func (l *WebRTCLeg) connect(ctx context.Context, remote *remoteWebRTC, role dtlsRole) (*iceMediaConn, *SRTPKeys, error) {
	start := time.Now()
	iceConn, err := l.agent.Dial(ctx, remote.ufrag, remote.pwd)
	if err != nil {
		return nil, nil, l.connectError(ctx, ErrICEFailed, "ICE", err)
	}
	pair, err := l.agent.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return nil, nil, fmt.Errorf("%w: no selected candidate pair after connecting", ErrICEFailed)
	}
	remoteAddr, err := candidateAddr(pair.Remote)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: selected pair: %w", ErrICEFailed, err)
	}
	iceTook := time.Since(start)
	log := l.log.WithFields(logrus.Fields{"remote": remoteAddr, "dtls_role": role.String()})
	log.WithField("took", iceTook.Round(time.Millisecond)).Debug("ice connected")

	conn := newICEMediaConn(iceConn, l.local, remoteAddr, l.Close)
	pumped := make(chan struct{})
	go conn.pump(pumped)
	dc, err := l.handshake(ctx, conn, remote, role)
	if err != nil {
		conn.stopPump(pumped)
		return nil, nil, err
	}
	keys, err := exportSRTPKeys(dc, role == dtlsClient)
	if err != nil {
		conn.stopPump(pumped)
		return nil, nil, fmt.Errorf("%w: %w", ErrDTLSFailed, err)
	}
	conn.stopPump(pumped) // from here the relay's reader demultiplexes

	l.mu.Lock()
	if l.state == legClosed {
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("webrtc connect: %w", errLegClosed)
	}
	l.state, l.cancelConnect, l.conn, l.remoteAddr, l.iceTook = legConnected, nil, conn, remoteAddr, iceTook
	l.drained = make(chan struct{})
	go l.drainDTLS(dc, conn, l.drained)
	l.mu.Unlock()

	log.WithFields(logrus.Fields{
		"ice_took": iceTook.Round(time.Millisecond), "took": time.Since(start).Round(time.Millisecond),
		"srtp": keys.Local.Suite,
	}).Info("webrtc media connected")
	return conn, keys, nil
}

// handshake runs DTLS over the demultiplexed ICE connection. Who is client was settled by
// a=setup (RFC 5763 §5); the certificate is checked against the peer's a=fingerprint.
func (l *WebRTCLeg) handshake(ctx context.Context, conn *iceMediaConn, remote *remoteWebRTC, role dtlsRole) (*dtls.Conn, error) {
	opts := []dtls.Option{
		dtls.WithCertificates(l.cert.cert),
		// GCM first: a third of the per-packet cost of AES-CM with HMAC-SHA1 (go-libs §3);
		// AES128_CM_HMAC_SHA1_80 is what every DTLS-SRTP stack implements (RFC 5764 §4.1.2).
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		// Self-signed on both sides: trust comes from the SDP fingerprint, checked below.
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verifyFingerprint(remote.fingerprints)),
		// Use the extended master secret (RFC 7627) when the peer offers it, as pion/webrtc does,
		// but do not require it: which DTLS stack Meta runs is undocumented, and refusing a peer
		// without it would fail the call for a protection against renegotiation and resumption
		// attacks, neither of which DTLS-SRTP here uses.
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		dtls.WithLoggerFactory(l.pionLog),
	}
	pc := dtlsnet.PacketConnFromConn(conn.dtls)
	var (
		dc  *dtls.Conn
		err error
	)
	if role == dtlsClient {
		copts := make([]dtls.ClientOption, 0, len(opts))
		for _, o := range opts {
			copts = append(copts, o)
		}
		dc, err = dtls.ClientWithOptions(pc, conn.dtls.RemoteAddr(), copts...)
	} else {
		sopts := make([]dtls.ServerOption, 0, len(opts)+1)
		for _, o := range opts {
			sopts = append(sopts, o)
		}
		// A WebRTC server must see the client's certificate to match its fingerprint.
		sopts = append(sopts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		dc, err = dtls.ServerWithOptions(pc, conn.dtls.RemoteAddr(), sopts...)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDTLSFailed, err)
	}
	l.mu.Lock()
	if l.state == legClosed {
		l.mu.Unlock()
		_ = dc.Close()
		return nil, fmt.Errorf("webrtc connect: %w", errLegClosed)
	}
	l.dtls = dc // so that Close can interrupt the handshake
	l.mu.Unlock()

	if err := dc.HandshakeContext(ctx); err != nil {
		return nil, l.connectError(ctx, ErrDTLSFailed, "DTLS", err)
	}
	return dc, nil
}

// connectError says why a Connect stage failed: the connect timeout (stage error plus
// context.DeadlineExceeded), ICE failing (ErrICEFailed), Close, the caller's context, or the
// stage's own error.
func (l *WebRTCLeg) connectError(ctx context.Context, stage error, name string, err error) error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errConnectTimeout):
		return fmt.Errorf("%w: %s not complete within %s: %w", stage, name, l.timeout, context.DeadlineExceeded)
	case errors.Is(cause, ErrICEFailed):
		return fmt.Errorf("%w: connectivity checks failed during %s", ErrICEFailed, name)
	case cause != nil:
		return fmt.Errorf("webrtc connect: %s interrupted: %w", name, cause)
	default:
		return fmt.Errorf("%w: %w", stage, err)
	}
}

// drainDTLS keeps reading the DTLS connection after the handshake. WebRTC audio carries no DTLS
// application data, but pion/dtls hands non-fatal alerts to Read and blocks its record reader
// until someone takes them, and a close_notify or fatal alert from the peer shows up here as the
// end of the connection: the media conn then fails with ErrDTLSClosed, the relay stops and the
// call ends (a leg cannot re-handshake, whatsapp-calling.md §4.7).
func (l *WebRTCLeg) drainDTLS(dc *dtls.Conn, conn *iceMediaConn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 1500)
	for {
		_, err := dc.Read(buf)
		if err == nil {
			continue // application data: not ours to use
		}
		if errors.Is(err, io.EOF) || errors.Is(err, dtls.ErrConnClosed) || errors.Is(err, net.ErrClosed) {
			if !l.closing() {
				l.log.Info("peer closed the DTLS session")
				conn.fail(fmt.Errorf("%w: %w", ErrDTLSClosed, err))
			}
			return
		}
		l.log.WithError(err).Debug("dtls: non-fatal alert or error from the peer")
	}
}

func (l *WebRTCLeg) closing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state == legClosed
}

// Close ends the leg: it interrupts a running Connect, sends close_notify to the peer (RFC 5246
// §7.2.1) when DTLS is up, stops the ICE agent and its goroutines, and closes the Endpoint. It is
// idempotent, and the PacketConn's Close calls it.
func (l *WebRTCLeg) Close() error {
	l.closeOnce.Do(func() {
		l.pionLog.mute.Store(true)
		l.mu.Lock()
		l.state = legClosed
		cancel, dc, conn, drained := l.cancelConnect, l.dtls, l.conn, l.drained
		l.mu.Unlock()
		if cancel != nil {
			cancel(errLegClosed)
		}
		var errs []error
		if dc != nil {
			if err := dc.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, dtls.ErrConnClosed) {
				errs = append(errs, fmt.Errorf("close dtls: %w", err))
			}
		}
		if conn != nil {
			conn.fail(errLegClosed)
		}
		l.closeICE()
		if drained != nil {
			<-drained
		}
		errs = append(errs, l.ep.Close())
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// closeICE stops the agent, waiting for its goroutines, and then the mux, which closes the socket.
func (l *WebRTCLeg) closeICE() {
	l.pionLog.mute.Store(true)
	if l.agent != nil {
		_ = l.agent.GracefulClose()
	}
	_ = l.mux.Close()
}

// candidateAddr is a candidate's transport address.
func candidateAddr(c ice.Candidate) (netip.AddrPort, error) {
	addr, err := netip.ParseAddr(c.Address())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("candidate address %q: %w", c.Address(), err)
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(c.Port())), nil
}
