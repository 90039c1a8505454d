package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// captureConn records what the relay writes.
type captureConn struct {
	*discardConn
	pkts [][]byte
}

func (c *captureConn) WriteTo(b []byte, _ netip.AddrPort) (int, error) {
	c.pkts = append(c.pkts, append([]byte(nil), b...))
	return len(b), nil
}

func (c *captureConn) last(t *testing.T) *rtp.Packet {
	t.Helper()
	require.NotEmpty(t, c.pkts)
	p := &rtp.Packet{}
	require.NoError(t, p.Unmarshal(c.pkts[len(c.pkts)-1]))
	return p
}

// TestWASenderNumbering drives the WhatsApp-bound rewrite with a synthetic clock: sequence
// wrap-around in a long call, silence gaps, late packets from before a rebase, SSRC changes.
func TestWASenderNumbering(t *testing.T) {
	t.Parallel()
	r, _, _ := offlineRelay(t, "", "") // plain legs: the capture shows the rewritten header
	out := &captureConn{discardConn: newDiscardConn(1)}
	r.wa.ep.RTP = out
	s := r.toWA
	clock := time.Now()
	pbxPkt := func(ssrc uint32, seq uint16, ts uint32) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: waOpusPT, SSRC: ssrc, SequenceNumber: seq, Timestamp: ts}, Payload: []byte{1}}).Marshal()
		require.NoError(t, err)
		return b
	}
	require.NoError(t, s.sendMaiden(clock))
	maiden := out.last(t)
	prev := maiden
	expectNext := func(what string) *rtp.Packet {
		t.Helper()
		p := out.last(t)
		require.Equal(t, prev.SequenceNumber+1, p.SequenceNumber, what)
		require.Equal(t, uint32(testSSRC), p.SSRC, what)
		require.Greater(t, int32(p.Timestamp-prev.Timestamp), int32(0), what)
		prev = p
		return p
	}

	// 70,000 packets: our sequence number wraps, the PBX's too, nothing is mistaken for late.
	for i := range 70_000 {
		clock = clock.Add(20 * time.Millisecond)
		s.forward(pbxPkt(1, uint16(60_000+i), uint32(960*i)), clock)
		expectNext("long stream")
	}
	require.Zero(t, r.Stats().PBX.DroppedLate)

	// The PBX goes quiet: silence, then it resumes with an old packet first (reordered).
	clock = clock.Add(DefaultSilenceAfter)
	s.fillSilence(clock, DefaultSilenceAfter, DefaultPtime)
	expectNext("silence")
	clock = clock.Add(20 * time.Millisecond)
	s.forward(pbxPkt(1, 200, 500_000), clock)
	resumed := expectNext("resumed after silence")
	s.forward(pbxPkt(1, 199, 499_040), clock) // from before the rebase
	assert.Equal(t, uint64(1), r.Stats().PBX.DroppedLate)
	s.forward(pbxPkt(1, 201, 500_960), clock)
	p := expectNext("continues")
	assert.Equal(t, uint32(960), p.Timestamp-resumed.Timestamp, "PBX spacing kept")

	// SSRC change one packet time later: one frame further, numbering continuous.
	clock = clock.Add(20 * time.Millisecond)
	s.forward(pbxPkt(2, 7, 7), clock)
	p2 := expectNext("new SSRC")
	assert.Equal(t, uint32(960), p2.Timestamp-p.Timestamp)
}

// TestFillSilenceSleepsUntilDue: the timer sleeps until the PBX's quiet window ends, and one
// ptime between silence frames.
func TestFillSilenceSleepsUntilDue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, SuiteAEADAES128GCM, nil)
	s := h.relay.toWA
	start := time.Now()
	s.mu.Lock()
	s.lastPBX = start
	s.mu.Unlock()
	assert.Equal(t, 70*time.Millisecond, s.fillSilence(start.Add(30*time.Millisecond), 100*time.Millisecond, 20*time.Millisecond))
	assert.Equal(t, 20*time.Millisecond, s.fillSilence(start.Add(100*time.Millisecond), 100*time.Millisecond, 20*time.Millisecond))
}
