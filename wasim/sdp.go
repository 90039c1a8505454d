package wasim

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/wabridge/wabridge/media"
)

// Meta's payload types and Opus parameters (whatsapp-calling.md §4.3).
const (
	opusPT     = 111
	dtmfPT     = 126
	opusFmtp   = "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"
	sdpCNAME   = "WhatsAppAudioStream1"
	sdpMidName = "audio"
)

// defaultOfferSuites() are the SDES suites Dial offers when DialOptions.Suites is empty. Meta
// masks its a=crypto lines; AES_CM_128_HMAC_SHA1_80 is known to work and goes first
// (whatsapp-calling.md §4.6).
func defaultOfferSuites() []string {
	return []string{media.SuiteAES128SHA1_80, media.SuiteAES128SHA1_32}
}

// defaultAcceptSuites() are the suites the edge accepts in a business-initiated offer when
// Answer.Suites is empty (the suites a LiveKit trace saw Meta accept, §4.6).
func defaultAcceptSuites() []string {
	return []string{
		media.SuiteAES128SHA1_80, media.SuiteAES128SHA1_32,
		media.SuiteAES256SHA1_80, media.SuiteAES256SHA1_32,
	}
}

// metaCodecs returns the codecs of a Meta offer: Opus, the G.711 codecs enabled with
// calling.audio.additional_codecs (§1.2), then telephone-event/8000.
func metaCodecs(additional []string) ([]media.Codec, error) {
	codecs := []media.Codec{{PT: opusPT, Name: media.CodecOpus, ClockRate: 48000, Channels: 2, Fmtp: opusFmtp}}
	for _, name := range additional {
		switch strings.ToUpper(name) {
		case media.CodecPCMA:
			codecs = append(codecs, media.Codec{PT: 8, Name: media.CodecPCMA, ClockRate: 8000})
		case media.CodecPCMU:
			codecs = append(codecs, media.Codec{PT: 0, Name: media.CodecPCMU, ClockRate: 8000})
		default:
			return nil, fmt.Errorf("wasim: additional codec %q is not PCMA or PCMU", name)
		}
	}
	return append(codecs, media.Codec{PT: dtmfPT, Name: media.CodecTelEvent, ClockRate: 8000}), nil
}

// metaSDP writes an SDES session description the way Meta's SIP edge does (§4.3: RTP/SAVP,
// a=crypto, Opus with Meta's fmtp, telephone-event/8000, rtcp-mux, BUNDLE with one mid,
// ptime/maxptime 20, one SSRC with cname WhatsAppAudioStream1, no ICE or DTLS lines). It is
// deliberately not media.Description.Marshal: wabridge must parse SDP it did not write.
func metaSDP(addr netip.AddrPort, sessionID uint64, codecs []media.Codec, cryptos []media.Crypto, ssrc uint32) []byte {
	ipVer := "IP4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		ipVer = "IP6"
	}
	ip := addr.Addr().Unmap().String()
	var b strings.Builder
	line := func(s ...string) {
		for _, p := range s {
			b.WriteString(p)
		}
		b.WriteString("\r\n")
	}
	sid := strconv.FormatUint(sessionID, 10)
	line("v=0")
	line("o=- ", sid, " ", sid, " IN ", ipVer, " ", ip)
	line("s=-")
	line("c=IN ", ipVer, " ", ip)
	line("t=0 0")
	line("a=group:BUNDLE ", sdpMidName)
	pts := make([]string, 0, len(codecs))
	for _, c := range codecs {
		pts = append(pts, strconv.Itoa(int(c.PT)))
	}
	line("m=audio ", strconv.Itoa(int(addr.Port())), " ", media.ProtoRTPSAVP, " ", strings.Join(pts, " "))
	for _, c := range codecs {
		rtpmap := c.Name + "/" + strconv.FormatUint(uint64(c.ClockRate), 10)
		if c.Channels > 0 {
			rtpmap += "/" + strconv.Itoa(int(c.Channels))
		}
		line("a=rtpmap:", strconv.Itoa(int(c.PT)), " ", rtpmap)
		if c.Fmtp != "" {
			line("a=fmtp:", strconv.Itoa(int(c.PT)), " ", c.Fmtp)
		}
	}
	line("a=maxptime:20")
	line("a=ptime:20")
	for _, c := range cryptos {
		line("a=crypto:", c.String())
	}
	line("a=mid:", sdpMidName)
	line("a=sendrecv")
	line("a=rtcp-mux")
	line("a=ssrc:", strconv.FormatUint(uint64(ssrc), 10), " cname:", sdpCNAME)
	return []byte(b.String())
}

// checkOffer validates a business-initiated SDP offer the way Meta does for an SDES number:
// RTP/SAVP, at least one usable a=crypto and opus/48000/2. Failures become 488.
func checkOffer(body []byte) (*media.Description, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("INVITE without SDP offer")
	}
	d, err := media.ParseDescription(body)
	if err != nil {
		return nil, fmt.Errorf("SDP validation error: %v", err)
	}
	if d.Proto != media.ProtoRTPSAVP {
		return nil, fmt.Errorf("SDP validation error: m=audio profile %s, SDES needs %s", d.Proto, media.ProtoRTPSAVP)
	}
	if d.Port == 0 {
		return nil, fmt.Errorf("SDP validation error: audio stream rejected (port 0)")
	}
	if c, ok := d.FindCodec(media.CodecOpus, 48000); !ok || c.Channels != 2 {
		return nil, fmt.Errorf("SDP validation error: opus/48000/2 not offered")
	}
	if len(d.Crypto) == 0 {
		return nil, fmt.Errorf("SDP validation error: no usable a=crypto")
	}
	return d, nil
}

// answerCodecs picks what Meta answers to an offer: Opus at the offered payload type and
// telephone-event/8000 at the offered payload type when offered (Meta's SDES 200 OK answered
// only Opus + DTMF to an offer of Opus, PCMU, PCMA and DTMF; §5.3 step 4).
func answerCodecs(offer *media.Description) []media.Codec {
	opus, _ := offer.FindCodec(media.CodecOpus, 48000)
	out := []media.Codec{{PT: opus.PT, Name: media.CodecOpus, ClockRate: 48000, Channels: 2, Fmtp: opusFmtp}}
	if dtmf, ok := offer.DTMF(); ok {
		out = append(out, media.Codec{PT: dtmf.PT, Name: media.CodecTelEvent, ClockRate: 8000})
	}
	return out
}

// pickCrypto chooses the first offered crypto line whose suite is in accept and returns it
// with the edge's own fresh key for the same tag and suite (RFC 4568 §7.1.2).
func pickCrypto(offered []media.Crypto, accept []string) (remote, local media.Crypto, err error) {
	var usable []media.Crypto
	for _, c := range offered {
		if slices.ContainsFunc(accept, func(s string) bool { return strings.EqualFold(s, c.Suite) }) {
			usable = append(usable, c)
		}
	}
	if len(usable) == 0 {
		suites := make([]string, 0, len(offered))
		for _, c := range offered {
			suites = append(suites, c.Suite)
		}
		return media.Crypto{}, media.Crypto{}, fmt.Errorf("SDP validation error: no acceptable crypto suite in %v", suites)
	}
	return media.AnswerCrypto(usable)
}

// checkAnswer validates wabridge's SDP answer to the edge's offer strictly. It returns the
// parsed answer, the offered crypto that was accepted and the problems found.
func checkAnswer(body []byte, offered []media.Codec, cryptos []media.Crypto) (*media.Description, media.Crypto, []string) {
	var problems []string
	if len(body) == 0 {
		return nil, media.Crypto{}, []string{"200 OK without SDP answer"}
	}
	d, err := media.ParseDescription(body)
	if err != nil {
		return nil, media.Crypto{}, []string{fmt.Sprintf("SDP answer does not parse: %v", err)}
	}
	if d.Proto != media.ProtoRTPSAVP {
		problems = append(problems, fmt.Sprintf("SDP answer profile %s, want %s", d.Proto, media.ProtoRTPSAVP))
	}
	if d.Port == 0 || !d.Addr.IsValid() || d.Addr.IsUnspecified() {
		problems = append(problems, fmt.Sprintf("SDP answer has no usable media address (%s port %d)", d.Addr, d.Port))
	}
	if !d.RTCPMux {
		problems = append(problems, "SDP answer without a=rtcp-mux")
	}
	if d.Direction != media.DirSendRecv {
		problems = append(problems, fmt.Sprintf("SDP answer direction %s, want sendrecv", d.Direction))
	}

	var accepted media.Crypto
	switch len(d.Crypto) {
	case 0:
		problems = append(problems, "SDP answer without a usable a=crypto")
	case 1:
		ans := d.Crypto[0]
		i := slices.IndexFunc(cryptos, func(c media.Crypto) bool { return c.Tag == ans.Tag })
		if i < 0 || !strings.EqualFold(cryptos[i].Suite, ans.Suite) {
			problems = append(problems, fmt.Sprintf("SDP answer a=crypto tag %d %s was not offered", ans.Tag, ans.Suite))
		} else {
			accepted = cryptos[i]
		}
	default:
		problems = append(problems, fmt.Sprintf("SDP answer has %d a=crypto lines, an answer accepts exactly one", len(d.Crypto)))
	}

	problems = append(problems, answerCodecProblems(d.Codecs, offered)...)
	return d, accepted, problems
}

// answerCodecProblems checks that an answer's codecs were all offered with the same payload
// type and that at least one of them is audio (not telephone-event).
func answerCodecProblems(answered, offered []media.Codec) []string {
	var problems []string
	audio := 0
	for _, c := range answered {
		i := slices.IndexFunc(offered, func(o media.Codec) bool { return o.PT == c.PT })
		if i < 0 || !strings.EqualFold(offered[i].Name, c.Name) || offered[i].ClockRate != c.ClockRate {
			problems = append(problems, fmt.Sprintf("SDP answer codec %d %s/%d was not offered with that payload type", c.PT, c.Name, c.ClockRate))
			continue
		}
		if !strings.EqualFold(c.Name, media.CodecTelEvent) {
			audio++
		}
	}
	if audio == 0 {
		problems = append(problems, "SDP answer has no audio codec")
	}
	return problems
}
