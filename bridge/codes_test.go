package bridge

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMapFinalCode(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want int }{
		{403, 403}, {404, 404}, {400, 404}, {407, 503}, {401, 503}, {408, 408}, {480, 480},
		{486, 486}, {600, 486}, {487, 487}, {488, 488}, {603, 603}, {302, 480}, {500, 503},
		{503, 503}, {415, 480}, {700, 500},
	}
	for _, c := range cases {
		got, reason := mapFinalCode(c.in)
		assert.Equal(t, c.want, got, "code %d", c.in)
		assert.NotEmpty(t, reason)
	}
}

func TestAsSIPError(t *testing.T) {
	t.Parallel()
	inner := sipErr(488, "Not Acceptable Here", "no common codec", nil)
	got := asSIPError(fmt.Errorf("answer: %w", inner))
	assert.Equal(t, 488, got.Code)
	assert.Equal(t, 500, asSIPError(errors.New("boom")).Code)
	assert.Contains(t, inner.Error(), "no common codec")
}
