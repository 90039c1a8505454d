package wasim

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/wabridge/wabridge/media"
)

// webrtcSession is what the WhatsApp side's WebRTC SDP carries, taken from pion's local
// description once gathering is complete.
type webrtcSession struct {
	ufrag, pwd  string
	fingerprint string // "sha-256 AB:CD:..."
	setup       string // actpass in offers, active or passive in answers
	mid         string
	candidates  []string // a=candidate values, component 1 only
	codecs      []media.Codec
	ssrc        uint32
}

// sessionFromPion extracts a webrtcSession from pion's SDP. pion knows our codecs without
// their fmtp (see pionCapability): an offer gets the fmtp of ours (Meta's Opus parameters),
// an answer keeps what pion negotiated, the offer's fmtp, as Meta's answers echo the offered
// codecs (whatsapp-calling.md §4.3).
func sessionFromPion(text string, ssrc uint32, ours []media.Codec, offer bool) (webrtcSession, error) {
	d, err := media.ParseDescription([]byte(text))
	if err != nil {
		return webrtcSession{}, fmt.Errorf("wasim: pion's own SDP: %w", err)
	}
	s := webrtcSession{codecs: d.Codecs, ssrc: ssrc}
	if offer {
		for i, c := range s.codecs {
			s.codecs[i].Fmtp = ""
			if j := slices.IndexFunc(ours, func(o media.Codec) bool {
				return strings.EqualFold(o.Name, c.Name) && o.ClockRate == c.ClockRate
			}); j >= 0 {
				s.codecs[i].Fmtp = ours[j].Fmtp
			}
		}
	}
	s.ufrag, _ = sdpAttr(d, "ice-ufrag")
	s.pwd, _ = sdpAttr(d, "ice-pwd")
	s.fingerprint, _ = sdpAttr(d, "fingerprint")
	s.setup, _ = sdpAttr(d, "setup")
	s.mid, _ = sdpAttr(d, "mid")
	for _, c := range sdpAttrValues(d, "candidate") {
		// pion writes every host candidate twice, for components 1 and 2, even with
		// rtcp-mux; Meta lists each address once (go-libs.md §4.1, whatsapp-calling.md §4.3).
		if f := strings.Fields(c); len(f) > 1 && f[1] == "1" {
			s.candidates = append(s.candidates, c)
		}
	}
	// pion gathers the sockets concurrently; Meta lists IPv4 first (whatsapp-calling.md §4.3).
	slices.SortStableFunc(s.candidates, func(a, b string) int {
		a4, b4 := isIPv4Candidate(a), isIPv4Candidate(b)
		switch {
		case a4 && !b4:
			return -1
		case b4 && !a4:
			return 1
		}
		return 0
	})
	if s.ufrag == "" || s.pwd == "" || s.fingerprint == "" || s.setup == "" || s.mid == "" || len(s.candidates) == 0 {
		return webrtcSession{}, fmt.Errorf("wasim: pion's SDP lacks ICE credentials, fingerprint, setup, mid or candidates:\n%s", text)
	}
	return s, nil
}

// metaWebRTCSDP writes a WebRTC session description the way Meta does (whatsapp-calling.md
// §4.3): ice-lite, BUNDLE with one mid, the m= port and c= address of the first IPv4
// candidate (Meta's relay address), a=rtcp:9, the host candidates, ICE credentials,
// fingerprint, setup, sendrecv, msid WhatsAppTrack1, rtcp-mux, Opus with Meta's fmtp (and
// a=rtcp-fb transport-cc in offers, as Meta writes it: without an a=extmap for the
// transport-wide sequence number no feedback is ever exchanged), telephone-event/8000,
// ptime/maxptime 20 and one SSRC with cname WhatsAppAudioStream1. Like metaSDP it is written
// by hand and not by pion, so wabridge parses an SDP its own library did not write.
func metaWebRTCSDP(s webrtcSession, offer bool) []byte {
	var addr netip.AddrPort
	for _, c := range s.candidates {
		if a, ok := candidateAddr(c); ok && (!addr.IsValid() || a.Addr().Is4() && !addr.Addr().Is4()) {
			addr = a
		}
	}
	if !addr.IsValid() {
		addr = netip.AddrPortFrom(netip.IPv4Unspecified(), 9) // RFC 8839 §4.2.1.3 placeholder
	}
	ipVer := "IP4"
	if addr.Addr().Is6() {
		ipVer = "IP6"
	}
	ip := addr.Addr().String()

	var b strings.Builder
	line := func(parts ...string) {
		for _, p := range parts {
			b.WriteString(p)
		}
		b.WriteString("\r\n")
	}
	sid := strconv.FormatUint(uint64(randUint32()), 10)
	line("v=0")
	line("o=- ", sid, " 2 IN ", ipVer, " ", ip)
	line("s=-")
	line("t=0 0")
	line("a=group:BUNDLE ", s.mid)
	line("a=ice-lite")
	pts := make([]string, 0, len(s.codecs))
	for _, c := range s.codecs {
		pts = append(pts, strconv.Itoa(int(c.PT)))
	}
	line("m=audio ", strconv.Itoa(int(addr.Port())), " ", media.ProtoWebRTC, " ", strings.Join(pts, " "))
	line("c=IN ", ipVer, " ", ip)
	line("a=rtcp:9 IN IP4 0.0.0.0")
	for _, c := range s.candidates {
		line("a=candidate:", c)
	}
	line("a=ice-ufrag:", s.ufrag)
	line("a=ice-pwd:", s.pwd)
	line("a=fingerprint:", s.fingerprint)
	line("a=setup:", s.setup)
	line("a=mid:", s.mid)
	line("a=sendrecv")
	line("a=msid:", webrtcStreamID, " ", webrtcTrackID)
	line("a=rtcp-mux")
	for _, c := range s.codecs {
		pt := strconv.Itoa(int(c.PT))
		rtpmap := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
		if c.Channels > 0 {
			rtpmap += "/" + strconv.Itoa(int(c.Channels))
		}
		line("a=rtpmap:", pt, " ", rtpmap)
		if offer && strings.EqualFold(c.Name, media.CodecOpus) {
			line("a=rtcp-fb:", pt, " transport-cc")
		}
		if c.Fmtp != "" {
			line("a=fmtp:", pt, " ", c.Fmtp)
		}
	}
	line("a=maxptime:20")
	line("a=ptime:20")
	line("a=ssrc:", strconv.FormatUint(uint64(s.ssrc), 10), " cname:", sdpCNAME)
	return []byte(b.String())
}

// candidateAddr returns the transport address of an a=candidate value
// ("<foundation> <component> <transport> <priority> <address> <port> typ ...", RFC 8839 §5.1).
func candidateAddr(c string) (netip.AddrPort, bool) {
	f := strings.Fields(c)
	if len(f) < 6 {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(f[4])
	if err != nil {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(f[5], 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

func isIPv4Candidate(c string) bool {
	a, ok := candidateAddr(c)
	return ok && a.Addr().Is4()
}

// sdpAttr returns an attribute that media.Description does not model, media level first,
// then session level (where fingerprint, ice-ufrag and ice-pwd may also be, RFC 8839 §5.4,
// RFC 8122 §5).
func sdpAttr(d *media.Description, key string) (string, bool) {
	for _, attrs := range [][]media.Attribute{d.Extra, d.SessionExtra} {
		for _, a := range attrs {
			if strings.EqualFold(strings.TrimSpace(a.Key), key) {
				return strings.TrimSpace(a.Value), true
			}
		}
	}
	return "", false
}

// sdpAttrValues returns every media-level value of an attribute.
func sdpAttrValues(d *media.Description, key string) []string {
	var out []string
	for _, a := range d.Extra {
		if strings.EqualFold(strings.TrimSpace(a.Key), key) {
			out = append(out, strings.TrimSpace(a.Value))
		}
	}
	return out
}

// declaredSSRCs lists the distinct SSRCs of the media section's a=ssrc lines, minus the
// secondary SSRCs of a=ssrc-group lines (RTX or FEC repair streams, RFC 5576 §4.2).
func declaredSSRCs(d *media.Description) []uint32 {
	var secondary []uint32
	for _, g := range sdpAttrValues(d, "ssrc-group") {
		f := strings.Fields(g)
		for _, v := range f[min(2, len(f)):] {
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				secondary = append(secondary, uint32(n))
			}
		}
	}
	var out []uint32
	for _, v := range sdpAttrValues(d, "ssrc") {
		id, _, _ := strings.Cut(v, " ")
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil || slices.Contains(out, uint32(n)) || slices.Contains(secondary, uint32(n)) {
			continue
		}
		out = append(out, uint32(n))
	}
	return out
}

// errNoFingerprint is Meta's answer to a DTLS number's INVITE whose SDP has no fingerprint,
// typically an SDES offer (whatsapp-calling.md §4.5).
var errNoFingerprint = errors.New("No fingerprint found in SDP") //nolint:staticcheck // Meta's text, capitalised

// checkWebRTCOffer validates a business-initiated SDP offer for a number whose key exchange
// is DTLS: a=fingerprint, UDP/TLS/RTP/SAVPF, ICE credentials and opus/48000/2. Those
// failures become 488 with the reason in Warning. notes are rules broken that do not stop
// the call from being answered (the edge records them as violations).
func checkWebRTCOffer(body []byte) (d *media.Description, notes []string, err error) {
	if len(body) == 0 {
		return nil, nil, errors.New("INVITE without SDP offer")
	}
	d, err = media.ParseDescription(body)
	if err != nil {
		return nil, nil, fmt.Errorf("SDP validation error: %v", err)
	}
	if _, ok := sdpAttr(d, "fingerprint"); !ok {
		return nil, nil, errNoFingerprint
	}
	if d.Proto != media.ProtoWebRTC {
		return nil, nil, fmt.Errorf("SDP validation error: m=audio profile %s, DTLS-SRTP needs %s", d.Proto, media.ProtoWebRTC)
	}
	if d.Port == 0 {
		return nil, nil, errors.New("SDP validation error: audio stream rejected (port 0)")
	}
	if c, ok := d.FindCodec(media.CodecOpus, 48000); !ok || c.Channels != 2 {
		return nil, nil, errors.New("SDP validation error: opus/48000/2 not offered")
	}
	if err := iceCredentials(d); err != nil {
		return nil, nil, err
	}
	if err := oneSSRC(d, "offer"); err != nil {
		return nil, nil, err
	}
	if _, lite := sdpAttr(d, "ice-lite"); lite {
		notes = append(notes, "SDP offer declares a=ice-lite: Meta is ICE-lite, so the business must be a full ICE agent "+
			"in the controlling role or no connectivity check is ever sent (whatsapp-calling.md §4.4)")
	}
	return d, append(notes, webrtcNotes(d, "offer")...), nil
}

// checkWebRTCAnswer validates wabridge's SDP answer to the edge's WebRTC offer. fatal are the
// problems that make the call unusable (Dial hangs up and returns ErrViolation), notes the
// rules broken that a real call might survive.
func checkWebRTCAnswer(body []byte, offered []media.Codec) (d *media.Description, fatal, notes []string) {
	if len(body) == 0 {
		return nil, []string{"200 OK without SDP answer"}, nil
	}
	d, err := media.ParseDescription(body)
	if err != nil {
		return nil, []string{fmt.Sprintf("SDP answer does not parse: %v", err)}, nil
	}
	if _, ok := sdpAttr(d, "fingerprint"); !ok {
		fatal = append(fatal, "SDP answer without a=fingerprint ("+errNoFingerprint.Error()+")")
	}
	if d.Proto != media.ProtoWebRTC {
		fatal = append(fatal, fmt.Sprintf("SDP answer profile %s, want %s", d.Proto, media.ProtoWebRTC))
	}
	if d.Port == 0 {
		fatal = append(fatal, "SDP answer rejects the audio stream (port 0)")
	}
	if err := iceCredentials(d); err != nil {
		fatal = append(fatal, "SDP answer: "+err.Error())
	}
	if _, lite := sdpAttr(d, "ice-lite"); lite {
		fatal = append(fatal, "SDP answer declares a=ice-lite: with Meta ICE-lite too, nobody sends connectivity checks "+
			"(the business must be full ICE and controlling, whatsapp-calling.md §4.4)")
	}
	if !d.RTCPMux {
		fatal = append(fatal, "SDP answer without a=rtcp-mux")
	}
	if d.Direction != media.DirSendRecv {
		fatal = append(fatal, fmt.Sprintf("SDP answer direction %s, want sendrecv", d.Direction))
	}
	if err := oneSSRC(d, "answer"); err != nil {
		fatal = append(fatal, err.Error())
	}
	fatal = append(fatal, answerCodecProblems(d.Codecs, offered)...)

	switch setup, _ := sdpAttr(d, "setup"); setup {
	case SetupActive:
	case "":
		notes = append(notes, "SDP answer without a=setup; the business should answer a=setup:active (DTLS client, whatsapp-calling.md §4.5)")
	default:
		notes = append(notes, fmt.Sprintf("SDP answer a=setup:%s to Meta's actpass offer; the business should be the DTLS client "+
			"(a=setup:active, whatsapp-calling.md §4.5)", setup))
	}
	return d, fatal, append(notes, webrtcNotes(d, "answer")...)
}

// iceCredentials checks for a=ice-ufrag and a=ice-pwd (RFC 8839 §5.4).
func iceCredentials(d *media.Description) error {
	ufrag, _ := sdpAttr(d, "ice-ufrag")
	pwd, _ := sdpAttr(d, "ice-pwd")
	if ufrag == "" || pwd == "" {
		return errors.New("SDP validation error: no ICE credentials (a=ice-ufrag, a=ice-pwd)")
	}
	return nil
}

// webrtcNotes are the rules of whatsapp-calling.md §4.4 that an offer or answer from the
// business can break without making the SDP unusable.
func webrtcNotes(d *media.Description, what string) []string {
	var notes []string
	if len(sdpAttrValues(d, "candidate")) == 0 {
		notes = append(notes, fmt.Sprintf("SDP %s has no a=candidate; the business should advertise at least one candidate "+
			"(Meta only learns its address from the checks, whatsapp-calling.md §4.4)", what))
	}
	return notes
}

// oneSSRC rejects an SDP that declares more than one SSRC: Meta supports exactly one per call
// (whatsapp-calling.md §4.2), and pion takes several in one media section for Plan B and
// refuses the description anyway.
func oneSSRC(d *media.Description, what string) error {
	if ssrcs := declaredSSRCs(d); len(ssrcs) > 1 {
		return fmt.Errorf("SDP validation error: %s declares %d SSRCs %v, Meta supports exactly one", what, len(ssrcs), ssrcs)
	}
	return nil
}
