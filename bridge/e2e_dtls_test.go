package bridge_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/media"
	"github.com/wabridge/wabridge/wasim"
)

// TestDTLSUserInitiated is Meta's default media profile end to end: the edge offers WebRTC
// (ice-lite, actpass, Opus 111 + telephone-event 126, BUNDLE, rtcp-mux, an IPv6 host candidate
// beside the IPv4 one) through a pion/webrtc peer configured like Meta; wabridge answers as full
// ICE controlling agent and DTLS client and bridges to sipp's echo.
func TestDTLSUserInitiated(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), dtls: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	ans, err := media.ParseDescription(call.InviteResponse().Body())
	require.NoError(t, err)
	assert.Equal(t, media.ProtoWebRTC, ans.Proto)
	setup, _ := ans.Attr("setup")
	assert.Equal(t, "active", setup, "answering Meta's actpass, wabridge must be the DTLS client (§4.5)")

	sent := peertest.OpusLikePayloads(100, 31)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	for _, d := range "2*" {
		require.NoError(t, call.Media.SendDTMF(ctx, d, metaDTMFPT, 100*time.Millisecond))
	}
	require.True(t, waitFor(5*time.Second, func() bool {
		return len(withSeed(audioPayloads(call.Media.Received(), opusPT), 31)) == len(sent) && call.Media.ReceivedDTMF() == "2*"
	}), "echo over DTLS-SRTP incomplete: DTMF %q", call.Media.ReceivedDTMF())
	assert.Equal(t, sent, withSeed(audioPayloads(call.Media.Received(), opusPT), 31))
	assertOneSSRCContinuous(t, call.Media.Received())

	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	h.waitIdle()
	assert.Empty(t, call.Violations())
	assert.Contains(t, h.logs.String(), "ICE and DTLS connected")
}

// TestDTLSBusinessInitiated: wabridge offers actpass to Meta, and follows whichever role Meta's
// answer picks — active (Meta's published BIC answer: wabridge is the DTLS server) or passive.
func TestDTLSBusinessInitiated(t *testing.T) {
	t.Parallel()
	for _, setup := range []string{wasim.SetupActive, wasim.SetupPassive} {
		t.Run(setup, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{dtls: true, onInvite: func(wasim.InviteInfo) wasim.Answer {
				return wasim.Answer{Code: 200, RingFor: 100 * time.Millisecond, DTLSSetup: setup}
			}})
			sent := peertest.OpusLikePayloads(100, 32)
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_call.xml"),
				Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser,
				Vars: map[string]string{"business": business, "pcap": pbxPCAP(t, sent)}, CallDuration: 3 * time.Second,
				RTPEcho: true, Timeout: 40 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			call, err := h.edge.NextCall(ctx)
			require.NoError(t, err)
			offer, err := media.ParseDescription(call.InviteRequest.Body())
			require.NoError(t, err)
			assert.Equal(t, media.ProtoWebRTC, offer.Proto)
			got, _ := offer.Attr("setup")
			assert.Equal(t, "actpass", got)
			<-call.Answered()
			back := peertest.OpusLikePayloads(50, 33)
			require.NoError(t, call.Media.Send(ctx, back, opusPT, ptime))
			select {
			case <-call.Done():
			case <-ctx.Done():
				t.Fatal("WhatsApp leg did not end after the PBX hung up")
			}
			rx := audioPayloads(call.Media.Received(), opusPT)
			assert.Equal(t, sent, withSeed(rx, 32), "PBX audio over DTLS-SRTP")
			assert.Equal(t, back, withSeed(rx, 33), "WhatsApp audio round trip through the PBX")
			assert.Equal(t, "7", call.Media.ReceivedDTMF())
			assert.Empty(t, call.Violations())
			sipp.RequireSuccess(t, 10*time.Second)
			h.waitIdle()
		})
	}
}

// TestDTLSFailuresEndBothLegs: a fingerprint that does not match the certificate, or candidates
// nobody answers on, end the call on both legs with a clear reason and leak nothing (the
// package's goleak check).
func TestDTLSFailuresEndBothLegs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func([]byte) []byte
		log  string
	}{
		{"wrong fingerprint", func(b []byte) []byte {
			return regexp.MustCompile(`(a=fingerprint:sha-256 )[0-9A-Fa-f]{2}`).ReplaceAll(b, []byte("${1}00"))
		}, "DTLS certificate does not match the SDP fingerprint"},
		{"unreachable candidates", unreachableCandidates, "ICE did not complete with WhatsApp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
				RTPEcho: true, Timeout: 40 * time.Second})
			h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String(), dtls: true, iceTimeout: 2 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			call, err := h.dial(ctx, wasim.DialOptions{EditOffer: tc.edit})
			if err != nil && !errors.Is(err, wasim.ErrViolation) {
				require.NoError(t, err)
			}
			select {
			case <-call.Done():
			case <-ctx.Done():
				t.Fatal("WhatsApp leg still up after the media failed")
			}
			sipp.RequireSuccess(t, 10*time.Second) // the PBX leg got its BYE
			h.waitIdle()
			assert.Contains(t, h.logs.String(), tc.log)
		})
	}
}

// TestDTLSBusinessInitiatedICETimeout: when ICE never completes on a business-initiated call,
// the PBX, still waiting, gets 408 and Meta gets BYE.
func TestDTLSBusinessInitiatedICETimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{dtls: true, iceTimeout: 2 * time.Second, onInvite: func(info wasim.InviteInfo) wasim.Answer {
		// Meta answers with candidates nobody listens on: ICE never completes.
		return wasim.Answer{Code: 200, EditAnswer: unreachableCandidates}
	}})
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.UACRejectScenario(t, 408),
		Remote: h.srv.Addrs().PBXUDP.String(), Service: waUser, Vars: map[string]string{"business": business},
		Timeout: 30 * time.Second})
	sipp.RequireSuccess(t, 30*time.Second)
	h.waitIdle()
	assert.Contains(t, h.logs.String(), "ICE did not complete with WhatsApp")
}

// unreachableCandidates points every candidate (and the m= port) at the discard port.
func unreachableCandidates(b []byte) []byte {
	b = regexp.MustCompile(`(a=candidate:\S+ \d+ (?i:udp) \d+ \S+ )\d+`).ReplaceAll(b, []byte("${1}9"))
	return regexp.MustCompile(`(m=audio )\d+`).ReplaceAll(b, []byte("${1}9"))
}
