package pbxsim

import (
	"encoding/binary"
	"fmt"
	"time"
)

// RFC 4733 telephone events.
const (
	// dtmfVolume is the power level field (dBm0 below 0) of the events we send; 10 is a typical
	// tone level, and receivers ignore it for DTMF.
	dtmfVolume = 10
	// dtmfEndRepeats: the end packet is sent three times for reliability (RFC 4733 §2.5.1.4).
	dtmfEndRepeats = 3
	// dtmfPacketInterval is how often an ongoing event is refreshed (RFC 4733 §2.5.1.2 suggests
	// the audio packetisation interval, 20 ms here).
	dtmfPacketInterval = 20 * time.Millisecond
	// minDTMFDuration is two packets: a start and a continuation, so the receiver sees an event
	// that lasted (receivers such as Asterisk drop sub-40 ms digits as noise).
	minDTMFDuration = 2 * dtmfPacketInterval
	// maxDTMFDuration keeps the 16-bit duration field from wrapping at 8 kHz (65535 / 8000 s);
	// longer events would need RFC 4733 §2.5.1.5 segments, which no test needs.
	maxDTMFDuration = 8 * time.Second
	// defaultEventClock is telephone-event's usual rate, used when the payload type was not
	// negotiated with a clock.
	defaultEventClock = 8000
)

// dtmfDigits are the 16 DTMF events in RFC 4733 §3.2 order (event codes 0-15).
const dtmfDigits = "0123456789*#ABCD"

// dtmfEvent maps a digit to its RFC 4733 event code; lower-case a-d are accepted.
func dtmfEvent(digit rune) (uint8, error) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for i, d := range dtmfDigits {
		if d == digit {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("pbxsim: %q is not a DTMF digit", digit)
}

// dtmfDigit maps an event code back to its digit; ok is false for non-DTMF events (flash,
// tones), which we do not record.
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
