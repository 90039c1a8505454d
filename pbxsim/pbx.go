package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
	wsip "github.com/wabridge/wabridge/sip"
)

const (
	// userAgent names us in User-Agent/Server headers and is the user part of our Contact.
	userAgent = "pbxsim"
	// allowMethods is what we accept, as Asterisk's chan_pjsip would list for a trunk.
	allowMethods = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, REGISTER"
	// defaultRegisterExpires is granted when a REGISTER names no expiry; RFC 3261 §10.3 leaves
	// the default to the registrar, and one hour is the customary one.
	defaultRegisterExpires = 3600
	// callsQueueSize bounds Calls(): a long demo that never reads it must not block the SIP
	// handlers, so calls beyond it are only logged.
	callsQueueSize = 64
	// closeByeTimeout bounds the BYE that Close sends for each call still up, so a dead peer
	// cannot hold Close.
	closeByeTimeout = time.Second
	// closeGrace is how long Close lets calls and dials in progress finish politely (a CANCEL
	// waiting for its 487) before the SIP stack is torn down under them.
	closeGrace = 2 * time.Second
	// listenerReadyTimeout bounds the wait for sipgo to register the UDP listener (see Start).
	listenerReadyTimeout = 2 * time.Second
	// stragglerRounds × stragglerPause is how long Close keeps sweeping sipgo's connection
	// pools after closing them (see sweepStragglers).
	stragglerRounds = 5
	stragglerPause  = 10 * time.Millisecond
)

// ErrClosed is returned by Dial once the PBX is closed (or its Start context ended).
var ErrClosed = errors.New("pbxsim: PBX closed")

// Config configures New. The zero value is usable.
type Config struct {
	// ListenUDP is the SIP/UDP listen address; "127.0.0.1:0" when empty.
	ListenUDP string
	// ListenTCP, when set, also serves SIP over TCP ("127.0.0.1:0" picks a port). Empty: UDP only.
	ListenTCP string
	// Log receives our logs (leg=pbx-sim is added); the standard logger when nil.
	Log *logrus.Entry
	// Codecs are what we offer and accept, in order of preference; DefaultCodecs() when empty.
	Codecs []media.Codec
	// Answer decides how each incoming call is handled. It runs in the INVITE's goroutine, so
	// it may block briefly, and must be safe for concurrent use. Nil: DefaultAnswer.
	Answer func(inv Incoming) Answer
	// MediaIP is where RTP sockets bind and what our SDP advertises. Default: the ListenUDP IP
	// when it is a specific address, else 127.0.0.1.
	MediaIP netip.Addr
}

// PBX is the simulated PBX: one SIP user agent serving incoming calls and placing outgoing ones.
type PBX struct {
	cfg Config
	log *logrus.Entry

	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	udpConn net.PacketConn
	tcpLn   net.Listener
	udpAddr netip.AddrPort
	tcpAddr netip.AddrPort
	udpDUA  *sipgo.DialogUA
	tcpDUA  *sipgo.DialogUA
	host    string // our IP as written in From, Contact and Via

	calls chan *Call

	ctx    context.Context // ends at Close; parents dials and call timers
	cancel context.CancelFunc

	mu      sync.Mutex
	started bool
	closed  bool
	dialogs map[dialogKey]*Call
	wg      sync.WaitGroup // handlers, dials and call goroutines in progress
	serveWG sync.WaitGroup // listener goroutines
}

// dialogKey finds a call from an in-dialog request: the Call-ID and our own tag, which is the
// To tag of every request the peer sends us in the dialog (RFC 3261 §12.2.2). The tag matters
// when a PBX calls itself: both ends then share the Call-ID.
type dialogKey struct{ callID, localTag string }

// New checks cfg and fills in its defaults. Start binds the listeners.
func New(cfg Config) (*PBX, error) {
	if cfg.ListenUDP == "" {
		cfg.ListenUDP = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if len(cfg.Codecs) == 0 {
		cfg.Codecs = DefaultCodecs()
	}
	if _, ok := firstAudio(cfg.Codecs); !ok {
		return nil, errors.New("pbxsim: Codecs has no audio codec")
	}
	if cfg.Answer == nil {
		cfg.Answer = DefaultAnswer
	}
	if !cfg.MediaIP.IsValid() {
		cfg.MediaIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if ap, err := netip.ParseAddrPort(cfg.ListenUDP); err == nil && !ap.Addr().IsUnspecified() {
			cfg.MediaIP = ap.Addr().Unmap()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &PBX{
		cfg:     cfg,
		log:     cfg.Log.WithField("leg", "pbx-sim"),
		calls:   make(chan *Call, callsQueueSize),
		ctx:     ctx,
		cancel:  cancel,
		dialogs: map[dialogKey]*Call{},
	}, nil
}

// Start binds the listeners and serves SIP until ctx ends or Close is called.
func (p *PBX) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.started || p.closed {
		p.mu.Unlock()
		return errors.New("pbxsim: already started or closed")
	}
	p.started = true
	p.mu.Unlock()

	if err := p.listen(); err != nil {
		p.closeListeners()
		return err
	}
	if err := p.setupSIP(); err != nil {
		p.closeListeners()
		return err
	}

	p.serveWG.Add(1)
	go func() {
		defer p.serveWG.Done()
		if err := p.srv.ServeUDP(p.udpConn); err != nil && !errors.Is(err, net.ErrClosed) {
			p.log.WithError(err).Warn("SIP/UDP listener stopped")
		}
	}()
	if p.tcpLn != nil {
		p.serveWG.Add(1)
		go func() {
			defer p.serveWG.Done()
			if err := p.srv.ServeTCP(p.tcpLn); err != nil && !errors.Is(err, net.ErrClosed) {
				p.log.WithError(err).Debug("SIP/TCP listener stopped")
			}
		}()
	}
	// Requests we send leave from the listening socket (WithClientConnectionAddr), as a PBX
	// trunk does so the far end can match it by source address. sipgo finds that socket in its
	// connection pool, which ServeUDP fills from its goroutine; a Dial right after Start could
	// otherwise try to bind the port a second time and fail.
	if err := p.waitUDPRegistered(); err != nil {
		p.Close()
		return err
	}

	p.serveWG.Add(1)
	go func() {
		defer p.serveWG.Done()
		select {
		case <-ctx.Done():
			go p.Close() // Close waits for this goroutine
		case <-p.ctx.Done():
		}
	}()
	fields := logrus.Fields{"udp": p.udpAddr.String(), "media_ip": p.cfg.MediaIP.String()}
	if p.tcpLn != nil {
		fields["tcp"] = p.tcpAddr.String()
	}
	p.log.WithFields(fields).Info("PBX simulator listening")
	return nil
}

func (p *PBX) listen() error {
	conn, err := net.ListenPacket("udp", p.cfg.ListenUDP)
	if err != nil {
		return fmt.Errorf("pbxsim: listen udp %s: %w", p.cfg.ListenUDP, err)
	}
	p.udpConn = conn
	p.udpAddr = reachable(conn.LocalAddr(), p.cfg.MediaIP)
	if p.cfg.ListenTCP != "" {
		ln, err := net.Listen("tcp", p.cfg.ListenTCP)
		if err != nil {
			return fmt.Errorf("pbxsim: listen tcp %s: %w", p.cfg.ListenTCP, err)
		}
		p.tcpLn = ln
		p.tcpAddr = reachable(ln.Addr(), p.cfg.MediaIP)
	}
	p.host = p.udpAddr.Addr().String()
	return nil
}

// reachable turns a bound address into one a peer can send to: a wildcard bind is advertised
// with the media IP.
func reachable(a net.Addr, fallback netip.Addr) netip.AddrPort {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		ip = fallback
	}
	return netip.AddrPortFrom(ip, ap.Port())
}

func (p *PBX) setupSIP() error {
	slogger := wsip.NewSlogLogger(p.log.WithField("component", "sipgo"))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(userAgent),
		sipgo.WithUserAgentHostname(p.host),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(slogger)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(slogger)),
	)
	if err != nil {
		return fmt.Errorf("pbxsim: sipgo user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slogger))
	if err != nil {
		_ = ua.Close()
		return fmt.Errorf("pbxsim: sipgo server: %w", err)
	}
	udpCli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(slogger), sipgo.WithClientHostname(p.host),
		sipgo.WithClientConnectionAddr(p.udpConn.LocalAddr().String()))
	if err != nil {
		_ = ua.Close()
		return fmt.Errorf("pbxsim: sipgo client: %w", err)
	}
	p.ua, p.srv = ua, srv
	p.udpDUA = &sipgo.DialogUA{Client: udpCli, ContactHDR: p.contact(p.udpAddr, "")}
	if p.tcpLn != nil {
		// No connection address here: a TCP request needs a fresh outgoing connection, which
		// cannot be bound to the listener's port.
		tcpCli, err := sipgo.NewClient(ua, sipgo.WithClientLogger(slogger), sipgo.WithClientHostname(p.host))
		if err != nil {
			_ = ua.Close()
			return fmt.Errorf("pbxsim: sipgo client: %w", err)
		}
		p.tcpDUA = &sipgo.DialogUA{Client: tcpCli, ContactHDR: p.contact(p.tcpAddr, "tcp")}
	}

	srv.OnInvite(p.onInvite)
	srv.OnAck(p.onAck)
	srv.OnBye(p.onBye)
	srv.OnCancel(p.onCancel)
	srv.OnOptions(p.onOptions)
	srv.OnUpdate(p.onUpdate)
	srv.OnRegister(p.onRegister)
	srv.OnNoRoute(p.onNoRoute)
	return nil
}

func (p *PBX) contact(addr netip.AddrPort, transport string) sip.ContactHeader {
	c := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: userAgent, Host: addr.Addr().String(), Port: int(addr.Port())}}
	if transport != "" {
		c.Address.UriParams = sip.NewParams()
		c.Address.UriParams.Add("transport", transport)
	}
	return c
}

func (p *PBX) waitUDPRegistered() error {
	deadline := time.Now().Add(listenerReadyTimeout)
	for {
		if c, err := p.ua.TransportLayer().GetConnection("udp", p.udpConn.LocalAddr().String()); err == nil && c != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("pbxsim: SIP/UDP listener did not start")
		}
		time.Sleep(time.Millisecond)
	}
}

// duaFor picks the dialog UA (and so Contact and client) of a request's transport.
func (p *PBX) duaFor(transport string) *sipgo.DialogUA {
	if strings.EqualFold(transport, "tcp") && p.tcpDUA != nil {
		return p.tcpDUA
	}
	return p.udpDUA
}

// Addr is the SIP/UDP address to send to (valid after Start).
func (p *PBX) Addr() netip.AddrPort { return p.udpAddr }

// TCPAddr is the SIP/TCP address, invalid unless Config.ListenTCP was set.
func (p *PBX) TCPAddr() netip.AddrPort { return p.tcpAddr }

// MediaIP is the address our RTP sockets bind and advertise.
func (p *PBX) MediaIP() netip.Addr { return p.cfg.MediaIP }

// Calls delivers every incoming call as soon as its INVITE is accepted for processing, before
// it is answered (wait on Call.Answered or Call.Done). It is buffered (64); when nobody reads,
// further calls are still handled but not delivered.
func (p *PBX) Calls() <-chan *Call { return p.calls }

// Close hangs up the calls in progress (BYE, a second each), cancels ringing and dialling ones,
// stops the listeners and waits for every goroutine of ours. It is safe to call more than once.
func (p *PBX) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	started := p.started
	p.mu.Unlock()
	// Wakes ringing calls (which then answer 480) and aborts dials (which send CANCEL).
	p.cancel()
	p.hangupAll()

	idle := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
	case <-time.After(closeGrace):
		p.log.Warn("calls still in progress at close; tearing SIP down under them")
	}
	// A call whose 200 or ACK was in flight when Close began is up only now.
	p.hangupAll()
	if started {
		if p.ua != nil {
			// Terminates every transaction, which unblocks whatever still waits on one.
			_ = p.ua.Close()
		}
		p.closeListeners()
		p.sweepStragglers()
	}
	<-idle
	p.serveWG.Wait()
	for _, c := range p.activeCalls() {
		c.end(EndedClosed)
	}
	p.log.Debug("PBX simulator closed")
}

// hangupAll sends BYE on every call that is up, in parallel, each bounded by closeByeTimeout.
func (p *PBX) hangupAll() {
	var wg sync.WaitGroup
	for _, c := range p.activeCalls() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), closeByeTimeout)
			defer cancel()
			if err := c.hangup(ctx, EndedClosed); err != nil {
				c.log.WithError(err).Debug("BYE at close failed")
			}
		}()
	}
	wg.Wait()
}

func (p *PBX) activeCalls() []*Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls := make([]*Call, 0, len(p.dialogs))
	for _, c := range p.dialogs {
		calls = append(calls, c)
	}
	return calls
}

// sweepStragglers closes connections sipgo opened after its transport layer was closed. A
// request read just before the listener closed is handled in a goroutine of sipgo's own
// (go-libs.md §1.1); if that runs after the pools were cleared, sipgo finds no connection to
// answer on and opens a new one, with a reader goroutine nobody would ever stop. Such
// goroutines run within microseconds, so a few short sweeps catch them.
func (p *PBX) sweepStragglers() {
	tl := p.ua.TransportLayer()
	for range stragglerRounds {
		time.Sleep(stragglerPause)
		if tl.Pool("udp").Size() > 0 || tl.Pool("tcp").Size() > 0 {
			p.log.Debug("closing SIP connections opened during close")
			_ = tl.Close()
		}
	}
}

func (p *PBX) closeListeners() {
	if p.udpConn != nil {
		_ = p.udpConn.Close()
	}
	if p.tcpLn != nil {
		_ = p.tcpLn.Close()
	}
}

// enter registers a goroutine that uses the SIP stack (a handler or a dial) so Close waits
// for it; false once closing. The closed check and the Add happen under one lock, so no Add can
// follow Close's Wait.
func (p *PBX) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *PBX) leave() { p.wg.Done() }

func (p *PBX) register(c *Call) {
	p.mu.Lock()
	p.dialogs[dialogKey{c.CallID, c.localTag}] = c
	p.mu.Unlock()
}

func (p *PBX) forget(c *Call) {
	p.mu.Lock()
	k := dialogKey{c.CallID, c.localTag}
	if p.dialogs[k] == c {
		delete(p.dialogs, k)
	}
	p.mu.Unlock()
}

// lookup finds the call an in-dialog request belongs to.
func (p *PBX) lookup(req *sip.Request) *Call {
	to := req.To()
	if to == nil || req.CallID() == nil {
		return nil
	}
	tag, _ := to.Params.Get("tag")
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dialogs[dialogKey{req.CallID().Value(), tag}]
}

func (p *PBX) publish(c *Call) {
	select {
	case p.calls <- c:
	default:
		c.log.Warn("Calls() queue full; call not delivered (nobody reads it)")
	}
}
