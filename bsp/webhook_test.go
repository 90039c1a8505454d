package bsp_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
)

const (
	appSecret   = "app-secret-for-tests"
	verifyToken = "verify-me"
)

// sink collects delivered events.
type sink struct {
	mu     sync.Mutex
	events []bsp.Event
	notify chan struct{}
}

func newSink() *sink { return &sink{notify: make(chan struct{}, 1024)} }

func (s *sink) add(ev bsp.Event) {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	s.notify <- struct{}{}
}

func (s *sink) all() []bsp.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bsp.Event(nil), s.events...)
}

// wait returns once n events were delivered.
func (s *sink) wait(t *testing.T, n int) []bsp.Event {
	t.Helper()
	deadline := time.After(testTimeout)
	for len(s.all()) < n {
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("waited for %d events, have %d", n, len(s.all()))
		}
	}
	return s.all()
}

// hookEnv is a webhook handler behind an httptest server, with its log captured.
type hookEnv struct {
	h    *bsp.WebhookHandler
	srv  *httptest.Server
	sink *sink
	logs *logtest.Hook
}

// knownMeta knows the emulators' default business number.
func knownMeta(id, number string) bool { return id == "436666719526789" || number == "13175551399" }

func newHook(t *testing.T, mods ...func(*bsp.WebhookConfig)) *hookEnv {
	t.Helper()
	logger, logs := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	snk := newSink()
	cfg := bsp.WebhookConfig{
		Provider: bsp.ProviderMeta, AppSecret: appSecret, VerifyToken: verifyToken,
		Known: knownMeta, OnEvent: snk.add, Log: logrus.NewEntry(logger),
	}
	for _, m := range mods {
		m(&cfg)
	}
	h, err := bsp.NewWebhookHandler(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return &hookEnv{h: h, srv: srv, sink: snk, logs: logs}
}

func (e *hookEnv) post(t *testing.T, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, e.srv.URL+"/webhook", bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	return e.do(t, req)
}

func (e *hookEnv) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func signed(body []byte, secret string) http.Header {
	return http.Header{"X-Hub-Signature-256": {bsp.Sign(secret, body)}, "Content-Type": {"application/json"}}
}

// logged reports whether a log line at warning or above contains text.
func (e *hookEnv) logged(text string) bool {
	for _, en := range e.logs.AllEntries() {
		if en.Level <= logrus.WarnLevel && strings.Contains(en.Message, text) {
			return true
		}
	}
	return false
}

func TestWebhookVerification(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, query string
		status      int
		body        string
	}{
		{"ok", "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me", 200, "1158201444"},
		{"challenge echoed raw", "hub.mode=subscribe&hub.challenge=%3Cb%3E+x&hub.verify_token=verify-me", 200, "<b> x"},
		{"wrong token", "hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope", 403, ""},
		{"missing token", "hub.mode=subscribe&hub.challenge=1", 403, ""},
		{"wrong mode", "hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me", 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newHook(t)
			req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, env.srv.URL+"/webhook?"+tc.query, nil)
			status, body := env.do(t, req)
			assert.Equal(t, tc.status, status)
			if tc.status == 200 {
				assert.Equal(t, tc.body, body)
			}
		})
	}
	t.Run("no verify token configured", func(t *testing.T) {
		t.Parallel()
		env := newHook(t, func(c *bsp.WebhookConfig) { c.VerifyToken = "" })
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, env.srv.URL+"/webhook?hub.mode=subscribe&hub.challenge=1&hub.verify_token=", nil)
		status, _ := env.do(t, req)
		assert.Equal(t, 403, status)
	})
}

// TestWebhookSecurity: refused and ignored deliveries never reach the callback, and each leaves a
// log line.
func TestWebhookSecurity(t *testing.T) {
	t.Parallel()
	good := readGolden(t, "meta/webhook-connect-uic.json")
	unknown := bytes.ReplaceAll(bytes.ReplaceAll(good, []byte("436666719526789"), []byte("999")), []byte("13175551399"), []byte("15550000000"))
	huge := append(append([]byte(`{"entry":[],"pad":"`), bytes.Repeat([]byte("x"), bsp.DefaultWebhookMaxBody)...), '"', '}')
	cases := []struct {
		name   string
		body   []byte
		header http.Header
		status int
		log    string
		stat   func(bsp.WebhookStats) uint64
	}{
		{"unsigned", good, http.Header{}, 401, "unsigned", func(s bsp.WebhookStats) uint64 { return s.Unauthorized }},
		{"wrong secret", good, signed(good, "other-secret"), 403, "bad signature", func(s bsp.WebhookStats) uint64 { return s.Forbidden }},
		{"signature of another body", good, signed(unknown, appSecret), 403, "bad signature", func(s bsp.WebhookStats) uint64 { return s.Forbidden }},
		{"not hex", good, http.Header{"X-Hub-Signature-256": {"sha256=zz"}}, 403, "bad signature", func(s bsp.WebhookStats) uint64 { return s.Forbidden }},
		{"truncated", good, http.Header{"X-Hub-Signature-256": {bsp.Sign(appSecret, good)[:20]}}, 403, "bad signature", func(s bsp.WebhookStats) uint64 { return s.Forbidden }},
		{"oversized", huge, signed(huge, appSecret), 413, "too large", func(s bsp.WebhookStats) uint64 { return s.TooLarge }},
		{"malformed JSON", []byte(`{"entry":[`), signed([]byte(`{"entry":[`), appSecret), 400, "not a webhook envelope", func(s bsp.WebhookStats) uint64 { return s.Malformed }},
		{"not an envelope", []byte(`{"hello":1}`), signed([]byte(`{"hello":1}`), appSecret), 400, "not a webhook envelope", func(s bsp.WebhookStats) uint64 { return s.Malformed }},
		{"unknown number", unknown, signed(unknown, appSecret), 200, "unknown number", func(s bsp.WebhookStats) uint64 { return s.Unrouted }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := newHook(t)
			status, _ := env.post(t, tc.body, tc.header)
			assert.Equal(t, tc.status, status)
			env.h.Close()
			assert.Empty(t, env.sink.all(), "the callback is never invoked")
			assert.True(t, env.logged(tc.log), "a log line says %q", tc.log)
			assert.EqualValues(t, 1, tc.stat(env.h.Stats()))
			assert.Zero(t, env.h.Stats().Events)
		})
	}
	t.Run("method", func(t *testing.T) {
		t.Parallel()
		env := newHook(t)
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPut, env.srv.URL, bytes.NewReader(good))
		status, _ := env.do(t, req)
		assert.Equal(t, 405, status)
	})
}

// TestWebhookReplay: a delivery repeated (the provider retrying, or an attacker replaying a
// captured body) reaches the callback once.
func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	env := newHook(t)
	body := readGolden(t, "meta/webhook-connect-uic.json")
	for range 3 {
		status, _ := env.post(t, body, signed(body, appSecret))
		assert.Equal(t, 200, status)
	}
	// A distinct event of the same call still gets through.
	term := readGolden(t, "meta/webhook-terminate.json")
	status, _ := env.post(t, term, signed(term, appSecret))
	assert.Equal(t, 200, status)
	env.h.Close()
	evs := env.sink.all()
	require.Len(t, evs, 2)
	assert.Equal(t, bsp.EventConnect, evs[0].Kind)
	assert.Equal(t, bsp.EventTerminate, evs[1].Kind)
	assert.Equal(t, bsp.ProviderMeta, evs[0].Provider)
	assert.EqualValues(t, 2, env.h.Stats().Duplicates)
}

// TestWebhookQueueFull: when the callback falls behind, deliveries get 503 (the provider retries)
// and are not marked as seen, so the retry is processed.
func TestWebhookQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var got []bsp.Event
	var mu sync.Mutex
	env := newHook(t, func(c *bsp.WebhookConfig) {
		c.QueueSize = 1
		c.OnEvent = func(ev bsp.Event) {
			<-release
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		}
	})
	bodies := [][]byte{
		readGolden(t, "meta/webhook-connect-uic.json"),
		readGolden(t, "meta/webhook-status.json"),
		readGolden(t, "meta/webhook-terminate.json"),
	}
	// The first is taken by the worker (blocked), the second waits in the queue, the third is
	// refused. The worker may not have taken the first yet, so allow one more 200.
	var codes []int
	for _, b := range bodies {
		status, _ := env.post(t, b, signed(b, appSecret))
		codes = append(codes, status)
	}
	assert.Contains(t, codes, http.StatusServiceUnavailable)
	assert.True(t, env.logged("queue full"))
	close(release)
	for i, b := range bodies {
		if codes[i] == http.StatusServiceUnavailable {
			require.Eventually(t, func() bool {
				status, _ := env.post(t, b, signed(b, appSecret))
				return status == 200
			}, testTimeout, 10*time.Millisecond)
		}
	}
	env.h.Close()
	assert.Len(t, got, 3, "the refused delivery was processed on retry")
}

// TestWebhookURLToken protects unsigned providers.
func TestWebhookURLToken(t *testing.T) {
	t.Parallel()
	env := newHook(t, func(c *bsp.WebhookConfig) {
		c.Provider, c.AppSecret, c.URLToken = bsp.ProviderPositus, "", "url-token"
		c.Known = func(_, n string) bool { return n == "551122361741" }
	})
	body := readGolden(t, "positus/webhooks/connect-webhook.json")
	for q, want := range map[string]int{"": 401, "?token=nope": 403, "?token=url-token": 200} {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, env.srv.URL+"/positus"+q, bytes.NewReader(body))
		status, _ := env.do(t, req)
		assert.Equal(t, want, status, q)
	}
	evs := env.sink.wait(t, 1)
	assert.Equal(t, "551122361741", evs[0].DisplayNumber, "routed by the number Known recognized")
	assert.Equal(t, bsp.DirectionUserInitiated, evs[0].Direction)

	_, err := bsp.NewWebhookHandler(bsp.WebhookConfig{Provider: bsp.ProviderPositus, AppSecret: "x", Known: knownMeta, OnEvent: func(bsp.Event) {}})
	require.Error(t, err, "Positus does not sign: an app secret would refuse every delivery")
}

func TestWebhookCallbackPanicContained(t *testing.T) {
	t.Parallel()
	var n int
	var mu sync.Mutex
	env := newHook(t, func(c *bsp.WebhookConfig) {
		c.OnEvent = func(bsp.Event) {
			mu.Lock()
			n++
			mu.Unlock()
			panic("bug")
		}
	})
	for _, f := range []string{"meta/webhook-connect-uic.json", "meta/webhook-terminate.json"} {
		b := readGolden(t, f)
		status, _ := env.post(t, b, signed(b, appSecret))
		assert.Equal(t, 200, status)
	}
	env.h.Close()
	assert.Equal(t, 2, n, "the worker survives a panicking callback")
	assert.True(t, env.logged("panicked"))

	b := readGolden(t, "meta/webhook-status.json")
	status, _ := env.post(t, b, signed(b, appSecret))
	assert.Equal(t, 503, status, "closed")
}

// TestEmulatorWebhooksEndToEnd: every emulator's documented webhooks, sent (and signed) by the
// emulator, arrive normalized.
func TestEmulatorWebhooksEndToEnd(t *testing.T) {
	t.Parallel()
	for _, provider := range bsp.Providers() {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			display := "13175551399"
			env := newHook(t, func(c *bsp.WebhookConfig) {
				c.Provider = provider
				if provider == bsp.ProviderPositus {
					c.AppSecret, c.URLToken = "", "tok"
					c.Known = func(_, n string) bool { return n == display }
				}
			})
			url := env.srv.URL + "/webhook"
			if provider == bsp.ProviderPositus {
				url += "?token=tok"
			}
			sim := newSim(t, provider, func(c *bspsim.Config) {
				c.AppSecret, c.WebhookURL, c.DisplayNumber = appSecret, url, display
			})
			p := newProvider(t, sim, provider, func(c *bsp.Config) { c.DisplayNumber = display })
			ctx := testCtx(t)

			// User-initiated: connect with the user's offer, then our answer, then terminate.
			id, err := sim.SendConnect(ctx, bspsim.CallWebhook{User: "16315553602", SDP: testSDP, CTAPayload: "cta"})
			require.NoError(t, err)
			ev := env.sink.wait(t, 1)[0]
			assert.Equal(t, provider, ev.Provider)
			assert.Equal(t, id, ev.CallID)
			assert.Equal(t, bsp.EventConnect, ev.Kind)
			assert.Equal(t, bsp.DirectionUserInitiated, ev.Direction)
			assert.Equal(t, "offer", ev.SDPType)
			assert.Equal(t, testSDP, ev.SDP)
			assert.Equal(t, "16315553602", ev.User())
			assert.Equal(t, display, ev.DisplayNumber)
			ref := bsp.CallRef{ID: ev.CallID, User: ev.User()}
			if provider != bsp.ProviderPositus {
				require.NoError(t, p.PreAccept(ctx, ref, answerSDP))
			}
			require.NoError(t, p.Accept(ctx, ref, answerSDP, ""))
			require.NoError(t, sim.SendTerminate(ctx, bspsim.CallWebhook{CallID: id, Duration: 42 * time.Second}))
			ev = env.sink.wait(t, 2)[1]
			assert.Equal(t, bsp.EventTerminate, ev.Kind)
			assert.Equal(t, bsp.StatusCompleted, ev.Status)
			assert.Equal(t, 42*time.Second, ev.Duration)

			// Business-initiated: connect, WhatsApp's answer, RINGING, ACCEPTED, terminate.
			bic, err := p.Connect(ctx, bsp.CallRequest{To: "12185552828", SDPOffer: testSDP})
			require.NoError(t, err)
			if bic == "" { // Positus answers make without the id: it comes with the connect webhook
				for _, c := range sim.Calls() {
					if c.Direction == bsp.DirectionBusinessInitiated {
						bic = c.ID
					}
				}
			}
			_, err = sim.SendConnect(ctx, bspsim.CallWebhook{CallID: bic, SDP: answerSDP})
			require.NoError(t, err)
			ev = env.sink.wait(t, 3)[2]
			assert.Equal(t, bic, ev.CallID)
			assert.Equal(t, bsp.DirectionBusinessInitiated, ev.Direction)
			assert.Equal(t, "answer", ev.SDPType)
			assert.Equal(t, answerSDP, ev.SDP)
			assert.Equal(t, "12185552828", ev.User())
			for i, st := range []string{bsp.StatusRinging, bsp.StatusAccepted} {
				require.NoError(t, sim.SendStatus(ctx, bspsim.CallWebhook{CallID: bic, Status: st}))
				if provider == bsp.ProviderPositus {
					// A bare status names only the user; without a per-number binding it is
					// dropped (see TestWebhookBinding).
					require.Eventually(t, func() bool { return env.h.Stats().Unrouted == uint64(i+1) }, testTimeout, time.Millisecond)
					continue
				}
				ev = env.sink.wait(t, 4+i)[3+i]
				assert.Equal(t, bsp.EventStatus, ev.Kind)
				assert.Equal(t, st, ev.Status)
				assert.Equal(t, "12185552828", ev.To)
			}
			require.NoError(t, p.Terminate(ctx, bsp.CallRef{ID: bic, User: "12185552828"}))
			require.NoError(t, sim.SendTerminate(ctx, bspsim.CallWebhook{CallID: bic, Status: bsp.StatusFailed,
				Errors: []bspsim.WebhookError{{Code: 138021, Message: "Media receive timeout"}}}))
			evs := env.sink.all()
			require.Eventually(t, func() bool {
				evs = env.sink.all()
				return evs[len(evs)-1].Kind == bsp.EventTerminate && evs[len(evs)-1].CallID == bic
			}, testTimeout, time.Millisecond)
			last := evs[len(evs)-1]
			assert.Equal(t, bsp.StatusFailed, last.Status)
			if provider != bsp.ProviderPositus {
				require.Len(t, last.Errors, 1)
				assert.Equal(t, 408, bsp.ToSIP(&last.Errors[0]).Code)
			}
		})
	}
}

// TestWebhookBinding: a URL bound to one number routes bare envelopes, statuses included.
func TestWebhookBinding(t *testing.T) {
	t.Parallel()
	env := newHook(t, func(c *bsp.WebhookConfig) {
		c.Provider, c.AppSecret, c.URLToken = bsp.ProviderPositus, "", "tok"
		c.Number, c.PhoneNumberID = "+55 11 2236-1741", "5dbbbf01-2f92-4389-b512-45de86c4a66f"
		c.Known = func(id, _ string) bool { return id == "5dbbbf01-2f92-4389-b512-45de86c4a66f" }
	})
	body := readGolden(t, "positus/webhooks/status-webhook.guess.json")
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, env.srv.URL+"/?token=tok", bytes.NewReader(body))
	status, _ := env.do(t, req)
	require.Equal(t, 200, status)
	ev := env.sink.wait(t, 1)[0]
	assert.Equal(t, "551122361741", ev.DisplayNumber)
	assert.Equal(t, "551122361741", ev.From)
	assert.Equal(t, "554399951234", ev.User())
}

func TestWebhookConfigErrors(t *testing.T) {
	t.Parallel()
	_, err := bsp.NewWebhookHandler(bsp.WebhookConfig{Provider: bsp.ProviderMeta, OnEvent: func(bsp.Event) {}})
	require.Error(t, err)
	_, err = bsp.NewWebhookHandler(bsp.WebhookConfig{Provider: bsp.ProviderMeta, Known: knownMeta})
	require.Error(t, err)
}

// TestWebhook360dialogSignature: 360dialog's own header, with or without Meta's prefix.
func TestWebhook360dialogSignature(t *testing.T) {
	t.Parallel()
	env := newHook(t, func(c *bsp.WebhookConfig) { c.Provider = bsp.Provider360dialog })
	body := readGolden(t, "meta/webhook-connect-uic.json")
	sig := bsp.Sign(appSecret, body)
	status, _ := env.post(t, body, http.Header{"X-Hub-Signature-256": {sig}})
	assert.Equal(t, 401, status, "Meta's header is not 360dialog's")
	status, _ = env.post(t, body, http.Header{"X-360dialog-Signature": {strings.TrimPrefix(sig, "sha256=")}})
	assert.Equal(t, 200, status)
	status, _ = env.post(t, body, http.Header{"X-360dialog-Signature": {sig}})
	assert.Equal(t, 200, status, "a repeat: accepted and dropped as duplicate")
	env.h.Close()
	assert.Len(t, env.sink.all(), 1)
}
