package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/sirupsen/logrus"
)

const (
	legWhatsApp = "whatsapp"
	legPBX      = "pbx"

	rtpVersion    = 2
	rtpHeaderSize = 12 // fixed header, RFC 3550 §5.1
	rtcpMinSize   = 8  // common header plus the sender's SSRC, RFC 3550 §6.4
	// maxDatagram is the largest datagram relayed. One 20 ms audio frame is far below an Ethernet
	// MTU; anything bigger is not audio we negotiated and is dropped as malformed.
	maxDatagram = 1500
	// srtpMaxOverhead is the room kept after a packet for what SRTP appends: at most a 16-byte
	// GCM tag or a 10-byte HMAC-SHA1 tag (go-libs §3), plus the 4-byte SRTCP index.
	srtpMaxOverhead = 64
	// replayWindow is the SRTP and SRTCP replay window. RFC 3711 §3.3.2 requires at least 64, and
	// pion's SessionSRTP uses 64 for the remote side too (go-libs §3); a bare Context has none.
	replayWindow = 64
	// logEvery rate-limits per-packet warnings (auth failures, send errors): an attacker or a
	// misconfigured peer must not turn 50 packets per second into 50 log lines per second.
	logEvery = 10 * time.Second
)

// errNoDestination: a latching leg without an SDP address has not sent its first packet yet.
var errNoDestination = errors.New("no destination yet: waiting for the peer's first packet")

// srtpParamsFunc turns a crypto line into pion's profile, master key and master salt. Production
// uses cryptoParams (Crypto.Profile and Crypto.KeyAndSalt); tests may substitute their own.
type srtpParamsFunc func(Crypto) (profile srtp.ProtectionProfile, key, salt []byte, err error)

func cryptoParams(c Crypto) (srtp.ProtectionProfile, []byte, []byte, error) {
	prof, err := c.Profile()
	if err != nil {
		return 0, nil, nil, err
	}
	key, salt, err := c.KeyAndSalt()
	if err != nil {
		return 0, nil, nil, err
	}
	return prof, key, salt, nil
}

// leg is one side of the relay: its sockets, receive-side SRTP state, PT table and counters.
type leg struct {
	name  string
	log   *logrus.Entry
	ep    *Endpoint
	latch bool
	act   *activity
	// ptOut maps a PT arriving on this leg to the PT sent on the other leg; -1 drops the packet.
	// An array, not the config's map, so the lookup costs an index (and no hashing) per packet.
	ptOut [128]int16
	stats legCounters
	// dest is where packets for this leg's peer go: the SDP address until the peer's first packet
	// latches its source. Written by this leg's RTP reader, read by the other leg's sender.
	dest atomic.Pointer[netip.AddrPort]

	// Owned by the leg's RTP reader goroutine.
	decrypt      *srtp.Context // SRTP and muxed SRTCP from the peer; nil: plain RTP
	srtpTrailer  int           // bytes SRTP appends to an RTP packet (auth tag)
	srtcpTrailer int           // bytes SRTCP appends to an RTCP packet (index and auth tag)
	hdr          rtp.Header
	rtcpHdr      rtcp.Header
	rtcpOut      []byte // SRTCP is decrypted here and dropped
	latched      bool
	peer         netip.AddrPort
	authLog      logLimiter

	// Owned by the leg's RTCP socket reader goroutine. A context of its own, because the RTP
	// reader's context must not be shared across goroutines (go-libs §3).
	rtcpSockDecrypt *srtp.Context
	rtcpSockHdr     rtcp.Header
	rtcpSockOut     []byte
	rtcpSockLog     logLimiter
}

func newLeg(name string, cfg LegConfig, params srtpParamsFunc, log *logrus.Entry, act *activity) (*leg, *srtp.Context, error) {
	if cfg.Endpoint == nil || cfg.Endpoint.RTP == nil {
		return nil, nil, fmt.Errorf("media relay: %s leg has no endpoint", name)
	}
	if !cfg.Remote.IsValid() && !cfg.Latch {
		return nil, nil, fmt.Errorf("media relay: %s leg has no remote address and does not latch", name)
	}
	pt, err := ptTable(cfg.PTMap)
	if err != nil {
		return nil, nil, fmt.Errorf("media relay: %s leg: %w", name, err)
	}
	l := &leg{
		name:        name,
		log:         log.WithField("leg", name),
		ep:          cfg.Endpoint,
		latch:       cfg.Latch,
		act:         act,
		ptOut:       pt,
		rtcpOut:     make([]byte, maxDatagram),
		rtcpSockOut: make([]byte, maxDatagram),
	}
	// Sized for the worst case up front so that rtp.Header.Unmarshal never grows them per packet.
	l.hdr.CSRC = make([]uint32, 0, 15)
	l.hdr.Extensions = make([]rtp.Extension, 0, 16)
	if cfg.Remote.IsValid() {
		d := netip.AddrPortFrom(cfg.Remote.Addr().Unmap(), cfg.Remote.Port())
		l.dest.Store(&d)
	}
	if cfg.SRTP == nil {
		return l, nil, nil
	}

	enc, _, err := newContext(cfg.SRTP.Local, params)
	if err != nil {
		return nil, nil, fmt.Errorf("media relay: %s leg: encrypt context: %w", name, err)
	}
	// Replay protection is off by default in a bare Context (go-libs §3); RFC 3711 §3.3.2 wants it.
	replay := []srtp.ContextOption{srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow)}
	dec, prof, err := newContext(cfg.SRTP.Remote, params, replay...)
	if err != nil {
		return nil, nil, fmt.Errorf("media relay: %s leg: decrypt context: %w", name, err)
	}
	l.decrypt = dec
	if cfg.Endpoint.RTCP != nil {
		if l.rtcpSockDecrypt, _, err = newContext(cfg.SRTP.Remote, params, replay...); err != nil {
			return nil, nil, fmt.Errorf("media relay: %s leg: rtcp decrypt context: %w", name, err)
		}
	}
	rtpTag, _ := prof.AuthTagRTPLen()
	rtcpTag, _ := prof.AuthTagRTCPLen()
	aeadTag, _ := prof.AEADAuthTagLen()
	mki, _ := cfg.SRTP.Remote.MKI()
	l.srtpTrailer = rtpTag + aeadTag + len(mki)
	l.srtcpTrailer = 4 + rtcpTag + aeadTag + len(mki) // E flag + 31-bit index, RFC 3711 §3.4
	return l, enc, nil
}

func newContext(c Crypto, params srtpParamsFunc, opts ...srtp.ContextOption) (*srtp.Context, srtp.ProtectionProfile, error) {
	prof, key, salt, err := params(c)
	if err != nil {
		return nil, 0, fmt.Errorf("crypto tag %d suite %q: %w", c.Tag, c.Suite, err)
	}
	// A key line that declares an MKI ("|1:1") means every packet carries it after the payload
	// (RFC 3711 §3.1); without the option pion fails every packet's authentication.
	mki, err := c.MKI()
	if err != nil {
		return nil, 0, fmt.Errorf("crypto tag %d suite %q: %w", c.Tag, c.Suite, err)
	}
	if len(mki) > 0 {
		opts = append(opts, srtp.MasterKeyIndicator(mki))
	}
	ctx, err := srtp.CreateContext(key, salt, prof, opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("crypto tag %d suite %q: %w", c.Tag, c.Suite, err)
	}
	return ctx, prof, nil
}

// ptTable converts a PT map into the lookup array the hot path uses.
func ptTable(m map[uint8]uint8) ([128]int16, error) {
	var t [128]int16
	for i := range t {
		t[i] = -1
	}
	if len(m) == 0 {
		return t, errors.New("empty payload type map: every packet would be dropped")
	}
	for in, out := range m {
		if in > 127 || out > 127 {
			return t, fmt.Errorf("payload type mapping %d->%d: payload types are 7 bits", in, out)
		}
		t[in] = int16(out)
	}
	return t, nil
}

// receive validates one datagram read on the leg's RTP socket and returns the plaintext RTP
// packet (decrypted in place, PT already remapped for the other leg). RTCP multiplexed on the
// socket is checked, counted and dropped. Runs on the leg's RTP reader only; nothing allocates
// unless the packet is dropped for a reason pion reports with a wrapped error.
func (l *leg) receive(pkt []byte, from netip.AddrPort, now time.Time) ([]byte, bool) {
	l.stats.packetsIn.Add(1)
	l.stats.bytesIn.Add(uint64(len(pkt)))
	if l.latched && from != l.peer {
		l.stats.droppedWrongSource.Add(1)
		return nil, false
	}
	if len(pkt) < rtcpMinSize || len(pkt) > maxDatagram || pkt[0]>>6 != rtpVersion {
		l.stats.droppedMalformed.Add(1)
		return nil, false
	}
	if isRTCP(pkt) {
		// We terminate RTCP instead of forwarding it: the stream toward WhatsApp is rewritten
		// (SSRC, sequence, timestamps), so the PBX's reports would describe a stream WhatsApp
		// never saw, and vice versa. Meta only needs media to keep the call up (§4.7), which the
		// silence fill guarantees. Authenticated RTCP still counts as the peer being alive.
		if l.openRTCP(pkt, l.decrypt, &l.rtcpHdr, l.rtcpOut, &l.authLog, from, now) {
			l.act.mark(now)
		}
		return nil, false
	}
	if len(pkt) < rtpHeaderSize || !rtpHeaderFits(pkt) {
		l.stats.droppedMalformed.Add(1)
		return nil, false
	}
	hl, err := l.hdr.Unmarshal(pkt)
	if err != nil {
		l.stats.droppedMalformed.Add(1)
		return nil, false
	}
	if l.decrypt != nil {
		// Both checks mirror errors DecryptRTP would return, so that any error it does return is
		// either an authentication failure or a replay (see srtpFailed).
		if isCryptex(&l.hdr) || len(pkt) < hl+l.srtpTrailer {
			l.stats.droppedMalformed.Add(1)
			return nil, false
		}
		// In place: pion decrypts into dst when it aliases the input (go-libs §3).
		out, err := l.decrypt.DecryptRTP(pkt[:0], pkt, &l.hdr)
		if err != nil {
			l.srtpFailed(err, &l.authLog, "srtp", from, now)
			return nil, false
		}
		pkt = out
	}
	if !paddingOK(pkt, hl) {
		l.stats.droppedMalformed.Add(1)
		return nil, false
	}
	if l.latch && !l.latched {
		l.latchTo(from)
	}
	l.act.mark(now)
	pt := l.ptOut[l.hdr.PayloadType]
	if pt < 0 {
		l.stats.droppedUnknownPT.Add(1)
		return nil, false
	}
	pkt[1] = pkt[1]&0x80 | uint8(pt) // keep the marker bit
	return pkt, true
}

// receiveRTCPSocket handles a datagram on the leg's RTCP port (peers that do not mux; Meta always
// muxes, §0 fact 5). RTCP is terminated here as on the RTP socket.
func (l *leg) receiveRTCPSocket(pkt []byte, from netip.AddrPort, now time.Time) {
	l.stats.packetsIn.Add(1)
	l.stats.bytesIn.Add(uint64(len(pkt)))
	if len(pkt) < rtcpMinSize || len(pkt) > maxDatagram || pkt[0]>>6 != rtpVersion {
		l.stats.droppedMalformed.Add(1)
		return
	}
	if !l.openRTCP(pkt, l.rtcpSockDecrypt, &l.rtcpSockHdr, l.rtcpSockOut, &l.rtcpSockLog, from, now) {
		return
	}
	// Plain RTCP proves nothing by itself; count it as the peer being alive only when it comes
	// from the peer's media address (RTCP uses the next port, so compare addresses only).
	if d := l.dest.Load(); l.rtcpSockDecrypt != nil || (d != nil && d.Addr() == from.Addr()) {
		l.act.mark(now)
	}
}

// openRTCP authenticates (SRTCP) or sanity-checks (plain) one RTCP packet and counts it.
func (l *leg) openRTCP(pkt []byte, dec *srtp.Context, hdr *rtcp.Header, out []byte, lim *logLimiter,
	from netip.AddrPort, now time.Time,
) bool {
	if dec != nil {
		if len(pkt) < rtcpMinSize+l.srtcpTrailer {
			l.stats.droppedMalformed.Add(1)
			return false
		}
		if _, err := dec.DecryptRTCP(out[:0], pkt, hdr); err != nil {
			l.srtpFailed(err, lim, "srtcp", from, now)
			return false
		}
	}
	l.stats.rtcpIn.Add(1)
	return true
}

// srtpFailed counts a packet pion refused. Its replay error type is unexported; with the
// length and cryptex checks done before decrypting and no MKI or RCC configured, every error
// other than an authentication failure is the replay window's.
func (l *leg) srtpFailed(err error, lim *logLimiter, proto string, from netip.AddrPort, now time.Time) {
	if !errors.Is(err, srtp.ErrFailedToVerifyAuthTag) {
		l.stats.srtpReplayed.Add(1)
		return
	}
	l.stats.srtpAuthFailures.Add(1)
	if ok, suppressed := lim.allow(now); ok {
		l.log.WithFields(logrus.Fields{"from": from, "proto": proto, "suppressed": suppressed}).
			Warn("SRTP authentication failed: dropping packet (wrong key or forged source)")
	}
}

// latchTo makes from the leg's destination (symmetric RTP, RFC 4961): the peer may be behind a
// NAT and its SDP address useless. Latching happens once, after the packet was authenticated
// (SRTP) or parsed (plain RTP), so forged junk cannot steal the stream.
func (l *leg) latchTo(from netip.AddrPort) {
	l.latched = true
	l.peer = from
	d := from
	prev := l.dest.Swap(&d)
	if prev == nil || *prev != from {
		sdp := "none"
		if prev != nil {
			sdp = prev.String()
		}
		l.log.WithFields(logrus.Fields{"from": from, "sdp": sdp}).Info("media source latched")
	}
}

// isRTCP demultiplexes RTP and RTCP on one port (RFC 5761 §4): RTCP packet types 192-223 land in
// the second byte where RTP has marker and PT; RTP PTs 64-95 are not used for that reason.
func isRTCP(b []byte) bool { return b[1] >= 192 && b[1] <= 223 }

// rtpHeaderFits checks, without allocating, that the CSRC list and the extension header fit in b
// (RFC 3550 §5.1, §5.3.1). rtp.Header.Unmarshal checks the same but allocates its error, and a
// flood of junk must not allocate. len(b) >= rtpHeaderSize.
func rtpHeaderFits(b []byte) bool {
	n := rtpHeaderSize + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	}
	return len(b) >= n
}

// paddingOK checks the padding count of a plaintext packet (RFC 3550 §5.1: the last octet counts
// the padding octets including itself).
func paddingOK(b []byte, headerLen int) bool {
	if b[0]&0x20 == 0 {
		return true
	}
	p := int(b[len(b)-1])
	return p > 0 && headerLen+p <= len(b)
}

// isCryptex reports RFC 9335 encrypted header extensions, which we do not negotiate.
func isCryptex(h *rtp.Header) bool {
	return h.Extension && (h.ExtensionProfile == rtp.CryptexProfileOneByte || h.ExtensionProfile == rtp.CryptexProfileTwoByte)
}

// legSender sends RTP to one leg's peer from that leg's RTP socket (symmetric RTP, RFC 4961),
// encrypting first when the leg uses SRTP. It is not goroutine-safe: the PBX-bound one belongs to
// the WhatsApp reader, the WhatsApp-bound one is guarded by waSender.mu.
type legSender struct {
	leg    *leg
	enc    *srtp.Context
	hdr    rtp.Header // reused so EncryptRTP does not allocate one per packet (go-libs §3)
	out    []byte
	errLog logLimiter
}

func newLegSender(l *leg, enc *srtp.Context) *legSender {
	s := &legSender{leg: l, enc: enc, out: make([]byte, maxDatagram+srtpMaxOverhead)}
	s.hdr.CSRC = make([]uint32, 0, 15)
	s.hdr.Extensions = make([]rtp.Extension, 0, 16)
	return s
}

// write encrypts and sends one plaintext RTP packet. consumed reports whether the SRTP context
// took the packet's sequence number (it did whenever encryption succeeded), so that callers
// tracking sequence numbers commit them even when the socket write then failed.
func (s *legSender) write(pkt []byte, now time.Time) (consumed bool, err error) {
	dest := s.leg.dest.Load()
	if dest == nil {
		return false, errNoDestination
	}
	out := pkt
	if s.enc != nil {
		if out, err = s.enc.EncryptRTP(s.out[:0], pkt, &s.hdr); err != nil {
			s.failed(now, "encrypt", err)
			return false, fmt.Errorf("encrypt rtp: %w", err)
		}
	}
	n, err := s.leg.ep.RTP.WriteTo(out, *dest)
	if err != nil {
		s.failed(now, "write", err)
		return true, fmt.Errorf("send rtp to %s: %w", *dest, err)
	}
	s.leg.stats.packetsOut.Add(1)
	s.leg.stats.bytesOut.Add(uint64(n))
	return true, nil
}

func (s *legSender) failed(now time.Time, what string, err error) {
	s.leg.stats.sendErrors.Add(1)
	if ok, suppressed := s.errLog.allow(now); ok {
		s.leg.log.WithError(err).WithFields(logrus.Fields{"op": what, "suppressed": suppressed}).
			Warn("media send failed")
	}
}

// logLimiter lets one message through per logEvery and counts the ones it held back. Each user
// owns one; it is not goroutine-safe.
type logLimiter struct {
	last       time.Time
	suppressed uint64
}

func (l *logLimiter) allow(now time.Time) (ok bool, suppressed uint64) {
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.suppressed++
		return false, 0
	}
	suppressed, l.suppressed, l.last = l.suppressed, 0, now
	return true, suppressed
}

// legCounters are the atomic counters behind LegStats.
type legCounters struct {
	packetsIn, bytesIn, packetsOut, bytesOut atomic.Uint64
	rtcpIn                                   atomic.Uint64
	srtpAuthFailures, srtpReplayed           atomic.Uint64
	droppedWrongSource, droppedUnknownPT     atomic.Uint64
	droppedMalformed, droppedLate            atomic.Uint64
	silenceSent, sendErrors                  atomic.Uint64
}

func (c *legCounters) snapshot() LegStats {
	return LegStats{
		PacketsIn:          c.packetsIn.Load(),
		BytesIn:            c.bytesIn.Load(),
		PacketsOut:         c.packetsOut.Load(),
		BytesOut:           c.bytesOut.Load(),
		RTCPIn:             c.rtcpIn.Load(),
		SRTPAuthFailures:   c.srtpAuthFailures.Load(),
		DroppedWrongSource: c.droppedWrongSource.Load(),
		DroppedUnknownPT:   c.droppedUnknownPT.Load(),
		DroppedMalformed:   c.droppedMalformed.Load(),
		SilenceSent:        c.silenceSent.Load(),
		SRTPReplayed:       c.srtpReplayed.Load(),
		DroppedLate:        c.droppedLate.Load(),
		SendErrors:         c.sendErrors.Load(),
	}
}
