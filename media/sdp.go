package media

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
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

// Attribute keys that Description models; all others land in Extra or SessionExtra.
const (
	attrRtpmap  = "rtpmap"
	attrFmtp    = "fmtp"
	attrPtime   = "ptime"
	attrRTCP    = "rtcp"
	attrRTCPMux = "rtcp-mux"
	attrCrypto  = "crypto"
)

// ParseDescription parses an SDP body and returns its first audio section.
//
// The body comes from any SIP peer, so the parse is lenient where peers are known to differ and strict
// only where guessing would send media to the wrong place:
//   - LF-only line ends are accepted (RFC 4566 §5 asks parsers to be tolerant) and a missing final line
//     end is supplied; a bare CR is rejected because pion would split lines differently from the peer.
//   - Static payload types without a=rtpmap get their RFC 3551 §6 encoding.
//   - a=rtpmap, a=fmtp, a=ptime, a=rtcp and a=crypto lines that do not parse are dropped, as if absent;
//     of repeated lines the first wins (per payload type for a=rtpmap and a=fmtp). a=rtpmap and a=fmtp
//     for payload types the m= line does not list are dropped as well.
//   - A session-level direction attribute applies when the media section has none (RFC 4566 §6).
//   - A missing c= address is an error unless the stream is rejected (port 0).
//
// Errors wrap ErrMalformedSDP or ErrNoAudio.
func ParseDescription(b []byte) (*Description, error) {
	text, err := sdpText(b)
	if err != nil {
		return nil, err
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedSDP, err)
	}
	var md *sdp.MediaDescription
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media == "audio" {
			md = m
			break
		}
	}
	if md == nil {
		return nil, fmt.Errorf("%w: %d media sections, none is m=audio", ErrNoAudio, len(sd.MediaDescriptions))
	}

	d := &Description{
		Port:       md.MediaName.Port.Value,
		Proto:      strings.Join(md.MediaName.Protos, "/"),
		SessionID:  sd.Origin.SessionID,
		SessionVer: sd.Origin.SessionVersion,
	}
	if d.Addr, err = connectionAddr(md.ConnectionInformation, sd.ConnectionInformation); err != nil {
		return nil, err
	}
	if !d.Addr.IsValid() && d.Port != 0 {
		return nil, fmt.Errorf("%w: no c= address for m=audio port %d", ErrMalformedSDP, d.Port)
	}
	if d.Codecs, err = formatCodecs(md.MediaName.Formats); err != nil {
		return nil, err
	}

	sessionDir := ""
	for _, a := range sd.Attributes {
		if key := strings.TrimSpace(a.Key); isDirection(key) {
			if sessionDir == "" {
				sessionDir = key
			}
			continue
		}
		d.SessionExtra = append(d.SessionExtra, Attribute{Key: a.Key, Value: a.Value})
	}

	// Payload types (7 bits, RFC 3550 §5.1) that already got their a=rtpmap / a=fmtp line.
	var mapped, withFmtp [2]uint64
	for _, a := range md.Attributes {
		// Modelled attributes are matched and read with surrounding blanks removed (peers send
		// "a=sendrecv "); extras are kept byte for byte so they re-emit exactly.
		key, val := strings.TrimSpace(a.Key), strings.TrimSpace(a.Value)
		switch {
		case key == attrRtpmap:
			if c, ok := parseRtpmap(val); ok && !testBit(&mapped, c.PT) {
				setBit(&mapped, c.PT)
				for i := range d.Codecs {
					if d.Codecs[i].PT == c.PT {
						d.Codecs[i].Name, d.Codecs[i].ClockRate, d.Codecs[i].Channels = c.Name, c.ClockRate, c.Channels
					}
				}
			}
		case key == attrFmtp:
			if pt, params, ok := parseFmtp(val); ok && !testBit(&withFmtp, pt) {
				setBit(&withFmtp, pt)
				for i := range d.Codecs {
					if d.Codecs[i].PT == pt {
						d.Codecs[i].Fmtp = params
					}
				}
			}
		case key == attrPtime:
			if n, err := strconv.Atoi(val); err == nil && n > 0 && d.Ptime == 0 {
				d.Ptime = n
			}
		case key == attrRTCP:
			if ap, ok := parseRTCPAttr(val); ok && d.RTCP == (netip.AddrPort{}) {
				d.RTCP = ap
			}
		case key == attrRTCPMux:
			d.RTCPMux = true
		case key == attrCrypto:
			if c, err := ParseCrypto(val); err == nil {
				d.Crypto = append(d.Crypto, c)
			}
		case isDirection(key):
			if d.Direction == "" {
				d.Direction = key
			}
		default:
			d.Extra = append(d.Extra, Attribute{Key: a.Key, Value: a.Value})
		}
	}
	if d.Direction == "" {
		d.Direction = sessionDir
	}
	if d.Direction == "" {
		d.Direction = DirSendRecv // RFC 4566 §6: absent means sendrecv
	}
	return d, nil
}

// sdpText checks line ends and returns the body as pion wants it: every line, the last one included,
// ended by LF or CRLF.
func sdpText(b []byte) (string, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return "", fmt.Errorf("%w: empty body", ErrMalformedSDP)
	}
	for i := bytes.IndexByte(b, '\r'); i >= 0; {
		if i+1 < len(b) && b[i+1] != '\n' {
			return "", fmt.Errorf("%w: bare CR at byte %d", ErrMalformedSDP, i)
		}
		j := bytes.IndexByte(b[i+1:], '\r')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	switch b[len(b)-1] {
	case '\n':
		return string(b), nil
	case '\r':
		return string(b) + "\n", nil
	default:
		// SIP bodies are sized by Content-Length, and some stacks drop the final CRLF; pion's
		// attribute reader needs it.
		return string(b) + "\r\n", nil
	}
}

// connectionAddr returns the c= address that applies to the media section: its own when present,
// else the session's (RFC 4566 §5.7). Zero when neither has one.
func connectionAddr(media, session *sdp.ConnectionInformation) (netip.Addr, error) {
	ci := media
	if ci == nil || ci.Address == nil {
		ci = session
	}
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, nil
	}
	// Multicast addresses carry "/ttl[/count]" (RFC 4566 §5.7); only the address matters here.
	host, _, _ := strings.Cut(ci.Address.Address, "/")
	addr, err := netip.ParseAddr(host)
	if err != nil {
		// An FQDN is legal in c= but we would have to resolve it per call; no peer we bridge sends one.
		return netip.Addr{}, fmt.Errorf("%w: c=%s: %w", ErrMalformedSDP, ci, err)
	}
	return addr, nil
}

// formatCodecs turns the m= line's formats into codecs, filling in static payload types.
func formatCodecs(formats []string) ([]Codec, error) {
	var codecs []Codec // nil when the m= line lists none, so Parse(Marshal(d)) == d holds
	if len(formats) > 0 {
		codecs = make([]Codec, 0, len(formats))
	}
	for _, f := range formats {
		// RTP payload types are 7 bits (RFC 3550 §5.1).
		pt, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			return nil, fmt.Errorf("%w: m=audio format %q is not an RTP payload type", ErrMalformedSDP, f)
		}
		c, ok := staticCodec(uint8(pt))
		if !ok {
			c = Codec{PT: uint8(pt)}
		}
		codecs = append(codecs, c)
	}
	return codecs, nil
}

// parseRtpmap parses "<pt> <name>/<clock>[/<channels>]" (RFC 4566 §6).
func parseRtpmap(v string) (Codec, bool) {
	ptText, enc, ok := strings.Cut(v, " ")
	if !ok {
		return Codec{}, false
	}
	pt, err := strconv.ParseUint(ptText, 10, 7)
	if err != nil {
		return Codec{}, false
	}
	name, rest, ok := strings.Cut(strings.TrimSpace(enc), "/")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return Codec{}, false
	}
	clockText, chText, hasCh := strings.Cut(rest, "/")
	clock, err := strconv.ParseUint(clockText, 10, 32)
	if err != nil || clock == 0 {
		return Codec{}, false
	}
	c := Codec{PT: uint8(pt), Name: name, ClockRate: uint32(clock)}
	if hasCh {
		ch, err := strconv.ParseUint(chText, 10, 16)
		if err != nil || ch == 0 {
			return Codec{}, false
		}
		c.Channels = uint16(ch)
	}
	return c, true
}

// parseFmtp parses "<pt> <format specific parameters>" (RFC 4566 §6), keeping the parameters verbatim.
func parseFmtp(v string) (uint8, string, bool) {
	ptText, params, _ := strings.Cut(v, " ")
	pt, err := strconv.ParseUint(ptText, 10, 7)
	if err != nil {
		return 0, "", false
	}
	return uint8(pt), strings.TrimSpace(params), true
}

// parseRTCPAttr parses "<port> [IN IP4|IP6 <addr>]" (RFC 3605 §2.1). Without an address the result has
// an invalid Addr and the port only: RTCPAddr then uses the c= address.
func parseRTCPAttr(v string) (netip.AddrPort, bool) {
	portText, rest, hasAddr := strings.Cut(v, " ")
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, false
	}
	if !hasAddr {
		return netip.AddrPortFrom(netip.Addr{}, uint16(port)), true
	}
	f := strings.Fields(rest)
	if len(f) != 3 || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
		return netip.AddrPort{}, false
	}
	addr, err := netip.ParseAddr(f[2])
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(port)), true
}

func isDirection(key string) bool {
	return key == DirSendRecv || key == DirSendOnly || key == DirRecvOnly || key == DirInactive
}

func testBit(set *[2]uint64, pt uint8) bool { return set[pt>>6]&(1<<(pt&63)) != 0 }
func setBit(set *[2]uint64, pt uint8)       { set[pt>>6] |= 1 << (pt & 63) }

// Marshal renders a complete SDP (v=, o=, s=, c=, t=, m=audio, attributes) with CRLF line ends.
//
// When SessionID is zero Marshal picks a random one and stores it in d: the o= line must stay the same
// for the whole session (RFC 3264 §8), and Meta wants the very same answer in pre_accept and accept
// (whatsapp-calling.md §0 item 8). So Marshal writes d and must not run concurrently on one
// Description. Some fields have defaults on the wire: Proto "" is sent as RTP/AVP, Direction "" as
// sendrecv, an invalid Addr as 0.0.0.0, and an opus codec without Channels as opus/48000/2.
func (d *Description) Marshal() []byte {
	if d.SessionID == 0 {
		d.SessionID = newSessionID()
	}
	addr := d.Addr
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified()
	}
	proto := d.Proto
	if proto == "" {
		proto = ProtoRTPAVP
	}
	dir := d.Direction
	if dir == "" {
		dir = DirSendRecv
	}

	b := make([]byte, 0, 256+64*len(d.Codecs)+96*len(d.Crypto)+64*(len(d.Extra)+len(d.SessionExtra)))
	b = append(b, "v=0\r\no=wabridge "...)
	b = strconv.AppendUint(b, d.SessionID, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, d.SessionVer, 10)
	b = appendNetAddr(append(b, ' '), addr)
	b = append(b, "\r\ns=wabridge\r\nc="...)
	b = appendNetAddr(b, addr)
	b = append(b, "\r\nt=0 0\r\n"...)
	for _, a := range d.SessionExtra {
		b = appendAttr(b, a.Key, a.Value)
	}

	b = append(b, "m=audio "...)
	b = strconv.AppendInt(b, int64(d.Port), 10)
	b = append(append(b, ' '), proto...)
	for _, c := range d.Codecs {
		b = strconv.AppendUint(append(b, ' '), uint64(c.PT), 10)
	}
	b = append(b, "\r\n"...)

	for _, c := range d.Codecs {
		if c.Name != "" {
			b = append(b, "a=rtpmap:"...)
			b = strconv.AppendUint(b, uint64(c.PT), 10)
			b = append(append(b, ' '), c.Name...)
			b = strconv.AppendUint(append(b, '/'), uint64(c.ClockRate), 10)
			ch := c.Channels
			if ch == 0 && strings.EqualFold(c.Name, CodecOpus) {
				ch = 2 // RFC 7587 §7: the rtpmap of opus always says two channels
			}
			if ch > 0 {
				b = strconv.AppendUint(append(b, '/'), uint64(ch), 10)
			}
			b = append(b, "\r\n"...)
		}
		if c.Fmtp != "" {
			b = append(b, "a=fmtp:"...)
			b = strconv.AppendUint(b, uint64(c.PT), 10)
			b = append(append(append(b, ' '), c.Fmtp...), "\r\n"...)
		}
	}
	if d.Ptime > 0 {
		b = strconv.AppendInt(append(b, "a=ptime:"...), int64(d.Ptime), 10)
		b = append(b, "\r\n"...)
	}
	if d.RTCP != (netip.AddrPort{}) && !d.RTCPMux {
		b = strconv.AppendUint(append(b, "a=rtcp:"...), uint64(d.RTCP.Port()), 10)
		if d.RTCP.Addr().IsValid() {
			b = appendNetAddr(append(b, ' '), d.RTCP.Addr())
		}
		b = append(b, "\r\n"...)
	}
	if d.RTCPMux {
		b = append(b, "a=rtcp-mux\r\n"...)
	}
	for _, c := range d.Crypto {
		b = append(c.appendTo(append(b, "a=crypto:"...)), "\r\n"...)
	}
	for _, a := range d.Extra {
		b = appendAttr(b, a.Key, a.Value)
	}
	return appendAttr(b, dir, "")
}

// newSessionID returns a random o= sess-id (RFC 4566 §5.2 leaves the choice to us). It stays below 2^63
// so stacks that read it into a signed 64-bit integer accept it.
func newSessionID() uint64 { return uint64(rand.Int64N(math.MaxInt64)) + 1 }

// appendNetAddr appends "IN IP4 <addr>" or "IN IP6 <addr>".
func appendNetAddr(b []byte, addr netip.Addr) []byte {
	if addr.Is4() {
		b = append(b, "IN IP4 "...)
	} else {
		b = append(b, "IN IP6 "...)
	}
	return addr.AppendTo(b)
}

func appendAttr(b []byte, key, value string) []byte {
	b = append(append(b, "a="...), key...)
	if value != "" {
		b = append(append(b, ':'), value...)
	}
	return append(b, "\r\n"...)
}

// RTPAddr is where RTP for this description goes.
func (d *Description) RTPAddr() netip.AddrPort {
	return netip.AddrPortFrom(d.Addr, uint16(d.Port))
}

// RTCPAddr is where RTCP goes: the RTP address when rtcp-mux, a=rtcp when present, else port+1.
// An a=rtcp without an address uses the c= address (RFC 3605 §2.1). A rejected stream (port 0) has no
// RTCP either, so its RTCPAddr has port 0.
func (d *Description) RTCPAddr() netip.AddrPort {
	switch {
	case d.RTCPMux:
		return d.RTPAddr()
	case d.RTCP != (netip.AddrPort{}):
		if d.RTCP.Addr().IsValid() {
			return d.RTCP
		}
		return netip.AddrPortFrom(d.Addr, d.RTCP.Port())
	case d.Port == 0:
		return d.RTPAddr()
	default:
		return netip.AddrPortFrom(d.Addr, uint16(d.Port+1)) // RFC 3550 §11
	}
}

// FindCodec returns the first codec with this name (case-insensitive) and clock rate. A clock of 0
// matches any rate.
func (d *Description) FindCodec(name string, clock uint32) (Codec, bool) {
	for _, c := range d.Codecs {
		if strings.EqualFold(c.Name, name) && (clock == 0 || c.ClockRate == clock) {
			return c, true
		}
	}
	return Codec{}, false
}

// DTMF returns the telephone-event/8000 codec when offered. Meta sends RFC 4733 events at 8000 Hz only,
// whatever the audio clock (whatsapp-calling.md §4.8).
func (d *Description) DTMF() (Codec, bool) { return d.FindCodec(CodecTelEvent, 8000) }

// Codec returns the codec with payload type pt, for mapping the payload types of received packets.
func (d *Description) Codec(pt uint8) (Codec, bool) {
	for _, c := range d.Codecs {
		if c.PT == pt {
			return c, true
		}
	}
	return Codec{}, false
}

// Attr returns the first media-level extra attribute with key.
func (d *Description) Attr(key string) (string, bool) {
	for _, a := range d.Extra {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}
