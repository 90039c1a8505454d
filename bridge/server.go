// Package bridge is wabridge's B2BUA: one Call per WhatsApp call, joining a WhatsApp leg (Meta's
// SIP/TLS edge, SRTP) and a PBX leg (a plain SIP trunk, RTP) through a media.Relay.
package bridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/media"
	"github.com/wabridge/wabridge/metrics"
	wsip "github.com/wabridge/wabridge/sip"
)

const (
	// userAgent is what both legs see in User-Agent and Server headers.
	userAgent = "wabridge"
	// byeTimeout bounds how long ending a call waits for each leg's BYE to be answered, so one dead
	// peer cannot hold the other leg's teardown (or shutdown) hostage.
	byeTimeout = 5 * time.Second
	// allowMethods is what wabridge accepts on either side. No UPDATE toward Meta: its edge
	// answers re-INVITE/UPDATE with 500 (whatsapp-calling.md §5.4), so we never offer them there,
	// but a PBX's session-timer UPDATE is answered locally.
	allowWhatsApp = "INVITE, ACK, BYE, CANCEL, OPTIONS"
	allowPBX      = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"
)

// side is one SIP face of the bridge: its own user agent (transport layer), server and client.
type side struct {
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	dua     *sipgo.DialogUA
	contact sipmsg.ContactHeader
	host    string                 // host we put in From/Contact on this side
	pins    *wsip.ConnectionPinner // WhatsApp side only: in-dialog requests reuse the call's TLS connection
}

// Server owns the listeners and every active call.
type Server struct {
	cfg      atomic.Pointer[config.Config] // swapped by Reload; read with config()
	log      *logrus.Entry
	publicIP netip.Addr
	ports    *media.Ports
	auth     *wsip.Authenticator
	dtlsCert *media.DTLSCertificate // one per process; its fingerprint goes in every DTLS SDP

	wa  side
	pbx side

	waTLS  net.Listener
	pbxUDP net.PacketConn
	pbxTCP net.Listener
	pbxTLS net.Listener

	regs    *registrations
	metrics *metrics.Metrics
	api     *apiState // API-mode numbers: provider clients and webhook receivers

	mu       sync.Mutex
	calls    map[string]*Call // by Call-ID of either leg
	active   int
	draining bool
	wg       sync.WaitGroup
	ctx      context.Context
	stop     context.CancelFunc
}

// Addrs are the bound listener addresses (useful when the config asked for port 0).
type Addrs struct {
	WhatsAppTLS netip.AddrPort
	PBXUDP      netip.AddrPort
	PBXTCP      netip.AddrPort
	PBXTLS      netip.AddrPort
}

// NewServer validates what the config implies at run time (certificates, addresses, the port
// range) and binds every listener, so that a misconfiguration fails at start, not on the first call.
func NewServer(cfg *config.Config, log *logrus.Entry, opts ...Option) (*Server, error) {
	s := &Server{log: log, calls: map[string]*Call{}, regs: &registrations{regs: map[string]*wsip.Registration{}}}
	s.cfg.Store(cfg)
	for _, o := range opts {
		o(s)
	}
	if s.metrics == nil {
		s.metrics = metrics.New()
	}
	if err := s.metrics.Register(registrationCollector{s}); err != nil {
		return nil, fmt.Errorf("registration metrics: %w", err)
	}
	s.ctx, s.stop = context.WithCancel(context.Background())

	pub, err := netip.ParseAddr(cfg.Media.PublicIP)
	if err != nil {
		return nil, fmt.Errorf("media.public_ip %q: %w", cfg.Media.PublicIP, err)
	}
	s.publicIP = pub
	bind, err := netip.ParseAddr(cfg.Media.BindIP)
	if err != nil {
		return nil, fmt.Errorf("media.bind_ip %q: %w", cfg.Media.BindIP, err)
	}
	if s.ports, err = media.NewPorts(bind, cfg.Media.RTPPortMin, cfg.Media.RTPPortMax); err != nil {
		return nil, fmt.Errorf("media port range: %w", err)
	}
	s.auth = wsip.NewAuthenticator(cfg.SIP.Hostname)
	if s.dtlsCert, err = media.NewDTLSCertificate(); err != nil {
		return nil, fmt.Errorf("DTLS certificate: %w", err)
	}

	if err := s.setupAPI(cfg); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}
	if err := s.setupWhatsAppSide(); err != nil {
		s.closeListeners()
		return nil, err
	}
	if err := s.setupPBXSide(); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

func (s *Server) listen() error {
	c := s.config().SIP
	var tlsConf *tls.Config
	if c.WhatsAppListen.CertFile != "" {
		var err error
		if tlsConf, err = wsip.ServerTLSConfig(c.WhatsAppListen.CertFile, c.WhatsAppListen.KeyFile); err != nil {
			return fmt.Errorf("sip.whatsapp_listen: %w", err)
		}
	}
	// No WhatsApp listener when only API-mode numbers are configured (nothing connects to it).
	if c.WhatsAppListen.TLS != "" && tlsConf != nil {
		l, err := net.Listen("tcp", c.WhatsAppListen.TLS)
		if err != nil {
			return fmt.Errorf("sip.whatsapp_listen.tls: %w", err)
		}
		s.waTLS = tls.NewListener(l, tlsConf)
	}
	var err error
	if c.PBXListen.UDP != "" {
		if s.pbxUDP, err = net.ListenPacket("udp", c.PBXListen.UDP); err != nil {
			return fmt.Errorf("sip.pbx_listen.udp: %w", err)
		}
	}
	if c.PBXListen.TCP != "" {
		tcpAddr := c.PBXListen.TCP
		// Same port as UDP when both ask for port 0, which is what PBX admins expect.
		if s.pbxUDP != nil && c.PBXListen.TCP == c.PBXListen.UDP {
			tcpAddr = s.pbxUDP.LocalAddr().String()
		}
		if s.pbxTCP, err = net.Listen("tcp", tcpAddr); err != nil {
			return fmt.Errorf("sip.pbx_listen.tcp: %w", err)
		}
	}
	if c.PBXListen.TLS != "" {
		l, err := net.Listen("tcp", c.PBXListen.TLS)
		if err != nil {
			return fmt.Errorf("sip.pbx_listen.tls: %w", err)
		}
		s.pbxTLS = tls.NewListener(l, tlsConf)
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, c := range []interface{ Close() error }{s.waTLS, s.pbxUDP, s.pbxTCP, s.pbxTLS} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// Addrs returns the bound addresses.
func (s *Server) Addrs() Addrs {
	var a Addrs
	if s.waTLS != nil {
		a.WhatsAppTLS = addrPortOf(s.waTLS.Addr())
	}
	if s.pbxUDP != nil {
		a.PBXUDP = addrPortOf(s.pbxUDP.LocalAddr())
	}
	if s.pbxTCP != nil {
		a.PBXTCP = addrPortOf(s.pbxTCP.Addr())
	}
	if s.pbxTLS != nil {
		a.PBXTLS = addrPortOf(s.pbxTLS.Addr())
	}
	return a
}

func addrPortOf(a net.Addr) netip.AddrPort {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func hostOrPublic(listen netip.AddrPort, public netip.Addr) string {
	if listen.IsValid() && !listen.Addr().IsUnspecified() {
		return listen.Addr().String()
	}
	return public.String()
}

func (s *Server) setupWhatsAppSide() error {
	c := s.config().SIP
	clientTLS, err := wsip.ClientTLSConfig(c.WhatsAppCAFile, "")
	if err != nil {
		return fmt.Errorf("sip.whatsapp_ca_file: %w", err)
	}
	host := c.Hostname
	if host == "" {
		host = s.publicIP.String()
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(userAgent), sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgenTLSConfig(clientTLS))
	if err != nil {
		return fmt.Errorf("whatsapp side user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return fmt.Errorf("whatsapp side server: %w", err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname(host))
	if err != nil {
		return fmt.Errorf("whatsapp side client: %w", err)
	}
	port := s.Addrs().WhatsAppTLS.Port()
	contact := sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: userAgent, Host: host, Port: int(port),
		UriParams: sipmsg.NewParams()}}
	contact.Address.UriParams.Add("transport", "tls")
	s.wa = side{ua: ua, srv: srv, cli: cli, contact: contact, host: host, pins: wsip.NewConnectionPinner(ua)}
	s.wa.dua = &sipgo.DialogUA{Client: cli, ContactHDR: contact}
	// In-dialog requests toward Meta must ride the TLS connection the call came in on (§5).
	cli.TxRequester = s.wa.pins

	srv.OnInvite(s.onWhatsAppInvite)
	srv.OnAck(s.onAck)
	srv.OnBye(s.onBye)
	srv.OnOptions(s.onOptions(allowWhatsApp))
	srv.OnCancel(s.onUnmatchedCancel)
	srv.OnRegister(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		respond(tx, req, 405, "Method Not Allowed", sipmsg.NewHeader("Allow", allowWhatsApp))
	})
	srv.OnNoRoute(s.onNoRoute(allowWhatsApp))
	return nil
}

func (s *Server) setupPBXSide() error {
	a := s.Addrs()
	cfg := s.config()
	listen := a.PBXUDP
	switch cfg.PBX.Transport {
	case config.TransportTCP:
		listen = a.PBXTCP
	case config.TransportTLS:
		listen = a.PBXTLS
	}
	host := hostOrPublic(listen, s.publicIP)
	clientTLS, err := wsip.ClientTLSConfig(cfg.PBX.CAFile, "")
	if err != nil {
		return fmt.Errorf("pbx.ca_file: %w", err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(userAgent), sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgenTLSConfig(clientTLS))
	if err != nil {
		return fmt.Errorf("pbx side user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return fmt.Errorf("pbx side server: %w", err)
	}
	opts := []sipgo.ClientOption{sipgo.WithClientHostname(host)}
	if t := s.config().PBX.Transport; t == "" || t == config.TransportUDP {
		// Send from the listening socket: PBXs match trunks by source address and port.
		opts = append(opts, sipgo.WithClientConnectionAddr(a.PBXUDP.String()))
	}
	cli, err := sipgo.NewClient(ua, opts...)
	if err != nil {
		return fmt.Errorf("pbx side client: %w", err)
	}
	contact := sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: userAgent, Host: host, Port: int(listen.Port())}}
	if t := cfg.PBX.Transport; t == config.TransportTCP || t == config.TransportTLS {
		contact.Address.UriParams = sipmsg.NewParams()
		contact.Address.UriParams.Add("transport", string(t))
	}
	s.pbx = side{ua: ua, srv: srv, cli: cli, contact: contact, host: host}
	s.pbx.dua = &sipgo.DialogUA{Client: cli, ContactHDR: contact}

	srv.OnInvite(s.onPBXInvite)
	srv.OnAck(s.onAck)
	srv.OnBye(s.onBye)
	srv.OnUpdate(s.onPBXUpdate)
	srv.OnOptions(s.onOptions(allowPBX))
	srv.OnCancel(s.onUnmatchedCancel)
	srv.OnNoRoute(s.onNoRoute(allowPBX))
	return nil
}

// Serve runs until ctx ends, then hangs up every call and closes the listeners.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 4)
	n := 0
	if s.waTLS != nil {
		n++
		go func() { errc <- s.wa.srv.ServeTLS(s.waTLS) }()
	}
	if s.pbxUDP != nil {
		n++
		go func() { errc <- s.pbx.srv.ServeUDP(s.pbxUDP) }()
	}
	if s.pbxTCP != nil {
		n++
		go func() { errc <- s.pbx.srv.ServeTCP(s.pbxTCP) }()
	}
	if s.pbxTLS != nil {
		n++
		go func() { errc <- s.pbx.srv.ServeTLS(s.pbxTLS) }()
	}
	regCtx, stopRegs := context.WithCancel(context.Background())
	defer stopRegs()
	if err := s.startRegistrations(regCtx); err != nil {
		s.shutdown()
		return err
	}
	s.log.WithFields(logrus.Fields{"whatsapp_tls": s.Addrs().WhatsAppTLS.String(), "pbx_udp": s.Addrs().PBXUDP.String(),
		"pbx_tcp": s.Addrs().PBXTCP.String(), "pbx_tls": s.Addrs().PBXTLS.String()}).Info("wabridge listening")

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		n--
		if serveErr != nil {
			serveErr = fmt.Errorf("sip listener stopped: %w", serveErr)
		}
	}
	stopRegs()
	s.regs.wg.Wait() // un-REGISTER before the transports close
	s.shutdown()
	for ; n > 0; n-- {
		<-errc
	}
	return serveErr
}

// shutdown ends every call (both legs get BYE or CANCEL) and closes the transports.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.draining = true
	calls := make([]*Call, 0, len(s.calls))
	seen := map[*Call]bool{}
	for _, c := range s.calls {
		if !seen[c] {
			seen[c] = true
			calls = append(calls, c)
		}
	}
	s.mu.Unlock()
	for _, c := range calls {
		c.hangup("shutdown")
	}
	s.stop()
	s.wg.Wait()
	s.closeAPI()
	s.closeListeners()
	_ = s.wa.ua.Close()
	_ = s.pbx.ua.Close()
}

// config is the configuration in force (Reload replaces it).
func (s *Server) config() *config.Config { return s.cfg.Load() }

// ActiveCalls is the number of calls in progress.
func (s *Server) ActiveCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// admit reserves a call slot, or explains with a SIP error why not.
func (s *Server) admit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		s.metrics.Rejected.WithLabelValues("draining").Inc()
		return localRefusal("wabridge is draining")
	}
	if max := s.config().Limits.MaxCalls; max > 0 && s.active >= max {
		s.metrics.Rejected.WithLabelValues("call_limit").Inc()
		return localRefusal("call limit reached (" + strconv.Itoa(max) + ")")
	}
	s.active++
	s.wg.Add(1)
	return nil
}

func (s *Server) register(callID string, c *Call) {
	s.mu.Lock()
	s.calls[callID] = c
	s.mu.Unlock()
}

func (s *Server) lookup(callID string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[callID]
}

// release forgets a finished call.
func (s *Server) release(c *Call) {
	s.mu.Lock()
	for id, cc := range s.calls {
		if cc == c {
			delete(s.calls, id)
		}
	}
	s.active--
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) onOptions(allow string) sipgo.RequestHandler {
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		if code, reason := s.Readiness(); code == 503 {
			// A load balancer's OPTIONS probe takes a draining instance out before calls fail.
			respond(tx, req, 503, "Service Unavailable", sipmsg.NewHeader("Retry-After", "30"),
				warningHeader(reason))
			return
		}
		respond(tx, req, 200, "OK", sipmsg.NewHeader("Allow", allow), sipmsg.NewHeader("Accept", "application/sdp"))
	}
}

func (s *Server) onNoRoute(allow string) sipgo.RequestHandler {
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		s.log.WithFields(logrus.Fields{"method": req.Method.String(), "call_id": callIDOf(req)}).Info("method not allowed")
		respond(tx, req, 405, "Method Not Allowed", sipmsg.NewHeader("Allow", allow))
	}
}

// onUnmatchedCancel sees only CANCELs that matched no INVITE transaction (sipgo answers the
// others itself and ends the dialog's context).
func (s *Server) onUnmatchedCancel(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	respond(tx, req, 481, "Call/Transaction Does Not Exist")
}

func (s *Server) onAck(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if c := s.lookup(callIDOf(req)); c != nil {
		c.readAck(req, tx)
	}
	// ACKs for our non-2xx finals (e.g. the 407 challenge) land here too (go-libs §1.5.2): ignore.
}

func (s *Server) onBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c := s.lookup(callIDOf(req))
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.readBye(req, tx)
}

func (s *Server) onPBXUpdate(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c := s.lookup(callIDOf(req))
	if c == nil {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.answerPBXRefresh(req, tx)
}

func callIDOf(req *sipmsg.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func respond(tx sipmsg.ServerTransaction, req *sipmsg.Request, code int, reason string, hdrs ...sipmsg.Header) {
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// respondErr answers with a SIPError's code, reason and Warning.
func respondErr(tx sipmsg.ServerTransaction, req *sipmsg.Request, err error) {
	se := asSIPError(err)
	respond(tx, req, se.Code, se.Reason, errHeaders(se)...)
}

// errHeaders are the headers that explain a failure response: Warning and Retry-After.
func errHeaders(se *SIPError) []sipmsg.Header {
	var hdrs []sipmsg.Header
	if se.Warning != "" {
		hdrs = append(hdrs, warningHeader(se.Warning))
	}
	if se.RetryAfter > 0 {
		hdrs = append(hdrs, sipmsg.NewHeader("Retry-After", strconv.Itoa(se.RetryAfter)))
	}
	return hdrs
}

// localRefusal is a 503 of wabridge's own making, with Retry-After (see SIPError.RetryAfter).
func localRefusal(why string) *SIPError {
	se := sipErr(503, "Service Unavailable", why, nil)
	se.RetryAfter = 30
	return se
}

func warningHeader(text string) sipmsg.Header {
	safe, err := wsip.SafeHeaderValue(text)
	if err != nil {
		safe = "invalid characters removed"
	}
	return sipmsg.NewHeader("Warning", `399 wabridge "`+escapeQuoted(safe)+`"`)
}

func escapeQuoted(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '"' || r == '\\' {
			out = append(out, '\\')
		}
		out = append(out, r)
	}
	return string(out)
}
