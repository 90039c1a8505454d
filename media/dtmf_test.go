package media

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTelephoneEventRoundTrip(t *testing.T) {
	t.Parallel()
	for _, d := range "0123456789*#ABCD" {
		ev, err := DTMFEvent(d)
		require.NoError(t, err)
		back, ok := DTMFDigit(ev)
		require.True(t, ok)
		assert.Equal(t, d, back)
		p := EncodeTelephoneEvent(ev, 10, true, 800)
		e, end, dur, ok := DecodeTelephoneEvent(p)
		require.True(t, ok)
		assert.Equal(t, ev, e)
		assert.True(t, end)
		assert.Equal(t, uint16(800), dur)
	}
	_, err := DTMFEvent('x')
	assert.Error(t, err)
	ev, err := DTMFEvent('b')
	require.NoError(t, err)
	assert.Equal(t, uint8(13), ev)
	_, _, _, ok := DecodeTelephoneEvent([]byte{1, 2})
	assert.False(t, ok)
	_, ok = DTMFDigit(16)
	assert.False(t, ok)
}
