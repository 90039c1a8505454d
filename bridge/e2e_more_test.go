package bridge_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/media"
	"github.com/wabridge/wabridge/wasim"
)

// TestUserInitiatedCanceledWhileRinging: the WhatsApp user gives up while the PBX rings; the
// CANCEL must reach the PBX (sipp's scenario only succeeds on CANCEL → 487 → ACK).
func TestUserInitiatedCanceledWhileRinging(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_noanswer.xml"), Timeout: 30 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Give the PBX time to ring, then hang up like a user would.
		time.Sleep(700 * time.Millisecond)
		cancel()
	}()
	_, err := h.dial(ctx, wasim.DialOptions{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "got %v", err)
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}

// TestUserInitiatedPBXHoldStaysLocal: a PBX re-INVITE (hold) is answered by wabridge with
// a=recvonly and never reaches Meta, whose edge would answer 500 and record a violation.
func TestUserInitiatedPBXHoldStaysLocal(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_reinvite.xml"),
		RTPEcho: true, CallDuration: 500 * time.Millisecond, Timeout: 30 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	// Audio keeps flowing across the hold/unhold exchange.
	sent := peertest.OpusLikePayloads(75, 8)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	require.True(t, waitFor(5*time.Second, func() bool { return len(audioPayloads(call.Media.Received(), opusPT)) >= len(sent) }))
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second) // sipp checks the 200 carried a=recvonly
	h.waitIdle()
	assert.Empty(t, call.Violations(), "the hold must not reach Meta")
	assert.Empty(t, h.edge.Violations())
	assert.Contains(t, h.logs.String(), "PBX session refresh answered locally")
}

// TestUserInitiatedG711PassThrough: when the number has PCMU enabled at Meta
// (audio.additional_codecs) and the PBX only speaks G.711, PCMU passes through untouched.
func TestUserInitiatedG711PassThrough(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_pcmu.xml"),
		RTPEcho: true, Timeout: 30 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), additionalCodecs: []string{"PCMU"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{AdditionalCodecs: []string{"PCMU"}})
	require.NoError(t, err)
	ans, err := media.ParseDescription(call.InviteResponse().Body())
	require.NoError(t, err)
	require.NotEmpty(t, ans.Codecs)
	assert.Equal(t, "PCMU", ans.Codecs[0].Name, "answer to Meta must pick the PBX's G.711")

	sent := peertest.OpusLikePayloads(50, 9) // opaque bytes: the relay never looks inside
	require.NoError(t, call.Media.Send(ctx, sent, 0, ptime))
	require.True(t, waitFor(5*time.Second, func() bool { return len(withSeed(payloadsPT(call.Media.Received(), 0), 9)) >= len(sent) }))
	assert.Equal(t, sent, withSeed(payloadsPT(call.Media.Received(), 0), 9))
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}

// TestMediaInactivityEndsBothLegs: when WhatsApp and the PBX both go silent (a dead path),
// wabridge ends both legs after media.inactivity_timeout.
func TestMediaInactivityEndsBothLegs(t *testing.T) {
	t.Parallel()
	// No -rtp_echo: the PBX never sends, and the edge sends nothing either.
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"), Timeout: 30 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), inactivity: 1500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("call not ended by the inactivity timeout")
	}
	assert.Equal(t, wasim.EndedRemoteBye, call.EndedBy())
	sipp.RequireSuccess(t, 10*time.Second) // the PBX got its BYE too
	h.waitIdle()
	assert.Contains(t, h.logs.String(), "media inactivity timeout")
}

// TestMalformedSIPIsRefused: garbage on every listener gets no crash and no call; wabridge
// keeps serving real calls afterwards.
func TestMalformedSIPIsRefused(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"), RTPEcho: true, Timeout: 30 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	junk := [][]byte{
		[]byte("INVITE sip:x SIP/2.0\r\n\r\n"),
		[]byte("\x00\x01\x02garbage\r\n\r\n"),
		[]byte("INVITE sip:+15550001111@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nContent-Length: 99999\r\n\r\nv=0"),
		[]byte("SIP/2.0 200 OK\r\nCall-ID: nothing\r\n\r\n"),
	}
	udp, err := net.Dial("udp", h.srv.Addrs().PBXUDP.String())
	require.NoError(t, err)
	defer udp.Close()
	for _, j := range junk {
		_, err := udp.Write(j)
		require.NoError(t, err)
	}
	conf := &tls.Config{RootCAs: h.roots, ServerName: sipHostname}
	tc, err := tls.Dial("tcp", h.srv.Addrs().WhatsAppTLS.String(), conf)
	require.NoError(t, err)
	for _, j := range junk {
		_, _ = tc.Write(j)
	}
	_ = tc.Close()
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, h.srv.ActiveCalls())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err, "wabridge must still serve calls")
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}

// TestBusinessInitiatedPBXErrors: what the PBX gets when its own INVITE cannot be served.
func TestBusinessInitiatedPBXErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		service string
		vars    map[string]string
		want    int
	}{
		{"unknown business number", waUser, map[string]string{"business": "+15559990000"}, 404},
		{"callee is not a number", "alice", map[string]string{"business": business}, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.UACRejectScenario(t, tc.want),
				Remote: h.srv.Addrs().PBXUDP.String(), Service: tc.service, Vars: tc.vars, Timeout: 20 * time.Second})
			sipp.RequireSuccess(t, 20*time.Second)
			h.waitIdle()
		})
	}
}
