package wasim

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
	wsip "github.com/wabridge/wabridge/sip"
)

// pbxMode selects how the test UAS (playing wabridge) answers the edge's INVITE.
type pbxMode struct {
	reject       int  // reject the authenticated INVITE with this code
	ring         bool // 180 and never answer
	dropRR       bool // 200 OK without the Record-Route set
	sessionTimer bool // 200 OK asks for session timers
	// webrtc answers with a full-ICE pion PeerConnection (a DTLS number's offer).
	webrtc *bizOpts
	// editAnswer rewrites the SDP answer before it is sent.
	editAnswer func([]byte) []byte
}

const pbxTag = "pbx-tag-1"

// testPBX is a tiny sipgo UAS with its own TLS certificate for sip.example.com: it
// challenges with 407 (MD5, qop=auth), checks the digest and answers per mode.
type testPBX struct {
	t     *testing.T
	mode  pbxMode
	ua    *sipgo.UserAgent
	cli   *sipgo.Client
	addr  netip.AddrPort
	roots *x509.CertPool
	peer  *Peer
	biz   *bizPeer // media of a WebRTC answer (mode.webrtc)
	nonce string

	invites chan *sip.Request // authenticated INVITEs
	acks    chan *sip.Request
	byes    chan *sip.Request
	ringing chan struct{}

	mu   sync.Mutex
	last *sip.Request
}

func newTestPBX(t *testing.T, mode pbxMode) *testPBX {
	t.Helper()
	certPEM, keyPEM, err := wsip.GenerateSelfSigned(testHostname)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(certPEM))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)

	ua, err := sipgo.NewUA(sipgo.WithUserAgent("wabridge-test-pbx"), sipgo.WithUserAgentHostname(testHostname))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	peer, err := NewPeer(PeerConfig{Log: testLog(t), SendFirst: true})
	require.NoError(t, err)
	p := &testPBX{
		t: t, mode: mode, ua: ua, cli: cli, addr: netip.MustParseAddrPort(ln.Addr().String()), roots: roots, peer: peer,
		nonce:   randomHex(8),
		invites: make(chan *sip.Request, 4), acks: make(chan *sip.Request, 4), byes: make(chan *sip.Request, 4),
		ringing: make(chan struct{}, 1),
	}
	if mode.webrtc != nil {
		p.biz = newBizPeer(t, *mode.webrtc)
	}
	srv.OnInvite(p.onInvite)
	srv.OnAck(func(req *sip.Request, _ sip.ServerTransaction) {
		if tag, _ := req.To().Params.Get("tag"); tag == pbxTag { // not the ACK of the 407
			p.acks <- req
		}
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		p.byes <- req
	})
	go func() { _ = srv.ServeTLS(ln) }()
	t.Cleanup(func() {
		_ = ln.Close()
		_ = ua.Close()
		_ = peer.Close()
	})
	return p
}

func (p *testPBX) target(t *testing.T) DialOptions {
	return DialOptions{Target: p.addr, RootCAs: p.roots, Business: testBusiness, User: testUser}
}

func (p *testPBX) challenge() string {
	ch := digest.Challenge{Realm: testHostname, Nonce: p.nonce, Algorithm: "MD5", QOP: []string{"auth"}}
	return ch.String()
}

func (p *testPBX) authorized(req *sip.Request) bool {
	h := req.GetHeader("Proxy-Authorization")
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil || cred.Username != testBusiness[1:] || cred.Nonce != p.nonce {
		return false
	}
	want, err := digest.Digest(&digest.Challenge{Realm: testHostname, Nonce: p.nonce, Algorithm: "MD5", QOP: []string{"auth"}},
		digest.Options{Method: "INVITE", URI: cred.URI, Username: cred.Username, Password: testPassword, Cnonce: cred.Cnonce, Count: cred.Nc})
	return err == nil && subtle.ConstantTimeCompare([]byte(want.Response), []byte(cred.Response)) == 1
}

func (p *testPBX) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.GetHeader("Proxy-Authorization") == nil {
		res := sip.NewResponseFromRequest(req, sip.StatusProxyAuthRequired, "Proxy Authentication Required", nil)
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", p.challenge()))
		_ = tx.Respond(res)
		return
	}
	if !p.authorized(req) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
		return
	}
	p.mu.Lock()
	p.last = req
	p.mu.Unlock()
	p.invites <- req
	if p.mode.reject != 0 {
		_ = tx.Respond(sip.NewResponseFromRequest(req, p.mode.reject, "Busy Here", nil))
		return
	}
	local := req.Clone()
	local.To().Params.Add("tag", pbxTag)
	if p.mode.ring {
		_ = tx.Respond(sip.NewResponseFromRequest(local, sip.StatusRinging, "Ringing", nil))
		p.ringing <- struct{}{}
		<-tx.Done() // CANCEL: sipgo answers 487
		return
	}
	if p.mode.webrtc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		answer, err := p.biz.tryAnswer(ctx, req.Body())
		if err != nil {
			p.t.Errorf("business WebRTC answer: %v", err)
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
		p.respondAnswer(tx, local, answer)
		return
	}
	offer, err := media.ParseDescription(req.Body())
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
		return
	}
	remote, localKey, err := media.AnswerCrypto(offer.Crypto)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
		return
	}
	opus, _ := offer.FindCodec(media.CodecOpus, 48000)
	dtmf, _ := offer.DTMF()
	ans := media.Description{
		Addr: p.peer.LocalAddr().Addr(), Port: int(p.peer.LocalAddr().Port()), RTCPMux: true,
		Proto: media.ProtoRTPSAVP, Codecs: []media.Codec{opus, dtmf}, Crypto: []media.Crypto{localKey}, Ptime: 20,
	}
	_ = p.peer.Connect(Link{Remote: offer.RTPAddr(), LocalKey: localKey, RemoteKey: remote, Codecs: ans.Codecs})
	p.respondAnswer(tx, local, ans.Marshal())
}

// respondAnswer sends the 200 OK with body, shaped per mode.
func (p *testPBX) respondAnswer(tx sip.ServerTransaction, local *sip.Request, body []byte) {
	if p.mode.editAnswer != nil {
		body = p.mode.editAnswer(body)
	}
	res := sip.NewSDPResponseFromRequest(local, body)
	if p.mode.dropRR {
		for res.RemoveHeader("Record-Route") {
		}
	}
	if p.mode.sessionTimer {
		res.AppendHeader(sip.NewHeader("Session-Expires", "1800;refresher=uas"))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
	}
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: testBusiness, Host: "127.0.0.1",
		Port: int(p.addr.Port()), UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}})
	_ = tx.Respond(res)
}

// bye hangs up from the PBX side over the connection the edge opened, with the route set.
func (p *testPBX) bye(ctx context.Context) (*sip.Response, error) {
	p.mu.Lock()
	inv := p.last
	p.mu.Unlock()
	bye := sip.NewRequest(sip.BYE, inv.Contact().Address)
	from := inv.To().AsFrom()
	from.Params.Add("tag", pbxTag)
	to := inv.From().AsTo()
	bye.AppendHeader(&from)
	bye.AppendHeader(&to)
	bye.AppendHeader(sip.HeaderClone(inv.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.BYE})
	for _, rr := range inv.GetHeaders("Record-Route") {
		bye.AppendHeader(sip.NewHeader("Route", rr.Value()))
	}
	bye.SetTransport("TLS")
	bye.SetDestination(inv.Source()) // the connection the edge opened
	return p.cli.Do(ctx, bye)
}

func recv[T any](t *testing.T, ctx context.Context, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

func TestDialUserInitiatedCall(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newTestEdge(t, EdgeConfig{})
	pbx := newTestPBX(t, pbxMode{})

	opts := pbx.target(t)
	opts.CTAPayload = "cta-42"
	opts.UserParams = map[string]string{"tgrp": "wacall", "trunk-context": "byoc.example.com"}
	call, err := e.Dial(ctx, opts)
	require.NoError(t, err)
	require.NotNil(t, call)
	assert.Equal(t, UserInitiated, call.Direction)

	inv := recv(t, ctx, pbx.invites, "INVITE")
	port := itoa(e.Addr().Port())
	assert.Equal(t, "sip:"+testBusiness+";tgrp=wacall;trunk-context=byoc.example.com@"+testHostname+";transport=tls", inv.Recipient.String())
	assert.Equal(t, `"447700900123" <sip:`+testUser+`@wa.meta.vc>`, strings.Split(inv.From().Value(), ";tag=")[0])
	assert.Equal(t, "<sip:"+testUser+"@127.0.0.1:"+port+";transport=tls;ob>;isfocus", inv.Contact().Value())
	assert.Equal(t, "outgoing:"+call.WACID, inv.CallID().Value())
	assert.True(t, strings.HasPrefix(call.WACID, "wacid."))
	assert.Equal(t, call.WACID, inv.GetHeader("x-wa-meta-wacid").Value())
	assert.Equal(t, "cta-42", inv.GetHeader("x-wa-meta-cta-payload").Value())
	assert.Nil(t, inv.GetHeader("x-wa-meta-deeplink-payload"))
	assert.Equal(t, MetaDomain, inv.GetHeader("X-FB-External-Domain").Value())
	assert.Equal(t, "Facebook SipGateway", inv.GetHeader("User-Agent").Value())
	assert.Equal(t, []string{
		"<sip:127.0.0.1:" + port + ";transport=tls;lr>",
		"<sip:127.0.0.1:" + port + ";transport=tls;lr;x-fb=proxy>",
	}, headerValues(inv, "Record-Route"))
	assert.Equal(t, "127.0.0.1:"+port, inv.Via().SentBy())
	body := string(inv.Body())
	assert.Contains(t, body, " RTP/SAVP 111 126\r\n")
	assert.Contains(t, body, "a=fmtp:111 "+opusFmtp+"\r\n")
	assert.Contains(t, body, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")
	assert.Contains(t, body, "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:")
	assert.Contains(t, body, "cname:WhatsAppAudioStream1\r\n")
	assert.Equal(t, call.InviteRequest.CallID().Value(), inv.CallID().Value())

	ack := recv(t, ctx, pbx.acks, "ACK")
	assert.Equal(t, inv.CSeq().SeqNo, ack.CSeq().SeqNo)
	assert.Empty(t, ack.GetHeaders("Route"))

	// Media: the business (PBX side) sends first, the edge echoes.
	call.Media.Echo(true)
	sent := payloads(5)
	require.NoError(t, pbx.peer.Send(ctx, sent, 111, 5*time.Millisecond))
	waitFor(t, "echo", func() bool { return len(pbx.peer.Received()) == len(sent) })
	for i, p := range pbx.peer.Received() {
		assert.Equal(t, sent[i], p.Payload)
	}

	// wabridge hangs up on the connection Meta opened.
	res, err := pbx.bye(ctx)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	recv(t, ctx, call.Done(), "call end")
	assert.Equal(t, EndedRemoteBye, call.EndedBy())
	assert.Empty(t, call.Violations())

	// A second call reuses the connection; this time the edge hangs up.
	call2, err := e.Dial(ctx, pbx.target(t))
	require.NoError(t, err)
	inv2 := recv(t, ctx, pbx.invites, "second INVITE")
	assert.Equal(t, inv.Source(), inv2.Source(), "connection reused")
	recv(t, ctx, pbx.acks, "second ACK")
	require.NoError(t, call2.Hangup(ctx))
	bye := recv(t, ctx, pbx.byes, "BYE")
	assert.Equal(t, call2.WACID, bye.GetHeader("x-wa-meta-wacid").Value())
	assert.NotNil(t, bye.GetHeader("x-wa-meta-call-duration"))
	assert.Equal(t, EndedLocalBye, call2.EndedBy())
	assert.Empty(t, e.Violations())
}

func TestDialStrict200(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mode      pbxMode
		violation string
	}{
		{"Record-Route dropped", pbxMode{dropRR: true}, "Record-Route not preserved"},
		{"session timer", pbxMode{sessionTimer: true}, "session timer requested"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := newTestEdge(t, EdgeConfig{})
			pbx := newTestPBX(t, tc.mode)
			call, err := e.Dial(ctx, pbx.target(t))
			require.ErrorIs(t, err, ErrViolation)
			require.NotNil(t, call)
			require.NotEmpty(t, call.Violations())
			assert.Contains(t, call.Violations()[0], tc.violation)
			recv(t, ctx, pbx.acks, "ACK")
			recv(t, ctx, pbx.byes, "BYE")
			assert.Equal(t, EndedLocalBye, call.EndedBy())
			assert.NotEmpty(t, e.Violations())
		})
	}
}

func TestDialFailures(t *testing.T) {
	t.Parallel()
	t.Run("rejected", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newTestEdge(t, EdgeConfig{})
		pbx := newTestPBX(t, pbxMode{reject: 486})
		call, err := e.Dial(ctx, pbx.target(t))
		var ce *CallError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 486, ce.Code)
		assert.Equal(t, EndedRejected, call.EndedBy())
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newTestEdge(t, EdgeConfig{})
		pbx := newTestPBX(t, pbxMode{})
		opts := pbx.target(t)
		opts.Password = "wrong"
		_, err := e.Dial(ctx, opts)
		var ce *CallError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 403, ce.Code)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newTestEdge(t, EdgeConfig{})
		pbx := newTestPBX(t, pbxMode{})
		opts := pbx.target(t)
		opts.RootCAs = x509.NewCertPool()
		call, err := e.Dial(ctx, opts)
		require.Error(t, err)
		assert.Nil(t, call)
		assert.Contains(t, err.Error(), "TLS handshake")
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := newTestEdge(t, EdgeConfig{})
		pbx := newTestPBX(t, pbxMode{ring: true})
		dialCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-pbx.ringing:
				cancel()
			case <-ctx.Done():
			}
		}()
		call, err := e.Dial(dialCtx, pbx.target(t))
		require.ErrorIs(t, err, context.Canceled)
		var ce *CallError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 487, ce.Code)
		assert.Equal(t, EndedCancel, call.EndedBy())
	})
}

func TestDialBeforeListen(t *testing.T) {
	t.Parallel()
	e, err := NewEdge(EdgeConfig{Log: testLog(t)})
	require.NoError(t, err)
	_, err = e.Dial(context.Background(), DialOptions{})
	require.Error(t, err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne))
}
