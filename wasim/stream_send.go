package wasim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pion/rtp"
)

// defaultPtime is Meta's packetisation (whatsapp-calling.md §4.2).
const defaultPtime = 20 * time.Millisecond

// Echo turns echo mode on or off: every received audio packet's payload is sent back with
// our own SSRC, sequence number and timestamp. Echo never sends before something was
// received, so it respects Meta's maiden-packet rule by construction.
func (p *Peer) Echo(on bool) {
	p.mu.Lock()
	p.echo = on
	p.mu.Unlock()
}

// Send sends payloads as consecutive RTP packets with payload type pt, one every interval
// (20 ms when zero). Each payload is one 20 ms frame (Meta's ptime): one SSRC, sequence +1
// and timestamp +20 ms of pt's clock per packet (960 for Opus, 160 for G.711) whatever the
// interval, so tests can send faster than real time; marker bit on the first packet of the
// stream. Like Meta, it waits until the business's first valid packet arrived (unless
// PeerConfig.SendFirst) or ctx ends.
func (p *Peer) Send(ctx context.Context, payloads [][]byte, pt uint8, interval time.Duration) error {
	if err := p.waitReady(ctx); err != nil {
		return err
	}
	if interval <= 0 {
		interval = defaultPtime
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i, payload := range payloads {
		if i > 0 {
			if err := p.wait(ctx, tick.C); err != nil {
				return err
			}
		}
		p.txMu.Lock()
		step := p.clockLocked(pt) * uint32(defaultPtime/time.Millisecond) / 1000
		marker := !p.started
		p.started = true
		ts := p.ts
		p.ts += step
		err := p.writeLocked(pt, marker, ts, payload)
		p.txMu.Unlock()
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
func (p *Peer) SendDTMF(ctx context.Context, digit rune, pt uint8, duration time.Duration) error {
	event, err := dtmfEvent(digit)
	if err != nil {
		return err
	}
	if duration < 2*defaultPtime {
		duration = 2 * defaultPtime
	}
	if duration > maxDTMFDuration {
		duration = maxDTMFDuration
	}
	if err := p.waitReady(ctx); err != nil {
		return err
	}
	p.txMu.Lock()
	start := p.ts
	p.ts += uint32(uint64(p.audioClk) * uint64(duration) / uint64(time.Second))
	p.started = true
	p.txMu.Unlock()

	frames := int(duration / defaultPtime)
	perFrame := uint16(dtmfClock * defaultPtime / time.Second)
	tick := time.NewTicker(defaultPtime)
	defer tick.Stop()
	for i := 1; i <= frames; i++ {
		if i > 1 {
			if err := p.wait(ctx, tick.C); err != nil {
				return err
			}
		}
		if err := p.write(pt, i == 1, start, encodeDTMF(event, false, uint16(i)*perFrame)); err != nil {
			return err
		}
	}
	total := uint16(frames) * perFrame
	for range dtmfEndRepeats {
		if err := p.write(pt, false, start, encodeDTMF(event, true, total)); err != nil {
			return err
		}
	}
	return nil
}

// waitReady blocks until Connect was called and, unless SendFirst, the maiden packet came.
func (p *Peer) waitReady(ctx context.Context) error {
	for _, ch := range []<-chan struct{}{p.connected, p.maidenOrNil()} {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wasim: waiting for media: %w", ctx.Err())
		case <-p.closed:
			return ErrPeerClosed
		}
	}
	return nil
}

func (p *Peer) maidenOrNil() <-chan struct{} {
	if p.cfg.SendFirst {
		return nil
	}
	return p.maiden
}

func (p *Peer) wait(ctx context.Context, tick <-chan time.Time) error {
	select {
	case <-tick:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closed:
		return ErrPeerClosed
	}
}

// clockLocked is the RTP clock of pt; telephone-event rides on the audio timestamps.
func (p *Peer) clockLocked(pt uint8) uint32 {
	if c, ok := p.clocks[pt]; ok {
		return c
	}
	return p.audioClk
}

// echoPacket sends a received payload back. Our timestamp advances by the distance between
// the received timestamps, so echoed audio keeps its pacing; a jump or the first packet
// advances by one 20 ms frame.
func (p *Peer) echoPacket(rx Packet) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	step := p.clockLocked(rx.PT) * uint32(defaultPtime/time.Millisecond) / 1000
	if p.haveRxTS {
		if d := rx.TS - p.lastRxTS; d > 0 && d < p.clockLocked(rx.PT) {
			step = d
		}
	}
	p.lastRxTS, p.haveRxTS = rx.TS, true
	p.ts += step
	marker := !p.started
	p.started = true
	if err := p.writeLocked(rx.PT, marker, p.ts, rx.Payload); err != nil && !errors.Is(err, net.ErrClosed) {
		p.log.WithError(err).Debug("echo send failed")
	}
}

func (p *Peer) write(pt uint8, marker bool, ts uint32, payload []byte) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	return p.writeLocked(pt, marker, ts, payload)
}

// writeLocked encrypts and sends one packet with the next sequence number. txMu held.
func (p *Peer) writeLocked(pt uint8, marker bool, ts uint32, payload []byte) error {
	if p.enc == nil {
		return errors.New("wasim: peer not connected")
	}
	pkt := rtp.Packet{
		Header: rtp.Header{
			Version: 2, PayloadType: pt, SequenceNumber: p.seq, Timestamp: ts,
			SSRC: p.ssrc, Marker: marker,
		},
		Payload: payload,
	}
	p.seq++
	plain, err := pkt.Marshal()
	if err != nil {
		return err
	}
	enc, err := p.enc.EncryptRTP(nil, plain, nil)
	if err != nil {
		return fmt.Errorf("wasim: SRTP encrypt: %w", err)
	}
	if _, err := p.conn.WriteToUDPAddrPort(enc, p.remote); err != nil {
		return fmt.Errorf("wasim: media send: %w", err)
	}
	p.stats.packetsOut.Add(1)
	p.stats.bytesOut.Add(uint64(len(payload)))
	return nil
}
