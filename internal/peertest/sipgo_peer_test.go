package peertest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// sipgoPeer is the other end for scenario self-tests where sipp cannot be: it checks the media
// sipp plays (a sipp UAC keeps its media port bound, so no listener could share it) and it
// drives in-dialog requests through sipgo's dialog layer, the one wabridge is built on, so
// scenarios that work against it have their headers right for wabridge too.
type sipgoPeer struct {
	t       testing.TB
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	addr    netip.AddrPort // SIP over UDP
	contact sip.ContactHeader
	rtp     *net.UDPConn // our media socket, advertised in our SDP

	mu       sync.Mutex
	requests []*sip.Request // every request received, in order
	handlers map[sip.RequestMethod]sipgo.RequestHandler
}

func newSIPGoPeer(t testing.TB) *sipgoPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	rtp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()

	ua, err := sipgo.NewUA(sipgo.WithUserAgent("peertest"), sipgo.WithUserAgentHostname("127.0.0.1"))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	// Send from the listening socket, so responses and in-dialog requests come back to it.
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(int(addr.Port())),
		sipgo.WithClientConnectionAddr(addr.String()))
	require.NoError(t, err)
	p := &sipgoPeer{
		t: t, ua: ua, srv: srv, cli: cli, addr: addr, rtp: rtp,
		contact:  sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "peertest", Host: "127.0.0.1", Port: int(addr.Port())}},
		handlers: map[sip.RequestMethod]sipgo.RequestHandler{},
	}
	// sipgo's handler table is not safe to change while serving, so register a dispatcher for
	// every method now and let tests swap their handlers in with on.
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.OPTIONS, sip.INFO, sip.UPDATE} {
		srv.OnRequest(m, p.dispatch)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		ua.Close() // closes the listener, which ends ServeUDP
		conn.Close()
		rtp.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Errorf("sipgo server did not stop")
		}
	})
	// ServeUDP registers the socket asynchronously; the client needs it to send from it.
	require.Eventually(t, func() bool {
		c, _ := ua.TransportLayer().GetConnection("udp", addr.String())
		return c != nil
	}, 5*time.Second, 5*time.Millisecond)
	return p
}

// on sets the handler for requests of one method.
func (p *sipgoPeer) on(method sip.RequestMethod, h sipgo.RequestHandler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers[method] = h
}

// dispatch records every request for the test's assertions and passes it to the test's
// handler; without one it answers 405 (ACKs get no response).
func (p *sipgoPeer) dispatch(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	p.requests = append(p.requests, req.Clone())
	h := p.handlers[req.Method]
	p.mu.Unlock()
	switch {
	case h != nil:
		h(req, tx)
	case req.Method != sip.ACK:
		_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
	}
}

// received returns the requests received so far with the given method.
func (p *sipgoPeer) received(method sip.RequestMethod) []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*sip.Request
	for _, r := range p.requests {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// sdp is our offer or answer: Opus + telephone-event like wabridge's PBX leg, at our RTP socket.
func (p *sipgoPeer) sdp(direction string) []byte {
	port := p.rtp.LocalAddr().(*net.UDPAddr).Port
	return []byte(strings.Join([]string{
		"v=0",
		"o=peertest 1 1 IN IP4 127.0.0.1",
		"s=-",
		"c=IN IP4 127.0.0.1",
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 111 101", port),
		"a=rtpmap:111 opus/48000/2",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=" + direction,
		"",
	}, "\r\n"))
}

// invite calls user at sipp and waits for the final response; headers are added to the INVITE.
func (p *sipgoPeer) invite(ctx context.Context, to netip.AddrPort, user string, headers ...sip.Header) (*sipgo.DialogClientSession, error) {
	dua := sipgo.DialogUA{Client: p.cli, ContactHDR: p.contact}
	recipient := sip.Uri{Scheme: "sip", User: user, Host: to.Addr().String(), Port: int(to.Port())}
	headers = append(headers, sip.NewHeader("Content-Type", "application/sdp"))
	sess, err := dua.Invite(ctx, recipient, p.sdp("sendrecv"), headers...)
	if err != nil {
		return nil, err
	}
	// WaitAnswer ignores ctx until a provisional response arrives (it may only CANCEL after one)
	// and then waits for Timer B, 32 s; a test must not wait that long for a sipp that died.
	answered := make(chan error, 1)
	go func() { answered <- sess.WaitAnswer(ctx, sipgo.AnswerOptions{}) }()
	select {
	case err := <-answered:
		return sess, err
	case <-ctx.Done():
		return sess, fmt.Errorf("INVITE to %s: %w", recipient.String(), ctx.Err())
	}
}

// readRTP collects RTP packets arriving at our media socket until it has n or timeout passed.
func (p *sipgoPeer) readRTP(n int, timeout time.Duration) []RTPPacket {
	return readRTP(p.t, p.rtp, n, timeout)
}

// readRTP collects up to n RTP packets from conn within timeout.
func readRTP(t testing.TB, conn *net.UDPConn, n int, timeout time.Duration) []RTPPacket {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out []RTPPacket
	buf := make([]byte, 2048)
	for len(out) < n {
		require.NoError(t, conn.SetReadDeadline(deadline))
		k, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			break // deadline: the caller asserts on what arrived
		}
		if pkt, err := ParseRTP(buf[:k]); err == nil {
			out = append(out, pkt)
		}
	}
	return out
}
