package pbxsim

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
)

var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// peerPair returns two RTP peers that send to each other with the default codecs.
func peerPair(t *testing.T) (a, b *RTPPeer) {
	t.Helper()
	a, err := newRTPPeer(loopback, testLog)
	require.NoError(t, err)
	t.Cleanup(a.Close)
	b, err = newRTPPeer(loopback, testLog)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	a.configure(b.LocalAddr(), DefaultCodecs())
	b.configure(a.LocalAddr(), DefaultCodecs())
	return a, b
}

func TestRxQualityLossAndWrap(t *testing.T) {
	t.Parallel()
	var q rxQuality
	at := time.Unix(0, 0)
	seq := uint16(65530)
	for i := range 14 {
		if i == 4 || i == 9 { // two losses, one on each side of the wrap
			seq++
			continue
		}
		q.add(7, seq, uint32(i)*960, 48000, at.Add(time.Duration(i)*20*time.Millisecond))
		seq++
	}
	var s Stats
	q.fill(&s)
	assert.EqualValues(t, 14, s.Expected)
	assert.EqualValues(t, 2, s.Lost)
	assert.InDelta(t, 2.0/14, s.LossRate(), 1e-9)
	assert.Zero(t, s.Jitter, "perfectly paced packets have no jitter")

	// A late (reordered) packet and a duplicate count as received.
	q.add(7, 65533, 3*960, 48000, at.Add(time.Second))
	q.add(7, 65533, 3*960, 48000, at.Add(time.Second))
	q.fill(&s)
	assert.EqualValues(t, 0, s.Lost)

	// A new SSRC starts a new stream; the old one's figures are kept.
	q.add(8, 100, 0, 48000, at.Add(2*time.Second))
	q.add(8, 102, 1920, 48000, at.Add(2*time.Second+40*time.Millisecond))
	q.fill(&s)
	assert.EqualValues(t, 14+3, s.Expected)
	assert.EqualValues(t, 1, s.Lost)
}

func TestRxQualityJitter(t *testing.T) {
	t.Parallel()
	var q rxQuality
	at := time.Unix(0, 0)
	// Packets sampled every 20 ms arrive alternately 0 and 10 ms late: |D| is always 10 ms,
	// so J converges to 10 ms (RFC 3550 A.8).
	for i := range 500 {
		late := time.Duration(i%2) * 10 * time.Millisecond
		q.add(1, uint16(i), uint32(i)*160, 8000, at.Add(time.Duration(i)*20*time.Millisecond+late))
	}
	var s Stats
	q.fill(&s)
	assert.InDelta(t, float64(10*time.Millisecond), float64(s.Jitter), float64(100*time.Microsecond))

	// Events do not feed the estimate (clock 0), however their timestamps look.
	for i := range 10 {
		q.add(1, uint16(500+i), 0, 0, at.Add(time.Hour))
	}
	var s2 Stats
	q.fill(&s2)
	assert.Equal(t, s.Jitter, s2.Jitter)
}

func TestRxQualityTimestampWrap(t *testing.T) {
	t.Parallel()
	var q rxQuality
	at := time.Unix(0, 0)
	ts := uint32(1<<32 - 2*960)
	for i := range 6 {
		q.add(1, uint16(i), ts, 48000, at.Add(time.Duration(i)*20*time.Millisecond))
		ts += 960
	}
	var s Stats
	q.fill(&s)
	assert.Zero(t, s.Jitter)
}

func TestDTMFCodec(t *testing.T) {
	t.Parallel()
	for i, d := range "0123456789*#ABCD" {
		ev, err := media.DTMFEvent(d)
		require.NoError(t, err)
		assert.EqualValues(t, i, ev)
		back, ok := media.DTMFDigit(ev)
		assert.True(t, ok)
		assert.Equal(t, d, back)
	}
	ev, err := media.DTMFEvent('b')
	require.NoError(t, err)
	assert.EqualValues(t, 13, ev)
	_, err = media.DTMFEvent('x')
	assert.Error(t, err)
	_, ok := media.DTMFDigit(16) // flash
	assert.False(t, ok)

	ev, end, dur, ok := media.DecodeTelephoneEvent(media.EncodeTelephoneEvent(11, dtmfVolume, true, 800))
	assert.True(t, ok)
	assert.EqualValues(t, 11, ev)
	assert.True(t, end)
	assert.EqualValues(t, 800, dur)
	_, _, _, ok = media.DecodeTelephoneEvent([]byte{1, 2})
	assert.False(t, ok)
}

// TestSendDTMFPackets checks the RFC 4733 packet train on the wire.
func TestSendDTMFPackets(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	a, b := peerPair(t)
	require.NoError(t, a.SendDTMF(ctx, '5', defaultDTMFPT, 100*time.Millisecond))
	require.NoError(t, b.WaitReceived(ctx, 8))
	pkts := b.Received()
	require.Len(t, pkts, 5+3)
	for i, p := range pkts {
		ev, end, dur, ok := media.DecodeTelephoneEvent(p.Payload)
		require.True(t, ok)
		assert.EqualValues(t, 5, ev)
		assert.Equal(t, pkts[0].TS, p.TS, "one timestamp for the whole event")
		assert.Equal(t, i == 0, p.Marker, "marker on the first packet only")
		assert.EqualValues(t, defaultDTMFPT, p.PT)
		if i < 5 {
			assert.False(t, end)
			assert.EqualValues(t, (i+1)*160, dur, "duration grows by 20 ms at 8 kHz")
		} else {
			assert.True(t, end)
			assert.EqualValues(t, 800, dur)
		}
		if i > 0 {
			assert.Equal(t, pkts[i-1].Seq+1, p.Seq)
		}
	}
	assert.Equal(t, "5", b.ReceivedDTMF(), "three end packets, one digit")

	// The next audio continues the stream's clock after the event.
	require.NoError(t, a.Send(ctx, [][]byte{{1}}, defaultOpusPT, 0))
	require.NoError(t, b.WaitReceived(ctx, 9))
	last := b.Received()[8]
	assert.GreaterOrEqual(t, last.TS-pkts[0].TS, uint32(48000/10), "audio moved on by the event's 100 ms")
	assert.True(t, last.Marker, "new talkspurt")
}

func TestRTPPeerIgnoresRTCPAndJunk(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	a, b := peerPair(t)
	// An RTCP receiver report (PT 201) and a datagram that is not RTP.
	rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 1}
	rr = append(rr, make([]byte, 8)...)
	_, err := a.conn.WriteToUDPAddrPort(rr, b.LocalAddr())
	require.NoError(t, err)
	_, err = a.conn.WriteToUDPAddrPort([]byte("hello"), b.LocalAddr())
	require.NoError(t, err)
	require.NoError(t, a.Send(ctx, [][]byte{{9}}, defaultOpusPT, 0))
	require.NoError(t, b.WaitReceived(ctx, 1))
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.RTCPIn == 1 && s.Malformed == 1
	}, testTimeout, 5*time.Millisecond)
	assert.Len(t, b.Received(), 1)
}

func TestRTPPeerNoRemote(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p, err := newRTPPeer(loopback, testLog)
	require.NoError(t, err)
	defer p.Close()
	assert.ErrorIs(t, p.Send(ctx, [][]byte{{1}}, 0, 0), ErrNoRemote)
	// c=0.0.0.0 (RFC 2543 hold) and port 0 mean "do not send".
	p.configure(netip.AddrPortFrom(netip.IPv4Unspecified(), 4000), []media.Codec{PCMU()})
	assert.ErrorIs(t, p.SendDTMF(ctx, '1', 101, 0), ErrNoRemote)
	p.Close()
	assert.ErrorIs(t, p.Send(ctx, [][]byte{{1}}, 0, 0), ErrMediaClosed)
	assert.ErrorIs(t, p.WaitReceived(ctx, 1), ErrMediaClosed)
}

// TestEchoDoesNotAlterPayload sends packets with arbitrary header fields and checks what comes
// back: same payload and payload type, our SSRC and numbering.
func TestEchoDoesNotAlterPayload(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	a, b := peerPair(t)
	b.Echo(true)
	raw := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 65535, Timestamp: 123, SSRC: 42},
		Payload: []byte{0, 1, 2, 0xff, 0x80}}
	buf, err := raw.Marshal()
	require.NoError(t, err)
	_, err = a.conn.WriteToUDPAddrPort(buf, b.LocalAddr())
	require.NoError(t, err)
	require.NoError(t, a.WaitReceived(ctx, 1))
	got := a.Received()[0]
	assert.Equal(t, raw.Payload, got.Payload)
	assert.EqualValues(t, 0, got.PT)
	assert.Equal(t, b.SSRC(), got.SSRC)
	assert.NotEqual(t, uint32(42), got.SSRC)
}
