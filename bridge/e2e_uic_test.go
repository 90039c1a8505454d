package bridge_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/media"
	"github.com/wabridge/wabridge/wasim"
)

// TestUserInitiatedCallEchoThroughSipp is the core user-initiated path against a PBX we did not
// write: the Meta-like edge calls wabridge over TLS with SDES, wabridge calls sipp over UDP with
// plain RTP, sipp echoes the audio. Every payload the WhatsApp side sends must come back byte for
// byte, DTMF digits must survive the payload-type remapping both ways, and a hang-up on the
// WhatsApp side must end the PBX leg.
func TestUserInitiatedCallEchoThroughSipp(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	call, err := h.dial(ctx, wasim.DialOptions{CTAPayload: "cta-42", DeeplinkPayload: "deep-7"})
	require.NoError(t, err)
	require.Empty(t, call.Violations())

	sent := peertest.OpusLikePayloads(100, 1)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	for _, d := range "59#" {
		require.NoError(t, call.Media.SendDTMF(ctx, d, metaDTMFPT, 100*time.Millisecond))
	}
	ok := waitFor(5*time.Second, func() bool {
		return len(audioPayloads(call.Media.Received(), opusPT)) >= len(sent) && call.Media.ReceivedDTMF() == "59#"
	})
	got := audioPayloads(call.Media.Received(), opusPT)
	require.True(t, ok, "echo incomplete: %d of %d payloads, DTMF %q", len(got), len(sent), call.Media.ReceivedDTMF())
	assert.Equal(t, sent, got[:len(sent)], "payloads must come back byte-identical and in order")
	assertOneSSRCContinuous(t, call.Media.Received())

	// The PBX saw the WhatsApp call data as headers.
	msgs := sipp.Messages()
	assert.Contains(t, msgs, "X-WA-Meta-WACID: "+call.WACID)
	assert.Contains(t, msgs, "X-WA-Caller: "+waUser)
	assert.Contains(t, msgs, "X-WA-Meta-CTA-Payload: cta-42")
	assert.Contains(t, msgs, "X-WA-Meta-Deeplink-Payload: deep-7")
	assert.Contains(t, msgs, "RTP/AVP", "PBX leg must be plain RTP")

	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second) // sipp got BYE and answered it
	h.waitIdle()
	assert.Empty(t, call.Violations())
	assert.Empty(t, h.edge.Violations())
}

// assertOneSSRCContinuous checks Meta's media rules on what wabridge sent: one SSRC, and sequence
// numbers that never repeat or go backward (whatsapp-calling.md §4.2).
func assertOneSSRCContinuous(t *testing.T, pkts []wasim.Packet) {
	t.Helper()
	require.NotEmpty(t, pkts)
	ssrc := pkts[0].SSRC
	for i, p := range pkts {
		require.Equal(t, ssrc, p.SSRC, "packet %d changed SSRC", i)
		if i > 0 {
			diff := p.Seq - pkts[i-1].Seq
			require.True(t, diff >= 1 && diff < 1000, "sequence jumped from %d to %d at packet %d", pkts[i-1].Seq, p.Seq, i)
		}
	}
}

// TestUserInitiatedPBXHangsUp: a BYE from the PBX ends the WhatsApp leg with a BYE that follows
// Meta's Record-Route over the connection Meta opened.
func TestUserInitiatedPBXHangsUp(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_hangup.xml"),
		RTPEcho: true, CallDuration: 2 * time.Second, Timeout: 30 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("WhatsApp leg did not end after the PBX hung up")
	}
	assert.Equal(t, wasim.EndedRemoteBye, call.EndedBy())
	bye := call.ByeRequest()
	require.NotNil(t, bye)
	assert.NotEmpty(t, bye.GetHeaders("Route"), "BYE toward Meta must carry its Record-Route set as Route")
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	assert.Empty(t, call.Violations())
}

// TestUserInitiatedFailures maps the PBX's failures to what Meta hears, and covers the WhatsApp
// side's own failures (credentials, unknown number).
func TestUserInitiatedFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		scenario func(t *testing.T) string // nil: no PBX involved
		dial     wasim.DialOptions
		wantCode int
	}{
		{name: "PBX busy", scenario: func(*testing.T) string { return peertest.ScenarioPath("pbx_uas_busy.xml") }, wantCode: 486},
		{name: "PBX declines", scenario: func(t *testing.T) string { return peertest.UASRejectScenario(t, 603, "Decline") }, wantCode: 603},
		{name: "PBX unavailable", scenario: func(t *testing.T) string { return peertest.UASRejectScenario(t, 480, "Temporarily Unavailable") }, wantCode: 480},
		{name: "PBX server error", scenario: func(t *testing.T) string { return peertest.UASRejectScenario(t, 500, "Oops") }, wantCode: 503},
		{name: "PBX only speaks PCMU", scenario: func(*testing.T) string { return peertest.ScenarioPath("pbx_uas_pcmu.xml") }, wantCode: 488},
		{name: "wrong SIP password", dial: wasim.DialOptions{Password: "not-the-password"}, wantCode: 403},
		{name: "unknown business number", dial: wasim.DialOptions{Business: "+15559990000"}, wantCode: 404},
		{name: "unknown SDES suite", dial: wasim.DialOptions{Suites: []string{media.SuiteAES128SHA1_80},
			EditOffer: replaceSDP("AES_CM_128_HMAC_SHA1_80", "AES_192_CM_HMAC_SHA1_80")}, wantCode: 488},
		{name: "no crypto line", dial: wasim.DialOptions{EditOffer: dropSDPLines("a=crypto")}, wantCode: 488},
		{name: "no common codec", dial: wasim.DialOptions{EditOffer: replaceSDP("opus/48000/2", "G729/8000")}, wantCode: 488},
		{name: "WebRTC profile on an SDES number", dial: wasim.DialOptions{EditOffer: replaceSDP("RTP/SAVP", "UDP/TLS/RTP/SAVPF")}, wantCode: 488},
		{name: "garbage SDP", dial: wasim.DialOptions{EditOffer: func([]byte) []byte { return []byte("this is not SDP\r\n") }}, wantCode: 488},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sipp *peertest.SippProc
			opts := harnessOptions{}
			if tc.scenario != nil {
				sipp = peertest.StartSipp(t, peertest.SippOptions{Scenario: tc.scenario(t), Timeout: 30 * time.Second})
				opts.pbxAddr = sipp.SIPAddr.String()
			}
			h := newHarness(t, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := h.dial(ctx, tc.dial)
			var ce *wasim.CallError
			require.True(t, errors.As(err, &ce), "want a SIP failure, got %v", err)
			assert.Equal(t, tc.wantCode, ce.Code)
			if sipp != nil {
				sipp.RequireSuccess(t, 10*time.Second)
			}
			h.waitIdle()
		})
	}
}

// TestSDESSuites: each SDES suite Meta might offer works end to end, the offer carrying only that
// suite (Meta's docs mask its crypto lines, whatsapp-calling.md §4.6).
func TestSDESSuites(t *testing.T) {
	t.Parallel()
	for _, suite := range []string{media.SuiteAES128SHA1_80, media.SuiteAES128SHA1_32, media.SuiteAES256SHA1_80, media.SuiteAEADAES128GCM} {
		t.Run(suite, func(t *testing.T) {
			t.Parallel()
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
				RTPEcho: true, Timeout: 30 * time.Second})
			h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			call, err := h.dial(ctx, wasim.DialOptions{Suites: []string{suite}})
			require.NoError(t, err)
			ans, err := media.ParseDescription(call.InviteResponse().Body())
			require.NoError(t, err)
			require.Len(t, ans.Crypto, 1)
			assert.Equal(t, suite, ans.Crypto[0].Suite)
			sent := peertest.OpusLikePayloads(25, 11)
			require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
			require.True(t, waitFor(5*time.Second, func() bool { return len(audioPayloads(call.Media.Received(), opusPT)) >= len(sent) }))
			assert.Equal(t, sent, audioPayloads(call.Media.Received(), opusPT)[:len(sent)])
			assert.Zero(t, call.Media.Stats().AuthFailures)
			require.NoError(t, call.Hangup(ctx))
			sipp.RequireSuccess(t, 10*time.Second)
			h.waitIdle()
		})
	}
}
