package wasim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

// Media timing rules Meta enforces on the business (whatsapp-calling.md §0 items 6-7).
const (
	// firstMediaTimeout: without business media this long after the call starts, the
	// WhatsApp client hangs up.
	firstMediaTimeout = 20 * time.Second
	// midCallMediaTimeout: the same, mid-call.
	midCallMediaTimeout = 30 * time.Second
	// maxStoredPackets bounds what Received keeps (about 20 minutes of 20 ms packets), so a
	// long `wabridge demo` call cannot grow without limit. Later packets are still counted.
	maxStoredPackets = 1 << 16
	// maxPendingPackets bounds packets held while the keys are not known yet.
	maxPendingPackets = 64
	// replayWindow is the SRTP replay window for the remote stream (what pion's SessionSRTP
	// uses by default).
	replayWindow = 64
	// watchdogTick is how often the reader checks the media timers.
	watchdogTick = 250 * time.Millisecond
)

// ErrPeerClosed is returned by Send and SendDTMF after Close.
var ErrPeerClosed = errors.New("wasim: media peer closed")

// PeerConfig configures NewPeer.
type PeerConfig struct {
	Log *logrus.Entry
	// IP is the address to bind and advertise (127.0.0.1 when invalid).
	IP netip.Addr
	// SendFirst lets Send and SendDTMF transmit before anything was received. Meta never
	// does (it waits for the business's maiden packet, whatsapp-calling.md §0 item 6), so
	// the edge's peers leave it false; a test peer playing the business sets it.
	SendFirst bool
}

// Link is what a peer needs from the offer/answer exchange to carry media.
type Link struct {
	// Remote is where RTP (and, with rtcp-mux, RTCP) is sent.
	Remote netip.AddrPort
	// LocalKey encrypts what we send: the key in our own SDP.
	LocalKey media.Crypto
	// RemoteKey decrypts what we receive: the key in the peer's SDP.
	RemoteKey media.Crypto
	// Codecs are the negotiated payload types; they give the clock rate for timestamps and
	// the telephone-event payload type for DTMF decoding.
	Codecs []media.Codec
}

// Packet is one received, decrypted RTP packet.
type Packet struct {
	PT      uint8
	Seq     uint16
	TS      uint32
	SSRC    uint32
	Marker  bool
	Payload []byte
	At      time.Time
}

// PeerStats counts a peer's traffic.
type PeerStats struct {
	PacketsIn, BytesIn   uint64 // valid SRTP packets and their payload bytes
	PacketsOut, BytesOut uint64
	RTCPIn               uint64 // valid SRTCP packets (rtcp-mux)
	AuthFailures         uint64 // SRTP/SRTCP packets that failed authentication or replay checks
	Malformed            uint64 // packets too short or not RTP/RTCP
}

// Peer is the WhatsApp side of an SDES-SRTP media stream: one UDP socket, rtcp-mux, one
// SSRC, pion/srtp contexts with replay protection on the receiving side.
type Peer struct {
	cfg   PeerConfig
	log   *logrus.Entry
	conn  *net.UDPConn
	local netip.AddrPort

	// onViolation, when set, also receives the peer's violations (the owning Call).
	onViolation func(string)

	connected chan struct{} // closed by Connect
	maiden    chan struct{} // closed when the first valid packet arrives
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// rx: touched by the reader goroutine, and by Connect for the packets held until then.
	rxMu       sync.Mutex
	dec        *srtp.Context
	decBuf     []byte
	pending    [][]byte
	dtmfPT     int
	seenEvents map[uint32]bool
	connectAt  time.Time // written once before connected is closed

	// tx: Send, SendDTMF and the echo path share one sender state.
	txMu     sync.Mutex
	enc      *srtp.Context
	remote   netip.AddrPort
	ssrc     uint32
	seq      uint16
	ts       uint32
	started  bool
	clocks   map[uint8]uint32 // audio payload types only
	audioClk uint32
	lastRxTS uint32
	haveRxTS bool

	// data read by the accessors.
	mu         sync.Mutex
	received   []Packet
	dtmf       []rune
	firstAt    time.Time
	firstRawAt time.Time
	lastAt     time.Time
	violations []string
	echo       bool
	firstLate  bool // the 20 s violation was recorded
	gapLate    bool // the 30 s violation was recorded

	stats struct {
		packetsIn, bytesIn, packetsOut, bytesOut, rtcpIn, authFailures, malformed atomic.Uint64
	}
}

// NewPeer binds a UDP socket on an OS-chosen port and starts reading. Packets that arrive
// before Connect are held (up to 64) and decrypted once the keys are known.
func NewPeer(cfg PeerConfig) (*Peer, error) {
	if !cfg.IP.IsValid() {
		cfg.IP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.IP, 0)))
	if err != nil {
		return nil, fmt.Errorf("wasim: media socket: %w", err)
	}
	p := &Peer{
		cfg:        cfg,
		log:        cfg.Log,
		conn:       conn,
		local:      netip.AddrPortFrom(cfg.IP, uint16(conn.LocalAddr().(*net.UDPAddr).Port)),
		connected:  make(chan struct{}),
		maiden:     make(chan struct{}),
		closed:     make(chan struct{}),
		decBuf:     make([]byte, 0, 1500),
		dtmfPT:     -1,
		seenEvents: make(map[uint32]bool),
		ssrc:       randUint32(),
		seq:        uint16(randUint32()),
		ts:         randUint32(),
		audioClk:   48000,
	}
	p.wg.Add(1)
	go p.readLoop()
	return p, nil
}

// LocalAddr is the address to put in our SDP.
func (p *Peer) LocalAddr() netip.AddrPort { return p.local }

// SSRC is the single SSRC this peer sends with.
func (p *Peer) SSRC() uint32 { return p.ssrc }

// Connect installs the keys and the remote address. It can be called once.
func (p *Peer) Connect(l Link) error {
	select {
	case <-p.connected:
		return errors.New("wasim: peer already connected")
	default:
	}
	if !l.Remote.IsValid() {
		return fmt.Errorf("wasim: invalid remote media address %s", l.Remote)
	}
	enc, err := cryptoContext(l.LocalKey, false)
	if err != nil {
		return fmt.Errorf("wasim: local SRTP key: %w", err)
	}
	dec, err := cryptoContext(l.RemoteKey, true)
	if err != nil {
		return fmt.Errorf("wasim: remote SRTP key: %w", err)
	}

	p.txMu.Lock()
	p.enc, p.remote = enc, l.Remote
	p.clocks = make(map[uint8]uint32, len(l.Codecs))
	audioSet := false
	for _, c := range l.Codecs {
		if strings.EqualFold(c.Name, media.CodecTelEvent) || c.ClockRate == 0 {
			continue // events ride on the audio timestamps
		}
		p.clocks[c.PT] = c.ClockRate
		if !audioSet {
			p.audioClk, audioSet = c.ClockRate, true
		}
	}
	p.txMu.Unlock()

	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	p.dec = dec
	p.dtmfPT = dtmfPT // Meta assumes 126 when telephone-event is absent (§4.8)
	for _, c := range l.Codecs {
		if strings.EqualFold(c.Name, media.CodecTelEvent) && c.ClockRate == dtmfClock {
			p.dtmfPT = int(c.PT)
			break
		}
	}
	p.connectAt = time.Now()
	close(p.connected)
	for _, b := range p.pending {
		p.process(b, time.Now())
	}
	p.pending = nil
	return nil
}

// cryptoContext builds a one-way pion SRTP context for an SDES key. The receiving context
// gets replay protection and honours the MKI the peer declared (RFC 4568 §6.1).
func cryptoContext(c media.Crypto, receive bool) (*srtp.Context, error) {
	profile, err := c.Profile()
	if err != nil {
		return nil, err
	}
	key, salt, err := c.KeyAndSalt()
	if err != nil {
		return nil, err
	}
	var opts []srtp.ContextOption
	if receive {
		opts = append(opts, srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
	}
	mki, err := c.MKI()
	if err != nil {
		return nil, err
	}
	if len(mki) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(mki))
	}
	return srtp.CreateContext(key, salt, profile, opts...)
}

// Close stops the peer and releases its socket. Received data stays readable.
func (p *Peer) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closed)
		err = p.conn.Close()
		p.wg.Wait()
	})
	return err
}

func (p *Peer) readLoop() {
	defer p.wg.Done()
	buf := make([]byte, 2048)
	for {
		_ = p.conn.SetReadDeadline(time.Now().Add(watchdogTick))
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		now := time.Now()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				p.watchdog(now)
				continue
			}
			select {
			case <-p.closed:
			default:
				p.log.WithError(err).Warn("media socket read failed")
			}
			return
		}
		p.rxMu.Lock()
		p.mu.Lock()
		if p.firstRawAt.IsZero() {
			p.firstRawAt = now
		}
		p.mu.Unlock()
		if p.dec == nil {
			if len(p.pending) < maxPendingPackets {
				p.pending = append(p.pending, append([]byte(nil), buf[:n]...))
			}
		} else {
			p.process(buf[:n], now)
		}
		p.rxMu.Unlock()
		p.watchdog(now)
	}
}

// isRTCP tells RTCP from RTP on a muxed port by the payload-type byte (RFC 5761 §4).
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// process decrypts and records one packet. Called with rxMu held.
func (p *Peer) process(b []byte, at time.Time) {
	if len(b) < 12 || b[0]>>6 != 2 {
		p.stats.malformed.Add(1)
		return
	}
	if isRTCP(b) {
		if _, err := p.dec.DecryptRTCP(nil, b, nil); err != nil {
			p.stats.authFailures.Add(1)
			return
		}
		p.stats.rtcpIn.Add(1)
		return
	}
	var hdr rtp.Header
	plain, err := p.dec.DecryptRTP(p.decBuf[:0], b, &hdr)
	if err != nil {
		p.stats.authFailures.Add(1)
		return
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(plain); err != nil {
		p.stats.malformed.Add(1)
		return
	}
	p.stats.packetsIn.Add(1)
	p.stats.bytesIn.Add(uint64(len(pkt.Payload)))

	rec := Packet{
		PT: pkt.PayloadType, Seq: pkt.SequenceNumber, TS: pkt.Timestamp, SSRC: pkt.SSRC,
		Marker: pkt.Marker, Payload: append([]byte(nil), pkt.Payload...), At: at,
	}
	p.mu.Lock()
	if len(p.received) < maxStoredPackets {
		p.received = append(p.received, rec)
	}
	first := p.firstAt.IsZero()
	if first {
		p.firstAt = at
	}
	p.lastAt = at
	echo := p.echo
	if int(rec.PT) == p.dtmfPT {
		if ev, end, _, ok := decodeDTMF(rec.Payload); ok && end && !p.seenEvents[rec.TS] {
			p.seenEvents[rec.TS] = true
			if d, ok := dtmfDigit(ev); ok {
				p.dtmf = append(p.dtmf, d)
			}
		}
	}
	p.mu.Unlock()
	if first {
		close(p.maiden)
	}
	if echo && int(rec.PT) != p.dtmfPT {
		p.echoPacket(rec)
	}
}

// watchdog records Meta's media timeouts as violations: no business media within 20 s of
// the call start, or a gap of more than 30 s mid-call (whatsapp-calling.md §4.7).
func (p *Peer) watchdog(now time.Time) {
	select {
	case <-p.connected:
	default:
		return
	}
	p.mu.Lock()
	var v string
	switch {
	case p.firstAt.IsZero() && !p.firstLate && now.Sub(p.connectAt) > firstMediaTimeout:
		p.firstLate = true
		v = fmt.Sprintf("no media from the business within %s of the call start (WhatsApp hangs up)", firstMediaTimeout)
	case !p.firstAt.IsZero() && !p.gapLate && now.Sub(p.lastAt) > midCallMediaTimeout:
		p.gapLate = true
		v = fmt.Sprintf("no media from the business for more than %s mid-call (WhatsApp hangs up)", midCallMediaTimeout)
	}
	p.mu.Unlock()
	if v != "" {
		p.violate(v)
	}
}

func (p *Peer) violate(v string) {
	p.mu.Lock()
	p.violations = append(p.violations, v)
	p.mu.Unlock()
	p.log.WithField("violation", v).Warn("WhatsApp media rule broken")
	if p.onViolation != nil {
		p.onViolation(v)
	}
}

// Received returns a copy of the packets received so far (at most 65536).
func (p *Peer) Received() []Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Packet, len(p.received))
	copy(out, p.received)
	return out
}

// ReceivedDTMF returns the digits decoded from received RFC 4733 end packets, one per
// event (retransmitted end packets share the event's timestamp).
func (p *Peer) ReceivedDTMF() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.dtmf)
}

// FirstPacketAt is when the first valid SRTP packet arrived (zero if none yet).
func (p *Peer) FirstPacketAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstAt
}

// firstRawPacketAt is when the first datagram of any kind arrived, even before the keys
// were known: what "media before answer" is judged by.
func (p *Peer) firstRawPacketAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstRawAt
}

// Violations returns the media rules the business broke on this peer.
func (p *Peer) Violations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.violations...)
}

// Stats returns the traffic counters.
func (p *Peer) Stats() PeerStats {
	return PeerStats{
		PacketsIn:    p.stats.packetsIn.Load(),
		BytesIn:      p.stats.bytesIn.Load(),
		PacketsOut:   p.stats.packetsOut.Load(),
		BytesOut:     p.stats.bytesOut.Load(),
		RTCPIn:       p.stats.rtcpIn.Load(),
		AuthFailures: p.stats.authFailures.Load(),
		Malformed:    p.stats.malformed.Load(),
	}
}
