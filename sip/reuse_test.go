package sip

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// routeTarget stands in for the host:port in Meta's Record-Route (wa.meta.vc:5061): a TLS
// listener that counts the connections sipgo opens to it and answers the BYEs it gets.
type routeTarget struct {
	counter *countingListener
	ln      net.Listener
	byes    chan *sipmsg.Request
	wg      sync.WaitGroup
}

func startRouteTarget(t *testing.T, cfg *tls.Config) *routeTarget {
	t.Helper()
	rt := &routeTarget{byes: make(chan *sipmsg.Request, 1)}
	rt.counter, rt.ln = listenTLS(t, cfg)
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		for {
			c, err := rt.ln.Accept()
			if err != nil {
				return
			}
			rt.wg.Add(1)
			go func() {
				defer rt.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				m, err := readSIPConn(c, br)
				if err != nil {
					return
				}
				if req, ok := m.(*sipmsg.Request); ok && req.Method == sipmsg.BYE {
					rt.byes <- req
					_, _ = c.Write([]byte(sipmsg.NewResponseFromRequest(req, 200, "OK", nil).String()))
				}
				// Keep the connection until the peer closes it.
				_, _ = readSIPConn(c, br)
			}()
		}
	}()
	t.Cleanup(func() { rt.ln.Close(); rt.wg.Wait() })
	return rt
}

// TestPinnedByeReusesAcceptedConnection reproduces sipgo issue #361 with v1.7.2 and proves
// the fix. A Meta-like UAC connects over TLS to our sipgo UAS and sends an INVITE whose
// Record-Route names a different port than the connection's source port (Meta's edge:
// Record-Route wa.meta.vc:5061, source an ephemeral port). The UAS answers 200, gets the
// ACK and hangs up with DialogServerSession.Bye.
//   - Without pinning, sipgo dials a new TLS connection to the Record-Route target.
//   - With ConnectionPinner as Client.TxRequester, the BYE goes over the connection the
//     INVITE came on and no new connection is made.
func TestPinnedByeReusesAcceptedConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		pinned bool
	}{
		{name: "sipgo default opens a new connection (issue 361)", pinned: false},
		{name: "pinned bye reuses the accepted connection", pinned: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			certFile, keyFile := writeCert(t, dir, testHosts...)
			srvTLS, err := ServerTLSConfig(certFile, keyFile)
			require.NoError(t, err)
			cliTLS, err := ClientTLSConfig(certFile, "")
			require.NoError(t, err)

			// The Record-Route target ("Meta's proxy").
			rtTLS, err := ServerTLSConfig(certFile, keyFile)
			require.NoError(t, err)
			rt := startRouteTarget(t, rtTLS)
			rrPort := portOf(t, rt.ln.Addr())

			// Our UAS.
			ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(cliTLS))
			require.NoError(t, err)
			defer ua.Close()
			srv, err := sipgo.NewServer(ua)
			require.NoError(t, err)
			cli, err := sipgo.NewClient(ua)
			require.NoError(t, err)
			var pins *ConnectionPinner
			if tc.pinned {
				pins = NewConnectionPinner(ua)
				cli.TxRequester = pins
			}
			uasCounter, uasLn := listenTLS(t, srvTLS)
			uasPort := portOf(t, uasLn.Addr())
			dua := sipgo.DialogUA{Client: cli, ContactHDR: sipmsg.ContactHeader{Address: sipmsg.Uri{
				Scheme: "sip", User: "wabridge", Host: "127.0.0.1", Port: uasPort,
				UriParams: sipmsg.HeaderParams{{K: "transport", V: "tls"}},
			}}}

			var current atomic.Pointer[sipgo.DialogServerSession]
			answered := make(chan *sipgo.DialogServerSession, 1)
			handlerErr := make(chan error, 1)
			srv.OnInvite(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
				dlg, err := dua.ReadInvite(req, tx)
				if err != nil {
					handlerErr <- err
					return
				}
				if pins != nil {
					pins.Pin(req)
				}
				current.Store(dlg)
				if err := dlg.RespondSDP([]byte("v=0\r\n")); err != nil { // blocks until ACK
					handlerErr <- err
					return
				}
				answered <- dlg
			})
			srv.OnAck(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
				if d := current.Load(); d != nil {
					_ = d.ReadAck(req, tx)
				}
			})
			served := make(chan struct{})
			go func() { defer close(served); _ = srv.ServeTLS(uasLn) }()
			defer func() { uasLn.Close(); <-served }()

			// The Meta-like UAC: a raw TLS client, so the test controls every header.
			d := &net.Dialer{Timeout: testTimeout}
			conn, err := tls.DialWithDialer(d, "tcp", uasLn.Addr().String(), cliTLS)
			require.NoError(t, err)
			defer conn.Close()
			srcPort := portOf(t, conn.LocalAddr())
			require.NotEqual(t, rrPort, srcPort)
			br := bufio.NewReader(conn)

			callID := "outgoing:wacid.reuse" + strconv.FormatBool(tc.pinned)
			rr := fmt.Sprintf("127.0.0.1:%d", rrPort)
			invite := sipText("v=0\r\n",
				fmt.Sprintf("INVITE sip:+12145551869@127.0.0.1:%d;transport=tls SIP/2.0", uasPort),
				fmt.Sprintf("Via: SIP/2.0/TLS %s;rport;branch=z9hG4bKinv1", rr),
				fmt.Sprintf("Record-Route: <sip:%s;transport=tls;lr>", rr),
				"Max-Forwards: 69",
				`From: "12195550714" <sip:+12195550714@wa.meta.vc>;tag=meta1`,
				"To: <sip:+12145551869@127.0.0.1>",
				fmt.Sprintf("Contact: <sip:+12195550714@%s;transport=tls;ob>;isfocus", rr),
				"Call-ID: "+callID,
				"CSeq: 31159 INVITE",
				"X-FB-External-Domain: wa.meta.vc",
				"Content-Type: application/sdp")
			_, err = conn.Write([]byte(invite))
			require.NoError(t, err)

			var ok *sipmsg.Response
			for ok == nil {
				m, err := readSIPConn(conn, br)
				require.NoError(t, err)
				res, isRes := m.(*sipmsg.Response)
				require.True(t, isRes, "got %s", m.String())
				if res.IsSuccess() {
					ok = res
				}
			}
			rrs := ok.GetHeaders("Record-Route")
			require.Len(t, rrs, 1, "200 OK keeps the Record-Route (whatsapp-calling.md §5.2)")

			ack := sipText("",
				fmt.Sprintf("ACK %s SIP/2.0", ok.Contact().Address.String()),
				fmt.Sprintf("Via: SIP/2.0/TLS %s;rport;branch=z9hG4bKack1", rr),
				"Max-Forwards: 70",
				`From: "12195550714" <sip:+12195550714@wa.meta.vc>;tag=meta1`,
				"To: "+ok.To().Value(),
				"Call-ID: "+callID,
				"CSeq: 31159 ACK")
			_, err = conn.Write([]byte(ack))
			require.NoError(t, err)

			var dlg *sipgo.DialogServerSession
			select {
			case dlg = <-answered:
			case err := <-handlerErr:
				t.Fatal(err)
			case <-time.After(testTimeout):
				t.Fatal("no ACK processed")
			}

			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			byeErr := make(chan error, 1)
			go func() { byeErr <- dlg.Bye(ctx) }()

			if tc.pinned {
				m, err := readSIPConn(conn, br)
				require.NoError(t, err, "BYE must arrive on the INVITE's connection")
				bye, isReq := m.(*sipmsg.Request)
				require.True(t, isReq)
				require.Equal(t, sipmsg.BYE, bye.Method)
				assert.Equal(t, callID, bye.CallID().Value())
				route := bye.Route()
				require.NotNil(t, route, "Route headers are kept (RFC 3261 §12.2.1.1)")
				assert.Equal(t, rrPort, route.Address.Port)
				_, err = conn.Write([]byte(sipmsg.NewResponseFromRequest(bye, 200, "OK", nil).String()))
				require.NoError(t, err)
			} else {
				select {
				case bye := <-rt.byes:
					assert.Equal(t, callID, bye.CallID().Value())
				case <-time.After(testTimeout):
					t.Fatal("BYE did not reach the Record-Route target")
				}
			}
			require.NoError(t, <-byeErr)

			if tc.pinned {
				assert.Equal(t, int32(0), rt.counter.accepts.Load(), "no new connection toward the Record-Route target")
				pins.Unpin(callID)
				assert.Equal(t, 0, pins.Len())
			} else {
				assert.Equal(t, int32(1), rt.counter.accepts.Load(), "sipgo v1.7.2 dials the Record-Route target")
			}
			assert.Equal(t, int32(1), uasCounter.accepts.Load(), "only the UAC's connection was accepted")
		})
	}
}

// TestConnectionPinnerFallsBackWhenConnectionIsGone checks that a pinned dialog whose
// connection has closed is routed by its Route header again, instead of dialing the peer's
// ephemeral source port.
func TestConnectionPinnerFallsBackWhenConnectionIsGone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, testHosts...)
	rtTLS, err := ServerTLSConfig(certFile, keyFile)
	require.NoError(t, err)
	rt := startRouteTarget(t, rtTLS)
	rrPort := portOf(t, rt.ln.Addr())
	cliTLS, err := ClientTLSConfig(certFile, "")
	require.NoError(t, err)

	ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(cliTLS))
	require.NoError(t, err)
	defer ua.Close()
	cli, err := sipgo.NewClient(ua)
	require.NoError(t, err)
	pins := NewConnectionPinner(ua)
	cli.TxRequester = pins

	// An INVITE that "arrived" on a connection that no longer exists.
	invite := parseRequest(t, metaInvite("sip:+12145551869@127.0.0.1;transport=tls"))
	invite.SetTransport("TLS")
	invite.SetSource("127.0.0.1:1") // nothing pooled there
	require.True(t, pins.Pin(invite))
	assert.Equal(t, 1, pins.Len())

	bye := sipmsg.NewRequest(sipmsg.BYE, sipmsg.Uri{Scheme: "sip", User: "+12195550714", Host: "127.0.0.1", Port: rrPort,
		UriParams: sipmsg.HeaderParams{{K: "transport", V: "tls"}}})
	bye.AppendHeader(sipmsg.NewHeader("Route", fmt.Sprintf("<sip:127.0.0.1:%d;transport=tls;lr>", rrPort)))
	bye.AppendHeader(invite.CallID())
	bye.SetTransport("TLS")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := cli.Do(ctx, bye)
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	select {
	case <-rt.byes:
	case <-time.After(testTimeout):
		t.Fatal("BYE not routed by its Route header")
	}
	assert.Equal(t, int32(1), rt.counter.accepts.Load())
}

func TestPinHelpers(t *testing.T) {
	t.Parallel()
	invite := parseRequest(t, metaInvite("sip:+12145551869@127.0.0.1;transport=tls"))
	invite.SetSource("10.0.0.1:40000")

	tests := []struct {
		name        string
		inviteTP    string
		reqTP       string
		wantPinned  bool
		wantDestSet bool
	}{
		{name: "tls", inviteTP: "TLS", reqTP: "TLS", wantPinned: true},
		{name: "tcp", inviteTP: "TCP", reqTP: "TCP", wantPinned: true},
		{name: "udp has no connection", inviteTP: "UDP", reqTP: "UDP"},
		{name: "transport mismatch", inviteTP: "TLS", reqTP: "TCP"},
	}
	for _, tc := range tests {
		inv := invite.Clone()
		inv.SetTransport(tc.inviteTP)
		inv.SetSource("10.0.0.1:40000")
		req := sipmsg.NewRequest(sipmsg.BYE, sipmsg.Uri{Scheme: "sip", Host: "wa.meta.vc"})
		req.SetTransport(tc.reqTP)
		got := PinToConnection(req, inv)
		assert.Equal(t, tc.wantPinned, got, tc.name)
		if tc.wantPinned {
			assert.Equal(t, "10.0.0.1:40000", req.Destination(), tc.name)
		} else {
			assert.NotEqual(t, "10.0.0.1:40000", req.Destination(), tc.name)
		}
	}

	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	defer ua.Close()
	pins := NewConnectionPinner(ua)
	udp := invite.Clone()
	udp.SetTransport("UDP")
	assert.False(t, pins.Pin(udp))
	noSource := invite.Clone()
	noSource.SetTransport("TLS")
	noSource.SetSource("")
	assert.False(t, pins.Pin(noSource))
	assert.False(t, pins.Pin(nil))
	assert.Equal(t, 0, pins.Len())
}
