package media

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrInactive ends a relay whose peers stopped sending.
var ErrInactive = errors.New("media inactivity timeout")

// SRTPKeys are one leg's SDES (or DTLS-exported) keys.
type SRTPKeys struct {
	Local  Crypto // what we encrypt with (the key we put in our SDP)
	Remote Crypto // what we decrypt with (the peer's key)
}

// LegConfig describes one side of the relay.
type LegConfig struct {
	Endpoint   *Endpoint
	Remote     netip.AddrPort // RTP destination from the peer's SDP
	RemoteRTCP netip.AddrPort // RTCP destination; ignored with RTCPMux
	RTCPMux    bool
	// Latch enables symmetric RTP: the source of the first valid packet becomes the destination
	// and packets from any other source are dropped afterwards (counted as wrong_source).
	Latch bool
	SRTP  *SRTPKeys // nil: plain RTP
	// PTMap maps payload types arriving on this leg to payload types sent on the other leg.
	// Packets with an unmapped PT are dropped (counted as unknown_pt).
	PTMap map[uint8]uint8
}

// RelayConfig joins the WhatsApp leg and the PBX leg of one call.
type RelayConfig struct {
	WhatsApp LegConfig
	PBX      LegConfig
	// Toward WhatsApp the stream keeps one SSRC and continuous sequence numbers and timestamps,
	// whatever the PBX does (Meta supports one SSRC; whatsapp-calling.md §4.2).
	WhatsAppSSRC uint32 // 0: random
	AudioPT      uint8  // audio PT toward WhatsApp, used for silence frames
	ClockRate    uint32 // audio clock toward WhatsApp (48000 for Opus, 8000 for G.711)
	// SilencePayload is sent toward WhatsApp as the first packet and whenever the PBX has been
	// quiet for SilenceAfter, so Meta never goes 20 s without media (whatsapp-calling.md §4.7).
	SilencePayload []byte
	SilenceAfter   time.Duration // default 100ms
	Ptime          time.Duration // default 20ms
	// InactivityTimeout ends the relay when nothing valid arrived from either peer for this long.
	InactivityTimeout time.Duration
	Log               *logrus.Entry
}

// LegStats counts one leg's traffic. Read them with Relay.Stats.
type LegStats struct {
	PacketsIn, BytesIn, PacketsOut, BytesOut uint64
	RTCPIn                                   uint64
	SRTPAuthFailures                         uint64
	DroppedWrongSource                       uint64
	DroppedUnknownPT                         uint64
	DroppedMalformed                         uint64
	SilenceSent                              uint64 // WhatsApp leg only
}

// Stats is a snapshot of both legs.
type Stats struct{ WhatsApp, PBX LegStats }

// Relay moves packets between the legs. It owns both endpoints and closes them.
type Relay struct{}

func NewRelay(cfg RelayConfig) (*Relay, error) { panic("TODO") }

// Start sends the first packet toward WhatsApp and begins relaying until ctx ends, Close is
// called or the inactivity timeout fires.
func (r *Relay) Start(ctx context.Context) error { panic("TODO") }
func (r *Relay) Done() <-chan struct{}           { panic("TODO") }
func (r *Relay) Err() error                      { panic("TODO") }
func (r *Relay) Stats() Stats                    { panic("TODO") }
func (r *Relay) Close() error                    { panic("TODO") }
