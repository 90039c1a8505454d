package pbxsim

import (
	"time"
)

// Stats counts an RTPPeer's traffic and estimates the quality of what it received. Loss and
// jitter follow RFC 3550 (§6.4.1 and Appendix A.1, A.3, A.8), the figures an RTCP receiver
// report would carry, so the demo can print what a PBX would see.
type Stats struct {
	// PacketsIn and BytesIn count received RTP packets and their payload bytes.
	PacketsIn, BytesIn uint64
	// PacketsOut and BytesOut count sent RTP packets and their payload bytes.
	PacketsOut, BytesOut uint64
	// RTCPIn counts RTCP packets that arrived on the RTP port (a peer using rtcp-mux).
	RTCPIn uint64
	// Malformed counts datagrams that were neither RTP nor RTCP.
	Malformed uint64
	// FirstAt and LastAt are the arrival times of the first and the latest RTP packet.
	FirstAt, LastAt time.Time
	// Expected is how many packets the sequence numbers say were sent (summed over the SSRCs
	// seen; RFC 3550 A.3).
	Expected uint64
	// Lost is Expected minus packets received. Duplicates can make it negative (RFC 3550 §6.4.1
	// keeps the sign).
	Lost int64
	// Jitter is the RFC 3550 §6.4.1 interarrival jitter of the current stream, converted from
	// timestamp units to time with the payload type's clock. RFC 4733 events are left out: their
	// packets repeat one timestamp on purpose, which would read as jitter.
	Jitter time.Duration
}

// LossRate is Lost / Expected, in [0, 1] (0 when nothing is expected or Lost is negative).
func (s Stats) LossRate() float64 {
	if s.Expected == 0 || s.Lost <= 0 {
		return 0
	}
	return float64(s.Lost) / float64(s.Expected)
}

// RFC 3550 A.1 sequence tracking constants.
const (
	// maxDropout: a forward jump smaller than this is loss; larger is a restarted sender.
	maxDropout = 3000
	// maxMisorder: a backward step smaller than this is a late (reordered) packet.
	maxMisorder = 100
	seqMod      = 1 << 16
)

// rxQuality is the receive-side estimator for one RTPPeer. Not goroutine-safe: the peer's
// mutex guards it.
type rxQuality struct {
	// Totals of the streams (SSRCs or sequence restarts) already finished.
	prevExpected uint64
	prevReceived uint64

	// Current stream (RFC 3550 A.1).
	init     bool
	ssrc     uint32
	baseSeq  uint32
	maxSeq   uint16
	cycles   uint32
	received uint64

	// Jitter (RFC 3550 A.8), in timestamp units of clock.
	haveTransit bool
	transit     float64
	jitter      float64
	clock       uint32
	epoch       time.Time // arrival times are measured from here to keep the numbers small
}

// add accounts one received packet. clock is the payload type's RTP clock, 0 when the
// packet must not feed the jitter estimate (unknown payload type, RFC 4733 event).
func (q *rxQuality) add(ssrc uint32, seq uint16, ts uint32, clock uint32, at time.Time) {
	if !q.init || ssrc != q.ssrc {
		q.restart(ssrc, seq)
	} else {
		switch delta := seq - q.maxSeq; {
		case delta == 0:
			q.received++ // duplicate: RFC 3550 counts it, so loss can go negative
		case delta < maxDropout:
			if seq < q.maxSeq {
				q.cycles += seqMod // wrapped
			}
			q.maxSeq = seq
			q.received++
		case delta <= seqMod-maxMisorder:
			// A jump this large means the sender restarted its sequence (A.1 waits for a second
			// packet to confirm; a simulator can take the first one at its word).
			q.restart(ssrc, seq)
		default:
			q.received++ // late, reordered packet
		}
	}
	q.addJitter(ts, clock, at)
}

// restart folds the current stream into the totals and starts a new one at seq.
func (q *rxQuality) restart(ssrc uint32, seq uint16) {
	if q.init {
		q.prevExpected += q.expected()
		q.prevReceived += q.received
	}
	q.init, q.ssrc = true, ssrc
	q.baseSeq, q.maxSeq, q.cycles, q.received = uint32(seq), seq, 0, 1
	q.haveTransit = false // a new source has its own timestamp base
}

func (q *rxQuality) expected() uint64 {
	if !q.init {
		return 0
	}
	return uint64(q.cycles) + uint64(q.maxSeq) - uint64(q.baseSeq) + 1
}

// addJitter is RFC 3550 A.8: J += (|D| - J) / 16 with D the change in relative transit time.
func (q *rxQuality) addJitter(ts uint32, clock uint32, at time.Time) {
	if clock == 0 {
		return
	}
	if clock != q.clock {
		// Another codec: transit times in different units cannot be compared. Keep the
		// estimate (rescaled) and start over on transit.
		if q.clock != 0 {
			q.jitter = q.jitter * float64(clock) / float64(q.clock)
		}
		q.clock, q.haveTransit = clock, false
	}
	if q.epoch.IsZero() {
		q.epoch = at
	}
	arrival := at.Sub(q.epoch).Seconds() * float64(clock)
	transit := arrival - float64(ts)
	if q.haveTransit {
		d := transit - q.transit
		// Timestamps wrap at 2^32: a change of more than half the range between two packets is
		// a wrap, not delay. transit is shifted too so the next packet compares against it.
		const wrap = float64(1 << 32)
		switch {
		case d > wrap/2:
			d -= wrap
			transit -= wrap
		case d < -wrap/2:
			d += wrap
			transit += wrap
		}
		if d < 0 {
			d = -d
		}
		q.jitter += (d - q.jitter) / 16
	}
	q.transit, q.haveTransit = transit, true
}

// fill writes the loss and jitter figures into s.
func (q *rxQuality) fill(s *Stats) {
	s.Expected = q.prevExpected + q.expected()
	s.Lost = int64(s.Expected) - int64(q.prevReceived+q.received)
	if q.clock != 0 {
		s.Jitter = time.Duration(q.jitter / float64(q.clock) * float64(time.Second))
	}
}
