package wasim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
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
	// watchdogTick is how often the media timers are checked.
	watchdogTick = 250 * time.Millisecond
)

// ErrPeerClosed is returned by Send and SendDTMF after Close.
var ErrPeerClosed = errors.New("wasim: media peer closed")

// Media is the WhatsApp side of a call's audio, whatever the number's key exchange: *Peer for
// SDES numbers, *WebRTCPeer for DTLS numbers (Number.SRTP). Both record what the business
// sends and send like Meta does (one SSRC, never before the business's maiden packet).
type Media interface {
	// Send sends payloads as consecutive 20 ms frames with payload type pt, one every
	// interval; it blocks until the business's first packet has arrived.
	Send(ctx context.Context, payloads [][]byte, pt uint8, interval time.Duration) error
	// SendDTMF sends one RFC 4733 event with payload type pt.
	SendDTMF(ctx context.Context, digit rune, pt uint8, duration time.Duration) error
	// Echo turns echoing received audio back on or off.
	Echo(on bool)
	// Received returns the packets received so far.
	Received() []Packet
	// ReceivedDTMF returns the digits received so far.
	ReceivedDTMF() string
	// FirstPacketAt is when the business's first valid packet arrived (zero if none yet).
	FirstPacketAt() time.Time
	// Violations returns the media rules the business broke.
	Violations() []string
	// Stats returns the traffic counters.
	Stats() PeerStats
	// SSRC is the single SSRC the WhatsApp side sends with.
	SSRC() uint32
	// Close stops the media; what was received stays readable.
	Close() error
}

var (
	_ Media = (*Peer)(nil)
	_ Media = (*WebRTCPeer)(nil)
)

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
	// AuthFailures counts SRTP/SRTCP packets that failed authentication or replay checks,
	// and Malformed packets too short or not RTP/RTCP. The WebRTC peer leaves both at zero:
	// pion drops such packets before they reach it.
	AuthFailures uint64
	Malformed    uint64
}

// stream is the transport-independent half of a WhatsApp media peer: it records what the
// business sends (packets, DTMF digits, Meta's media timers) and numbers what we send (one
// SSRC, sequence, timestamps, echo). The SDES Peer and the WebRTCPeer embed it and supply
// only the wire: how a packet gets in (record) and out (send).
type stream struct {
	// sendFirst lets Send transmit before the maiden packet (PeerConfig.SendFirst).
	sendFirst bool
	// send puts one packet on the wire. Called with txMu held; set once before use.
	send func(hdr *rtp.Header, payload []byte) error

	connected chan struct{} // closed by markConnected: media negotiated, the call's clock runs
	maiden    chan struct{} // closed when the first valid packet arrives
	closed    chan struct{} // closed by the transport's Close

	// tx: Send, SendDTMF and the echo path share one sender state.
	txMu     sync.Mutex
	ssrc     uint32 // fixed at creation
	seq      uint16
	ts       uint32
	started  bool
	clocks   map[uint8]uint32 // audio payload types only
	audioClk uint32
	lastRxTS uint32
	haveRxTS bool

	// data read by the accessors and the receive path.
	mu          sync.Mutex
	log         *logrus.Entry
	onViolation func(string) // when set, also receives the violations (the owning Call)
	connectAt   time.Time
	dtmfPT      int
	seenEvents  map[uint32]bool
	received    []Packet
	dtmf        []rune
	firstAt     time.Time
	firstRawAt  time.Time
	lastAt      time.Time
	violations  []string
	echo        bool
	firstLate   bool // the 20 s violation was recorded
	gapLate     bool // the 30 s violation was recorded

	stats struct {
		packetsIn, bytesIn, packetsOut, bytesOut, rtcpIn, authFailures, malformed atomic.Uint64
	}
}

func newStream(log *logrus.Entry, sendFirst bool) *stream {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &stream{
		sendFirst:  sendFirst,
		connected:  make(chan struct{}),
		maiden:     make(chan struct{}),
		closed:     make(chan struct{}),
		ssrc:       randUint32(),
		seq:        uint16(randUint32()),
		ts:         randUint32(),
		audioClk:   48000,
		log:        log,
		dtmfPT:     -1,
		seenEvents: make(map[uint32]bool),
	}
}

// setOwner routes the stream's logs and violations to the call it belongs to.
func (s *stream) setOwner(log *logrus.Entry, onViolation func(string)) {
	s.mu.Lock()
	s.log, s.onViolation = log, onViolation
	s.mu.Unlock()
}

func (s *stream) logger() *logrus.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

// SSRC is the single SSRC this peer sends with.
func (s *stream) SSRC() uint32 { return s.ssrc }

// markConnected starts the call's media clock with the negotiated codecs: they give the
// clock rate of our timestamps and the telephone-event payload type to decode. Call once.
func (s *stream) markConnected(codecs []media.Codec) {
	s.txMu.Lock()
	s.clocks = make(map[uint8]uint32, len(codecs))
	audioSet := false
	for _, c := range codecs {
		if strings.EqualFold(c.Name, media.CodecTelEvent) || c.ClockRate == 0 {
			continue // events ride on the audio timestamps
		}
		s.clocks[c.PT] = c.ClockRate
		if !audioSet {
			s.audioClk, audioSet = c.ClockRate, true
		}
	}
	s.txMu.Unlock()

	s.mu.Lock()
	s.dtmfPT = dtmfPT // Meta assumes 126 when telephone-event is absent (§4.8)
	for _, c := range codecs {
		if strings.EqualFold(c.Name, media.CodecTelEvent) && c.ClockRate == dtmfClock {
			s.dtmfPT = int(c.PT)
			break
		}
	}
	s.connectAt = time.Now()
	s.mu.Unlock()
	close(s.connected)
}

// markRaw notes the arrival of a datagram of any kind, even one that cannot be decrypted yet.
func (s *stream) markRaw(at time.Time) {
	s.mu.Lock()
	if s.firstRawAt.IsZero() {
		s.firstRawAt = at
	}
	s.mu.Unlock()
}

// record stores one valid, decrypted packet from the business, decodes DTMF end events,
// releases Send on the maiden packet and echoes audio when asked to.
func (s *stream) record(pkt *rtp.Packet, at time.Time) {
	s.stats.packetsIn.Add(1)
	s.stats.bytesIn.Add(uint64(len(pkt.Payload)))

	rec := Packet{
		PT: pkt.PayloadType, Seq: pkt.SequenceNumber, TS: pkt.Timestamp, SSRC: pkt.SSRC,
		Marker: pkt.Marker, Payload: append([]byte(nil), pkt.Payload...), At: at,
	}
	s.mu.Lock()
	if len(s.received) < maxStoredPackets {
		s.received = append(s.received, rec)
	}
	if s.firstRawAt.IsZero() {
		s.firstRawAt = at
	}
	first := s.firstAt.IsZero()
	if first {
		s.firstAt = at
	}
	s.lastAt = at
	echo := s.echo
	isDTMF := int(rec.PT) == s.dtmfPT
	if isDTMF {
		if ev, end, _, ok := media.DecodeTelephoneEvent(rec.Payload); ok && end && !s.seenEvents[rec.TS] {
			s.seenEvents[rec.TS] = true
			if d, ok := media.DTMFDigit(ev); ok {
				s.dtmf = append(s.dtmf, d)
			}
		}
	}
	s.mu.Unlock()
	if first {
		close(s.maiden)
	}
	if echo && !isDTMF {
		s.echoPacket(rec)
	}
}

// watchdog records Meta's media timeouts as violations: no business media within 20 s of
// the call start, or a gap of more than 30 s mid-call (whatsapp-calling.md §4.7).
func (s *stream) watchdog(now time.Time) {
	select {
	case <-s.connected:
	default:
		return
	}
	s.mu.Lock()
	var v string
	switch {
	case s.firstAt.IsZero() && !s.firstLate && now.Sub(s.connectAt) > firstMediaTimeout:
		s.firstLate = true
		v = fmt.Sprintf("no media from the business within %s of the call start (WhatsApp hangs up)", firstMediaTimeout)
	case !s.firstAt.IsZero() && !s.gapLate && now.Sub(s.lastAt) > midCallMediaTimeout:
		s.gapLate = true
		v = fmt.Sprintf("no media from the business for more than %s mid-call (WhatsApp hangs up)", midCallMediaTimeout)
	}
	s.mu.Unlock()
	if v != "" {
		s.violate(v)
	}
}

func (s *stream) violate(v string) {
	s.mu.Lock()
	s.violations = append(s.violations, v)
	log, onViolation := s.log, s.onViolation
	s.mu.Unlock()
	log.WithField("violation", v).Warn("WhatsApp media rule broken")
	if onViolation != nil {
		onViolation(v)
	}
}

// Received returns a copy of the packets received so far (at most 65536).
func (s *stream) Received() []Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Packet, len(s.received))
	copy(out, s.received)
	return out
}

// ReceivedDTMF returns the digits decoded from received RFC 4733 end packets, one per
// event (retransmitted end packets share the event's timestamp).
func (s *stream) ReceivedDTMF() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.dtmf)
}

// FirstPacketAt is when the first valid SRTP packet arrived (zero if none yet).
func (s *stream) FirstPacketAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstAt
}

// firstRawPacketAt is when the first datagram of any kind arrived, even before the keys
// were known: what "media before answer" is judged by.
func (s *stream) firstRawPacketAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstRawAt
}

// Violations returns the media rules the business broke on this peer.
func (s *stream) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Stats returns the traffic counters.
func (s *stream) Stats() PeerStats {
	return PeerStats{
		PacketsIn:    s.stats.packetsIn.Load(),
		BytesIn:      s.stats.bytesIn.Load(),
		PacketsOut:   s.stats.packetsOut.Load(),
		BytesOut:     s.stats.bytesOut.Load(),
		RTCPIn:       s.stats.rtcpIn.Load(),
		AuthFailures: s.stats.authFailures.Load(),
		Malformed:    s.stats.malformed.Load(),
	}
}
