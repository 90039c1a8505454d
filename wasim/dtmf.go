package wasim

import (
	"encoding/binary"
	"fmt"
	"time"
)

// RFC 4733 telephone events. WhatsApp carries DTMF only in-band as RFC 4733 events with an
// 8 kHz clock; the duration field counts 8 kHz ticks whatever the audio clock is
// (whatsapp-calling.md §4.8).
const (
	dtmfClock      = 8000
	dtmfVolume     = 10 // dBm0 below 0; a typical tone level
	dtmfEndRepeats = 3  // RFC 4733 §2.5.1.4: the end packet is sent three times
	// maxDTMFDuration keeps the 16-bit duration field from wrapping (65535 / 8000 Hz).
	maxDTMFDuration = 8 * time.Second
)

const dtmfDigits = "0123456789*#ABCD"

// dtmfEvent maps a digit to its RFC 4733 §3.2 event code.
func dtmfEvent(digit rune) (uint8, error) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for i, d := range dtmfDigits {
		if d == digit {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("wasim: %q is not a DTMF digit", digit)
}

// dtmfDigit maps an event code back to its digit; ok is false for non-DTMF events.
func dtmfDigit(event uint8) (rune, bool) {
	if int(event) >= len(dtmfDigits) {
		return 0, false
	}
	return rune(dtmfDigits[event]), true
}

// encodeDTMF builds the 4-byte RFC 4733 §2.3 payload: event, E|R|volume, duration.
func encodeDTMF(event uint8, end bool, duration uint16) []byte {
	b := make([]byte, 4)
	b[0] = event
	b[1] = dtmfVolume & 0x3f
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], duration)
	return b
}

// decodeDTMF parses an RFC 4733 payload.
func decodeDTMF(p []byte) (event uint8, end bool, duration uint16, ok bool) {
	if len(p) < 4 {
		return 0, false, 0, false
	}
	return p[0], p[1]&0x80 != 0, binary.BigEndian.Uint16(p[2:4]), true
}
