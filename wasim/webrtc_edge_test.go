package wasim

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
)

// dtlsNumbers configures the test number with Meta's WebRTC media profile.
func dtlsNumbers() map[string]Number {
	return map[string]Number{testBusiness: {Password: testPassword, Hostname: testHostname, SRTP: SRTPDTLS}}
}

// assertMetaWebRTCSDP checks the shape of the edge's WebRTC SDP (whatsapp-calling.md §4.3).
func assertMetaWebRTCSDP(t *testing.T, body []byte, setup string) {
	t.Helper()
	d, err := media.ParseDescription(body)
	require.NoError(t, err)
	assert.Equal(t, media.ProtoWebRTC, d.Proto)
	assert.NotZero(t, d.Port)
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), d.Addr)
	assert.True(t, d.RTCPMux)
	assert.Len(t, sdpLines(body, "a=ice-lite"), 1)
	assert.Len(t, sdpLines(body, "a=group:BUNDLE "), 1)
	assert.Equal(t, []string{"a=setup:" + setup}, sdpLines(body, "a=setup:"))
	assert.Len(t, sdpLines(body, "a=fingerprint:sha-256 "), 1)
	assert.Len(t, sdpLines(body, "a=ice-ufrag:"), 1)
	cands := sdpLines(body, "a=candidate:")
	require.Len(t, cands, 2)
	assert.Contains(t, cands[0], " 127.0.0.1 ")
	assert.Contains(t, cands[1], " ::1 ")
	assert.Len(t, sdpLines(body, "a=ssrc:"), 1)
	assert.Equal(t, []string{"a=msid:WhatsAppAudioStream1 WhatsAppTrack1"}, sdpLines(body, "a=msid:"))
}

// A business-initiated call to a DTLS number: WebRTC offer, Meta's WebRTC answer (a=setup as
// configured), ICE + DTLS with a full-ICE pion business, audio echoed byte for byte, DTMF
// both ways, BYE.
func TestBusinessInitiatedDTLSCall(t *testing.T) {
	t.Parallel()
	for _, setup := range []string{"", SetupPassive} {
		want := setup
		if want == "" {
			want = SetupActive
		}
		t.Run(want, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := newTestEdge(t, EdgeConfig{Numbers: dtlsNumbers(), OnInvite: func(InviteInfo) Answer { return Answer{DTLSSetup: setup} }})
			b := newBusiness(t, e)
			biz := newBizPeer(t, bizOpts{})

			sess := b.call(t, ctx, biz.offer(ctx))
			res := sess.InviteResponse
			assert.Len(t, headerValues(res, "Record-Route"), 2)
			assertMetaWebRTCSDP(t, res.Body(), want)
			assert.Contains(t, string(res.Body()), " UDP/TLS/RTP/SAVPF 111 101\r\n", "Meta answers the offered payload types")
			biz.accept(res.Body())
			require.NoError(t, sess.Ack(ctx))

			call, err := e.NextCall(ctx)
			require.NoError(t, err)
			require.IsType(t, &WebRTCPeer{}, call.Media)
			<-call.Answered()
			call.Media.Echo(true)

			sent := payloads(10)
			biz.send(ctx, opusPT, 0, sent)
			waitFor(t, "echo", func() bool { return len(biz.payloadsOf(opusPT)) >= len(sent) })
			assert.Equal(t, sent, biz.payloadsOf(opusPT))
			assert.Equal(t, []uint32{call.Media.SSRC()}, biz.ssrcs())
			got := call.Media.Received()
			require.Len(t, got, len(sent))
			for i := range sent {
				assert.Equal(t, sent[i], got[i].Payload)
			}

			require.NoError(t, call.Media.SendDTMF(ctx, '5', 101, 60*time.Millisecond))
			waitFor(t, "DTMF at the business", func() bool { return biz.dtmf(101) == "5" })
			biz.sendDTMF(ctx, 101, '#')
			waitFor(t, "DTMF at the edge", func() bool { return call.Media.ReceivedDTMF() == "#" })

			require.NoError(t, sess.Bye(ctx))
			recv(t, ctx, call.Done(), "call end")
			assert.Equal(t, EndedRemoteBye, call.EndedBy())
			assert.Empty(t, call.Violations())
			assert.Empty(t, e.Violations())
		})
	}
}

// What Meta answers 488 (or 500) when the number's key exchange and the offer disagree.
func TestBusinessInitiatedDTLSRejections(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	biz := newBizPeer(t, bizOpts{})
	webrtcOffer := biz.offer(ctx)
	noICE := []byte(strings.ReplaceAll(string(webrtcOffer), "a=ice-pwd:", "a=x-ice-pwd:"))
	twoSSRCs := []byte(strings.Replace(string(webrtcOffer), "a=msid:", "a=ssrc:42 cname:second\r\na=msid:", 1))
	sdesOffer := newOffer(t, media.ProtoRTPSAVP).body

	tests := []struct {
		name    string
		srtp    string
		body    []byte
		answer  Answer
		code    int
		warning string
	}{
		{name: "SDES offer to a DTLS number", srtp: SRTPDTLS, body: sdesOffer, code: 488, warning: "No fingerprint found in SDP"},
		{name: "WebRTC offer to an SDES number", srtp: SRTPSDES, body: webrtcOffer, code: 488,
			warning: "SDP validation error: m=audio profile UDP/TLS/RTP/SAVPF, SDES needs RTP/SAVP"},
		{name: "no ICE credentials", srtp: SRTPDTLS, body: noICE, code: 488,
			warning: "SDP validation error: no ICE credentials (a=ice-ufrag, a=ice-pwd)"},
		{name: "two SSRCs", srtp: SRTPDTLS, body: twoSSRCs, code: 488,
			warning: "SDP validation error: offer declares 2 SSRCs [" + itoa32(biz.ssrc) + " 42], Meta supports exactly one"},
		{name: "bad DTLSSetup", srtp: SRTPDTLS, body: webrtcOffer, answer: Answer{DTLSSetup: "actpass"}, code: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := newTestEdge(t, EdgeConfig{
				Numbers:  map[string]Number{testBusiness: {Password: testPassword, Hostname: testHostname, SRTP: tc.srtp}},
				OnInvite: func(InviteInfo) Answer { return tc.answer },
			})
			b := newBusiness(t, e)
			res := b.final(t, ctx, b.invite(metaURI(testUser), testHostname, tc.body), testPassword)
			assert.Equal(t, tc.code, res.StatusCode, res.StartLine())
			if tc.warning != "" {
				assert.Equal(t, `399 wa.meta.vc "`+tc.warning+`"`, res.GetHeader("Warning").Value())
			}
		})
	}
}

// Rules an offer can break without stopping the call: recorded, and the call still works.
func TestBusinessInitiatedDTLSOfferViolations(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{Numbers: dtlsNumbers()})
	b := newBusiness(t, e)
	biz := newBizPeer(t, bizOpts{})
	offer := biz.offer(ctx)
	var kept []string
	for _, l := range strings.Split(string(offer), "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") && !strings.HasPrefix(l, "a=rtcp-mux") {
			kept = append(kept, l)
		}
	}
	sess := b.call(t, ctx, []byte(strings.Join(kept, "\r\n")))
	biz.accept(sess.InviteResponse.Body())
	require.NoError(t, sess.Ack(ctx))
	call, err := e.NextCall(ctx)
	require.NoError(t, err)

	// Without candidates Meta learns the business's address from its checks.
	biz.send(ctx, opusPT, 0, payloads(2))
	waitFor(t, "media", func() bool { return len(call.Media.Received()) == 2 })
	v := strings.Join(call.Violations(), "\n")
	assert.Contains(t, v, "no a=candidate")
	assert.Contains(t, v, "without a=rtcp-mux")
	assert.Len(t, call.Violations(), 2)
}

// A user-initiated call from a DTLS number: Meta's WebRTC offer, a full-ICE business
// answering as DTLS client, media both ways, BYE from the business.
func TestDialDTLSUserInitiatedCall(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{Numbers: dtlsNumbers()})
	pbx := newTestPBX(t, pbxMode{webrtc: &bizOpts{}})
	call, err := e.Dial(ctx, pbx.target(t))
	require.NoError(t, err)
	require.IsType(t, &WebRTCPeer{}, call.Media)

	inv := recv(t, ctx, pbx.invites, "INVITE")
	body := inv.Body()
	assertMetaWebRTCSDP(t, body, "actpass")
	port := itoa(call.Media.(*WebRTCPeer).LocalAddrs()[0].Port())
	assert.Equal(t, []string{"m=audio " + port + " UDP/TLS/RTP/SAVPF 111 126"}, sdpLines(body, "m="))
	assert.Equal(t, []string{"a=mid:audio"}, sdpLines(body, "a=mid:"))
	assert.Equal(t, []string{"a=group:BUNDLE audio"}, sdpLines(body, "a=group:"))
	assert.Equal(t, []string{"a=fmtp:111 " + opusFmtp}, sdpLines(body, "a=fmtp:"))
	assert.Empty(t, sdpLines(body, "a=crypto:"))
	recv(t, ctx, pbx.acks, "ACK")

	call.Media.Echo(true)
	sent := payloads(8)
	pbx.biz.send(ctx, opusPT, 0, sent)
	waitFor(t, "echo", func() bool { return len(pbx.biz.payloadsOf(opusPT)) >= len(sent) })
	assert.Equal(t, sent, pbx.biz.payloadsOf(opusPT))
	require.NoError(t, call.Media.SendDTMF(ctx, '3', dtmfPT, 60*time.Millisecond))
	waitFor(t, "DTMF at the business", func() bool { return pbx.biz.dtmf(dtmfPT) == "3" })
	pbx.biz.sendDTMF(ctx, dtmfPT, '8')
	waitFor(t, "DTMF at the edge", func() bool { return call.Media.ReceivedDTMF() == "8" })

	res, err := pbx.bye(ctx)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	recv(t, ctx, call.Done(), "call end")
	assert.Empty(t, call.Violations())
	assert.Empty(t, e.Violations())
}

// The business should be the DTLS client (a=setup:active, §4.5); passive works but is
// recorded. pion answers a lite offer as DTLS server unless told otherwise.
func TestDialDTLSPassiveAnswer(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{Numbers: dtlsNumbers()})
	pbx := newTestPBX(t, pbxMode{webrtc: &bizOpts{answerRole: webrtc.DTLSRoleServer}})
	call, err := e.Dial(ctx, pbx.target(t))
	require.NoError(t, err)
	recv(t, ctx, pbx.acks, "ACK")
	require.Len(t, call.Violations(), 1)
	assert.Contains(t, call.Violations()[0], "a=setup:passive")

	call.Media.Echo(true)
	pbx.biz.send(ctx, opusPT, 0, payloads(3))
	waitFor(t, "echo", func() bool { return len(pbx.biz.payloadsOf(opusPT)) == 3 })
	require.NoError(t, call.Hangup(ctx))
	recv(t, ctx, pbx.byes, "BYE")
}

// Answers that cannot work: the edge ACKs, hangs up and Dial returns ErrViolation.
func TestDialDTLSUnusableAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mode      pbxMode
		violation string
	}{
		{"ice-lite business", pbxMode{webrtc: &bizOpts{lite: true}}, "a=ice-lite"},
		{"no fingerprint", pbxMode{webrtc: &bizOpts{}, editAnswer: func(b []byte) []byte {
			return []byte(strings.ReplaceAll(string(b), "a=fingerprint:", "a=x-fingerprint:"))
		}}, "without a=fingerprint"},
		{"SDES answer", pbxMode{webrtc: &bizOpts{}, editAnswer: func(b []byte) []byte {
			return []byte(strings.ReplaceAll(string(b), "UDP/TLS/RTP/SAVPF", "RTP/SAVP"))
		}}, "profile RTP/SAVP"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := newTestEdge(t, EdgeConfig{Numbers: dtlsNumbers()})
			pbx := newTestPBX(t, tc.mode)
			call, err := e.Dial(ctx, pbx.target(t))
			require.ErrorIs(t, err, ErrViolation)
			require.NotEmpty(t, call.Violations())
			assert.Contains(t, strings.Join(call.Violations(), "\n"), tc.violation)
			recv(t, ctx, pbx.acks, "ACK")
			recv(t, ctx, pbx.byes, "BYE")
			assert.Equal(t, EndedLocalBye, call.EndedBy())
		})
	}
}

func TestNumberSRTPValidation(t *testing.T) {
	t.Parallel()
	_, err := NewEdge(EdgeConfig{Numbers: map[string]Number{testBusiness: {Hostname: testHostname, SRTP: "ZRTP"}}})
	assert.ErrorContains(t, err, "ZRTP")
	e, err := NewEdge(EdgeConfig{Numbers: map[string]Number{testBusiness: {Hostname: testHostname, SRTP: "dtls"}}})
	require.NoError(t, err)
	assert.True(t, e.cfg.Numbers[testBusiness].dtls())
	e, err = NewEdge(EdgeConfig{Numbers: map[string]Number{testBusiness: {Hostname: testHostname}}})
	require.NoError(t, err)
	assert.Equal(t, SRTPSDES, e.cfg.Numbers[testBusiness].SRTP)
}

// The SDES Call.Media is a *Peer, as before.
func TestSDESCallMediaIsPeer(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{})
	b := newBusiness(t, e)
	o := newOffer(t, media.ProtoRTPSAVP)
	sess := b.call(t, ctx, o.body)
	require.NoError(t, sess.Ack(ctx))
	call, err := e.NextCall(ctx)
	require.NoError(t, err)
	assert.IsType(t, &Peer{}, call.Media)
	byeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, call.Hangup(byeCtx))
	recv(t, ctx, b.byes, "BYE")
}
