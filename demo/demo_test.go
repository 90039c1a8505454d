package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDemoCarriesAudioBothWays runs the whole demo in process: both calls must carry every
// frame and DTMF digit both ways, and the JSON report must say so.
func TestDemoCarriesAudioBothWays(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"sip+sdes":          {},
		"sip+dtls":          {DTLS: true},
		"api/meta":          {API: true, Provider: "meta"},
		"api/positus":       {API: true, Provider: "positus"},
		"api/vectalk":       {API: true, Provider: "vectalk"},
		"api/conceptomovil": {API: true, Provider: "conceptomovil"},
		"api/360dialog":     {API: true, Provider: "360dialog"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o.Frames, o.Digits = 50, "42*"
			testDemo(t, o)
		})
	}
}

func testDemo(t *testing.T, o Options) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, o)
	require.NoError(t, err)
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.True(t, rep.OK, text.String())
	require.Len(t, rep.Calls, 2)
	for _, c := range rep.Calls {
		for _, s := range []Stream{c.ToPBX, c.ToWhatsApp} {
			assert.Equal(t, 50, s.FramesMatched, c.Name)
			assert.Equal(t, "42*", s.DTMFReceived, c.Name)
			assert.Positive(t, s.Packets)
		}
		assert.Positive(t, c.SetupMs)
		assert.NotEmpty(t, c.EndedBy)
	}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, true, back["ok"])
}

func TestLossJitter(t *testing.T) {
	t.Parallel()
	start := time.Unix(0, 0)
	var pkts []seqSample
	for i, seq := range []uint16{65534, 65535, 1, 2} { // 0 lost across the wrap
		pkts = append(pkts, seqSample{seq: seq, ts: uint32(i) * 960, at: start.Add(time.Duration(i) * 20 * time.Millisecond)})
	}
	lost, jitter := lossJitter(pkts, 48000)
	assert.Equal(t, int64(1), lost)
	assert.InDelta(t, 0, jitter, 0.01)
}
