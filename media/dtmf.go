package media

import (
	"encoding/binary"
	"fmt"
)

// dtmfDigits are the 16 DTMF events in RFC 4733 §3.2 order (event codes 0-15).
const dtmfDigits = "0123456789*#ABCD"

// DTMFEvent maps a digit to its RFC 4733 §3.2 event code; lower-case a-d are accepted.
func DTMFEvent(digit rune) (uint8, error) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for i, d := range dtmfDigits {
		if d == digit {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("%q is not a DTMF digit", digit)
}

// DTMFDigit maps an event code back to its digit; ok is false for non-DTMF events (flash,
// tones).
func DTMFDigit(event uint8) (rune, bool) {
	if int(event) >= len(dtmfDigits) {
		return 0, false
	}
	return rune(dtmfDigits[event]), true
}

// EncodeTelephoneEvent builds the 4-byte RFC 4733 §2.3 payload: event, E|R|volume, duration
// (in the telephone-event clock's units).
func EncodeTelephoneEvent(event, volume uint8, end bool, duration uint16) []byte {
	b := make([]byte, 4)
	b[0] = event
	b[1] = volume & 0x3f
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], duration)
	return b
}

// DecodeTelephoneEvent parses an RFC 4733 payload; ok is false when it is too short.
func DecodeTelephoneEvent(p []byte) (event uint8, end bool, duration uint16, ok bool) {
	if len(p) < 4 {
		return 0, false, 0, false
	}
	return p[0], p[1]&0x80 != 0, binary.BigEndian.Uint16(p[2:4]), true
}
