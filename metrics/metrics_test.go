package metrics

import (
	"io"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHandlerExposesMetrics(t *testing.T) {
	t.Parallel()
	m := New()
	m.CallsTotal.WithLabelValues("user-initiated", "sip", "meta", "answered").Inc()
	m.ActiveCalls.WithLabelValues("user-initiated", "sip").Set(2)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	assert.Contains(t, string(body), `wabridge_calls_total{direction="user-initiated",mode="sip",outcome="answered",provider="meta"} 1`)
	assert.Contains(t, string(body), `wabridge_active_calls{direction="user-initiated",mode="sip"} 2`)
	assert.Contains(t, string(body), "go_goroutines")
}

func TestTwoInstancesDoNotCollide(t *testing.T) {
	t.Parallel()
	require.NotPanics(t, func() { New(); New() })
}
