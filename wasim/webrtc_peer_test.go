package wasim

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
)

func newTestWebRTCPeer(t *testing.T) *WebRTCPeer {
	t.Helper()
	p, err := NewWebRTCPeer(WebRTCPeerConfig{Log: testLog(t), IPs: webrtcIPs(netip.MustParseAddr("127.0.0.1"))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// exchange proves media both ways between the WhatsApp peer and the business: Meta does not
// send before the business's maiden packet, then payloads arrive byte for byte in both
// directions with one SSRC each, and DTMF is decoded on both sides.
func exchange(t *testing.T, ctx context.Context, wa *WebRTCPeer, biz *bizPeer, dtmfPT uint8) {
	t.Helper()
	fromWA := payloads(6)
	waSent := make(chan error, 1)
	go func() { waSent <- wa.Send(ctx, fromWA, opusPT, 5*time.Millisecond) }()
	time.Sleep(50 * time.Millisecond)
	assert.Zero(t, wa.Stats().PacketsOut, "the WhatsApp side sent before the maiden packet")

	fromBiz := payloads(10)
	biz.send(ctx, opusPT, 0, fromBiz)
	require.NoError(t, <-waSent)
	waitFor(t, "business audio at the WhatsApp side", func() bool { return len(wa.Received()) >= len(fromBiz) })
	waitFor(t, "WhatsApp audio at the business", func() bool { return len(biz.payloadsOf(opusPT)) >= len(fromWA) })

	got := wa.Received()
	for i := range fromBiz {
		assert.Equal(t, fromBiz[i], got[i].Payload, "business payload %d", i)
		assert.Equal(t, biz.ssrc, got[i].SSRC)
		assert.Equal(t, uint8(opusPT), got[i].PT)
	}
	assert.Equal(t, fromWA, biz.payloadsOf(opusPT))
	assert.Equal(t, []uint32{wa.SSRC()}, biz.ssrcs(), "one SSRC, the one Meta declared")

	require.NoError(t, wa.SendDTMF(ctx, '4', dtmfPT, 60*time.Millisecond))
	require.NoError(t, wa.SendDTMF(ctx, '#', dtmfPT, 40*time.Millisecond))
	waitFor(t, "DTMF at the business", func() bool { return biz.dtmf(dtmfPT) == "4#" })
	biz.sendDTMF(ctx, dtmfPT, '9')
	biz.sendDTMF(ctx, dtmfPT, '*')
	waitFor(t, "DTMF at the WhatsApp side", func() bool { return wa.ReceivedDTMF() == "9*" })

	// The end packet of the last digit is repeated after the digit was decoded.
	waitFor(t, "all business packets", func() bool { return wa.Stats().PacketsIn == uint64(len(fromBiz)+2*5) })
	assert.EqualValues(t, len(fromWA)+(3+3)+(2+3), wa.Stats().PacketsOut)
	assert.Empty(t, wa.Violations())
}

func TestWebRTCPeerOffers(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	wa := newTestWebRTCPeer(t)
	offer, err := wa.Offer(ctx)
	require.NoError(t, err)

	// Meta's user-initiated WebRTC offer (whatsapp-calling.md §4.3).
	d, err := media.ParseDescription(offer)
	require.NoError(t, err)
	assert.Equal(t, media.ProtoWebRTC, d.Proto)
	assert.Equal(t, []string{"a=group:BUNDLE audio"}, sdpLines(offer, "a=group:"))
	assert.Len(t, sdpLines(offer, "a=ice-lite"), 1)
	assert.Equal(t, []string{"a=setup:actpass"}, sdpLines(offer, "a=setup:"))
	assert.Equal(t, []string{"a=mid:audio"}, sdpLines(offer, "a=mid:"))
	assert.Len(t, sdpLines(offer, "a=fingerprint:sha-256 "), 1)
	assert.True(t, d.RTCPMux)
	assert.Equal(t, media.DirSendRecv, d.Direction)
	assert.Equal(t, []string{"m=audio " + itoa(wa.LocalAddrs()[0].Port()) + " UDP/TLS/RTP/SAVPF 111 126"}, sdpLines(offer, "m="))
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), d.Addr)
	cands := sdpLines(offer, "a=candidate:")
	require.Len(t, cands, 2, "one IPv4 and one IPv6 host candidate, component 1 only")
	assert.Contains(t, cands[0], " 1 udp ")
	assert.Contains(t, cands[0], " 127.0.0.1 "+itoa(wa.LocalAddrs()[0].Port())+" typ host")
	assert.Contains(t, cands[1], " ::1 "+itoa(wa.LocalAddrs()[1].Port())+" typ host")
	assert.Equal(t, []string{"a=msid:WhatsAppAudioStream1 WhatsAppTrack1"}, sdpLines(offer, "a=msid:"))
	assert.Equal(t, []string{"a=ssrc:" + itoa32(wa.SSRC()) + " cname:WhatsAppAudioStream1"}, sdpLines(offer, "a=ssrc:"))
	assert.Equal(t, []string{"a=fmtp:111 " + opusFmtp}, sdpLines(offer, "a=fmtp:"))
	assert.Equal(t, []string{"a=rtpmap:111 opus/48000/2", "a=rtpmap:126 telephone-event/8000"}, sdpLines(offer, "a=rtpmap:"))
	assert.Empty(t, sdpLines(offer, "a=cryptex"), "pion's extras are not Meta's")

	biz := newBizPeer(t, bizOpts{})
	answer := biz.answer(ctx, offer)
	assert.Equal(t, []string{"a=setup:active"}, sdpLines(answer, "a=setup:"))
	require.NoError(t, wa.Accept(answer))
	require.Error(t, wa.Accept(answer), "one negotiation per peer")
	exchange(t, ctx, wa, biz, dtmfPT) // pion answers with the offered payload types
}

func TestWebRTCPeerAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setup, want string
	}{
		{"", "active"},
		{SetupActive, "active"},
		{SetupPassive, "passive"},
	} {
		t.Run("setup="+tc.want+"/"+tc.setup, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			wa := newTestWebRTCPeer(t)
			// Meta takes any Opus fmtp, also one whose minptime differs from its own.
			biz := newBizPeer(t, bizOpts{opusFmtp: "minptime=10;useinbandfec=1"})
			offer := biz.offer(ctx)
			assert.Equal(t, []string{"a=setup:actpass"}, sdpLines(offer, "a=setup:"))

			answer, err := wa.Answer(ctx, offer, tc.setup)
			require.NoError(t, err)
			assert.Equal(t, []string{"a=setup:" + tc.want}, sdpLines(answer, "a=setup:"))
			assert.Len(t, sdpLines(answer, "a=ice-lite"), 1)
			assert.Len(t, sdpLines(answer, "a=candidate:"), 2)
			assert.Equal(t, []string{"m=audio " + itoa(wa.LocalAddrs()[0].Port()) + " UDP/TLS/RTP/SAVPF 111 101"}, sdpLines(answer, "m="),
				"Meta answers with the offered payload types")
			assert.Empty(t, sdpLines(answer, "a=rtcp-fb:"))
			biz.accept(answer)
			exchange(t, ctx, wa, biz, 101)
		})
	}
}

// An offer that fixes the DTLS role gets the opposite one, whatever the configured setup.
func TestWebRTCPeerHonoursOfferedRole(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	wa := newTestWebRTCPeer(t)
	biz := newBizPeer(t, bizOpts{})
	offer := biz.offer(ctx)
	// The business as DTLS server: what pion does with a remote answer of setup:active.
	munged := []byte(strings.Replace(string(offer), "a=setup:actpass", "a=setup:passive", 1))
	answer, err := wa.Answer(ctx, munged, SetupPassive)
	require.NoError(t, err)
	assert.Equal(t, []string{"a=setup:active"}, sdpLines(answer, "a=setup:"))
	biz.accept(answer)
	exchange(t, ctx, wa, biz, 101)
}

// Meta supports one SSRC: a second one from the business is a violation.
func TestWebRTCPeerSecondSSRC(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	wa := newTestWebRTCPeer(t)
	biz := newBizPeer(t, bizOpts{})
	answer, err := wa.Answer(ctx, biz.offer(ctx), "")
	require.NoError(t, err)
	biz.accept(answer)

	biz.send(ctx, opusPT, 0, payloads(3))
	waitFor(t, "first stream", func() bool { return len(wa.Received()) == 3 })
	assert.Empty(t, wa.Violations())
	biz.send(ctx, opusPT, biz.ssrc+1, payloads(3))
	waitFor(t, "second-SSRC violation", func() bool { return len(wa.Violations()) == 1 })
	assert.Contains(t, wa.Violations()[0], "second SSRC")
	assert.Len(t, wa.Received(), 3, "Meta's relay does not pass the second stream on")
}

func TestWebRTCPeerSendWaitsAndClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	wa := newTestWebRTCPeer(t)
	biz := newBizPeer(t, bizOpts{})
	answer, err := wa.Answer(ctx, biz.offer(ctx), "")
	require.NoError(t, err)
	biz.accept(answer)
	_, err = wa.Answer(ctx, biz.offer(ctx), "")
	require.Error(t, err, "one negotiation per peer")

	// No maiden packet: Send waits for it like Meta.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, wa.Send(short, payloads(1), opusPT, 0), context.DeadlineExceeded)
	assert.Zero(t, wa.Stats().PacketsOut)

	done := make(chan error, 1)
	go func() { done <- wa.SendDTMF(ctx, '1', dtmfPT, 0) }()
	require.NoError(t, wa.Close())
	require.ErrorIs(t, recv(t, ctx, done, "SendDTMF after Close"), ErrPeerClosed)
	require.NoError(t, wa.Close(), "Close is idempotent")
	_, err = wa.Offer(ctx)
	require.ErrorIs(t, err, ErrPeerClosed)
	for _, a := range wa.LocalAddrs() {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		require.NoError(t, err, "Close releases %s", a)
		require.NoError(t, conn.Close())
	}
}

// calling.audio.additional_codecs: Meta offers G.711 after Opus (whatsapp-calling.md §1.2).
func TestWebRTCPeerOffersAdditionalCodecs(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	codecs, err := metaCodecs([]string{media.CodecPCMA, media.CodecPCMU})
	require.NoError(t, err)
	wa, err := NewWebRTCPeer(WebRTCPeerConfig{Log: testLog(t), Codecs: codecs})
	require.NoError(t, err)
	defer wa.Close()
	offer, err := wa.Offer(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"m=audio " + itoa(wa.LocalAddrs()[0].Port()) + " UDP/TLS/RTP/SAVPF 111 8 0 126"}, sdpLines(offer, "m="))
	assert.Contains(t, sdpLines(offer, "a=rtpmap:"), "a=rtpmap:8 PCMA/8000")
	assert.Len(t, sdpLines(offer, "a=candidate:"), 1, "127.0.0.1 only when asked for it only")
}

func TestWebRTCPeerSkipsUnbindableAddress(t *testing.T) {
	t.Parallel()
	// 192.0.2.1 (TEST-NET-1) is not configured on this host.
	p, err := NewWebRTCPeer(WebRTCPeerConfig{Log: testLog(t), IPs: []netip.Addr{
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("127.0.0.1")}})
	require.NoError(t, err)
	defer p.Close()
	require.Len(t, p.LocalAddrs(), 1)
	assert.Equal(t, netip.MustParseAddr("127.0.0.1"), p.LocalAddrs()[0].Addr())

	_, err = NewWebRTCPeer(WebRTCPeerConfig{Log: testLog(t), IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}})
	require.Error(t, err)
}

// The SDP checks of what wabridge sends (whatsapp-calling.md §4.2-4.5).
func TestCheckWebRTCSDP(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	biz := newBizPeer(t, bizOpts{})
	offer := string(biz.offer(ctx))
	edit := func(from, to string) []byte {
		require.Contains(t, offer, from)
		return []byte(strings.ReplaceAll(offer, from, to))
	}
	stripLines := func(prefix string) []byte {
		var keep []string
		for _, l := range strings.Split(offer, "\r\n") {
			if !strings.HasPrefix(l, prefix) {
				keep = append(keep, l)
			}
		}
		return []byte(strings.Join(keep, "\r\n"))
	}

	_, notes, err := checkWebRTCOffer([]byte(offer))
	require.NoError(t, err)
	assert.Empty(t, notes)

	_, _, err = checkWebRTCOffer(stripLines("a=fingerprint:"))
	assert.EqualError(t, err, "No fingerprint found in SDP")
	_, _, err = checkWebRTCOffer(edit("UDP/TLS/RTP/SAVPF", "RTP/SAVPF"))
	assert.ErrorContains(t, err, "DTLS-SRTP needs UDP/TLS/RTP/SAVPF")
	_, _, err = checkWebRTCOffer(stripLines("a=ice-pwd:"))
	assert.ErrorContains(t, err, "no ICE credentials")
	_, _, err = checkWebRTCOffer(edit("opus/48000/2", "opus/48000/1"))
	assert.ErrorContains(t, err, "opus/48000/2 not offered")

	_, notes, err = checkWebRTCOffer(edit("a=group:BUNDLE", "a=ice-lite\r\na=group:BUNDLE"))
	require.NoError(t, err)
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "ice-lite")
	_, notes, err = checkWebRTCOffer(stripLines("a=candidate:"))
	require.NoError(t, err)
	require.Len(t, notes, 1)
	assert.Contains(t, notes[0], "no a=candidate")
	ssrc := itoa32(biz.ssrc)
	_, _, err = checkWebRTCOffer(edit("a=ssrc:"+ssrc+" cname:", "a=ssrc:42 cname:x\r\na=ssrc:"+ssrc+" cname:"))
	assert.ErrorContains(t, err, "offer declares 2 SSRCs [42 "+ssrc+"]")
	_, notes, err = checkWebRTCOffer(edit("a=ssrc:"+ssrc+" cname:", "a=ssrc-group:FID "+ssrc+" 43\r\na=ssrc:43 cname:x\r\na=ssrc:"+ssrc+" cname:"))
	require.NoError(t, err, "an RTX repair SSRC is not a second stream")
	assert.Empty(t, notes)

	codecs, err := metaCodecs(nil)
	require.NoError(t, err)
	wa := newTestWebRTCPeer(t)
	waOffer, err := wa.Offer(ctx)
	require.NoError(t, err)
	for _, tc := range []struct {
		name         string
		role         webrtc.DTLSRole
		lite         bool
		fatal, notes string
	}{
		{name: "active"},
		{name: "passive", role: webrtc.DTLSRoleServer, notes: "a=setup:passive to Meta's actpass offer"},
		{name: "ice-lite", lite: true, fatal: "a=ice-lite"},
	} {
		biz := newBizPeer(t, bizOpts{answerRole: tc.role, lite: tc.lite})
		_, fatal, notes := checkWebRTCAnswer(biz.answer(ctx, waOffer), codecs)
		if tc.fatal == "" {
			assert.Empty(t, fatal, tc.name)
		} else if assert.Len(t, fatal, 1, tc.name) {
			assert.Contains(t, fatal[0], tc.fatal, tc.name)
		}
		if tc.notes == "" {
			assert.Empty(t, notes, tc.name)
		} else if assert.Len(t, notes, 1, tc.name) {
			assert.Contains(t, notes[0], tc.notes, tc.name)
		}
	}
}

func itoa32(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
