package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

const (
	apiToken     = "provider-token-do-not-log"
	apiAppSecret = "app-secret-do-not-log"
)

// apiHarness is wabridge with one API-mode number at a provider emulator.
type apiHarness struct {
	t    *testing.T
	sim  *bspsim.Server
	srv  *bridge.Server
	logs *logBuffer
}

func newAPIHarness(t *testing.T, provider, pbxAddr string) *apiHarness {
	t.Helper()
	return newAPIHarnessWith(t, provider, pbxAddr, "")
}

// newAPIHarnessWith adds extra keys (flow style, comma-separated) to the number's api block.
func newAPIHarnessWith(t *testing.T, provider, pbxAddr, apiExtra string) *apiHarness {
	t.Helper()
	if apiExtra != "" {
		apiExtra = ", " + apiExtra
	}
	logs := &logBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	digits := strings.TrimPrefix(business, "+")
	sim, err := bspsim.New(bspsim.Config{Provider: provider, Token: apiToken, AppSecret: apiAppSecret,
		PhoneNumberID: "1000001", DisplayNumber: digits, WABAID: "2000002", Log: logrus.NewEntry(log).WithField("component", "bsp-sim")})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	if pbxAddr == "" {
		pbxAddr = "127.0.0.1:9"
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
sip:
  hostname: 127.0.0.1
  pbx_listen: {udp: "127.0.0.1:0", tcp: ""}
  whatsapp_listen: {tls: ""}
media: {bind_ip: 127.0.0.1, ice_timeout: 5s}
pbx: {address: %q}
http: {listen: "127.0.0.1:0"}
webhook: {app_secret: %q, verify_token: verify-me}
numbers:
  - number: %q
    phone_number_id: "1000001"
    mode: api
    api: {provider: %s, base_url: %q, token: %q, waba_id: "2000002"%s}
`, pbxAddr, apiAppSecret, business, provider, sim.URL(), apiToken, apiExtra)))
	require.NoError(t, err)
	srv, err := bridge.NewServer(cfg, logrus.NewEntry(log).WithField("test", t.Name()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	hook := httptest.NewServer(srv.WebhookHandler())
	sim.SetWebhookURL(hook.URL + "/webhook/" + provider + "?token=verify-me")
	h := &apiHarness{t: t, sim: sim, srv: srv, logs: logs}
	t.Cleanup(func() {
		hook.Close()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("wabridge did not stop")
		}
		for _, secret := range []string{apiToken, apiAppSecret} {
			require.NotContains(t, logs.String(), secret, "a secret leaked into the logs")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", tail(logs.String(), 80))
		}
	})
	return h
}

func (h *apiHarness) waitIdle() {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.srv.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond)
}

// requestSDP pulls the SDP out of a recorded call action, whatever the provider's body shape.
func requestSDP(t *testing.T, r bspsim.Request) string {
	t.Helper()
	var body struct {
		SDP     string `json:"sdp"`
		Session struct {
			SDP string `json:"sdp"`
		} `json:"session"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &body), string(r.Body))
	if body.Session.SDP != "" {
		return body.Session.SDP
	}
	return body.SDP
}

// TestAPIUserInitiated: a connect webhook with a WhatsApp user's WebRTC offer (from a pion peer
// configured like Meta) becomes an INVITE to sipp; pre_accept goes out before the PBX answers,
// accept with the same SDP when it does, media flows both ways byte for byte, and the user's
// terminate webhook ends the PBX leg.
func TestAPIUserInitiated(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{bsp.ProviderMeta, bsp.Provider360dialog, bsp.ProviderVectalk, bsp.ProviderConceptoMovil, bsp.ProviderPositus} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
				RTPEcho: true, Timeout: 40 * time.Second})
			h := newAPIHarness(t, provider, sipp.SIPAddr.String())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			peer, err := wasim.NewWebRTCPeer(wasim.WebRTCPeerConfig{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = peer.Close() })
			offer, err := peer.Offer(ctx)
			require.NoError(t, err)
			id, err := h.sim.SendConnect(ctx, bspsim.CallWebhook{User: strings.TrimPrefix(waUser, "+"), SDP: string(offer)})
			require.NoError(t, err)

			acc, err := h.sim.WaitRequest(ctx, bspsim.OpAccept, 1)
			require.NoError(t, err)
			if provider != bsp.ProviderPositus { // Positus has no pre_accept (docs/bsp.md)
				pre, err := h.sim.WaitRequest(ctx, bspsim.OpPreAccept, 1)
				require.NoError(t, err)
				assert.Equal(t, requestSDP(t, pre), requestSDP(t, acc), "accept must repeat the pre_accept SDP")
				assert.True(t, pre.At.Before(acc.At))
			}
			require.NoError(t, peer.Accept([]byte(requestSDP(t, acc))))

			sent := peertest.OpusLikePayloads(60, 41)
			require.NoError(t, peer.Send(ctx, sent, opusPT, ptime))
			require.True(t, waitFor(8*time.Second, func() bool { return len(withSeed(audioPayloads(peer.Received(), opusPT), 41)) == len(sent) }),
				"echo through the PBX incomplete")
			assert.Equal(t, sent, withSeed(audioPayloads(peer.Received(), opusPT), 41))
			assert.Contains(t, sipp.Messages(), "X-WA-Meta-WACID: "+id)

			require.NoError(t, h.sim.SendTerminate(ctx, bspsim.CallWebhook{CallID: id}))
			sipp.RequireSuccess(t, 10*time.Second)
			h.waitIdle()
			assert.Empty(t, h.sim.RequestsFor(bspsim.OpReject))
			rec := httptest.NewRecorder()
			h.srv.Metrics().Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			m := rec.Body.String()
			assert.Contains(t, m, `wabridge_provider_request_seconds_count{action="accept",provider="`+provider+`",result="ok"} 1`)
			assert.Regexp(t, `wabridge_webhook_deliveries_total\{provider="`+provider+`",result="accepted"\} [1-9]`, m)
			assert.Contains(t, m, `wabridge_calls_total{direction="user-initiated",mode="api",outcome="answered",provider="`+provider+`"} 1`)
		})
	}
}

// TestAPIUserInitiatedPBXRejects: PBX busy → reject toward the provider, never accept.
func TestAPIUserInitiatedPBXRejects(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_busy.xml"), Timeout: 30 * time.Second})
	h := newAPIHarness(t, bsp.ProviderMeta, sipp.SIPAddr.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer, err := wasim.NewWebRTCPeer(wasim.WebRTCPeerConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	offer, err := peer.Offer(ctx)
	require.NoError(t, err)
	_, err = h.sim.SendConnect(ctx, bspsim.CallWebhook{User: strings.TrimPrefix(waUser, "+"), SDP: string(offer)})
	require.NoError(t, err)
	_, err = h.sim.WaitRequest(ctx, bspsim.OpReject, 1)
	require.NoError(t, err)
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	assert.Empty(t, h.sim.RequestsFor(bspsim.OpAccept))
}

// TestAPIBusinessInitiated: sipp calls a WhatsApp user through an API-mode number: connect
// carries our WebRTC offer, the connect webhook brings the user's answer, RINGING gives the PBX
// 180, ACCEPTED its 200; the PBX's audio arrives byte for byte and its BYE becomes terminate.
func TestAPIBusinessInitiated(t *testing.T) {
	t.Parallel()
	for _, provider := range bsp.Providers() {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			h := newAPIHarness(t, provider, "")
			sent := peertest.OpusLikePayloads(100, 42)
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_call.xml"),
				Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser,
				Vars: map[string]string{"business": business, "pcap": pbxPCAP(t, sent)}, CallDuration: 3 * time.Second,
				RTPEcho: true, Timeout: 40 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := h.sim.WaitRequest(ctx, bspsim.OpConnect, 1)
			require.NoError(t, err)
			peer, err := wasim.NewWebRTCPeer(wasim.WebRTCPeerConfig{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = peer.Close() })
			answer, err := peer.Answer(ctx, []byte(requestSDP(t, conn)), wasim.SetupActive)
			require.NoError(t, err)
			id := bicCallID(t, h.sim)
			w := bspsim.CallWebhook{CallID: id, Direction: bsp.DirectionBusinessInitiated, User: strings.TrimPrefix(waUser, "+")}
			ans := w
			ans.SDP, ans.SDPType = string(answer), "answer"
			_, err = h.sim.SendConnect(ctx, ans)
			require.NoError(t, err)
			for _, st := range []string{bsp.StatusRinging, bsp.StatusAccepted} {
				s := w
				s.Status = st
				require.NoError(t, h.sim.SendStatus(ctx, s))
			}
			back := peertest.OpusLikePayloads(50, 43)
			require.NoError(t, peer.Send(ctx, back, opusPT, ptime))
			_, err = h.sim.WaitRequest(ctx, bspsim.OpTerminate, 1) // the PBX hung up after its pcap
			require.NoError(t, err)
			rx := audioPayloads(peer.Received(), opusPT)
			assert.Equal(t, sent, withSeed(rx, 42), "PBX audio through the API-mode WebRTC leg")
			assert.Equal(t, back, withSeed(rx, 43), "WhatsApp audio round trip through the PBX")
			sipp.RequireSuccess(t, 10*time.Second)
			h.waitIdle()
		})
	}
}

// TestAPIBusinessInitiatedPermissionCheck: with api.check_permission a user without permission
// is refused with 403 before any connect is spent.
func TestAPIBusinessInitiatedPermissionCheck(t *testing.T) {
	t.Parallel()
	h := newAPIHarnessWith(t, bsp.ProviderMeta, "", "check_permission: true")
	h.sim.SetPermission(strings.TrimPrefix(waUser, "+"), bsp.PermissionNone)
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.UACRejectScenario(t, 403),
		Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
		Timeout: 20 * time.Second})
	sipp.RequireSuccess(t, 20*time.Second)
	h.waitIdle()
	assert.Contains(t, sipp.Messages(), "No Approved Call Permission Found")
	assert.NotEmpty(t, h.sim.RequestsFor(bspsim.OpCallPermission))
	assert.Empty(t, h.sim.RequestsFor(bspsim.OpConnect), "no connect spent without permission")
}

// TestAPIBusinessInitiatedNoPermission: the provider refuses connect with 138006 → the PBX gets
// 403 with Meta's reason, and no terminate is sent for a call that never existed.
func TestAPIBusinessInitiatedNoPermission(t *testing.T) {
	t.Parallel()
	h := newAPIHarness(t, bsp.ProviderMeta, "")
	h.sim.Inject(bspsim.Fault{Op: bspsim.OpConnect, Times: 1, HTTPStatus: 401, Code: 138006, Message: "No approved call permission"})
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.UACRejectScenario(t, 403),
		Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
		Timeout: 20 * time.Second})
	sipp.RequireSuccess(t, 20*time.Second)
	h.waitIdle()
	assert.Contains(t, sipp.Messages(), "138006")
	assert.Empty(t, h.sim.RequestsFor(bspsim.OpTerminate))
}

// TestSIPPasswordFromSettingsAPI: with sip.password_from_api the SIP password comes from the
// settings API (include_sip_credentials=true) at start, and Meta's digest-authenticated calls work
// with it.
func TestSIPPasswordFromSettingsAPI(t *testing.T) {
	t.Parallel()
	sim, err := bspsim.New(bspsim.Config{Provider: bsp.ProviderMeta, Token: apiToken, PhoneNumberID: "1000001",
		DisplayNumber: strings.TrimPrefix(business, "+"), SIPPassword: sipPassword})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	require.NoError(t, sim.SetSettingsJSON([]byte(fmt.Sprintf(`{"status":"ENABLED","sip":{"status":"ENABLED","servers":[{"hostname":%q}]}}`, sipHostname))))
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), numberExtra: fmt.Sprintf(
		"    api: {provider: meta, base_url: %q, token: %q}\n", sim.URL(), apiToken), passwordFromAPI: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err, "Meta's digest with the password from the settings API")
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	assert.Len(t, sim.RequestsFor(bspsim.OpSettingsGet), 1)
	assert.NotContains(t, h.logs.String(), apiToken)
}

// bicCallID is the emulator's business-initiated call.
func bicCallID(t *testing.T, sim *bspsim.Server) string {
	t.Helper()
	for _, c := range sim.Calls() {
		if c.Direction == bsp.DirectionBusinessInitiated {
			return c.ID
		}
	}
	t.Fatal("the provider emulator has no business-initiated call")
	return ""
}

// TestAPIUserInitiatedPBXHangsUp: the PBX's BYE ends the WhatsApp call with terminate.
func TestAPIUserInitiatedPBXHangsUp(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_hangup.xml"),
		RTPEcho: true, CallDuration: 1500 * time.Millisecond, Timeout: 30 * time.Second})
	h := newAPIHarness(t, bsp.ProviderMeta, sipp.SIPAddr.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	peer, err := wasim.NewWebRTCPeer(wasim.WebRTCPeerConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	offer, err := peer.Offer(ctx)
	require.NoError(t, err)
	_, err = h.sim.SendConnect(ctx, bspsim.CallWebhook{User: strings.TrimPrefix(waUser, "+"), SDP: string(offer)})
	require.NoError(t, err)
	acc, err := h.sim.WaitRequest(ctx, bspsim.OpAccept, 1)
	require.NoError(t, err)
	require.NoError(t, peer.Accept([]byte(requestSDP(t, acc))))
	_, err = h.sim.WaitRequest(ctx, bspsim.OpTerminate, 1)
	require.NoError(t, err, "the PBX hung up: terminate must follow (it drives billing)")
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}

// TestAPIBusinessInitiatedOutcomes: the WhatsApp user declines (REJECTED → 603), gives up before
// answering (terminate → 480), or the PBX cancels while it rings (CANCEL → terminate).
func TestAPIBusinessInitiatedOutcomes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		scenario func(t *testing.T) string
		webhook  func(ctx context.Context, sim *bspsim.Server, w bspsim.CallWebhook) error
		wantTerm bool // wabridge must send terminate
	}{
		{"user declines", func(t *testing.T) string { return peertest.UACRejectScenario(t, 603) },
			func(ctx context.Context, sim *bspsim.Server, w bspsim.CallWebhook) error {
				w.Status = bsp.StatusRejected
				return sim.SendStatus(ctx, w)
			}, true},
		{"user gone before answering", func(t *testing.T) string { return peertest.UACRejectScenario(t, 480) },
			func(ctx context.Context, sim *bspsim.Server, w bspsim.CallWebhook) error {
				return sim.SendTerminate(ctx, w)
			}, false},
		{"PBX cancels while ringing", func(*testing.T) string { return peertest.ScenarioPath("pbx_uac_cancel.xml") },
			func(ctx context.Context, sim *bspsim.Server, w bspsim.CallWebhook) error {
				w.Status = bsp.StatusRinging
				return sim.SendStatus(ctx, w)
			}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newAPIHarness(t, bsp.ProviderMeta, "")
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: tc.scenario(t),
				Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
				CallDuration: 500 * time.Millisecond, Timeout: 30 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := h.sim.WaitRequest(ctx, bspsim.OpConnect, 1)
			require.NoError(t, err)
			w := bspsim.CallWebhook{CallID: bicCallID(t, h.sim), Direction: bsp.DirectionBusinessInitiated,
				User: strings.TrimPrefix(waUser, "+")}
			require.NoError(t, tc.webhook(ctx, h.sim, w))
			sipp.RequireSuccess(t, 20*time.Second)
			h.waitIdle()
			if tc.wantTerm {
				assert.Len(t, h.sim.RequestsFor(bspsim.OpTerminate), 1)
			} else {
				assert.Empty(t, h.sim.RequestsFor(bspsim.OpTerminate), "WhatsApp already ended the call")
			}
		})
	}
}
