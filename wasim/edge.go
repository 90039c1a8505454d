package wasim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	wsip "github.com/wabridge/wabridge/sip"
)

// Number is a business phone number as Meta knows it once SIP is enabled on it.
type Number struct {
	// Password is the SIP password Meta generated for the number (digest username is the
	// number's digits without '+').
	Password string
	// Hostname is the SIP server hostname configured for the number
	// (calling.sip.servers[].hostname). Business-initiated INVITEs must come From it or a
	// parent domain of it; user-initiated INVITEs are addressed to it.
	Hostname string
	// PhoneNumberID appears in Meta's error texts; derived from the number when empty.
	PhoneNumberID string
	// SRTP is the number's calling.srtp_key_exchange_protocol: SRTPSDES (default when
	// empty: RTP/SAVP with a=crypto, media by Peer) or SRTPDTLS (Meta's WebRTC profile: ICE-lite
	// plus DTLS-SRTP over UDP/TLS/RTP/SAVPF, media by WebRTCPeer). It decides what the edge
	// offers in Dial and what it accepts in business-initiated INVITEs
	// (whatsapp-calling.md §4.1, §5.3 step 4).
	SRTP string
}

// Key exchange protocols for Number.SRTP (whatsapp-calling.md §0 item 2).
const (
	SRTPSDES = "SDES"
	SRTPDTLS = "DTLS"
)

// dtls reports whether the number uses Meta's WebRTC media profile.
func (n Number) dtls() bool { return n.SRTP == SRTPDTLS }

// EdgeConfig configures NewEdge.
type EdgeConfig struct {
	// Numbers are the business numbers with SIP enabled, keyed by E.164 with '+'.
	Numbers map[string]Number
	// DigestAlgorithm is what the edge challenges with: DigestMD5 (default) or DigestSHA256.
	DigestAlgorithm string
	// OnInvite decides how a valid business-initiated INVITE is answered. It runs in the
	// INVITE's goroutine; nil answers 200 at once.
	OnInvite func(InviteInfo) Answer
	// Log receives the edge's logs (leg=whatsapp-sim is added).
	Log *logrus.Entry
}

// incomingQueueSize bounds business-initiated calls waiting for NextCall; a long-running
// demo that never calls NextCall drops the oldest instead of growing without limit.
const incomingQueueSize = 256

// Edge is a Meta-like SIP/TLS edge on one listener.
type Edge struct {
	cfg     EdgeConfig
	log     *logrus.Entry
	certPEM []byte
	tlsConf *tls.Config
	auth    *digestServer

	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	cli      *sipgo.Client
	ln       net.Listener
	dialLn   *connListener
	addr     netip.AddrPort
	rrInvite []sip.Header // Record-Route set of the edge's INVITEs (wa.meta.vc first)
	rrAnswer []sip.Header // Record-Route set of the edge's 2xx (inner proxy first)
	route    []string     // the Route set wabridge must send in-dialog, in order

	dialMu   sync.Mutex
	upstream map[netip.AddrPort]*upstreamConn

	mu         sync.Mutex
	listening  bool
	closed     bool
	calls      map[string]*Call // by Call-ID
	incoming   []*Call
	incomingCh chan struct{} // signalled when incoming grows
	violations []string

	closeCh chan struct{}
	wg      sync.WaitGroup
}

// NewEdge validates cfg and prepares the edge's TLS certificate (for wa.meta.vc, 127.0.0.1,
// ::1 and localhost). Call Listen to start it.
func NewEdge(cfg EdgeConfig) (*Edge, error) {
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	switch cfg.DigestAlgorithm {
	case "":
		cfg.DigestAlgorithm = DigestMD5
	case DigestMD5, DigestSHA256:
	default:
		return nil, fmt.Errorf("wasim: digest algorithm %q, want %s or %s", cfg.DigestAlgorithm, DigestMD5, DigestSHA256)
	}
	numbers := make(map[string]Number, len(cfg.Numbers))
	for n, num := range cfg.Numbers {
		if !isE164(n) {
			return nil, fmt.Errorf("wasim: business number %q is not E.164 with '+'", n)
		}
		if num.Hostname == "" {
			return nil, fmt.Errorf("wasim: business number %s has no SIP server hostname", n)
		}
		if num.PhoneNumberID == "" {
			num.PhoneNumberID = "10" + n[1:]
		}
		switch strings.ToUpper(num.SRTP) {
		case "", SRTPSDES:
			num.SRTP = SRTPSDES
		case SRTPDTLS:
			num.SRTP = SRTPDTLS
		default:
			return nil, fmt.Errorf("wasim: business number %s: SRTP key exchange %q, want %s or %s", n, num.SRTP, SRTPSDES, SRTPDTLS)
		}
		numbers[n] = num
	}
	cfg.Numbers = numbers

	certPEM, keyPEM, err := wsip.GenerateSelfSigned(MetaDomain, "127.0.0.1", "::1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("wasim: edge certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("wasim: edge certificate: %w", err)
	}
	e := &Edge{
		cfg:        cfg,
		log:        cfg.Log.WithField("leg", "whatsapp-sim"),
		certPEM:    certPEM,
		auth:       newDigestServer(cfg.DigestAlgorithm),
		upstream:   make(map[netip.AddrPort]*upstreamConn),
		calls:      make(map[string]*Call),
		incomingCh: make(chan struct{}, 1),
		closeCh:    make(chan struct{}),
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	// Meta's listener refuses a ClientHello that offers ALPN "sip" with alert 120
	// no_application_protocol (whatsapp-calling.md §0 item 17, livekit/sip#685). Go's server
	// sends exactly that alert when the client's ALPN list shares nothing with NextProtos.
	refuseSIP := base.Clone()
	refuseSIP.NextProtos = []string{"wasim-refuses-alpn-sip"}
	e.tlsConf = base.Clone()
	e.tlsConf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if slices.Contains(hello.SupportedProtos, "sip") {
			e.recordViolation(fmt.Sprintf("TLS ClientHello from %s offers ALPN %q; Meta rejects it with no_application_protocol",
				hello.Conn.RemoteAddr(), hello.SupportedProtos))
			return refuseSIP, nil
		}
		return nil, nil
	}
	return e, nil
}

// Listen starts the SIP/TLS listener on addr (e.g. "127.0.0.1:0") and serves until ctx ends
// or Close is called.
func (e *Edge) Listen(ctx context.Context, addr string) error {
	e.mu.Lock()
	if e.listening || e.closed {
		e.mu.Unlock()
		return errors.New("wasim: edge already listening or closed")
	}
	e.listening = true
	e.mu.Unlock()

	ln, err := tls.Listen("tcp", addr, e.tlsConf)
	if err != nil {
		return fmt.Errorf("wasim: listen: %w", err)
	}
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("wasim: listener address: %w", err)
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	e.addr = netip.AddrPortFrom(ip, ap.Port())
	e.buildRouteSet()

	slogger := wsip.NewSlogLogger(e.log.WithField("component", "sipgo"))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(userAgent),
		sipgo.WithUserAgentHostname(MetaDomain),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(slogger)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(slogger)),
	)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("wasim: sipgo user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slogger))
	if err != nil {
		_ = ln.Close()
		_ = ua.Close()
		return fmt.Errorf("wasim: sipgo server: %w", err)
	}
	// Via and Contact of the edge's requests name the listener, not the ephemeral port of a
	// connection the edge dials, so wabridge can also open a new connection to reach it.
	cli, err := sipgo.NewClient(ua,
		sipgo.WithClientHostname(e.addr.Addr().String()),
		sipgo.WithClientPort(int(e.addr.Port())),
		sipgo.WithClientLogger(slogger))
	if err != nil {
		_ = ln.Close()
		_ = ua.Close()
		return fmt.Errorf("wasim: sipgo client: %w", err)
	}
	e.ua, e.srv, e.cli, e.ln = ua, srv, cli, ln
	e.dialLn = newConnListener(ln.Addr())
	e.registerHandlers()

	for _, l := range []net.Listener{ln, e.dialLn} {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := srv.ServeTLS(l); err != nil && !errors.Is(err, net.ErrClosed) {
				e.log.WithError(err).Debug("SIP listener stopped")
			}
		}()
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-ctx.Done():
			go e.Close() // Close waits for this goroutine
		case <-e.closeCh:
		}
	}()
	e.log.WithField("addr", e.addr.String()).Info("WhatsApp edge emulator listening")
	return nil
}

// buildRouteSet makes the edge's two Record-Route entries, both pointing at its own listener:
// the first stands for wa.meta.vc, the second (x-fb=proxy) for onevc-sip-proxy
// (whatsapp-calling.md §5.2). A request passes wa.meta.vc first, so the inner proxy is on top
// in the edge's 2xx (§5.3 step 5), and wabridge's in-dialog requests carry Route
// wa.meta.vc, then the inner proxy, in both directions.
func (e *Edge) buildRouteSet() {
	rr := func(extra ...sip.HeaderKV) *sip.RecordRouteHeader {
		params := sip.HeaderParams{{K: "transport", V: "tls"}, {K: "lr", V: ""}}
		return &sip.RecordRouteHeader{Address: sip.Uri{
			Scheme: "sip", Host: e.addr.Addr().String(), Port: int(e.addr.Port()),
			UriParams: append(params, extra...),
		}}
	}
	outer, inner := rr(), rr(sip.HeaderKV{K: "x-fb", V: "proxy"})
	e.rrInvite = []sip.Header{outer, inner}
	e.rrAnswer = []sip.Header{inner.Clone(), outer.Clone()}
	e.route = []string{outer.Value(), inner.Value()}
}

// routeSet is the Route set wabridge must put on in-dialog requests, in order.
func (e *Edge) routeSet() []string { return e.route }

// contact is the edge's Contact for a WhatsApp user:
// <sip:+<user>@<listener>;transport=tls;ob>;isfocus (whatsapp-calling.md §5.2).
func (e *Edge) contact(user string) *sip.ContactHeader {
	return &sip.ContactHeader{
		Address: sip.Uri{
			Scheme: "sip", User: user, Host: e.addr.Addr().String(), Port: int(e.addr.Port()),
			UriParams: sip.HeaderParams{{K: "transport", V: "tls"}, {K: "ob", V: ""}},
		},
		Params: sip.HeaderParams{{K: "isfocus", V: ""}},
	}
}

// Addr is the listener's address.
func (e *Edge) Addr() netip.AddrPort { return e.addr }

// CAPEM is the PEM of the edge's self-signed certificate, which is its own CA: give it to
// wabridge as the CA file for "Meta".
func (e *Edge) CAPEM() []byte { return slices.Clone(e.certPEM) }

// Violations returns every strictness failure seen by the edge: TLS and out-of-dialog
// problems, and every call's violations prefixed with its WACID.
func (e *Edge) Violations() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.violations)
}

func (e *Edge) recordViolation(v string) {
	e.mu.Lock()
	e.violations = append(e.violations, v)
	e.mu.Unlock()
}

// edgeViolation records a violation that belongs to no call.
func (e *Edge) edgeViolation(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	e.log.WithField("violation", v).Warn("WhatsApp SIP rule broken")
	e.recordViolation(v)
}

// NextCall returns the next business-initiated call that passed the edge's checks, in
// arrival order, as soon as it exists (before it is answered: wait on Call.Answered).
func (e *Edge) NextCall(ctx context.Context) (*Call, error) {
	for {
		e.mu.Lock()
		if len(e.incoming) > 0 {
			c := e.incoming[0]
			e.incoming = e.incoming[1:]
			e.mu.Unlock()
			return c, nil
		}
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return nil, errors.New("wasim: edge closed")
		}
		select {
		case <-e.incomingCh:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.closeCh:
		}
	}
}

func (e *Edge) publish(c *Call) {
	e.mu.Lock()
	if len(e.incoming) >= incomingQueueSize {
		e.log.WithField("dropped_wacid", e.incoming[0].WACID).Warn("incoming call queue full; NextCall is not being called")
		e.incoming = e.incoming[1:]
	}
	e.incoming = append(e.incoming, c)
	e.mu.Unlock()
	select {
	case e.incomingCh <- struct{}{}:
	default:
	}
}

// register makes a call findable by Call-ID for in-dialog requests.
func (e *Edge) register(c *Call) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("wasim: edge closed")
	}
	if _, dup := e.calls[c.CallID]; dup {
		return fmt.Errorf("wasim: duplicate Call-ID %q", c.CallID)
	}
	e.calls[c.CallID] = c
	return nil
}

func (e *Edge) forget(c *Call) {
	e.mu.Lock()
	if e.calls[c.CallID] == c {
		delete(e.calls, c.CallID)
	}
	e.mu.Unlock()
}

func (e *Edge) lookup(req *sip.Request) *Call {
	id := req.CallID()
	if id == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[id.Value()]
}

// Close hangs up the calls in progress (best effort, a second each), stops the listener and
// releases every connection and media socket.
func (e *Edge) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	calls := make([]*Call, 0, len(e.calls))
	for _, c := range e.calls {
		calls = append(calls, c)
	}
	e.mu.Unlock()
	close(e.closeCh)

	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			select {
			case <-c.answered:
				_ = c.Hangup(ctx)
			default:
			}
			c.end(EndedFailed)
		}()
	}
	wg.Wait()

	var err error
	if e.ln != nil {
		err = e.ln.Close()
		e.dialLn.Close()
		e.dialMu.Lock()
		for _, u := range e.upstream {
			_ = u.conn.Close()
		}
		e.dialMu.Unlock()
		_ = e.ua.Close()
	}
	e.wg.Wait()
	return err
}
