package wasim

import (
	"context"
	"errors"
	"fmt"
	"github.com/wabridge/wabridge/media"
	"net"
	"time"

	"github.com/pion/rtp"
)

// defaultPtime is Meta's packetisation (whatsapp-calling.md §4.2).
const defaultPtime = 20 * time.Millisecond

// Echo turns echo mode on or off: every received audio packet's payload is sent back with
// our own SSRC, sequence number and timestamp. Echo never sends before something was
// received, so it respects Meta's maiden-packet rule by construction.
func (s *stream) Echo(on bool) {
	s.mu.Lock()
	s.echo = on
	s.mu.Unlock()
}

// Send sends payloads as consecutive RTP packets with payload type pt, one every interval
// (20 ms when zero). Each payload is one 20 ms frame (Meta's ptime): one SSRC, sequence +1
// and timestamp +20 ms of pt's clock per packet (960 for Opus, 160 for G.711) whatever the
// interval, so tests can send faster than real time; marker bit on the first packet of the
// stream. Like Meta, it waits until the business's first valid packet arrived (unless
// PeerConfig.SendFirst) or ctx ends.
func (s *stream) Send(ctx context.Context, payloads [][]byte, pt uint8, interval time.Duration) error {
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	if interval <= 0 {
		interval = defaultPtime
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i, payload := range payloads {
		if i > 0 {
			if err := s.wait(ctx, tick.C); err != nil {
				return err
			}
		}
		s.txMu.Lock()
		step := s.clockLocked(pt) * uint32(defaultPtime/time.Millisecond) / 1000
		marker := !s.started
		s.started = true
		ts := s.ts
		s.ts += step
		err := s.writeLocked(pt, marker, ts, payload)
		s.txMu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// SendDTMF sends one RFC 4733 event for digit with payload type pt: a first packet with the
// marker bit, continuation packets every 20 ms with the growing duration, and the end packet
// three times, all with the event's start timestamp; the duration field counts 8 kHz ticks
// (whatsapp-calling.md §4.8). The audio timestamp then moves on by duration. Like Send it
// waits for the business's first packet.
func (s *stream) SendDTMF(ctx context.Context, digit rune, pt uint8, duration time.Duration) error {
	event, err := media.DTMFEvent(digit)
	if err != nil {
		return err
	}
	if duration < 2*defaultPtime {
		duration = 2 * defaultPtime
	}
	if duration > maxDTMFDuration {
		duration = maxDTMFDuration
	}
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	s.txMu.Lock()
	start := s.ts
	s.ts += uint32(uint64(s.audioClk) * uint64(duration) / uint64(time.Second))
	s.started = true
	s.txMu.Unlock()

	frames := int(duration / defaultPtime)
	perFrame := uint16(dtmfClock * defaultPtime / time.Second)
	tick := time.NewTicker(defaultPtime)
	defer tick.Stop()
	for i := 1; i <= frames; i++ {
		if i > 1 {
			if err := s.wait(ctx, tick.C); err != nil {
				return err
			}
		}
		if err := s.write(pt, i == 1, start, media.EncodeTelephoneEvent(event, dtmfVolume, false, uint16(i)*perFrame)); err != nil {
			return err
		}
	}
	total := uint16(frames) * perFrame
	for range dtmfEndRepeats {
		if err := s.write(pt, false, start, media.EncodeTelephoneEvent(event, dtmfVolume, true, total)); err != nil {
			return err
		}
	}
	return nil
}

// waitReady blocks until the media is negotiated and, unless sendFirst, the maiden packet
// came. For the WebRTC peer the maiden packet also proves that SRTP is running: pion drops
// what is written before its SRTP session starts, without an error.
func (s *stream) waitReady(ctx context.Context) error {
	for _, ch := range []<-chan struct{}{s.connected, s.maidenOrNil()} {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wasim: waiting for media: %w", ctx.Err())
		case <-s.closed:
			return ErrPeerClosed
		}
	}
	return nil
}

func (s *stream) maidenOrNil() <-chan struct{} {
	if s.sendFirst {
		return nil
	}
	return s.maiden
}

func (s *stream) wait(ctx context.Context, tick <-chan time.Time) error {
	select {
	case <-tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return ErrPeerClosed
	}
}

// clockLocked is the RTP clock of pt; telephone-event rides on the audio timestamps.
func (s *stream) clockLocked(pt uint8) uint32 {
	if c, ok := s.clocks[pt]; ok {
		return c
	}
	return s.audioClk
}

// echoPacket sends a received payload back. Our timestamp advances by the distance between
// the received timestamps, so echoed audio keeps its pacing; a jump or the first packet
// advances by one 20 ms frame.
func (s *stream) echoPacket(rx Packet) {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	step := s.clockLocked(rx.PT) * uint32(defaultPtime/time.Millisecond) / 1000
	if s.haveRxTS {
		if d := rx.TS - s.lastRxTS; d > 0 && d < s.clockLocked(rx.PT) {
			step = d
		}
	}
	s.lastRxTS, s.haveRxTS = rx.TS, true
	s.ts += step
	marker := !s.started
	s.started = true
	if err := s.writeLocked(rx.PT, marker, s.ts, rx.Payload); err != nil && !errors.Is(err, net.ErrClosed) {
		s.logger().WithError(err).Debug("echo send failed")
	}
}

func (s *stream) write(pt uint8, marker bool, ts uint32, payload []byte) error {
	s.txMu.Lock()
	defer s.txMu.Unlock()
	return s.writeLocked(pt, marker, ts, payload)
}

// writeLocked sends one packet with the next sequence number through the transport. txMu held.
func (s *stream) writeLocked(pt uint8, marker bool, ts uint32, payload []byte) error {
	hdr := rtp.Header{
		Version: 2, PayloadType: pt, SequenceNumber: s.seq, Timestamp: ts,
		SSRC: s.ssrc, Marker: marker,
	}
	s.seq++
	if err := s.send(&hdr, payload); err != nil {
		return err
	}
	s.stats.packetsOut.Add(1)
	s.stats.bytesOut.Add(uint64(len(payload)))
	return nil
}
