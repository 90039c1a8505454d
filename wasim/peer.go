package wasim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

// SDES transport limits.
const (
	// maxPendingPackets bounds packets held while the keys are not known yet.
	maxPendingPackets = 64
	// replayWindow is the SRTP replay window for the remote stream (what pion's SessionSRTP
	// uses by default).
	replayWindow = 64
)

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

// Peer is the WhatsApp side of an SDES-SRTP media stream: one UDP socket, rtcp-mux, one
// SSRC, pion/srtp contexts with replay protection on the receiving side. Recording and
// sending are the embedded stream's; Peer is the wire.
type Peer struct {
	*stream
	cfg   PeerConfig
	conn  *net.UDPConn
	local netip.AddrPort

	closeOnce sync.Once
	wg        sync.WaitGroup

	// rx: touched by the reader goroutine, and by Connect for the packets held until then.
	rxMu    sync.Mutex
	dec     *srtp.Context
	decBuf  []byte
	pending [][]byte

	// enc and remote are guarded by stream.txMu, like the rest of the sender state.
	enc    *srtp.Context
	remote netip.AddrPort
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
		stream: newStream(cfg.Log, cfg.SendFirst),
		cfg:    cfg,
		conn:   conn,
		local:  netip.AddrPortFrom(cfg.IP, uint16(conn.LocalAddr().(*net.UDPAddr).Port)),
		decBuf: make([]byte, 0, 1500),
	}
	p.send = p.sendSRTP
	p.wg.Add(1)
	go p.readLoop()
	return p, nil
}

// LocalAddr is the address to put in our SDP.
func (p *Peer) LocalAddr() netip.AddrPort { return p.local }

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
	p.txMu.Unlock()

	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	p.dec = dec
	p.markConnected(l.Codecs)
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
				p.logger().WithError(err).Warn("media socket read failed")
			}
			return
		}
		p.markRaw(now)
		p.rxMu.Lock()
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
	p.record(&pkt, at)
}

// sendSRTP is the stream's wire: marshal, encrypt, send to the negotiated address.
// stream.txMu is held.
func (p *Peer) sendSRTP(hdr *rtp.Header, payload []byte) error {
	if p.enc == nil {
		return errors.New("wasim: peer not connected")
	}
	pkt := rtp.Packet{Header: *hdr, Payload: payload}
	plain, err := pkt.Marshal()
	if err != nil {
		return err
	}
	enc, err := p.enc.EncryptRTP(nil, plain, nil)
	if err != nil {
		return fmt.Errorf("wasim: SRTP encrypt: %w", err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(enc, p.remote); err != nil {
		return fmt.Errorf("wasim: media send: %w", err)
	}
	return nil
}
