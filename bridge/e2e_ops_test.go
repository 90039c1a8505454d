package bridge_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

func scrape(t *testing.T, h *harness) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.srv.Metrics().Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return string(b)
}

// TestDrainLetsActiveCallsFinish: while draining, new calls get 503 and /readyz says 503, but the
// call in progress keeps its audio until it hangs up; then Drain returns.
func TestDrainLetsActiveCallsFinish(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)

	drained := make(chan struct{})
	go func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		h.srv.Drain(dctx)
		close(drained)
	}()
	require.Eventually(t, func() bool { code, _ := h.srv.Readiness(); return code == http.StatusServiceUnavailable },
		5*time.Second, 10*time.Millisecond)

	_, err = h.dial(ctx, wasim.DialOptions{User: "+15557654399"})
	var ce *wasim.CallError
	require.True(t, errors.As(err, &ce), "a new call while draining must be refused, got %v", err)
	assert.Equal(t, 503, ce.Code)

	sent := peertest.OpusLikePayloads(30, 21)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	require.True(t, waitFor(5*time.Second, func() bool { return len(withSeed(audioPayloads(call.Media.Received(), opusPT), 21)) == len(sent) }),
		"the active call must keep its audio while draining")
	select {
	case <-drained:
		t.Fatal("Drain returned with a call still up")
	default:
	}
	require.NoError(t, call.Hangup(ctx))
	select {
	case <-drained:
	case <-ctx.Done():
		t.Fatal("Drain did not return after the last call ended")
	}
	sipp.RequireSuccess(t, 10*time.Second)
	assert.Contains(t, scrape(t, h), `wabridge_calls_refused_total{reason="draining"} 1`)
}

// TestDrainTimeoutHangsUpBothLegs: calls still up when the drain timeout passes are ended
// cleanly on both legs.
func TestDrainTimeoutHangsUpBothLegs(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer dcancel()
	h.srv.Drain(dctx)
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("WhatsApp leg not ended by the drain timeout")
	}
	assert.Equal(t, wasim.EndedRemoteBye, call.EndedBy())
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}

// TestCallLimit: at limits.max_calls new calls get 503 and /readyz 429.
func TestCallLimit(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), maxCalls: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	code, reason := h.srv.Readiness()
	assert.Equal(t, http.StatusTooManyRequests, code, reason)
	_, err = h.dial(ctx, wasim.DialOptions{User: "+15557654398"})
	var ce *wasim.CallError
	require.True(t, errors.As(err, &ce), "got %v", err)
	assert.Equal(t, 503, ce.Code)
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	code, _ = h.srv.Readiness()
	assert.Equal(t, http.StatusOK, code)
}

// TestMetricsCountACall: after a call the counters have moved.
func TestMetricsCountACall(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	assert.Contains(t, scrape(t, h), `wabridge_active_calls{direction="user-initiated",mode="sip"} 1`)
	sent := peertest.OpusLikePayloads(20, 22)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	require.True(t, waitFor(5*time.Second, func() bool { return len(withSeed(audioPayloads(call.Media.Received(), opusPT), 22)) == len(sent) }))
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	_, _ = h.dial(ctx, wasim.DialOptions{Password: "wrong"}) // a refused INVITE

	m := scrape(t, h)
	assert.Contains(t, m, `wabridge_calls_total{direction="user-initiated",mode="sip",outcome="answered",provider="meta"} 1`)
	assert.Contains(t, m, `wabridge_active_calls{direction="user-initiated",mode="sip"} 0`)
	assert.Contains(t, m, `wabridge_call_setup_seconds_count{direction="user-initiated",mode="sip"} 1`)
	assert.Contains(t, m, `wabridge_calls_refused_total{reason="auth"} 1`)
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, `wabridge_media_packets_total{direction="in",leg="whatsapp"}`) {
			assert.NotEqual(t, `wabridge_media_packets_total{direction="in",leg="whatsapp"} 0`, line)
			return
		}
	}
	t.Fatalf("no media packet counter in:\n%s", m)
}

// TestReload: a good reload changes what new calls see (here: a second number) without touching
// the call in progress; one that changes listeners is refused whole.
func TestReload(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Calls: 2, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)

	bad := *h.cfg
	bad.SIP.PBXListen.UDP = "127.0.0.1:1"
	require.ErrorContains(t, h.srv.Reload(&bad), "sip.pbx_listen")

	// The same number with a new PBX extension: new calls use it, the active call is unaffected.
	next := *h.cfg
	next.Numbers = append([]config.Number(nil), h.cfg.Numbers...)
	next.Numbers[0].PBXRoute.Extension = "4242"
	require.NoError(t, h.srv.Reload(&next))
	call2, err := h.dial(ctx, wasim.DialOptions{User: "+15557654397"})
	require.NoError(t, err)
	assert.Contains(t, sipp.Messages(), "INVITE sip:4242@", "new calls route with the reloaded extension")

	sent := peertest.OpusLikePayloads(20, 23)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	require.True(t, waitFor(5*time.Second, func() bool { return len(withSeed(audioPayloads(call.Media.Received(), opusPT), 23)) == len(sent) }))
	require.NoError(t, call.Hangup(ctx))
	require.NoError(t, call2.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}
