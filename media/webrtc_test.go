package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testCert(t testing.TB) *DTLSCertificate {
	t.Helper()
	c, err := NewDTLSCertificate()
	require.NoError(t, err)
	return c
}

// newTestLeg makes a leg on a loopback endpoint. The endpoint's own cleanup (listen) tolerates
// the leg having closed it.
func newTestLeg(t testing.TB, mutate func(*WebRTCConfig)) *WebRTCLeg {
	t.Helper()
	cfg := WebRTCConfig{Endpoint: loopbackEndpoint(t), Certificate: testCert(t), ConnectTimeout: peerWait, Log: testLog(t)}
	if mutate != nil {
		mutate(&cfg)
	}
	leg, err := NewWebRTCLeg(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, leg.Close()) })
	return leg
}

// dtlsCall is a connected leg joined to a fake PBX by the production Relay, wired as the bridge
// will wire it (see WebRTCLeg's comment).
type dtlsCall struct {
	relay   *Relay
	pbx     *peer
	pbxSide netip.AddrPort // the relay's PBX socket
}

func startDTLSRelay(t testing.TB, leg *WebRTCLeg, conn PacketConn, keys *SRTPKeys) *dtlsCall {
	t.Helper()
	waMap, pbxMap := testPTMaps()
	c := &dtlsCall{pbx: newPeer(t, nil)}
	pbxEP := loopbackEndpoint(t)
	c.pbxSide = pbxEP.RTP.LocalAddr()
	r, err := NewRelay(RelayConfig{
		WhatsApp: LegConfig{Endpoint: &Endpoint{RTP: conn}, Remote: leg.RemoteAddr(), RTCPMux: true, SRTP: keys, PTMap: waMap},
		PBX:      LegConfig{Endpoint: pbxEP, Remote: c.pbx.addr(), PTMap: pbxMap},
		AudioPT:  waOpusPT,
		Log:      testLog(t),
	})
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	c.relay = r
	t.Cleanup(func() { _ = r.Close() })
	return c
}

func connectCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*peerWait)
	t.Cleanup(cancel)
	return ctx
}

// exchangeThroughMeta checks audio both ways, byte for byte: PBX → relay → leg → pion's track,
// and pion's track → leg → relay → PBX.
func exchangeThroughMeta(t *testing.T, meta *metaPeer, call *dtlsCall, n int) {
	t.Helper()
	got := readPayloads(meta.remoteTrack()) // the relay's maiden packet made the track
	meta.waitConnected()

	for i := range n {
		want := randPayload(60 + i)
		call.pbx.send(call.pbxSide, &rtp.Packet{
			Header:  rtp.Header{PayloadType: pbxOpusPT, SequenceNumber: uint16(100 + i), Timestamp: uint32(960 * i), SSRC: 77},
			Payload: want,
		})
		select {
		case p := <-got:
			require.Equal(t, want, p, "PBX → WhatsApp payload %d", i)
		case <-time.After(recvWait):
			t.Fatalf("PBX → WhatsApp packet %d never reached the Meta peer", i)
		}
	}

	for i := range n {
		want := randPayload(80 + i)
		require.NoError(t, meta.track.WriteRTP(&rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: waOpusPT, SequenceNumber: uint16(5000 + i), Timestamp: uint32(960 * i), SSRC: 0xabc},
			Payload: want,
		}))
		pkt := call.pbx.mustRecv()
		require.Equal(t, want, pkt.Payload, "WhatsApp → PBX payload %d", i)
		require.EqualValues(t, pbxOpusPT, pkt.PayloadType, "payload type remapped for the PBX")
	}
	st := call.relay.Stats()
	require.Zero(t, st.WhatsApp.SRTPAuthFailures)
	require.Zero(t, st.WhatsApp.DroppedMalformed)
}

// TestWebRTCLegAnswersMetaOffer is a user-initiated call: Meta offers (lite, actpass, v4 and v6
// host candidates), wabridge answers active, connects, and the existing Relay carries audio.
func TestWebRTCLegAnswersMetaOffer(t *testing.T) {
	t.Parallel()
	meta := newMetaPeer(t, 0)
	offer := meta.offer()
	_, lite := webrtcAttr(offer, attrICELite)
	require.True(t, lite, "the Meta-like peer offers a=ice-lite")
	setup, _ := offer.Attr(attrSetup)
	require.Equal(t, setupActpass, setup)
	if ipv6LoopbackAvailable() {
		require.Contains(t, strings.Join(candidateValues(offer), "\n"), " ::1 ", "the Meta-like peer offers an IPv6 host candidate too")
	}

	leg := newTestLeg(t, nil)
	ans, err := leg.Answer(offer, metaCodecs())
	require.NoError(t, err)
	checkOurDescription(t, leg, ans, setupActive)
	mid, _ := offer.Attr(attrMid)
	gotMid, _ := ans.Attr(attrMid)
	require.Equal(t, mid, gotMid, "mid mirrored")
	require.Contains(t, ans.SessionExtra, Attribute{Key: attrGroup, Value: "BUNDLE " + mid})
	meta.setAnswer(ans)

	conn, keys, err := leg.Connect(connectCtx(t))
	require.NoError(t, err)
	require.Equal(t, keys.Local.Suite, keys.Remote.Suite)
	require.Equal(t, SuiteAEADAES128GCM, keys.Local.Suite, "pion offers GCM and we prefer it")
	require.NotEqual(t, keys.Local.KeySalt, keys.Remote.KeySalt)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), leg.RemoteAddr().Addr(), "paired with Meta's IPv4 candidate")

	call := startDTLSRelay(t, leg, conn, keys)
	exchangeThroughMeta(t, meta, call, 20)

	// The relay owns the conn; closing it ends the leg and frees the leg's port pair.
	local := leg.local
	require.NoError(t, call.relay.Close())
	_, _, err = leg.Connect(context.Background())
	require.ErrorIs(t, err, net.ErrClosed)
	for _, port := range []uint16{local.Port(), local.Port() + 1} {
		rebound, err := ListenUDP(netip.AddrPortFrom(local.Addr(), port))
		require.NoError(t, err, "port %d still bound after the call", port)
		require.NoError(t, rebound.Close())
	}
}

// TestWebRTCLegOffers is a business-initiated call: we offer actpass and follow the role Meta's
// answer picks.
func TestWebRTCLegOffers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		peerRole   webrtc.DTLSRole
		wantSetup  string
		ourRoleLog dtlsRole
	}{
		{"peer active, we are server", webrtc.DTLSRoleClient, setupActive, dtlsServer},
		{"peer passive, we are client", webrtc.DTLSRoleServer, setupPassive, dtlsClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leg := newTestLeg(t, nil)
			offer, err := leg.Offer(metaCodecs())
			require.NoError(t, err)
			checkOurDescription(t, leg, offer, setupActpass)
			mid, _ := offer.Attr(attrMid)
			require.Equal(t, offerMid, mid)
			require.Contains(t, offer.SessionExtra, Attribute{Key: attrGroup, Value: "BUNDLE " + offerMid})

			meta := newMetaPeer(t, tc.peerRole)
			ans := meta.answer(offer)
			setup, _ := ans.Attr(attrSetup)
			require.Equal(t, tc.wantSetup, setup)
			require.NoError(t, leg.SetAnswer(ans))
			require.Equal(t, tc.ourRoleLog, leg.role)

			conn, keys, err := leg.Connect(connectCtx(t))
			require.NoError(t, err)
			call := startDTLSRelay(t, leg, conn, keys)
			exchangeThroughMeta(t, meta, call, 5)
		})
	}
}

// checkOurDescription checks what Meta needs in our SDP (§4.3–4.5).
func checkOurDescription(t *testing.T, leg *WebRTCLeg, d *Description, setup string) {
	t.Helper()
	// Round trip through the wire format, as the peer will read it.
	d, err := ParseDescription(d.Marshal())
	require.NoError(t, err)
	require.Equal(t, ProtoWebRTC, d.Proto)
	require.True(t, d.RTCPMux)
	require.Equal(t, 20, d.Ptime)
	require.Equal(t, int(leg.local.Port()), d.Port)
	require.Equal(t, metaCodecs(), d.Codecs)
	got, _ := d.Attr(attrSetup)
	require.Equal(t, setup, got)
	fp, _ := d.Attr(attrFingerprint)
	require.Equal(t, leg.cert.Fingerprint(), fp)
	require.Regexp(t, `^sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$`, fp)
	ufrag, _ := d.Attr(attrICEUfrag)
	pwd, _ := d.Attr(attrICEPwd)
	require.GreaterOrEqual(t, len(ufrag), 4, "RFC 8839 §5.4")
	require.GreaterOrEqual(t, len(pwd), 22, "RFC 8839 §5.4")
	_, lite := webrtcAttr(d, attrICELite)
	require.False(t, lite, "we are a full agent")
	_, trickle := d.Attr("ice-options")
	require.False(t, trickle, "no trickle: all candidates are in")
	cands := candidateValues(d)
	require.NotEmpty(t, cands)
	require.Contains(t, cands[0], fmt.Sprintf("%s %d typ host", d.Addr, d.Port), "c= and m= carry the default candidate")
}

func candidateValues(d *Description) []string {
	var out []string
	for _, a := range d.Extra {
		if a.Key == attrCandidate {
			out = append(out, a.Value)
		}
	}
	return out
}

// TestWebRTCLegFingerprintMismatch: a certificate that does not match the peer's a=fingerprint
// fails the handshake at once, not at the timeout.
func TestWebRTCLegFingerprintMismatch(t *testing.T) {
	t.Parallel()
	meta := newMetaPeer(t, 0)
	offer := meta.offer()
	wrong := testCert(t)
	for _, attrs := range [][]Attribute{offer.Extra, offer.SessionExtra} { // pion writes it at session level
		for i := range attrs {
			if attrs[i].Key == attrFingerprint {
				attrs[i].Value = wrong.Fingerprint()
			}
		}
	}
	leg := newTestLeg(t, nil)
	ans, err := leg.Answer(offer, metaCodecs())
	require.NoError(t, err)
	meta.setAnswer(ans)

	start := time.Now()
	conn, keys, err := leg.Connect(connectCtx(t))
	require.Error(t, err)
	require.ErrorIs(t, err, ErrFingerprintMismatch)
	require.ErrorIs(t, err, ErrDTLSFailed)
	require.Nil(t, conn)
	require.Nil(t, keys)
	require.Less(t, time.Since(start), 3*time.Second)
	t.Log(err)
}

// TestWebRTCLegPeerRejectsOurCertificate: the peer's check of our fingerprint fails (our SDP
// reached it altered); its fatal alert ends the handshake with ErrDTLSFailed.
func TestWebRTCLegPeerRejectsOurCertificate(t *testing.T) {
	t.Parallel()
	meta := newMetaPeer(t, 0)
	leg := newTestLeg(t, nil)
	ans, err := leg.Answer(meta.offer(), metaCodecs())
	require.NoError(t, err)
	for i := range ans.Extra {
		if ans.Extra[i].Key == attrFingerprint {
			ans.Extra[i].Value = testCert(t).Fingerprint()
		}
	}
	meta.setAnswer(ans)
	start := time.Now()
	_, _, err = leg.Connect(connectCtx(t))
	require.ErrorIs(t, err, ErrDTLSFailed)
	require.NotErrorIs(t, err, ErrFingerprintMismatch, "our check passed; the peer's failed")
	require.Less(t, time.Since(start), 5*time.Second)
	t.Log(err)
}

// unreachableOffer is a Meta-shaped offer whose candidates go nowhere.
func unreachableOffer(t *testing.T, candidates ...string) *Description {
	t.Helper()
	d := (&litePeer{cert: testCert(t), ufrag: "metaufrag", pwd: "metapasswordmetapassword"}).offer()
	for _, c := range candidates {
		d.Extra = append(d.Extra, Attribute{Key: attrCandidate, Value: c})
	}
	return d
}

func closedUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	port := c.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, c.Close())
	return port
}

// TestWebRTCLegICENeverCompletes: candidates nobody answers end Connect with ErrICEFailed at
// ConnectTimeout, and the leg releases everything (goleak in TestMain, and the port rebinds).
func TestWebRTCLegICENeverCompletes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		candidates []string
	}{
		{"closed port", []string{fmt.Sprintf("1 1 udp 2130706431 127.0.0.1 %d typ host", closedUDPPort(t))}},
		// TEST-NET-2 (RFC 5737): routed nowhere; from a loopback socket the send itself fails.
		{"unroutable address", []string{"1 1 udp 2130706431 198.51.100.7 3480 typ host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const timeout = 1500 * time.Millisecond
			ep := loopbackEndpoint(t)
			local := ep.RTP.LocalAddr()
			leg := newTestLeg(t, func(c *WebRTCConfig) { c.Endpoint, c.ConnectTimeout = ep, timeout })
			_, err := leg.Answer(unreachableOffer(t, tc.candidates...), metaCodecs())
			require.NoError(t, err)

			start := time.Now()
			_, _, err = leg.Connect(context.Background())
			took := time.Since(start)
			require.ErrorIs(t, err, ErrICEFailed)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.InDelta(t, timeout.Seconds(), took.Seconds(), 0.5, "fails at ConnectTimeout")
			t.Log(err)

			// Connect closed the leg: the socket is free again.
			require.NoError(t, leg.Close())
			rebound, err := ListenUDP(local)
			require.NoError(t, err, "the leg's port must be released")
			require.NoError(t, rebound.Close())
		})
	}
}

// TestWebRTCLegNoCandidateOfOurFamily: candidates our socket cannot reach fail the answer at
// once (SIP 488), rather than the call at the connect timeout.
func TestWebRTCLegNoCandidateOfOurFamily(t *testing.T) {
	t.Parallel()
	offer := unreachableOffer(t, "1 1 udp 2130706431 ::1 3480 typ host")
	offer.Addr = netip.IPv6Unspecified()
	leg := newTestLeg(t, nil)
	_, err := leg.Answer(offer, metaCodecs())
	require.ErrorIs(t, err, ErrMalformedSDP)
	require.ErrorContains(t, err, "address family")

	leg = newTestLeg(t, nil)
	_, err = leg.Offer(metaCodecs())
	require.NoError(t, err)
	ans := unreachableOffer(t, "1 1 udp 2130706431 ::1 3480 typ host")
	ans.Addr = netip.IPv6Unspecified()
	setAttr(ans, attrSetup, setupActive)
	setAttr(ans, attrMid, offerMid)
	require.ErrorIs(t, leg.SetAnswer(ans), ErrMalformedSDP)
}

// TestWebRTCLegConnectInterrupted: the caller's context and Close both end a Connect at once,
// with the caller's error rather than ErrICEFailed.
func TestWebRTCLegConnectInterrupted(t *testing.T) {
	t.Parallel()
	port := closedUDPPort(t)
	cand := fmt.Sprintf("1 1 udp 2130706431 127.0.0.1 %d typ host", port)

	t.Run("context canceled", func(t *testing.T) {
		t.Parallel()
		leg := newTestLeg(t, nil)
		_, err := leg.Answer(unreachableOffer(t, cand), metaCodecs())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		_, _, err = leg.Connect(ctx)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, ErrICEFailed)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("leg closed", func(t *testing.T) {
		t.Parallel()
		leg := newTestLeg(t, nil)
		_, err := leg.Answer(unreachableOffer(t, cand), metaCodecs())
		require.NoError(t, err)
		time.AfterFunc(200*time.Millisecond, func() { _ = leg.Close() })
		start := time.Now()
		_, _, err = leg.Connect(context.Background())
		require.ErrorIs(t, err, net.ErrClosed)
		require.Less(t, time.Since(start), time.Second)
	})
}

// TestWebRTCLegPeerClosesDTLS: Meta ending the DTLS session mid-call (close_notify) makes the
// PacketConn's reads fail with ErrDTLSClosed, which stops the relay, which ends the call.
func TestWebRTCLegPeerClosesDTLS(t *testing.T) {
	t.Parallel()
	meta := newMetaPeer(t, 0)
	leg := newTestLeg(t, nil)
	ans, err := leg.Answer(meta.offer(), metaCodecs())
	require.NoError(t, err)
	meta.setAnswer(ans)
	conn, keys, err := leg.Connect(connectCtx(t))
	require.NoError(t, err)
	call := startDTLSRelay(t, leg, conn, keys)
	meta.remoteTrack()
	meta.waitConnected()

	require.NoError(t, meta.pc.Close()) // pion sends close_notify (RFC 5246 §7.2.1)
	select {
	case <-call.relay.Done():
	case <-time.After(recvWait):
		t.Fatal("relay still running after the peer closed DTLS")
	}
	require.ErrorIs(t, call.relay.Err(), ErrDTLSClosed)
	t.Log(call.relay.Err())
}

// TestWebRTCLegPeerClosesDTLSConnRead checks the PacketConn contract directly, without a relay:
// a blocked ReadFrom returns ErrDTLSClosed, and so does every later one.
func TestWebRTCLegPeerClosesDTLSConnRead(t *testing.T) {
	t.Parallel()
	peer := newLitePeer(t, testCert(t))
	leg := newTestLeg(t, nil)
	conn, _ := connectLeg(t, leg, peer)

	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, maxDatagram+1)
		_, _, err := conn.ReadFrom(buf)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, peer.dc.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, ErrDTLSClosed)
		require.False(t, isTimeout(err), "a timeout would make the relay keep reading")
	case <-time.After(recvWait):
		t.Fatal("ReadFrom still blocked after the peer closed DTLS")
	}
	_, _, err := conn.ReadFrom(make([]byte, 100))
	require.ErrorIs(t, err, ErrDTLSClosed)
}

// TestWebRTCConnReadDeadline: the relay stops its readers with a past deadline; it must unblock
// ReadFrom with a timeout, as net.Conn does.
func TestWebRTCConnReadDeadline(t *testing.T) {
	t.Parallel()
	peer := newLitePeer(t, testCert(t))
	leg := newTestLeg(t, nil)
	conn, _ := connectLeg(t, leg, peer)

	errc := make(chan error, 1)
	go func() {
		_, _, err := conn.ReadFrom(make([]byte, 1500))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, conn.SetReadDeadline(time.Unix(1, 0)))
	select {
	case err := <-errc:
		require.True(t, isTimeout(err), "got %v", err)
	case <-time.After(recvWait):
		t.Fatal("past deadline did not unblock ReadFrom")
	}
	require.NoError(t, conn.SetReadDeadline(time.Time{}))

	// Media both ways on the raw conns; DTLS is not mistaken for media.
	pkt := []byte{0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xde, 0xad}
	_, err := peer.conn.WriteTo(pkt, netip.AddrPort{})
	require.NoError(t, err)
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFrom(buf)
	require.NoError(t, err)
	require.Equal(t, pkt, buf[:n])
	require.Equal(t, leg.RemoteAddr(), from)
	require.Equal(t, leg.local, conn.LocalAddr())
}

// TestNewWebRTCLegConfig covers the configuration checks and candidate rewriting.
func TestNewWebRTCLegConfig(t *testing.T) {
	t.Parallel()
	t.Run("public IP replaces the socket address", func(t *testing.T) {
		t.Parallel()
		pub := netip.MustParseAddr("203.0.113.7")
		leg := newTestLeg(t, func(c *WebRTCConfig) {
			c.PublicIPs = []netip.Addr{netip.MustParseAddr("2001:db8::7"), pub} // the IPv6 one cannot apply to a v4 socket
		})
		d, err := leg.Offer(metaCodecs())
		require.NoError(t, err)
		require.Equal(t, pub, d.Addr)
		cands := candidateValues(d)
		require.Len(t, cands, 1)
		require.Contains(t, cands[0], fmt.Sprintf("203.0.113.7 %d typ host", leg.local.Port()))
	})
	t.Run("wildcard bind with a public IP connects", func(t *testing.T) {
		t.Parallel()
		// A daemon bound to 0.0.0.0: pion lists every interface address, the rewrite turns them
		// all into the public IP, and the duplicates collapse into one candidate.
		rtpConn, err := ListenUDP(netip.MustParseAddrPort("0.0.0.0:0"))
		require.NoError(t, err)
		leg := newTestLeg(t, func(c *WebRTCConfig) {
			c.Endpoint = &Endpoint{RTP: rtpConn}
			c.PublicIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		})
		peer := newLitePeer(t, testCert(t))
		ans, err := leg.Answer(peer.offer(), metaCodecs())
		require.NoError(t, err)
		require.Len(t, candidateValues(ans), 1)
		require.Equal(t, netip.MustParseAddr("127.0.0.1"), ans.Addr)
		ctx, cancel := context.WithTimeout(context.Background(), peerWait)
		defer cancel()
		peerErr := make(chan error, 1)
		go func() { peerErr <- peer.connect(ctx, ans) }()
		_, _, err = leg.Connect(ctx)
		require.NoError(t, err)
		require.NoError(t, <-peerErr)
	})
	t.Run("public IPs of the other family only", func(t *testing.T) {
		t.Parallel()
		ep := loopbackEndpoint(t)
		_, err := NewWebRTCLeg(WebRTCConfig{Endpoint: ep, Certificate: testCert(t),
			PublicIPs: []netip.Addr{netip.MustParseAddr("2001:db8::7")}, Log: testLog(t)})
		require.ErrorContains(t, err, "family")
		requireClosed(t, ep)
	})
	t.Run("no certificate", func(t *testing.T) {
		t.Parallel()
		ep := loopbackEndpoint(t)
		_, err := NewWebRTCLeg(WebRTCConfig{Endpoint: ep})
		require.Error(t, err)
		requireClosed(t, ep)
	})
	t.Run("not a UDP socket", func(t *testing.T) {
		t.Parallel()
		ep := &Endpoint{RTP: newDiscardConn(4000)}
		_, err := NewWebRTCLeg(WebRTCConfig{Endpoint: ep, Certificate: testCert(t)})
		require.ErrorContains(t, err, "*UDPConn")
	})
	t.Run("ipv6 socket", func(t *testing.T) {
		t.Parallel()
		if !ipv6LoopbackAvailable() {
			t.Skip("no ::1")
		}
		rtpConn, err := ListenUDP(netip.MustParseAddrPort("[::1]:0"))
		require.NoError(t, err)
		leg := newTestLeg(t, func(c *WebRTCConfig) { c.Endpoint = &Endpoint{RTP: rtpConn} })
		d, err := leg.Offer(metaCodecs())
		require.NoError(t, err)
		require.Equal(t, netip.IPv6Loopback(), d.Addr)
		require.Contains(t, string(d.Marshal()), "IN IP6 ::1")
	})
	t.Run("close is idempotent", func(t *testing.T) {
		t.Parallel()
		leg := newTestLeg(t, nil)
		require.NoError(t, leg.Close())
		require.NoError(t, leg.Close())
		_, _, err := leg.Connect(context.Background())
		require.ErrorIs(t, err, net.ErrClosed)
	})
}

// requireClosed checks that the endpoint's sockets were closed.
func requireClosed(t *testing.T, ep *Endpoint) {
	t.Helper()
	for _, c := range []PacketConn{ep.RTP, ep.RTCP} {
		_, err := c.WriteTo([]byte{0}, netip.MustParseAddrPort("127.0.0.1:9"))
		require.True(t, errors.Is(err, net.ErrClosed), "socket %s still open", c.LocalAddr())
	}
}

// TestWebRTCLegStateErrors: the calls must come in order.
func TestWebRTCLegStateErrors(t *testing.T) {
	t.Parallel()
	leg := newTestLeg(t, nil)
	_, _, err := leg.Connect(context.Background())
	require.ErrorContains(t, err, "no remote description")
	require.Error(t, leg.SetAnswer(unreachableOffer(t)), "no offer outstanding")
	_, err = leg.Offer(metaCodecs())
	require.NoError(t, err)
	_, err = leg.Offer(metaCodecs())
	require.Error(t, err)
	_, err = leg.Answer(unreachableOffer(t), metaCodecs())
	require.Error(t, err)
	assert.Equal(t, legOffered, leg.state)
}
