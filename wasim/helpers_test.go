package wasim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wabridge/wabridge/media"
)

const (
	testBusiness = "+15550001111"
	testPassword = "s3cret-pw"
	testHostname = "sip.example.com"
	testUser     = "+447700900123"
	testTimeout  = 15 * time.Second
)

func TestMain(m *testing.M) {
	// sipgo objects created by the tests (not the edge) log through slog's default.
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	logrus.SetLevel(logrus.WarnLevel)
	goleak.VerifyTestMain(m)
}

func testLog(t *testing.T) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l).WithField("test", t.Name())
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newTestEdge starts an edge with one business number.
func newTestEdge(t *testing.T, cfg EdgeConfig) *Edge {
	t.Helper()
	if cfg.Numbers == nil {
		cfg.Numbers = map[string]Number{testBusiness: {Password: testPassword, Hostname: testHostname}}
	}
	cfg.Log = testLog(t)
	e, err := NewEdge(cfg)
	require.NoError(t, err)
	require.NoError(t, e.Listen(context.Background(), "127.0.0.1:0"))
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// business is a plain sipgo UA playing wabridge toward the edge.
type business struct {
	ua   *sipgo.UserAgent
	cli  *sipgo.Client
	srv  *sipgo.Server
	byes chan *sip.Request
	edge *Edge
}

func newBusiness(t *testing.T, e *Edge) *business {
	t.Helper()
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(e.CAPEM()))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("wabridge-test"),
		sipgo.WithUserAgentHostname(testHostname),
		sipgo.WithUserAgenTLSConfig(&tls.Config{RootCAs: pool, ServerName: MetaDomain, MinVersion: tls.VersionTLS12}),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	b := &business{ua: ua, cli: cli, srv: srv, byes: make(chan *sip.Request, 4), edge: e}
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		b.byes <- req
	})
	return b
}

// offer is a wabridge-like SDES offer (written by media.Description.Marshal).
type offer struct {
	peer    *Peer
	cryptos []media.Crypto
	body    []byte
}

func newOffer(t *testing.T, proto string) *offer {
	t.Helper()
	peer, err := NewPeer(PeerConfig{Log: testLog(t), SendFirst: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = peer.Close() })
	cryptos, err := media.OfferCrypto()
	require.NoError(t, err)
	d := media.Description{
		Addr:    peer.LocalAddr().Addr(),
		Port:    int(peer.LocalAddr().Port()),
		RTCPMux: true,
		Proto:   proto,
		Codecs: []media.Codec{
			{PT: 111, Name: "opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"},
			{PT: 0, Name: "PCMU", ClockRate: 8000},
			{PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"},
		},
		Crypto: cryptos,
		Ptime:  20,
	}
	return &offer{peer: peer, cryptos: cryptos, body: d.Marshal()}
}

// connect starts the business peer's media from the edge's SDP answer.
func (o *offer) connect(t *testing.T, answerBody []byte) *media.Description {
	t.Helper()
	ans, err := media.ParseDescription(answerBody)
	require.NoError(t, err)
	require.Len(t, ans.Crypto, 1)
	var local media.Crypto
	for _, c := range o.cryptos {
		if c.Tag == ans.Crypto[0].Tag {
			local = c
		}
	}
	require.NotZero(t, local.Tag)
	require.NoError(t, o.peer.Connect(Link{Remote: ans.RTPAddr(), LocalKey: local, RemoteKey: ans.Crypto[0], Codecs: ans.Codecs}))
	return ans
}

// invite builds a business-initiated INVITE from the test number.
func (b *business) invite(ruri sip.Uri, fromHost string, body []byte) *sip.Request {
	req := sip.NewRequest(sip.INVITE, ruri)
	req.AppendHeader(&sip.FromHeader{
		Address: sip.Uri{Scheme: "sip", User: testBusiness, Host: fromHost},
		Params:  sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(10)}},
	})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: ruri.User, Host: ruri.Host}})
	req.AppendHeader(&sip.ContactHeader{
		Address: sip.Uri{Scheme: "sip", User: testBusiness, Host: "127.0.0.1", UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}},
	})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)
	req.SetDestination(b.edge.Addr().String())
	return req
}

func metaURI(user string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: MetaDomain, UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}
}

// call runs INVITE → 407 → authenticated INVITE → 200 and returns the dialog.
func (b *business) call(t *testing.T, ctx context.Context, body []byte) *sipgo.DialogClientSession {
	t.Helper()
	dua := sipgo.DialogUA{Client: b.cli}
	sess, err := dua.WriteInvite(ctx, b.invite(metaURI(testUser), testHostname, body))
	require.NoError(t, err)
	var codes []int
	err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{
		Username: testBusiness[1:], Password: testPassword,
		OnResponse: func(res *sip.Response) error { codes = append(codes, res.StatusCode); return nil },
	})
	require.NoError(t, err)
	require.Contains(t, codes, sip.StatusProxyAuthRequired, "the first INVITE must be challenged")
	t.Cleanup(func() { _ = sess.Close() })
	return sess
}

// final sends req, answers one digest challenge and returns the final response.
func (b *business) final(t *testing.T, ctx context.Context, req *sip.Request, password string) *sip.Response {
	t.Helper()
	res, err := b.cli.Do(ctx, req)
	require.NoError(t, err)
	if res.StatusCode == sip.StatusProxyAuthRequired {
		res, err = b.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: testBusiness[1:], Password: password})
		require.NoError(t, err)
	}
	return res
}

func payloads(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte{0xf8, 0xff, 0xfe, byte(i), byte(i * 7), byte(255 - i)}
	}
	return out
}

// waitFor polls cond until it holds or the test's time runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func addrOf(t *testing.T, s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	require.NoError(t, err)
	return ap
}
