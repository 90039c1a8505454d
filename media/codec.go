package media

import (
	"strconv"
	"strings"
)

// staticCodec returns the encoding that RFC 3551 §6 (Table 4) fixes for an audio payload type, so an
// m= line such as "RTP/AVP 0 8 9" means something without a=rtpmap lines (RFC 4566 §6 makes them
// optional for static types, and sipp and many phones leave them out).
func staticCodec(pt uint8) (Codec, bool) {
	var name string
	clock, channels := uint32(8000), uint16(0)
	switch pt {
	case 0:
		name = CodecPCMU
	case 3:
		name = "GSM"
	case 4:
		name = "G723"
	case 5:
		name = "DVI4"
	case 6:
		name, clock = "DVI4", 16000
	case 7:
		name = "LPC"
	case 8:
		name = CodecPCMA
	case 9:
		// G.722 samples at 16 kHz but its RTP clock is 8000 (RFC 3551 §4.5.2).
		name = CodecG722
	case 10:
		name, clock, channels = "L16", 44100, 2
	case 11:
		name, clock = "L16", 44100
	case 12:
		name = "QCELP"
	case 13:
		name = "CN"
	case 14:
		name, clock = "MPA", 90000
	case 15:
		name = "G728"
	case 16:
		name, clock = "DVI4", 11025
	case 17:
		name, clock = "DVI4", 22050
	case 18:
		name = "G729"
	default:
		return Codec{}, false
	}
	return Codec{PT: pt, Name: name, ClockRate: clock, Channels: channels}, true
}

// CodecG722 is G.722 (static PT 9); Meta's published SDPs offer it next to Opus (whatsapp-calling.md §4.3).
const CodecG722 = "G722"

// SelectCodec picks the audio codec for one leg: the first entry of prefer, in our order, that remote
// lists. An entry is an encoding name ("opus") or name/clock ("PCMA/8000"); names compare
// case-insensitively because they are media subtypes (RFC 6838 §4.2). Among remote codecs matching one
// entry, the remote's first wins (RFC 3264 §5.1: the m= line lists in preference order). Callers turn
// !ok into ErrNoCodec.
func SelectCodec(remote []Codec, prefer []string) (Codec, bool) {
	for _, p := range prefer {
		name, clockText, hasClock := strings.Cut(p, "/")
		var clock uint64
		if hasClock {
			var err error
			if clock, err = strconv.ParseUint(clockText, 10, 32); err != nil {
				continue
			}
		}
		for _, c := range remote {
			// A dynamic type without a=rtpmap has no name and so is never chosen.
			if c.Name != "" && strings.EqualFold(c.Name, name) && (!hasClock || uint64(c.ClockRate) == clock) {
				return c, true
			}
		}
	}
	return Codec{}, false
}
