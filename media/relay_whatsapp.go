package media

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// waSender owns the one stream we send to WhatsApp. Meta supports a single SSRC per call and
// corrupts the call when a second one appears (whatsapp-calling.md §4.2), while the PBX may
// switch SSRC (transfer, music on hold, a media server change) and may go quiet, during which we
// generate silence. So every packet toward WhatsApp, forwarded or generated, is numbered here:
// one SSRC, sequence numbers that never repeat or go backward, timestamps that follow wall time.
//
// Two goroutines send: the PBX reader (forward) and the timer (silence). They share the encrypt
// context, which is not goroutine-safe (go-libs §3), so all of this state, the context and the
// write sit under mu. The lock is uncontended except when silence and PBX audio cross, once.
type waSender struct {
	mu      sync.Mutex
	tx      *legSender
	late    *atomic.Uint64 // the PBX leg's DroppedLate counter
	ssrc    uint32
	ptime   time.Duration
	ptimeTS uint32 // ptime in clock units (960 for Opus at 20 ms)
	silence []byte // a plaintext RTP packet carrying the silence payload; header filled per send

	// The highest-numbered packet sent so far. Before the maiden packet, seq and ts hold the
	// random initial values (RFC 3550 §5.1). ext is seq extended beyond 16 bits (0 for the
	// maiden packet), so that "before the rebase" stays meaningful however long the call is.
	started  bool
	seq      uint16
	ext      int64
	ts       uint32
	lastSend time.Time

	// How the current PBX stream maps onto ours: out = in + offset, modulo 2^16 and 2^32. The
	// offsets are recomputed (rebased) when the PBX SSRC changes and after generated packets.
	mapped  bool
	inSSRC  uint32
	seqOff  uint16
	tsOff   uint32
	baseExt int64     // extended sequence number of the first packet of this mapping
	gap     bool      // silence went out since the last PBX packet
	lastPBX time.Time // when PBX media was last forwarded, or the maiden packet sent
}

func newWASender(tx *legSender, late *atomic.Uint64, ssrc uint32, pt uint8, payload []byte,
	clock uint32, ptime time.Duration,
) *waSender {
	ptimeTS := uint32(uint64(clock) * uint64(ptime) / uint64(time.Second))
	if ptimeTS == 0 {
		ptimeTS = 1
	}
	silence := make([]byte, rtpHeaderSize+len(payload))
	silence[0] = rtpVersion << 6
	silence[1] = pt
	copy(silence[rtpHeaderSize:], payload)
	return &waSender{
		tx:      tx,
		late:    late,
		ssrc:    ssrc,
		ptime:   ptime,
		ptimeTS: ptimeTS,
		silence: silence,
		// Random initial values (RFC 3550 §5.1). The sequence number starts in the lower half so
		// that the receiver's first rollover guess (RFC 3711 §3.3.1) cannot be off by one even if
		// the first packets are lost.
		seq: uint16(rand.IntN(1 << 15)),
		ts:  rand.Uint32(),
	}
}

// next returns the sequence number and timestamp for a packet that starts something new: the
// maiden packet, a silence frame, or the first packet of a rebased PBX stream. The timestamp
// advances by the wall time since the last packet, rounded to whole frames and at least one, so
// WhatsApp's jitter buffer sees the real gap and never a repeated or backward timestamp.
func (s *waSender) next(now time.Time) (uint16, uint32) {
	if !s.started {
		return s.seq, s.ts
	}
	frames := (now.Sub(s.lastSend) + s.ptime/2) / s.ptime
	if frames < 1 {
		frames = 1
	}
	return s.seq + 1, s.ts + uint32(frames)*s.ptimeTS
}

// extOf extends a sequence number near the highest one sent (within ±2^15, RFC 3550 A.1).
func (s *waSender) extOf(seq uint16) int64 { return s.ext + int64(int16(seq-s.seq)) }

// advance records a packet that went out (or at least consumed its sequence number).
func (s *waSender) advance(seq uint16, ts uint32, now time.Time) {
	if !s.started {
		s.seq, s.ts, s.lastSend, s.started = seq, ts, now, true
		return
	}
	if d := int16(seq - s.seq); d > 0 {
		s.ext += int64(d)
		s.seq, s.ts, s.lastSend = seq, ts, now
	}
}

// forward rewrites a plaintext PBX packet (PT already remapped) into our stream and sends it.
// Marker, payload and the PBX's own spacing (including RFC 4733 telephone-event timestamps,
// which share the audio's base, §4.8) pass through; only SSRC, sequence and timestamp base change.
func (s *waSender) forward(pkt []byte, now time.Time) {
	inSeq := binary.BigEndian.Uint16(pkt[2:])
	inTS := binary.BigEndian.Uint32(pkt[4:])
	inSSRC := binary.BigEndian.Uint32(pkt[8:])

	s.mu.Lock()
	defer s.mu.Unlock()
	seqOff, tsOff, base := s.seqOff, s.tsOff, s.baseExt
	rebase := !s.mapped || s.gap || inSSRC != s.inSSRC
	if rebase {
		seq, ts := s.next(now)
		seqOff, tsOff, base = seq-inSeq, ts-inTS, s.extOf(seq)
	}
	outSeq, outTS := inSeq+seqOff, inTS+tsOff
	if s.extOf(outSeq) < base {
		// Reordered from before the rebase: its number was already given to another packet.
		s.late.Add(1)
		return
	}
	binary.BigEndian.PutUint16(pkt[2:], outSeq)
	binary.BigEndian.PutUint32(pkt[4:], outTS)
	binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
	if consumed, _ := s.tx.write(pkt, now); !consumed {
		return
	}
	if rebase {
		s.mapped, s.gap, s.inSSRC = true, false, inSSRC
		s.seqOff, s.tsOff, s.baseExt = seqOff, tsOff, base
	}
	s.advance(outSeq, outTS, now)
	s.lastPBX = now
}

// sendMaiden sends the first packet of the call: a silence frame, with the marker bit as the
// start of a talkspurt (RFC 3551 §4.1).
func (s *waSender) sendMaiden(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastPBX = now // the silence fill starts SilenceAfter from now unless the PBX speaks
	return s.sendSilenceLocked(now, true)
}

// fillSilence sends one silence frame when the PBX forwarded nothing for after. Called by the
// timer every ptime, so silence flows at the codec's packet rate until the PBX resumes.
// fillSilence sends a silence frame when the PBX has been quiet for after, and says how long
// the caller may sleep before calling again: until the quiet window ends, or one ptime while
// filling.
func (s *waSender) fillSilence(now time.Time, after, ptime time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if quiet := now.Sub(s.lastPBX); quiet < after {
		return after - quiet
	}
	_ = s.sendSilenceLocked(now, false)
	return ptime
}

func (s *waSender) sendSilenceLocked(now time.Time, marker bool) error {
	seq, ts := s.next(now)
	b := s.silence
	b[1] = b[1] & 0x7f
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], s.ssrc)
	consumed, err := s.tx.write(b, now)
	if !consumed {
		return err
	}
	s.advance(seq, ts, now)
	s.gap = true
	if err == nil {
		s.tx.leg.stats.silenceSent.Add(1)
	}
	return err
}
