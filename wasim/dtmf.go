package wasim

import (
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
