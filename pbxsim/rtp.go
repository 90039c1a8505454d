package pbxsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/media"
)

const (
	// maxStoredPackets bounds what Received keeps: about 20 minutes of 20 ms packets, so a long
	// `wabridge demo` call cannot grow without limit. Later packets still count in Stats.
	maxStoredPackets = 1 << 16
	// rtpReadBuffer fits any RTP packet on a 1500-byte MTU with room to spare; larger datagrams
	// are truncated, which no audio peer sends.
	rtpReadBuffer = 2048
	// defaultPtime is the packetisation interval of Send when none is given, and the frame
	// echo and DTMF assume: 20 ms is what Opus and G.711 trunks use by default (RFC 7587 §4.2,
	// RFC 3551 §4.5).
	defaultPtime = 20 * time.Millisecond
	// defaultAudioClock is assumed for payload types without a negotiated clock (the G.711
	// rate, the most common on trunks).
	defaultAudioClock = 8000
)

var (
	// ErrMediaClosed is returned by Send and SendDTMF once the peer is closed (the call ended).
	ErrMediaClosed = errors.New("pbxsim: media closed")
	// ErrNoRemote is returned by Send and SendDTMF when the remote SDP gave no address to send
	// to (not answered yet, port 0, or c=0.0.0.0 hold).
	ErrNoRemote = errors.New("pbxsim: no remote media address")
)

// Packet is one received RTP packet. Payload is a copy, safe to keep.
type Packet struct {
	PT      uint8
	Seq     uint16
	TS      uint32
	SSRC    uint32
	Marker  bool
	Payload []byte
	At      time.Time
}

// RTPPeer is one plain RTP stream: a UDP socket on an OS-chosen port, sending with one SSRC to
// the address from the remote SDP, from the socket it receives on (symmetric RTP, RFC 4961,
// which is what PBXs and wabridge's relay expect from a trunk peer). Every method is safe for
// concurrent use.
type RTPPeer struct {
	log   *logrus.Entry
	conn  *net.UDPConn
	local netip.AddrPort
	ssrc  uint32

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// Sender state, shared by Send, SendDTMF and echo so that they form one RTP stream.
	txMu       sync.Mutex
	remote     netip.AddrPort
	seq        uint16
	ts         uint32
	lastSendAt time.Time
	clocks     map[uint8]uint32 // negotiated payload type → RTP clock
	audioClock uint32           // clock of the first audio codec: the stream's timestamp rate
	echoValid  bool
	echoSSRC   uint32 // the received SSRC the echo offset belongs to
	echoOffset uint32 // our timestamp = received timestamp + echoOffset
	txBuf      []byte

	// Receiver state and counters, read by the accessors.
	mu         sync.Mutex
	received   []Packet
	dtmf       []rune
	eventPTs   map[uint8]bool   // telephone-event payload types
	rxClocks   map[uint8]uint32 // audio payload types → clock, for jitter
	seenEvents map[uint64]bool  // SSRC<<32 | timestamp of events already recorded
	echo       bool
	quality    rxQuality
	stats      Stats
	wake       chan struct{} // closed and replaced on every received packet
}

// newRTPPeer binds ip:0 and starts reading.
func newRTPPeer(ip netip.Addr, log *logrus.Entry) (*RTPPeer, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, fmt.Errorf("pbxsim: media socket on %s: %w", ip, err)
	}
	p := &RTPPeer{
		log:        log,
		conn:       conn,
		local:      netip.AddrPortFrom(ip, uint16(conn.LocalAddr().(*net.UDPAddr).Port)),
		ssrc:       rand.Uint32(),
		closed:     make(chan struct{}),
		seq:        uint16(rand.Uint32()), // random starts, RFC 3550 §5.1
		ts:         rand.Uint32(),
		clocks:     map[uint8]uint32{},
		audioClock: defaultAudioClock,
		eventPTs:   map[uint8]bool{},
		rxClocks:   map[uint8]uint32{},
		seenEvents: map[uint64]bool{},
		wake:       make(chan struct{}),
	}
	p.wg.Add(1)
	go p.readLoop()
	return p, nil
}

// configure installs the negotiated codecs and where to send. It runs once the answer is known
// and again when a re-INVITE moves the remote end.
func (p *RTPPeer) configure(remote netip.AddrPort, codecs []media.Codec) {
	clocks := make(map[uint8]uint32, len(codecs))
	events := map[uint8]bool{}
	audio := map[uint8]uint32{}
	audioClock := uint32(0)
	for _, c := range codecs {
		if c.ClockRate == 0 {
			continue
		}
		clocks[c.PT] = c.ClockRate
		if strings.EqualFold(c.Name, media.CodecTelEvent) {
			events[c.PT] = true
			continue
		}
		audio[c.PT] = c.ClockRate
		if audioClock == 0 {
			audioClock = c.ClockRate
		}
	}
	if !remote.IsValid() || remote.Port() == 0 || remote.Addr().IsUnspecified() {
		remote = netip.AddrPort{}
	}

	p.txMu.Lock()
	p.remote, p.clocks = remote, clocks
	if audioClock != 0 {
		p.audioClock = audioClock
	}
	p.txMu.Unlock()

	p.mu.Lock()
	p.eventPTs, p.rxClocks = events, audio
	p.mu.Unlock()
}

// LocalAddr is the address in our SDP.
func (p *RTPPeer) LocalAddr() netip.AddrPort { return p.local }

// RemoteAddr is where we send: the remote SDP's address (invalid when there is none).
func (p *RTPPeer) RemoteAddr() netip.AddrPort {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	return p.remote
}

// SSRC is the single SSRC this peer sends with.
func (p *RTPPeer) SSRC() uint32 { return p.ssrc }

// Echo turns echo on or off: every received RTP packet (audio and RFC 4733 events alike, as
// Asterisk's Echo() application does) is sent back with its payload bytes and payload type
// untouched, under our own SSRC, sequence numbers and timestamps. Timestamps keep the received
// spacing (ours = theirs + a fixed offset per received SSRC), so echoed events keep their
// shared timestamp and echoed audio its pacing.
func (p *RTPPeer) Echo(on bool) {
	p.mu.Lock()
	p.echo = on
	p.mu.Unlock()
}

// Received returns a copy of the RTP packets received so far (at most 65536; Stats keeps
// counting after that).
func (p *RTPPeer) Received() []Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Packet, len(p.received))
	copy(out, p.received)
	return out
}

// ReceivedDTMF returns the digits decoded from received RFC 4733 end packets, in order. An
// event's end packet is sent three times with the event's timestamp (RFC 4733 §2.5.1.4), so
// digits are deduplicated by SSRC and timestamp.
func (p *RTPPeer) ReceivedDTMF() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.dtmf)
}

// Stats returns the traffic counters and the loss and jitter estimates.
func (p *RTPPeer) Stats() Stats {
	p.mu.Lock()
	s := p.stats
	p.quality.fill(&s)
	p.mu.Unlock()
	return s
}

// WaitReceived blocks until at least n RTP packets have arrived, ctx ends or the peer closes.
func (p *RTPPeer) WaitReceived(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		got, wake := p.stats.PacketsIn, p.wake
		p.mu.Unlock()
		if got >= uint64(n) {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("pbxsim: %d of %d RTP packets received: %w", got, n, ctx.Err())
		case <-p.closed:
			return ErrMediaClosed
		}
	}
}

// Close stops the peer and releases its socket. What was received stays readable.
func (p *RTPPeer) Close() {
	p.closeOnce.Do(func() {
		close(p.closed)
		_ = p.conn.Close()
		p.wg.Wait()
	})
}

func (p *RTPPeer) readLoop() {
	defer p.wg.Done()
	buf := make([]byte, rtpReadBuffer)
	for {
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-p.closed:
			default:
				p.log.WithError(err).Warn("RTP socket read failed")
			}
			return
		}
		p.process(buf[:n], time.Now())
	}
}

// isRTCP tells RTCP from RTP on one port by the second byte (RFC 5761 §4): RTCP packet types
// 192-223 would be RTP payload types 64-95 with the marker bit, which RFC 5761 rules out.
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// process records one datagram and echoes it when asked to.
func (p *RTPPeer) process(b []byte, at time.Time) {
	if len(b) >= 12 && b[0]>>6 == 2 && isRTCP(b) {
		p.mu.Lock()
		p.stats.RTCPIn++
		p.mu.Unlock()
		return
	}
	var pkt rtp.Packet
	if err := pkt.Unmarshal(b); err != nil || pkt.Version != 2 {
		p.mu.Lock()
		p.stats.Malformed++
		p.mu.Unlock()
		return
	}
	// Unmarshal aliases the read buffer (go-libs.md §6): copy before keeping.
	rec := Packet{
		PT: pkt.PayloadType, Seq: pkt.SequenceNumber, TS: pkt.Timestamp, SSRC: pkt.SSRC,
		Marker: pkt.Marker, Payload: append([]byte(nil), pkt.Payload...), At: at,
	}

	p.mu.Lock()
	p.stats.PacketsIn++
	p.stats.BytesIn += uint64(len(rec.Payload))
	if p.stats.FirstAt.IsZero() {
		p.stats.FirstAt = at
	}
	p.stats.LastAt = at
	if len(p.received) < maxStoredPackets {
		p.received = append(p.received, rec)
	}
	isEvent := p.eventPTs[rec.PT]
	clock := p.rxClocks[rec.PT] // 0 for events and unknown types: no jitter sample
	p.quality.add(rec.SSRC, rec.Seq, rec.TS, clock, at)
	if isEvent {
		key := uint64(rec.SSRC)<<32 | uint64(rec.TS)
		if ev, end, _, ok := media.DecodeTelephoneEvent(rec.Payload); ok && end && !p.seenEvents[key] {
			p.seenEvents[key] = true
			if d, ok := media.DTMFDigit(ev); ok {
				p.dtmf = append(p.dtmf, d)
			}
		}
	}
	echo := p.echo
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()

	if echo {
		p.echoPacket(rec)
	}
}

// echoPacket sends rec's payload back as our own packet.
func (p *RTPPeer) echoPacket(rec Packet) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if !p.echoValid || rec.SSRC != p.echoSSRC {
		// Map the first packet of a source to where our stream stands now; later packets keep
		// their distance to it.
		p.echoValid, p.echoSSRC, p.echoOffset = true, rec.SSRC, p.ts-rec.TS
	}
	ts := rec.TS + p.echoOffset
	if err := p.writeLocked(rec.PT, rec.Marker, ts, rec.Payload); err != nil &&
		!errors.Is(err, ErrNoRemote) && !errors.Is(err, net.ErrClosed) {
		p.log.WithError(err).Debug("RTP echo failed")
	}
	// Send continues after the echoed audio rather than on top of it.
	p.ts = ts + p.frameLocked(rec.PT, defaultPtime)
	p.lastSendAt = time.Now()
}
