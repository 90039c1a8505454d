package pbxsim

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/wabridge/wabridge/media"
)

// Default codecs: what a WhatsApp-facing Asterisk trunk is typically configured with. Opus is
// listed first because wabridge relays it without transcoding; PT 111 and the fmtp follow
// WebRTC practice, and telephone-event/8000 on PT 101 is Asterisk's default mapping.
const (
	defaultOpusPT = 111
	defaultDTMFPT = 101
	opusFmtp      = "minptime=20;useinbandfec=1"
	// dtmfFmtp: events 0-15 are the DTMF digits (RFC 4733 §3.2), 16 is flash; Asterisk
	// advertises exactly this.
	dtmfFmtp = "0-16"
	// ptimeMs is the packetisation we advertise (a=ptime), matching defaultPtime.
	ptimeMs = 20
)

// DefaultCodecs returns Config.Codecs' default: opus/48000/2 PT 111 and telephone-event/8000
// PT 101.
func DefaultCodecs() []media.Codec {
	return []media.Codec{
		{PT: defaultOpusPT, Name: media.CodecOpus, ClockRate: 48000, Channels: 2, Fmtp: opusFmtp},
		{PT: defaultDTMFPT, Name: media.CodecTelEvent, ClockRate: 8000, Fmtp: dtmfFmtp},
	}
}

// PCMU is G.711 µ-law on its static payload type 0 (RFC 3551 §6), for Answer.Codecs and
// DialOptions.Codecs.
func PCMU() media.Codec { return media.Codec{PT: 0, Name: media.CodecPCMU, ClockRate: 8000} }

// PCMA is G.711 A-law on its static payload type 8 (RFC 3551 §6).
func PCMA() media.Codec { return media.Codec{PT: 8, Name: media.CodecPCMA, ClockRate: 8000} }

// localDescription is our SDP for a stream on addr: plain RTP/AVP, sendrecv, 20 ms.
func localDescription(addr netip.AddrPort, codecs []media.Codec) *media.Description {
	return &media.Description{
		Addr:      addr.Addr(),
		Port:      int(addr.Port()),
		Proto:     media.ProtoRTPAVP,
		Codecs:    append([]media.Codec(nil), codecs...),
		Direction: media.DirSendRecv,
		Ptime:     ptimeMs,
	}
}

// sameCodec compares encodings the way RFC 3264 §6.1 matches them: by name
// (case-insensitive, RFC 6838 §4.2) and clock rate; payload type numbers may differ.
func sameCodec(a, b media.Codec) bool {
	return strings.EqualFold(a.Name, b.Name) && a.ClockRate == b.ClockRate
}

func isEvent(c media.Codec) bool { return strings.EqualFold(c.Name, media.CodecTelEvent) }

// answerCodecs picks the codecs of our answer to offer.
//
// Normally (forced == false) it is the offer's codecs that we support, in our order of
// preference, each with the offer's payload type as RFC 3264 §6.1 asks; telephone-event only
// when both sides have it. No common audio codec is an error (the caller answers 488, as
// Asterisk does).
//
// With forced (Answer.Codecs set) the answer lists exactly ours: a codec the offer has keeps
// the offer's payload type, one it lacks is answered anyway with our payload type. The latter
// breaks RFC 3264 on purpose: it is how a misconfigured PBX behaves, and wabridge must notice.
func answerCodecs(offer, ours []media.Codec, forced bool) ([]media.Codec, error) {
	var out []media.Codec
	audio := 0
	for _, c := range ours {
		matched := false
		for _, o := range offer {
			if sameCodec(c, o) {
				a := c
				a.PT = o.PT
				if o.Fmtp != "" && c.Fmtp == "" {
					a.Fmtp = o.Fmtp
				}
				out = append(out, a)
				matched = true
				break
			}
		}
		if !matched && forced {
			out = append(out, c)
			matched = true
		}
		if matched && !isEvent(c) {
			audio++
		}
	}
	if audio == 0 {
		return nil, fmt.Errorf("%w: offer has %s, pbxsim supports %s", media.ErrNoCodec, codecList(offer), codecList(ours))
	}
	return out, nil
}

func codecList(cs []media.Codec) string {
	if len(cs) == 0 {
		return "none"
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, fmt.Sprintf("%s/%d(%d)", c.Name, c.ClockRate, c.PT))
	}
	return strings.Join(names, ",")
}

// firstAudio returns the payload type of the first non-event codec, the one we send with.
func firstAudio(cs []media.Codec) (uint8, bool) {
	for _, c := range cs {
		if !isEvent(c) {
			return c.PT, true
		}
	}
	return 0, false
}
