package peertest

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpusLikePayloads(t *testing.T) {
	t.Parallel()
	a := OpusLikePayloads(300, 1)
	b := OpusLikePayloads(300, 2)
	require.Len(t, a, 300)
	seen := map[string]bool{}
	for i, p := range a {
		assert.GreaterOrEqual(t, len(p), 60)
		assert.LessOrEqual(t, len(p), 80)
		idx, ok := PayloadIndex(p, 1)
		assert.True(t, ok)
		assert.Equal(t, i, idx)
		_, ok = PayloadIndex(p, 2)
		assert.False(t, ok, "a payload must not pass for another seed's")
		assert.False(t, seen[string(p)], "payload %d repeats", i)
		seen[string(p)] = true
		assert.False(t, bytes.Equal(p, b[i]))
	}
	assert.Equal(t, a, OpusLikePayloads(300, 1), "deterministic")
}

func TestDTMFPackets(t *testing.T) {
	t.Parallel()
	pkts, err := DTMFPackets(DTMFEvent{Digit: '#', PT: 101, SSRC: 5, Seq: 65534, TS: 1000})
	require.NoError(t, err)
	require.Len(t, pkts, 8, "start + 4 continuation + 3 end for 100 ms")
	wantDur := []uint16{160, 320, 480, 640, 800, 800, 800, 800}
	for i, p := range pkts {
		assert.Equal(t, uint8(101), p.PT)
		assert.Equal(t, uint32(1000), p.TS, "every packet of an event has its start timestamp")
		assert.Equal(t, uint32(5), p.SSRC)
		assert.Equal(t, uint16(65534)+uint16(i), p.Seq)
		assert.Equal(t, i == 0, p.Marker)
		d, end, dur, err := DTMFDigit(p.Payload)
		require.NoError(t, err)
		assert.Equal(t, '#', d)
		assert.Equal(t, i >= 5, end)
		assert.Equal(t, wantDur[i], dur)
		assert.Equal(t, byte(10), p.Payload[1]&0x3f, "volume")
	}

	pkts, err = DTMFPackets(DTMFEvent{Digit: '7', PT: 101, Duration: 20 * time.Millisecond, Volume: 20})
	require.NoError(t, err)
	require.Len(t, pkts, 4)
	assert.Equal(t, []byte{7, 20, 0, 160}, pkts[0].Payload)
	assert.Equal(t, []byte{7, 0x80 | 20, 0, 160}, pkts[3].Payload)

	_, err = DTMFPackets(DTMFEvent{Digit: 'x'})
	require.Error(t, err)
	_, err = DTMFPackets(DTMFEvent{Digit: '1', Duration: time.Millisecond})
	require.Error(t, err)
}
