package bridge_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

const (
	pbxOpusPT = 111
	pbxDTMFPT = 101
)

// pbxPCAP writes the audio a sipp PBX plays: distinct Opus-like payloads then a DTMF '7', all on
// one SSRC as a real PBX would send them.
func pbxPCAP(t *testing.T, payloads [][]byte) string {
	t.Helper()
	const ssrc, seq, ts = 0x5eed0001, 1000, 160000
	pkts := peertest.RTPStream(payloads, pbxOpusPT, ssrc, seq, ts, 960)
	dtmf, err := peertest.DTMFPackets(peertest.DTMFEvent{Digit: '7', PT: pbxDTMFPT, SSRC: ssrc,
		Seq: seq + uint16(len(payloads)), TS: ts + uint32(len(payloads))*960})
	require.NoError(t, err)
	pkts = append(pkts, dtmf...)
	path := filepath.Join(t.TempDir(), "pbx.pcap")
	// sipp rewrites the destination to the SDP address it negotiated.
	require.NoError(t, peertest.WritePCAP(path, pkts, netipDiscard()))
	return path
}

// TestBusinessInitiatedCallFromSipp is the core business-initiated path: sipp as the PBX calls a
// WhatsApp user through wabridge and plays a pcap; the Meta-like edge challenges with 407, checks
// our From host, answers with its own SDES key and records what arrives. The PBX's payloads must
// reach WhatsApp byte for byte, its DTMF must arrive as telephone-event on Meta's PT, and the
// PBX's BYE must end the WhatsApp leg.
func TestBusinessInitiatedCallFromSipp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{onInvite: func(wasim.InviteInfo) wasim.Answer {
		return wasim.Answer{Code: 200, RingFor: 200 * time.Millisecond}
	}})
	sent := peertest.OpusLikePayloads(100, 3)
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_call.xml"),
		Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser,
		Vars: map[string]string{"business": business, "pcap": pbxPCAP(t, sent)}, CallDuration: 3 * time.Second,
		RTPEcho: true, Timeout: 40 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	call, err := h.edge.NextCall(ctx)
	require.NoError(t, err)
	assert.Equal(t, waUser, call.User)
	assert.Equal(t, business, call.Business)
	<-call.Answered()
	// WhatsApp→PBX: what the edge sends comes back through sipp's echo.
	back := peertest.OpusLikePayloads(50, 4)
	require.NoError(t, call.Media.Send(ctx, back, opusPT, ptime))

	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("WhatsApp leg did not end after the PBX hung up")
	}
	assert.Equal(t, wasim.EndedRemoteBye, call.EndedBy())
	// The PBX's pcap and sipp's echo of our audio arrive interleaved: split them by generator seed.
	got := audioPayloads(call.Media.Received(), opusPT)
	assert.Equal(t, sent, withSeed(got, 3), "PBX payloads must reach WhatsApp byte-identical and in order")
	assert.Equal(t, back, withSeed(got, 4), "WhatsApp payloads must survive the round trip through the PBX")
	assert.Equal(t, "7", call.Media.ReceivedDTMF())
	assertOneSSRCContinuous(t, call.Media.Received())
	assert.Empty(t, call.Violations())
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}

// TestBusinessInitiatedWhatsAppHangsUp: the WhatsApp user's BYE ends the PBX leg.
func TestBusinessInitiatedWhatsAppHangsUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_wait_bye.xml"),
		Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
		RTPEcho: true, Timeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.edge.NextCall(ctx)
	require.NoError(t, err)
	<-call.Answered()
	sent := peertest.OpusLikePayloads(25, 5)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	require.True(t, waitFor(5*time.Second, func() bool { return len(audioPayloads(call.Media.Received(), opusPT)) >= len(sent) }))
	assert.Equal(t, sent, audioPayloads(call.Media.Received(), opusPT)[:len(sent)])
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	assert.Empty(t, call.Violations())
}

// TestBusinessInitiatedRejections: Meta's failure codes and Warning text reach the PBX.
func TestBusinessInitiatedRejections(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		answer  wasim.Answer
		want    int
		warning string
	}{
		{"no call permission", wasim.Answer{Code: 403, Reason: "Forbidden", Warning: "No Approved Call Permission Found"}, 403, "No Approved Call Permission Found"},
		{"user declined", wasim.Answer{Code: 486, Reason: "User declined"}, 486, ""},
		{"no answer", wasim.Answer{Code: 480, Reason: "Temporarily Unavailable", RingFor: 300 * time.Millisecond}, 480, ""},
		{"rtp timeout", wasim.Answer{Code: 408, Reason: "RTP Timeout"}, 408, ""},
		{"meta internal error", wasim.Answer{Code: 503, Reason: "Service Unavailable"}, 503, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{onInvite: func(wasim.InviteInfo) wasim.Answer { return tc.answer }})
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.UACRejectScenario(t, tc.want),
				Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
				Timeout: 20 * time.Second})
			sipp.RequireSuccess(t, 20*time.Second)
			if tc.warning != "" {
				assert.Contains(t, sipp.Messages(), tc.warning, "Meta's Warning text must reach the PBX")
			}
			h.waitIdle()
		})
	}
}

// TestBusinessInitiatedPBXCancels: a CANCEL from the PBX while WhatsApp rings cancels the INVITE
// toward Meta.
func TestBusinessInitiatedPBXCancels(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{onInvite: func(wasim.InviteInfo) wasim.Answer {
		return wasim.Answer{Code: 200, RingFor: 15 * time.Second}
	}})
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_cancel.xml"),
		Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
		CallDuration: 500 * time.Millisecond, Timeout: 20 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := h.edge.NextCall(ctx)
	require.NoError(t, err)
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("WhatsApp leg still ringing after the PBX canceled")
	}
	assert.Equal(t, wasim.EndedCancel, call.EndedBy())
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
}
