package bsp_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
)

// uicCall registers a user-initiated call at the emulator.
func uicCall(sim *bspsim.Server) bsp.CallRef {
	ref := bsp.CallRef{ID: "wacid.RETRY", User: "16315553602"}
	sim.AddCall(bspsim.Call{ID: ref.ID, Direction: bsp.DirectionUserInitiated, User: ref.User})
	return ref
}

// TestRetries counts requests at the emulator: idempotent actions are retried on server errors
// and dropped connections, connect never, accept only when nothing was sent.
func TestRetries(t *testing.T) {
	t.Parallel()
	type action func(context.Context, bsp.Provider, bsp.CallRef) error
	connect := func(ctx context.Context, p bsp.Provider, _ bsp.CallRef) error {
		_, err := p.Connect(ctx, bsp.CallRequest{To: "14085551234", SDPOffer: testSDP})
		return err
	}
	terminate := func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.Terminate(ctx, r) }
	reject := func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.Reject(ctx, r) }
	accept := func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.Accept(ctx, r, answerSDP, "") }
	preAccept := func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.PreAccept(ctx, r, answerSDP) }
	settingsGet := func(ctx context.Context, p bsp.Provider, _ bsp.CallRef) error {
		_, err := p.GetSettings(ctx, false)
		return err
	}
	settingsPost := func(ctx context.Context, p bsp.Provider, _ bsp.CallRef) error {
		return p.SetSettings(ctx, &bsp.Settings{CallbackPermissionStatus: "ENABLED"})
	}
	permission := func(ctx context.Context, p bsp.Provider, _ bsp.CallRef) error {
		_, err := p.CallPermission(ctx, "16315553602")
		return err
	}
	cases := []struct {
		name     string
		op       string
		run      action
		fault    bspsim.Fault
		requests int
		ok       bool
	}{
		{"terminate 500 twice then ok", bspsim.OpTerminate, terminate, bspsim.Fault{HTTPStatus: 500, Times: 2}, 3, true},
		{"terminate 503 always", bspsim.OpTerminate, terminate, bspsim.Fault{HTTPStatus: 503}, 3, false},
		{"terminate dropped once", bspsim.OpTerminate, terminate, bspsim.Fault{Drop: true, Times: 1}, 2, true},
		{"terminate 429 with Retry-After", bspsim.OpTerminate, terminate, bspsim.Fault{Code: 130429, HTTPStatus: 429, RetryAfter: 1, Times: 1}, 2, true},
		{"terminate 400 not retried", bspsim.OpTerminate, terminate, bspsim.Fault{Code: 100, Times: 1}, 1, false},
		{"reject 502 once", bspsim.OpReject, reject, bspsim.Fault{HTTPStatus: 502, Times: 1}, 2, true},
		{"settings get 500 once", bspsim.OpSettingsGet, settingsGet, bspsim.Fault{Code: 2, Times: 1}, 2, true},
		{"permission 429 once", bspsim.OpCallPermission, permission, bspsim.Fault{Code: 613, Times: 1}, 2, true},
		{"connect 500 never retried", bspsim.OpConnect, connect, bspsim.Fault{Code: 138004, Times: 1}, 1, false},
		{"connect dropped never retried", bspsim.OpConnect, connect, bspsim.Fault{Drop: true, Times: 1}, 1, false},
		{"accept 500 not retried", bspsim.OpAccept, accept, bspsim.Fault{HTTPStatus: 500, Times: 1}, 1, false},
		{"accept dropped after sending not retried", bspsim.OpAccept, accept, bspsim.Fault{Drop: true, Times: 1}, 1, false},
		{"pre_accept 503 not retried", bspsim.OpPreAccept, preAccept, bspsim.Fault{HTTPStatus: 503, Times: 1}, 1, false},
		{"settings post 500 not retried", bspsim.OpSettingsPost, settingsPost, bspsim.Fault{HTTPStatus: 500, Times: 1}, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, bsp.ProviderMeta)
			p := newProvider(t, sim, bsp.ProviderMeta, func(c *bsp.Config) {
				// Retry-After (1 s) is capped by MaxBackoff.
				c.Retry.MaxBackoff = 20 * time.Millisecond
			})
			ref := uicCall(sim)
			f := tc.fault
			f.Op = tc.op
			sim.Inject(f)
			err := tc.run(testCtx(t), p, ref)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
			assert.Len(t, sim.RequestsFor(tc.op), tc.requests)
		})
	}
}

// failingTransport fails the first n round trips before anything is written, like a refused
// connection.
type failingTransport struct {
	next     http.RoundTripper
	failures atomic.Int32
	calls    atomic.Int32
}

func (f *failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	if f.failures.Add(-1) >= 0 {
		return nil, errors.New("dial tcp: connection refused")
	}
	return f.next.RoundTrip(r)
}

// TestRetryUnsent: accept and pre_accept are retried when the request never left; connect is
// not retried even then (a duplicate ring is worse than a failed call the PBX can redial).
func TestRetryUnsent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		run      func(context.Context, bsp.Provider, bsp.CallRef) error
		attempts int32
		ok       bool
	}{
		{"accept", func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.Accept(ctx, r, answerSDP, "") }, 2, true},
		{"pre_accept", func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.PreAccept(ctx, r, answerSDP) }, 2, true},
		{"terminate", func(ctx context.Context, p bsp.Provider, r bsp.CallRef) error { return p.Terminate(ctx, r) }, 2, true},
		{"connect", func(ctx context.Context, p bsp.Provider, _ bsp.CallRef) error {
			_, err := p.Connect(ctx, bsp.CallRequest{To: "14085551234", SDPOffer: testSDP})
			return err
		}, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, bsp.ProviderMeta)
			base := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(base.CloseIdleConnections)
			ft := &failingTransport{next: base}
			ft.failures.Store(1)
			p := newProvider(t, sim, bsp.ProviderMeta, func(c *bsp.Config) { c.HTTPClient = &http.Client{Transport: ft} })
			err := tc.run(testCtx(t), p, uicCall(sim))
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Equal(t, 503, bsp.ToSIP(err).Code)
			}
			assert.Equal(t, tc.attempts, ft.calls.Load())
		})
	}
}

// TestTimeouts: an emulator slower than the per-attempt timeout gives 408, never a hang; an
// idempotent action tries again; cancellation by the caller gives 487. TestMain's goleak check
// covers the goroutines of the abandoned requests.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	fast := func(c *bsp.Config) { c.Timeout = 100 * time.Millisecond }

	t.Run("connect", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderMeta)
		p := newProvider(t, sim, bsp.ProviderMeta, fast)
		sim.Inject(bspsim.Fault{Op: bspsim.OpConnect, Delay: 5 * time.Second})
		start := time.Now()
		_, err := p.Connect(testCtx(t), bsp.CallRequest{To: "14085551234", SDPOffer: testSDP})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(start), 2*time.Second)
		st := bsp.ToSIP(err)
		assert.Equal(t, 408, st.Code)
		require.Eventually(t, func() bool { return len(sim.RequestsFor(bspsim.OpConnect)) == 1 }, testTimeout, 5*time.Millisecond)
		assert.Contains(t, sim.RequestsFor(bspsim.OpConnect)[0].Err, "client went away")
	})

	t.Run("terminate retried after a timeout", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderMeta)
		p := newProvider(t, sim, bsp.ProviderMeta, fast)
		ref := uicCall(sim)
		sim.Inject(bspsim.Fault{Op: bspsim.OpTerminate, Delay: 5 * time.Second, Times: 1})
		require.NoError(t, p.Terminate(testCtx(t), ref))
		require.Eventually(t, func() bool { return len(sim.RequestsFor(bspsim.OpTerminate)) == 2 }, testTimeout, 5*time.Millisecond)
	})

	t.Run("accept times out", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderVectalk)
		p := newProvider(t, sim, bsp.ProviderVectalk, fast)
		sim.Inject(bspsim.Fault{Op: bspsim.OpAccept, Delay: 5 * time.Second})
		err := p.Accept(testCtx(t), uicCall(sim), answerSDP, "")
		assert.Equal(t, 408, bsp.ToSIP(err).Code)
		require.Eventually(t, func() bool { return len(sim.RequestsFor(bspsim.OpAccept)) == 1 }, testTimeout, 5*time.Millisecond)
	})

	t.Run("caller cancels", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderMeta)
		p := newProvider(t, sim, bsp.ProviderMeta)
		sim.Inject(bspsim.Fault{Op: bspsim.OpConnect, Delay: 5 * time.Second})
		ctx, cancel := context.WithCancel(testCtx(t))
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := p.Connect(ctx, bsp.CallRequest{To: "14085551234", SDPOffer: testSDP})
		assert.Equal(t, 487, bsp.ToSIP(err).Code)
	})

	t.Run("caller deadline ends retries", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderMeta)
		p := newProvider(t, sim, bsp.ProviderMeta, func(c *bsp.Config) {
			c.Retry = bsp.RetryPolicy{Attempts: 10, InitialBackoff: time.Second, MaxBackoff: time.Second}
		})
		sim.Inject(bspsim.Fault{Op: bspsim.OpTerminate, HTTPStatus: 503})
		ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
		defer cancel()
		err := p.Terminate(ctx, uicCall(sim))
		require.Error(t, err)
		assert.Len(t, sim.RequestsFor(bspsim.OpTerminate), 1)
	})
}
