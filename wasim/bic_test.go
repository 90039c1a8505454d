package wasim

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
)

// A business-initiated call end to end: 407, authenticated INVITE, 200 with Meta's headers,
// ACK along the route set, SRTP both ways (echo and DTMF), BYE from the business.
func TestBusinessInitiatedCall(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{DigestMD5, DigestSHA256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := newTestEdge(t, EdgeConfig{DigestAlgorithm: alg})
			b := newBusiness(t, e)
			o := newOffer(t, media.ProtoRTPSAVP)

			sess := b.call(t, ctx, o.body)
			res := sess.InviteResponse
			port := e.Addr().Port()
			assert.Equal(t, []string{
				"<sip:127.0.0.1:" + itoa(port) + ";transport=tls;lr;x-fb=proxy>",
				"<sip:127.0.0.1:" + itoa(port) + ";transport=tls;lr>",
			}, headerValues(res, "Record-Route"))
			assert.Equal(t, "<sip:"+testUser+"@127.0.0.1:"+itoa(port)+";transport=tls;ob>;isfocus", res.Contact().Value())
			assert.Equal(t, MetaDomain, res.GetHeader("X-FB-External-Domain").Value())
			assert.Equal(t, allowMethods, res.GetHeader("Allow").Value())
			ans := o.connect(t, res.Body())
			assert.Equal(t, media.ProtoRTPSAVP, ans.Proto)
			assert.True(t, ans.RTCPMux)
			require.Len(t, ans.Codecs, 2, "Meta answers Opus and telephone-event only")
			assert.Equal(t, uint8(111), ans.Codecs[0].PT)
			assert.Equal(t, uint8(101), ans.Codecs[1].PT)
			assert.Equal(t, media.SuiteAES128SHA1_80, ans.Crypto[0].Suite)
			require.NoError(t, sess.Ack(ctx))

			call, err := e.NextCall(ctx)
			require.NoError(t, err)
			assert.Equal(t, BusinessInitiated, call.Direction)
			assert.Equal(t, testBusiness, call.Business)
			assert.Equal(t, testUser, call.User)
			assert.Equal(t, testHostname, call.InviteRequest.From().Address.Host)
			<-call.Answered()
			call.Media.Echo(true)

			// Meta waits for the business's maiden packet before sending anything.
			sent := payloads(10)
			require.NoError(t, o.peer.Send(ctx, sent, 111, 5*time.Millisecond))
			waitFor(t, "echo", func() bool { return len(o.peer.Received()) >= len(sent) })
			got := o.peer.Received()
			for i := range sent {
				assert.True(t, bytes.Equal(sent[i], got[i].Payload), "echoed payload %d", i)
				assert.Equal(t, call.Media.SSRC(), got[i].SSRC)
				if i > 0 {
					assert.Equal(t, got[i-1].Seq+1, got[i].Seq)
				}
			}
			edgeGot := call.Media.Received()
			require.Len(t, edgeGot, len(sent))
			for i := range sent {
				assert.Equal(t, sent[i], edgeGot[i].Payload)
			}
			assert.False(t, call.Media.FirstPacketAt().IsZero())

			require.NoError(t, call.Media.SendDTMF(ctx, '5', 101, 60*time.Millisecond))
			require.NoError(t, call.Media.SendDTMF(ctx, '#', 101, 60*time.Millisecond))
			waitFor(t, "DTMF", func() bool { return o.peer.ReceivedDTMF() == "5#" })
			require.NoError(t, o.peer.SendDTMF(ctx, '9', 101, 100*time.Millisecond))
			waitFor(t, "DTMF at the edge", func() bool { return call.Media.ReceivedDTMF() == "9" })

			require.NoError(t, sess.Bye(ctx))
			select {
			case <-call.Done():
			case <-ctx.Done():
				t.Fatal("call did not end")
			}
			assert.Equal(t, EndedRemoteBye, call.EndedBy())
			require.NotNil(t, call.ByeRequest())
			assert.Empty(t, call.Violations())
			assert.Empty(t, e.Violations())
			assert.Zero(t, call.Media.Stats().AuthFailures)
		})
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// The edge hangs up like Meta: BYE with x-wa-meta-wacid and x-wa-meta-call-duration, sent on
// the connection the business opened.
func TestBusinessInitiatedEdgeHangup(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{})
	b := newBusiness(t, e)
	o := newOffer(t, media.ProtoRTPSAVP)
	sess := b.call(t, ctx, o.body)
	require.NoError(t, sess.Ack(ctx))
	call, err := e.NextCall(ctx)
	require.NoError(t, err)

	require.NoError(t, call.Hangup(ctx))
	select {
	case bye := <-b.byes:
		assert.Equal(t, call.WACID, bye.GetHeader("x-wa-meta-wacid").Value())
		assert.NotNil(t, bye.GetHeader("x-wa-meta-call-duration"))
		assert.Empty(t, bye.GetHeaders("Route"))
	case <-ctx.Done():
		t.Fatal("no BYE at the business")
	}
	assert.Equal(t, EndedLocalBye, call.EndedBy())
}

// Every way Meta rejects a business-initiated INVITE (whatsapp-calling.md §5.3).
func TestBusinessInitiatedRejections(t *testing.T) {
	t.Parallel()
	ipURI := sip.Uri{Scheme: "sip", User: testUser, Host: "127.0.0.1", UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}
	tests := []struct {
		name     string
		ruri     sip.Uri
		fromUser string
		fromHost string
		password string
		proto    string
		answer   Answer
		code     int
		warning  string
	}{
		{name: "wrong password", password: "nope", code: 403, warning: "Authentication failed"},
		{name: "wrong From host", fromHost: "evil.example.org", code: 403,
			warning: "SIP server evil.example.org from INVITE does not match any SIP server configured for phone number id 1015550001111"},
		{name: "unknown business", fromUser: "+15550009999", code: 400, warning: "Asset not found, invalid business phone number"},
		{name: "IP in Request-URI", ruri: ipURI, code: 404},
		{name: "RTP/AVP offer", proto: media.ProtoRTPAVP, code: 488},
		// media.OfferCrypto offers AES_256_CM_HMAC_SHA1_80 but not _32.
		{name: "no acceptable suite", answer: Answer{Suites: []string{media.SuiteAES256SHA1_32}}, code: 488},
		{name: "declined, From parent domain accepted", fromHost: "example.com",
			answer: Answer{Code: 486, Warning: "User declined"}, code: 486, warning: "User declined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			answer := tc.answer
			e := newTestEdge(t, EdgeConfig{OnInvite: func(InviteInfo) Answer { return answer }})
			b := newBusiness(t, e)
			proto := tc.proto
			if proto == "" {
				proto = media.ProtoRTPSAVP
			}
			o := newOffer(t, proto)
			ruri := tc.ruri
			if ruri.Host == "" {
				ruri = metaURI(testUser)
			}
			fromHost := tc.fromHost
			if fromHost == "" {
				fromHost = testHostname
			}
			req := b.invite(ruri, fromHost, o.body)
			if tc.fromUser != "" {
				req.From().Address.User = tc.fromUser
			}
			pw := tc.password
			if pw == "" {
				pw = testPassword
			}
			res := b.final(t, ctx, req, pw)
			assert.Equal(t, tc.code, res.StatusCode, res.StartLine())
			if tc.warning != "" {
				assert.Equal(t, `399 wa.meta.vc "`+tc.warning+`"`, res.GetHeader("Warning").Value())
			}
		})
	}
}

func TestBusinessInitiatedReInviteGets500(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{})
	b := newBusiness(t, e)
	o := newOffer(t, media.ProtoRTPSAVP)
	sess := b.call(t, ctx, o.body)
	require.NoError(t, sess.Ack(ctx))
	call, err := e.NextCall(ctx)
	require.NoError(t, err)

	reinvite := sip.NewRequest(sip.INVITE, sess.InviteResponse.Contact().Address)
	reinvite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	reinvite.SetBody(o.body)
	res, err := sess.Do(ctx, reinvite)
	require.NoError(t, err)
	assert.Equal(t, 500, res.StatusCode)
	assert.NotNil(t, res.GetHeader("Warning"))
	require.NotEmpty(t, call.Violations())
	assert.Contains(t, call.Violations()[0], "re-INVITE")

	update := sip.NewRequest(sip.UPDATE, sess.InviteResponse.Contact().Address)
	res, err = sess.Do(ctx, update)
	require.NoError(t, err)
	assert.Equal(t, 500, res.StatusCode)
	assert.Len(t, call.Violations(), 2)
}

func TestRegisterForbiddenOptionsOK(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{})
	b := newBusiness(t, e)

	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: MetaDomain, UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}})
	reg.SetDestination(e.Addr().String())
	res, err := b.cli.Do(ctx, reg, sipgo.ClientRequestRegisterBuild)
	require.NoError(t, err)
	assert.Equal(t, 403, res.StatusCode)
	require.Len(t, e.Violations(), 1)
	assert.Contains(t, e.Violations()[0], "REGISTER")

	opt := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: MetaDomain, UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}})
	opt.SetDestination(e.Addr().String())
	res, err = b.cli.Do(ctx, opt)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, allowMethods, res.GetHeader("Allow").Value())
}

func TestBusinessInitiatedCancel(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{OnInvite: func(InviteInfo) Answer { return Answer{RingFor: time.Minute} }})
	b := newBusiness(t, e)
	o := newOffer(t, media.ProtoRTPSAVP)

	// Built by hand: sipgo's dialog CANCEL follows the latest provisional's Record-Route, and
	// sipgo hands responses up in separate goroutines, so a late 100 can hide the 180's.
	req := b.invite(metaURI(testUser), testHostname, o.body)
	res, err := b.cli.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, sip.StatusProxyAuthRequired, res.StatusCode)
	tx, err := b.cli.TransactionDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: testBusiness[1:], Password: testPassword})
	require.NoError(t, err)
	defer tx.Terminate()
	for res = recv(t, ctx, tx.Responses(), "180"); res.StatusCode != sip.StatusRinging; {
		res = recv(t, ctx, tx.Responses(), "180")
	}

	cancel := sip.NewRequest(sip.CANCEL, req.Recipient)
	cancel.AppendHeader(sip.HeaderClone(req.Via()))
	cancel.AppendHeader(sip.HeaderClone(req.From()))
	cancel.AppendHeader(sip.HeaderClone(req.To()))
	cancel.AppendHeader(sip.HeaderClone(req.CallID()))
	cancel.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.CANCEL})
	cancel.SetDestination(e.Addr().String())
	cres, err := b.cli.Do(ctx, cancel)
	require.NoError(t, err)
	assert.Equal(t, 200, cres.StatusCode)
	for res.IsProvisional() {
		res = recv(t, ctx, tx.Responses(), "487")
	}
	assert.Equal(t, 487, res.StatusCode)

	call, err := e.NextCall(ctx)
	require.NoError(t, err)
	recv(t, ctx, call.Done(), "call end")
	assert.Equal(t, EndedCancel, call.EndedBy())
	assert.Empty(t, call.Violations())
}

// Meta's TLS listener refuses ALPN "sip" with no_application_protocol.
func TestALPNSipRejected(t *testing.T) {
	t.Parallel()
	e := newTestEdge(t, EdgeConfig{})
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(e.CAPEM()))
	conf := &tls.Config{RootCAs: pool, ServerName: MetaDomain, NextProtos: []string{"sip"}}
	conn, err := tls.Dial("tcp", e.Addr().String(), conf)
	if err == nil {
		conn.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no application protocol")
	require.Len(t, e.Violations(), 1)
	assert.Contains(t, e.Violations()[0], "ALPN")

	conf.NextProtos = nil
	conn, err = tls.Dial("tcp", e.Addr().String(), conf)
	require.NoError(t, err)
	conn.Close()
}

func TestNextCallAfterClose(t *testing.T) {
	t.Parallel()
	e := newTestEdge(t, EdgeConfig{})
	require.NoError(t, e.Close())
	_, err := e.NextCall(context.Background())
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.Canceled))
}

// wabridge must route in-dialog requests through Meta's proxies; a BYE without the route set
// is answered (so the test ends) but recorded.
func TestBusinessInitiatedByeWithoutRouteSet(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{})
	b := newBusiness(t, e)
	o := newOffer(t, media.ProtoRTPSAVP)
	sess := b.call(t, ctx, o.body)
	require.NoError(t, sess.Ack(ctx))
	call, err := e.NextCall(ctx)
	require.NoError(t, err)

	inv, res := sess.InviteRequest, sess.InviteResponse
	bye := sip.NewRequest(sip.BYE, res.Contact().Address)
	bye.AppendHeader(sip.HeaderClone(inv.From()))
	bye.AppendHeader(sip.HeaderClone(res.To()))
	bye.AppendHeader(sip.HeaderClone(inv.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo + 1, MethodName: sip.BYE})
	bye.SetDestination(e.Addr().String())
	byeRes, err := b.cli.Do(ctx, bye)
	require.NoError(t, err)
	assert.Equal(t, 200, byeRes.StatusCode)
	recv(t, ctx, call.Done(), "call end")
	require.Len(t, call.Violations(), 1)
	assert.Contains(t, call.Violations()[0], "BYE without Meta's route set")
}

func TestNewEdgeValidation(t *testing.T) {
	t.Parallel()
	_, err := NewEdge(EdgeConfig{Numbers: map[string]Number{"15550001111": {Hostname: testHostname}}})
	assert.Error(t, err, "number without '+'")
	_, err = NewEdge(EdgeConfig{Numbers: map[string]Number{testBusiness: {}}})
	assert.Error(t, err, "number without hostname")
	_, err = NewEdge(EdgeConfig{DigestAlgorithm: "SHA-512"})
	assert.Error(t, err)
	e, err := NewEdge(EdgeConfig{})
	require.NoError(t, err)
	block, _ := pemDecode(e.CAPEM())
	cert, err := x509.ParseCertificate(block)
	require.NoError(t, err)
	assert.NoError(t, cert.VerifyHostname(MetaDomain))
	assert.NoError(t, cert.VerifyHostname("127.0.0.1"))
}

func pemDecode(b []byte) ([]byte, []byte) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, rest
	}
	return block.Bytes, rest
}
