package media

import (
	"errors"
	"net/netip"
)

// Transport profiles on the m= line.
const (
	ProtoRTPAVP   = "RTP/AVP"
	ProtoRTPSAVP  = "RTP/SAVP"
	ProtoWebRTC   = "UDP/TLS/RTP/SAVPF"
	DirSendRecv   = "sendrecv"
	DirSendOnly   = "sendonly"
	DirRecvOnly   = "recvonly"
	DirInactive   = "inactive"
	CodecOpus     = "opus"
	CodecPCMU     = "PCMU"
	CodecPCMA     = "PCMA"
	CodecTelEvent = "telephone-event"
)

// Errors that map to SIP 488 Not Acceptable Here. Wrapped with detail; test with errors.Is.
var (
	ErrMalformedSDP = errors.New("malformed SDP")
	ErrNoAudio      = errors.New("no audio media in SDP")
	ErrNoCodec      = errors.New("no common codec")
	ErrNoCrypto     = errors.New("no usable SDES crypto")
)

// Codec is one rtpmap entry. Name compares case-insensitively ("opus", "PCMA", "telephone-event").
type Codec struct {
	PT        uint8
	Name      string
	ClockRate uint32
	Channels  uint16 // 0 when absent in rtpmap
	Fmtp      string // value after "a=fmtp:<pt> ", empty when none
}

// Description is the audio part of an SDP as wabridge uses it: one m=audio section.
type Description struct {
	Addr      netip.Addr     // c= address (media level wins over session level)
	Port      int            // m= port; 0 means the stream is rejected
	RTCP      netip.AddrPort // from a=rtcp (zero when absent)
	RTCPMux   bool
	Proto     string  // ProtoRTPAVP, ProtoRTPSAVP, ProtoWebRTC
	Codecs    []Codec // in m= line order; includes telephone-event entries
	Crypto    []Crypto
	Direction string // DirSendRecv when absent
	Ptime     int    // 0 when absent
	// Extra holds media-level attributes wabridge does not model (ice-ufrag, fingerprint, setup, mid,
	// ssrc, msid, candidate, ...), in order, so they can be inspected and re-emitted.
	Extra []Attribute
	// Session-level extras (group:BUNDLE, ice-lite, msid-semantic...).
	SessionExtra []Attribute
	SessionID    uint64 // o= sess-id; Marshal picks a random one when 0
	SessionVer   uint64
}

// Attribute is an a= line: Key ":" Value, or a flag when Value == "".
type Attribute struct{ Key, Value string }

// ParseDescription parses an SDP body and returns its first audio section.
func ParseDescription(b []byte) (*Description, error) { panic("TODO") }

// Marshal renders a complete SDP (v=, o=, s=, c=, t=, m=audio, attributes) with CRLF line ends.
func (d *Description) Marshal() []byte { panic("TODO") }

// RTPAddr is where RTP for this description goes.
func (d *Description) RTPAddr() netip.AddrPort { panic("TODO") }

// RTCPAddr is where RTCP goes: the RTP address when rtcp-mux, a=rtcp when present, else port+1.
func (d *Description) RTCPAddr() netip.AddrPort { panic("TODO") }

// FindCodec returns the first codec with this name (case-insensitive) and clock rate.
func (d *Description) FindCodec(name string, clock uint32) (Codec, bool) { panic("TODO") }

// DTMF returns the telephone-event/8000 codec when offered.
func (d *Description) DTMF() (Codec, bool) { panic("TODO") }

// Attr returns the first media-level extra attribute with key.
func (d *Description) Attr(key string) (string, bool) { panic("TODO") }
