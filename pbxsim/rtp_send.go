package pbxsim

import (
	"context"
	"fmt"
	"github.com/wabridge/wabridge/media"
	"time"

	"github.com/pion/rtp"
)

// Send sends payloads as consecutive RTP packets of payload type pt, one every interval (20 ms
// when zero or negative), and returns when the last one is sent, ctx ends or the peer closes.
// The payloads form one talkspurt: the first packet carries the marker bit (RFC 3551 §4.1),
// sequence numbers grow by one and timestamps by clock × interval (960 for Opus at 20 ms). The
// timestamp also moves over the silence since the previous send, as a real sender's sampling
// clock would, so the receiver's jitter estimate is not disturbed by pauses between calls.
func (p *RTPPeer) Send(ctx context.Context, payloads [][]byte, pt uint8, interval time.Duration) error {
	if interval <= 0 {
		interval = defaultPtime
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i, payload := range payloads {
		if i > 0 {
			if err := p.waitTick(ctx, tick.C); err != nil {
				return err
			}
		}
		p.txMu.Lock()
		if i == 0 {
			p.skipSilenceLocked(time.Now())
		}
		ts := p.ts
		p.ts += p.frameLocked(pt, interval)
		err := p.writeLocked(pt, i == 0, ts, payload)
		p.lastSendAt = time.Now()
		p.txMu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// SendDTMF sends one RFC 4733 event for digit (0-9 * # A-D) with payload type pt, lasting dur
// (clamped to 40 ms - 8 s): a start packet with the marker bit, continuation packets every
// 20 ms with the growing duration, then the end packet three times (§2.5.1.4). All carry the
// event's start timestamp, taken from the audio stream, and the duration field counts ticks of
// pt's clock (8000 for telephone-event/8000). The audio timestamp then moves on by dur.
func (p *RTPPeer) SendDTMF(ctx context.Context, digit rune, pt uint8, dur time.Duration) error {
	event, err := media.DTMFEvent(digit)
	if err != nil {
		return err
	}
	dur = min(max(dur, minDTMFDuration), maxDTMFDuration)

	p.txMu.Lock()
	p.skipSilenceLocked(time.Now())
	start := p.ts
	eventClock := p.clocks[pt]
	if eventClock == 0 {
		eventClock = defaultEventClock
	}
	p.ts += uint32(uint64(p.audioClock) * uint64(dur) / uint64(time.Second))
	p.txMu.Unlock()

	frames := int(dur / dtmfPacketInterval)
	perFrame := uint64(eventClock) * uint64(dtmfPacketInterval) / uint64(time.Second)
	total := uint16(min(uint64(frames)*perFrame, 0xffff))
	tick := time.NewTicker(dtmfPacketInterval)
	defer tick.Stop()
	for i := 1; i <= frames; i++ {
		if i > 1 {
			if err := p.waitTick(ctx, tick.C); err != nil {
				return err
			}
		}
		d := uint16(min(uint64(i)*perFrame, 0xffff))
		if err := p.write(pt, i == 1, start, media.EncodeTelephoneEvent(event, dtmfVolume, false, d)); err != nil {
			return err
		}
	}
	for range dtmfEndRepeats {
		if err := p.write(pt, false, start, media.EncodeTelephoneEvent(event, dtmfVolume, true, total)); err != nil {
			return err
		}
	}
	return nil
}

// skipSilenceLocked advances the timestamp over the time nothing was sent, so a new talkspurt
// starts where the sampling clock stands (RFC 3550 §5.1: the timestamp tracks the sampling
// instant, not the packet count). txMu held.
func (p *RTPPeer) skipSilenceLocked(now time.Time) {
	if p.lastSendAt.IsZero() {
		return
	}
	if gap := now.Sub(p.lastSendAt) - defaultPtime; gap > 0 {
		p.ts += uint32(uint64(p.audioClock) * uint64(gap) / uint64(time.Second))
	}
}

// frameLocked is how far the timestamp moves for d of pt. Events ride on the audio clock.
// txMu held.
func (p *RTPPeer) frameLocked(pt uint8, d time.Duration) uint32 {
	clock, ok := p.clocks[pt]
	if !ok {
		clock = p.audioClock
	}
	return uint32(uint64(clock) * uint64(d) / uint64(time.Second))
}

func (p *RTPPeer) waitTick(ctx context.Context, tick <-chan time.Time) error {
	select {
	case <-tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closed:
		return ErrMediaClosed
	}
}

func (p *RTPPeer) write(pt uint8, marker bool, ts uint32, payload []byte) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	err := p.writeLocked(pt, marker, ts, payload)
	p.lastSendAt = time.Now()
	return err
}

// writeLocked sends one packet with the next sequence number. txMu held.
func (p *RTPPeer) writeLocked(pt uint8, marker bool, ts uint32, payload []byte) error {
	select {
	case <-p.closed:
		return ErrMediaClosed
	default:
	}
	if !p.remote.IsValid() {
		return ErrNoRemote
	}
	pkt := rtp.Packet{
		Header: rtp.Header{
			Version: 2, PayloadType: pt, SequenceNumber: p.seq, Timestamp: ts,
			SSRC: p.ssrc, Marker: marker,
		},
		Payload: payload,
	}
	size := pkt.MarshalSize()
	if cap(p.txBuf) < size {
		p.txBuf = make([]byte, size)
	}
	n, err := pkt.MarshalTo(p.txBuf[:size])
	if err != nil {
		return fmt.Errorf("pbxsim: RTP marshal: %w", err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(p.txBuf[:n], p.remote); err != nil {
		return fmt.Errorf("pbxsim: RTP send to %s: %w", p.remote, err)
	}
	p.seq++
	p.mu.Lock()
	p.stats.PacketsOut++
	p.stats.BytesOut += uint64(len(payload))
	p.mu.Unlock()
	return nil
}
