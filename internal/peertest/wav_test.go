package peertest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDominantFrequency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		freq           float64
		rate, channels int
	}{
		{440, 48000, 2},
		{1000, 8000, 1},
		{1000, 48000, 1},
		{2600, 16000, 2},
		{445.5, 48000, 2},
	} {
		path := filepath.Join(t.TempDir(), "tone.wav")
		require.NoError(t, WriteToneWAV(path, tc.freq, tc.rate, tc.channels, 2))
		got, err := DominantFrequency(path)
		require.NoError(t, err)
		assert.InDelta(t, tc.freq, got, 1, "%v", tc)
	}
}

func TestDominantFrequencyIgnoresSilenceAndBrokenHeader(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tone := filepath.Join(dir, "tone.wav")
	require.NoError(t, WriteToneWAV(tone, 440, 48000, 2, 1))
	b, err := os.ReadFile(tone)
	require.NoError(t, err)
	// 1.5 s of silence before the tone and a data size of 0, as a recorder killed mid-call leaves.
	silence := make([]byte, 48000*2*2*3/2)
	out := append(append(append([]byte{}, b[:44]...), silence...), b[44:]...)
	out[40], out[41], out[42], out[43] = 0, 0, 0, 0
	broken := filepath.Join(dir, "broken.wav")
	require.NoError(t, os.WriteFile(broken, out, 0o644))
	w, err := ReadWAV(broken)
	require.NoError(t, err)
	assert.InDelta(t, 2.5, w.Duration(), 0.01)
	got, err := DominantFrequency(broken)
	require.NoError(t, err)
	assert.InDelta(t, 440, got, 1)

	quiet := filepath.Join(dir, "quiet.wav")
	require.NoError(t, os.WriteFile(quiet, append(append([]byte{}, b[:44]...), silence...), 0o644))
	_, err = DominantFrequency(quiet)
	require.ErrorIs(t, err, ErrSilent)
}

func TestReadWAVRejectsOtherFormats(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.wav")
	require.NoError(t, WriteToneWAV(path, 440, 8000, 1, 0.1))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[20] = 6 // A-law
	require.NoError(t, os.WriteFile(path, b, 0o644))
	_, err = ReadWAV(path)
	require.Error(t, err)
	require.NoError(t, os.WriteFile(path, []byte("not a wav"), 0o644))
	_, err = ReadWAV(path)
	require.Error(t, err)
}
