package pbxsim

import (
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
