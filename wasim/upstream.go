package wasim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// The edge dials wabridge for user-initiated calls and must then both send on that
// connection and receive wabridge's in-dialog requests on it (wabridge pins the connection
// Meta opened). sipgo's TLS transport would dial by itself, but with one TLS config per
// UserAgent, so neither the per-call ServerName nor the RootCAs could vary, and SNI would be
// the IP. Instead the edge dials and handshakes itself and hands the connection to a second
// sipgo ServeTLS through connListener, as if it had been accepted: sipgo then reads it,
// routes requests arriving on it to the edge's handlers and keys it in its connection pool
// by both addresses, so requests pinned with Request.Laddr go out on it.

// upstreamConn is one TLS connection the edge opened toward wabridge.
type upstreamConn struct {
	conn       *trackedConn
	serverName string
	roots      *x509.CertPool
}

// trackedConn notices when sipgo's reader sees the connection fail, so it is not reused.
type trackedConn struct {
	*tls.Conn
	dead atomic.Bool
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.dead.Store(true)
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.dead.Store(true)
	return c.Conn.Close()
}

// connListener is a net.Listener whose Accept returns connections handed to inject.
type connListener struct {
	addr   net.Addr
	ch     chan injected
	closed chan struct{}
	once   sync.Once

	mu   sync.Mutex
	last chan struct{} // closed when sipgo comes back to Accept after the last connection
}

type injected struct {
	conn       net.Conn
	registered chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan injected), closed: make(chan struct{})}
}

// Accept is called in a loop by sipgo's TLS transport, which registers each connection in
// its pool before calling Accept again; that second call tells inject the connection is ready.
func (l *connListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.last != nil {
		close(l.last)
		l.last = nil
	}
	l.mu.Unlock()
	select {
	case in := <-l.ch:
		l.mu.Lock()
		l.last = in.registered
		l.mu.Unlock()
		return in.conn, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// inject hands conn to sipgo and waits until sipgo has registered it.
func (l *connListener) inject(ctx context.Context, conn net.Conn) error {
	in := injected{conn: conn, registered: make(chan struct{})}
	select {
	case l.ch <- in:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.closed:
		return net.ErrClosed
	}
	select {
	case <-in.registered:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.closed:
		return net.ErrClosed
	}
}

// dialTimeout bounds TCP connect plus TLS handshake toward wabridge.
const dialTimeout = 10 * time.Second

// upstreamFor returns a live connection to target verified for serverName, dialing one when
// there is none. Calls to the same target share the connection, like a SIP proxy's
// connection reuse; a different ServerName or CA pool gets a fresh one.
func (e *Edge) upstreamFor(ctx context.Context, target netip.AddrPort, serverName string, roots *x509.CertPool, c *Call) (*trackedConn, error) {
	e.dialMu.Lock()
	defer e.dialMu.Unlock()
	if u := e.upstream[target]; u != nil && !u.conn.dead.Load() && u.serverName == serverName && u.roots == roots {
		return u.conn, nil
	}

	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, fmt.Errorf("wasim: connect to %s: %w", target, err)
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		RootCAs:    roots,
		// No NextProtos: Meta offers no ALPN.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			// Meta presents no usable client certificate (whatsapp-calling.md §5.1); a
			// server that requires one never gets Meta's INVITEs.
			c.violate("TLS server %s (%s) requested a client certificate; Meta does not do mutual TLS", target, serverName)
			return &tls.Certificate{}, nil
		},
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("wasim: TLS handshake with %s as %q: %w", target, serverName, err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" {
		c.violate("TLS server %s negotiated ALPN %q although Meta offered none", target, p)
	}
	conn := &trackedConn{Conn: tc}
	if err := e.dialLn.inject(ctx, conn); err != nil {
		_ = conn.Close()
		if errors.Is(err, net.ErrClosed) {
			return nil, errors.New("wasim: edge closed")
		}
		return nil, err
	}
	e.upstream[target] = &upstreamConn{conn: conn, serverName: serverName, roots: roots}
	e.log.WithFields(logrus.Fields{"target": target.String(), "server_name": serverName,
		"local": conn.LocalAddr().String()}).Debug("TLS connection to wabridge opened")
	return conn, nil
}
