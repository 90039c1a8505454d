package bridge

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/wabridge/wabridge/media"
)

// Payload types wabridge uses when it writes an offer toward WhatsApp. Meta's own offers use
// Opus 111 and telephone-event 126 (whatsapp-calling.md §4.3, §4.8), so we mirror them.
const (
	waOpusPT   = 111
	waDTMFPT   = 126
	pcmuPT     = 0
	pcmaPT     = 8
	ptimeMs    = 20
	opusFmtpWA = "minptime=20;useinbandfec=1"
)

// audioCodec is the codec both legs agreed on, with each leg's payload types.
type audioCodec struct {
	Name      string // opus, PCMA or PCMU
	ClockRate uint32
	Channels  uint16
	WAPT      uint8 // payload type on the WhatsApp leg
	PBXPT     uint8 // payload type on the PBX leg
	WADTMF    int   // -1 when the WhatsApp leg has no telephone-event
	PBXDTMF   int   // -1 when the PBX leg has no telephone-event
}

// silence returns a payload the WhatsApp leg can play as silence in this codec.
func (c audioCodec) silence() []byte {
	switch strings.ToUpper(c.Name) {
	case media.CodecPCMA:
		return fill(160, 0xd5) // A-law encodes zero as 0xD5
	case media.CodecPCMU:
		return fill(160, 0xff) // µ-law encodes zero as 0xFF
	default:
		return []byte(media.OpusSilenceFrame)
	}
}

func fill(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// ptMaps builds the relay tables: what arrives on one leg with PT x leaves the other with PT y.
func (c audioCodec) ptMaps() (fromWA, fromPBX map[uint8]uint8) {
	fromWA = map[uint8]uint8{c.WAPT: c.PBXPT}
	fromPBX = map[uint8]uint8{c.PBXPT: c.WAPT}
	if c.WADTMF >= 0 && c.PBXDTMF >= 0 {
		fromWA[uint8(c.WADTMF)] = uint8(c.PBXDTMF)
		fromPBX[uint8(c.PBXDTMF)] = uint8(c.WADTMF)
	}
	return fromWA, fromPBX
}

// waCodecs lists the codecs WhatsApp can carry for a number: Opus always, G.711 only where the
// number enabled audio.additional_codecs at Meta (Meta transcodes; §1.2).
func waCodecs(additional []string) []string {
	out := []string{media.CodecOpus}
	for _, c := range additional {
		switch strings.ToUpper(c) {
		case media.CodecPCMA, media.CodecPCMU:
			out = append(out, strings.ToUpper(c))
		}
	}
	return out
}

func codecNames(cs []media.Codec) string {
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, fmt.Sprintf("%s/%d", c.Name, c.ClockRate))
	}
	return strings.Join(names, ",")
}

func findByName(cs []media.Codec, name string) (media.Codec, bool) {
	for _, c := range cs {
		if strings.EqualFold(c.Name, name) && c.ClockRate == clockOf(name) {
			return c, true
		}
	}
	return media.Codec{}, false
}

func clockOf(name string) uint32 {
	if strings.EqualFold(name, media.CodecOpus) {
		return 48000
	}
	return 8000
}

func dtmfPT(d *media.Description) int {
	if c, ok := d.DTMF(); ok {
		return int(c.PT)
	}
	return -1
}

// pbxOffer is the plain RTP/AVP offer sent to the PBX for a user-initiated call. It carries every
// codec the WhatsApp offer made that we can pass through untouched, Opus first.
func pbxOffer(wa *media.Description, addr netip.Addr, port int, opusPT, dtmfPTNum uint8) (*media.Description, error) {
	d := &media.Description{Addr: addr, Port: port, Proto: media.ProtoRTPAVP, Direction: media.DirSendRecv, Ptime: ptimeMs}
	if c, ok := findByName(wa.Codecs, media.CodecOpus); ok {
		d.Codecs = append(d.Codecs, media.Codec{PT: opusPT, Name: media.CodecOpus, ClockRate: 48000, Channels: 2, Fmtp: c.Fmtp})
	}
	if _, ok := findByName(wa.Codecs, media.CodecPCMA); ok {
		d.Codecs = append(d.Codecs, media.Codec{PT: pcmaPT, Name: media.CodecPCMA, ClockRate: 8000})
	}
	if _, ok := findByName(wa.Codecs, media.CodecPCMU); ok {
		d.Codecs = append(d.Codecs, media.Codec{PT: pcmuPT, Name: media.CodecPCMU, ClockRate: 8000})
	}
	if len(d.Codecs) == 0 {
		return nil, sipErr(488, "Not Acceptable Here",
			"no common codec: WhatsApp offered "+codecNames(wa.Codecs)+", wabridge passes through opus, PCMA, PCMU", media.ErrNoCodec)
	}
	if _, ok := wa.DTMF(); ok {
		d.Codecs = append(d.Codecs, media.Codec{PT: dtmfPTNum, Name: media.CodecTelEvent, ClockRate: 8000, Fmtp: "0-16"})
	}
	return d, nil
}

// agreeUIC picks the codec from the PBX's answer (the PBX chose among what WhatsApp offered).
func agreeUIC(wa, pbx *media.Description) (audioCodec, error) {
	for _, pc := range pbx.Codecs {
		if strings.EqualFold(pc.Name, media.CodecTelEvent) {
			continue
		}
		wc, ok := findByName(wa.Codecs, pc.Name)
		if !ok || pc.ClockRate != wc.ClockRate {
			continue
		}
		return audioCodec{Name: wc.Name, ClockRate: wc.ClockRate, Channels: wc.Channels,
			WAPT: wc.PT, PBXPT: pc.PT, WADTMF: dtmfPT(wa), PBXDTMF: dtmfPT(pbx)}, nil
	}
	return audioCodec{}, sipErr(488, "Not Acceptable Here",
		"no common codec: WhatsApp offered "+codecNames(wa.Codecs)+", PBX answered "+codecNames(pbx.Codecs), media.ErrNoCodec)
}

// waAnswerSDES is our RTP/SAVP answer to Meta's SDES offer.
func waAnswerSDES(offer *media.Description, c audioCodec, addr netip.Addr, port int, local media.Crypto) *media.Description {
	d := &media.Description{Addr: addr, Port: port, Proto: media.ProtoRTPSAVP, Direction: media.DirSendRecv,
		Ptime: ptimeMs, RTCPMux: offer.RTCPMux, Crypto: []media.Crypto{local}}
	wc, _ := findByName(offer.Codecs, c.Name)
	d.Codecs = append(d.Codecs, wc)
	if c.WADTMF >= 0 {
		if te, ok := offer.DTMF(); ok {
			d.Codecs = append(d.Codecs, te)
		}
	}
	return d
}

// waOfferSDES is our RTP/SAVP offer toward Meta for a business-initiated call: the codecs the PBX
// offered that WhatsApp can take, with Meta's own payload type numbers.
func waOfferSDES(pbx *media.Description, additional []string, addr netip.Addr, port int, cryptos []media.Crypto) (*media.Description, error) {
	d := &media.Description{Addr: addr, Port: port, Proto: media.ProtoRTPSAVP, Direction: media.DirSendRecv,
		Ptime: ptimeMs, RTCPMux: true, Crypto: cryptos}
	for _, name := range waCodecs(additional) {
		pc, ok := findByName(pbx.Codecs, name)
		if !ok {
			continue
		}
		switch name {
		case media.CodecOpus:
			d.Codecs = append(d.Codecs, media.Codec{PT: waOpusPT, Name: media.CodecOpus, ClockRate: 48000, Channels: 2, Fmtp: opusFmtpWA})
		default:
			d.Codecs = append(d.Codecs, media.Codec{PT: pc.PT, Name: name, ClockRate: 8000})
		}
	}
	if len(d.Codecs) == 0 {
		return nil, sipErr(488, "Not Acceptable Here",
			"no common codec: PBX offered "+codecNames(pbx.Codecs)+", WhatsApp accepts "+strings.Join(waCodecs(additional), ","), media.ErrNoCodec)
	}
	// Meta assumes telephone-event/8000 on 126 even when absent (§4.8), so always offer it.
	d.Codecs = append(d.Codecs, media.Codec{PT: waDTMFPT, Name: media.CodecTelEvent, ClockRate: 8000, Fmtp: "0-16"})
	return d, nil
}

// agreeBIC reads Meta's answer against the PBX's offer.
func agreeBIC(pbx, waAns *media.Description) (audioCodec, error) {
	for _, wc := range waAns.Codecs {
		if strings.EqualFold(wc.Name, media.CodecTelEvent) {
			continue
		}
		pc, ok := findByName(pbx.Codecs, wc.Name)
		if !ok {
			continue
		}
		return audioCodec{Name: wc.Name, ClockRate: wc.ClockRate, Channels: wc.Channels,
			WAPT: wc.PT, PBXPT: pc.PT, WADTMF: dtmfPT(waAns), PBXDTMF: dtmfPT(pbx)}, nil
	}
	return audioCodec{}, sipErr(488, "Not Acceptable Here",
		"no common codec: WhatsApp answered "+codecNames(waAns.Codecs)+", PBX offered "+codecNames(pbx.Codecs), media.ErrNoCodec)
}

// pbxAnswer answers the PBX's offer with the agreed codec at the PBX's own payload types.
func pbxAnswer(offer *media.Description, c audioCodec, addr netip.Addr, port int) *media.Description {
	d := &media.Description{Addr: addr, Port: port, Proto: media.ProtoRTPAVP, Direction: answerDirection(offer.Direction),
		Ptime: ptimeMs, RTCPMux: offer.RTCPMux}
	pc, _ := findByName(offer.Codecs, c.Name)
	d.Codecs = append(d.Codecs, pc)
	if c.PBXDTMF >= 0 && c.WADTMF >= 0 {
		if te, ok := offer.DTMF(); ok {
			d.Codecs = append(d.Codecs, te)
		}
	}
	return d
}

// answerDirection mirrors an offer's direction (RFC 3264 §6.1): a PBX that puts us on hold with
// sendonly gets recvonly back.
func answerDirection(offer string) string {
	switch offer {
	case media.DirSendOnly:
		return media.DirRecvOnly
	case media.DirRecvOnly:
		return media.DirSendOnly
	case media.DirInactive:
		return media.DirInactive
	default:
		return media.DirSendRecv
	}
}
