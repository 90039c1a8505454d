package peertest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// opusLikeTOC is the first byte of every OpusLikePayloads payload: a valid Opus TOC byte
// (RFC 6716 §3.1: config 15 = hybrid fullband 20 ms, mono, one frame), so capture tools
// classify the stream as Opus.
const opusLikeTOC = 0x78

// OpusLikePayloads returns n distinct payloads shaped like 20 ms Opus frames (60 to 80 bytes,
// an Opus TOC byte first) that tests can recognize after a trip through the bridge: byte 0 is
// the TOC, bytes 1-2 the index (big endian), bytes 3-4 the low 16 bits of seed, and the rest
// pseudo-random bytes derived from (seed, index); the index wraps after 65536 payloads.
// Different seeds make different streams, so each direction of a call can carry its own. They
// do not decode as audio.
func OpusLikePayloads(n int, seed uint64) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		p := make([]byte, 60+rng.IntN(21))
		p[0] = opusLikeTOC
		binary.BigEndian.PutUint16(p[1:], uint16(i))
		binary.BigEndian.PutUint16(p[3:], uint16(seed))
		for j := 5; j < len(p); j++ {
			p[j] = byte(rng.Uint32())
		}
		out[i] = p
	}
	return out
}

// PayloadIndex returns the index OpusLikePayloads wrote into p and whether p looks like one of
// its payloads for seed. It does not check the random tail; compare with bytes.Equal for that.
func PayloadIndex(p []byte, seed uint64) (int, bool) {
	if len(p) < 60 || len(p) > 80 || p[0] != opusLikeTOC || binary.BigEndian.Uint16(p[3:]) != uint16(seed) {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(p[1:])), true
}

// RTPStream numbers payloads as one RTP stream: consecutive sequence numbers from seq,
// timestamps advancing by tsStep from ts (960 for 20 ms at Opus's 48 kHz clock, 160 for G.711),
// and the marker bit on the first packet (RFC 3551 §4.1: start of a talkspurt).
func RTPStream(payloads [][]byte, pt uint8, ssrc uint32, seq uint16, ts, tsStep uint32) []RTPPacket {
	out := make([]RTPPacket, len(payloads))
	for i, p := range payloads {
		out[i] = RTPPacket{
			PT:      pt,
			Seq:     seq + uint16(i),
			TS:      ts + uint32(i)*tsStep,
			SSRC:    ssrc,
			Marker:  i == 0,
			Payload: p,
		}
	}
	return out
}

// DTMFEvent is one RFC 4733 telephone-event to send.
type DTMFEvent struct {
	Digit    rune          // 0-9, *, #, A-D
	PT       uint8         // telephone-event payload type (101 in our SDPs)
	SSRC     uint32        // the audio stream's SSRC: events share it (RFC 4733 §2.1)
	Seq      uint16        // sequence number of the first packet
	TS       uint32        // timestamp of the event's start, shared by all its packets (§2.5.1.2)
	Duration time.Duration // tone length; 0 means 100 ms
	Volume   uint8         // power level in -dBm0, 0-63 (§2.3.4); 0 means 10
}

// telephoneEventRate is the clock of telephone-event in every SDP we offer and in Meta's
// (telephone-event/8000), whatever the audio codec's clock.
const telephoneEventRate = 8000

// DTMFPackets builds the packets of one event as senders do (RFC 4733 §2.5.1): a start packet
// with the marker bit, continuation packets every 20 ms with a growing duration, and the final
// packet with the end bit sent three times (§2.5.1.4) — all with the event's timestamp and
// consecutive sequence numbers. A 100 ms event gives 5 + 3 = 8 packets.
func DTMFPackets(ev DTMFEvent) ([]RTPPacket, error) {
	code := strings.IndexRune("0123456789*#ABCD", ev.Digit)
	if code < 0 {
		return nil, fmt.Errorf("dtmf: %q is not a DTMF digit", ev.Digit)
	}
	if ev.Duration == 0 {
		ev.Duration = 100 * time.Millisecond
	}
	if ev.Volume == 0 {
		ev.Volume = 10
	}
	if ev.Volume > 63 {
		return nil, fmt.Errorf("dtmf: volume %d is out of 0-63", ev.Volume)
	}
	const step = telephoneEventRate / 50 // 20 ms of the event clock
	total := int(ev.Duration.Seconds()*telephoneEventRate + 0.5)
	if total < step || total > 0xffff {
		return nil, fmt.Errorf("dtmf: duration %s is out of 20 ms-8.19 s", ev.Duration)
	}
	var out []RTPPacket
	add := func(duration int, end bool) {
		p := make([]byte, 4)
		p[0] = byte(code)
		p[1] = ev.Volume
		if end {
			p[1] |= 0x80
		}
		binary.BigEndian.PutUint16(p[2:], uint16(duration))
		out = append(out, RTPPacket{
			PT:      ev.PT,
			Seq:     ev.Seq + uint16(len(out)),
			TS:      ev.TS,
			SSRC:    ev.SSRC,
			Marker:  len(out) == 0,
			Payload: p,
		})
	}
	for d := step; d < total; d += step {
		add(d, false)
	}
	add(total, false)
	for range 3 {
		add(total, true)
	}
	return out, nil
}

// DTMFDigit decodes a telephone-event payload: the digit, whether the end bit is set, and the
// duration in event-clock units.
func DTMFDigit(payload []byte) (digit rune, end bool, duration uint16, err error) {
	if len(payload) < 4 {
		return 0, false, 0, fmt.Errorf("dtmf: payload of %d bytes", len(payload))
	}
	const digits = "0123456789*#ABCD"
	if int(payload[0]) >= len(digits) {
		return 0, false, 0, fmt.Errorf("dtmf: event %d is not a DTMF digit", payload[0])
	}
	return rune(digits[payload[0]]), payload[1]&0x80 != 0, binary.BigEndian.Uint16(payload[2:]), nil
}
