package media

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/deadline"
)

// After ICE, one 5-tuple carries STUN (consent, RFC 7675), DTLS and SRTP/SRTCP (RFC 5764 §5.1.2).
// RFC 7983 §7 tells them apart by the first byte. pion's agent consumes STUN itself; the rest is
// split here.
const (
	dtlsFirstByteMin = 20 // DTLS content types 20–63
	dtlsFirstByteMax = 63
	rtpFirstByteMin  = 128 // RTP and RTCP: version 2 in the top bits, 128–191
	rtpFirstByteMax  = 191
)

func isDTLSRecord(b []byte) bool {
	return len(b) > 0 && b[0] >= dtlsFirstByteMin && b[0] <= dtlsFirstByteMax
}

func isRTPOrRTCP(b []byte) bool {
	return len(b) > 0 && b[0] >= rtpFirstByteMin && b[0] <= rtpFirstByteMax
}

const (
	// dtlsQueueLen bounds the DTLS records waiting for pion/dtls's reader. A handshake flight is a
	// handful of records; more than this queued means the reader is gone, and UDP may drop.
	dtlsQueueLen = 16
	// earlyQueueLen bounds the media that arrives while the handshake runs, kept for the relay. Meta
	// sends nothing before our first packet (whatsapp-calling.md §0 fact 6); a peer that does start
	// early loses at most the packets beyond this.
	earlyQueueLen = 16
	// iceReadBuf is the pump's buffer: pion's receive MTU, so no datagram the agent delivers is cut.
	iceReadBuf = 8192
)

// pastDeadline is a read deadline that has already expired: setting it wakes a blocked read.
func pastDeadline() time.Time { return time.Unix(1, 0) }

// dtlsTransport is the net.Conn that pion/dtls runs over (wrapped with dtlsnet.PacketConnFromConn).
// Reads come from a queue that the demultiplexer fills with DTLS records; writes go straight to the
// ICE connection, i.e. to the selected pair.
type dtlsTransport struct {
	ice    *ice.Conn
	local  net.Addr
	remote net.Addr
	in     chan []byte
	readDL *deadline.Deadline

	closeOnce sync.Once
	closed    chan struct{}
}

func newDTLSTransport(c *ice.Conn) *dtlsTransport {
	return &dtlsTransport{
		ice:    c,
		local:  c.LocalAddr(),
		remote: c.RemoteAddr(),
		in:     make(chan []byte, dtlsQueueLen),
		readDL: deadline.New(),
		closed: make(chan struct{}),
	}
}

// deliver queues a copy of one DTLS datagram; it never blocks the demultiplexer. DTLS records are
// rare (a handshake, an alert), so the copy's allocation does not matter.
func (t *dtlsTransport) deliver(b []byte) {
	select {
	case t.in <- append([]byte(nil), b...):
	default: // reader stalled or gone: drop, as the network may; DTLS retransmits (RFC 6347 §4.2.4)
	}
}

func (t *dtlsTransport) Read(p []byte) (int, error) {
	select {
	case <-t.closed:
		return 0, net.ErrClosed
	case <-t.readDL.Done():
		return 0, os.ErrDeadlineExceeded
	case b := <-t.in:
		if len(p) < len(b) {
			return 0, io.ErrShortBuffer
		}
		return copy(p, b), nil
	}
}

func (t *dtlsTransport) Write(p []byte) (int, error) {
	select {
	case <-t.closed:
		return 0, net.ErrClosed
	default:
	}
	return t.ice.Write(p)
}

// Close stops reads. The ICE connection belongs to the leg and stays open.
func (t *dtlsTransport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}

func (t *dtlsTransport) LocalAddr() net.Addr  { return t.local }
func (t *dtlsTransport) RemoteAddr() net.Addr { return t.remote }

// SetReadDeadline is how pion/dtls cancels a read (transport/netctx), so it must work.
func (t *dtlsTransport) SetReadDeadline(d time.Time) error {
	t.readDL.Set(d)
	return nil
}

func (t *dtlsTransport) SetDeadline(d time.Time) error    { return t.SetReadDeadline(d) }
func (t *dtlsTransport) SetWriteDeadline(time.Time) error { return nil } // UDP writes do not block

// iceMediaConn is the PacketConn the relay gets for the WhatsApp leg: SRTP and SRTCP on the
// ICE-selected pair, with DTLS split off.
//
// There is no goroutine of its own on the media path: the relay's reader calls ReadFrom, which
// reads the ICE connection directly and hands any DTLS record it meets to pion/dtls (a close_notify
// or an alert mid-call, or the client's retransmitted last flight when we are the server). Only
// during the handshake, when nobody reads media yet, does pump read instead; media that arrives
// then is kept for the first ReadFrom calls.
type iceMediaConn struct {
	ice    *ice.Conn
	dtls   *dtlsTransport
	local  netip.AddrPort
	remote netip.AddrPort
	close  func() error // closes the leg

	failed   atomic.Bool // err is set: ReadFrom returns it
	hasEarly atomic.Bool // early holds packets

	mu    sync.Mutex
	err   error    // why the leg stopped carrying media (DTLS closed by the peer, ICE failed)
	early [][]byte // media read by pump, for the relay
	dl    time.Time
}

func newICEMediaConn(c *ice.Conn, local, remote netip.AddrPort, closeLeg func() error) *iceMediaConn {
	return &iceMediaConn{ice: c, dtls: newDTLSTransport(c), local: local, remote: remote, close: closeLeg}
}

var _ PacketConn = (*iceMediaConn)(nil)

// pump reads the ICE connection while the handshake runs, until stopPump. It closes done on return.
func (c *iceMediaConn) pump(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, iceReadBuf)
	for {
		n, err := c.ice.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			continue
		}
		if err != nil {
			return // deadline from stopPump, or the agent closed
		}
		switch b := buf[:n]; {
		case isDTLSRecord(b):
			c.dtls.deliver(b)
		case isRTPOrRTCP(b):
			c.keepEarly(b)
		}
	}
}

func (c *iceMediaConn) keepEarly(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.early) < earlyQueueLen {
		c.early = append(c.early, append([]byte(nil), b...))
		c.hasEarly.Store(true)
	}
}

// stopPump ends pump (wait on its done channel) by expiring the read deadline; restoreDeadline
// then puts back the relay's deadline.
func (c *iceMediaConn) stopPump(done <-chan struct{}) {
	_ = c.ice.SetReadDeadline(pastDeadline())
	<-done
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		_ = c.ice.SetReadDeadline(c.dl)
	}
}

// fail makes every later ReadFrom return err (the first cause wins) and wakes a blocked one, so
// the relay stops and the call ends.
func (c *iceMediaConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	c.failed.Store(true)
	_ = c.ice.SetReadDeadline(pastDeadline())
}

func (c *iceMediaConn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ReadFrom returns the next RTP or RTCP datagram from the peer. from is the selected pair's remote
// address. After the peer closed DTLS or ICE failed, it returns that error (not a timeout), which
// ends the relay. It does not allocate.
func (c *iceMediaConn) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	for {
		if c.failed.Load() {
			return 0, netip.AddrPort{}, c.failure()
		}
		if c.hasEarly.Load() {
			if n, ok := c.popEarly(b); ok {
				return n, c.remote, nil
			}
		}
		n, err := c.ice.Read(b)
		if errors.Is(err, io.ErrShortBuffer) {
			continue // larger than any packet the relay takes; pion consumed it
		}
		if err != nil {
			if c.failed.Load() {
				return 0, netip.AddrPort{}, c.failure()
			}
			return 0, netip.AddrPort{}, err
		}
		switch p := b[:n]; {
		case isRTPOrRTCP(p):
			return n, c.remote, nil
		case isDTLSRecord(p):
			c.dtls.deliver(p)
		}
		// Anything else (ZRTP, TURN channel data, RFC 7983 §7) has no business here: dropped.
	}
}

func (c *iceMediaConn) popEarly(b []byte) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.early) == 0 {
		c.hasEarly.Store(false)
		return 0, false
	}
	p := c.early[0]
	c.early = c.early[1:]
	if len(c.early) == 0 {
		c.early = nil
		c.hasEarly.Store(false)
	}
	return copy(b, p), true
}

// WriteTo sends on the selected pair; to is ignored, because ICE chose the destination (the
// relay passes the address it was configured with).
func (c *iceMediaConn) WriteTo(b []byte, _ netip.AddrPort) (int, error) { return c.ice.Write(b) }

// LocalAddr is the leg's socket address.
func (c *iceMediaConn) LocalAddr() netip.AddrPort { return c.local }

// RemoteAddr is the selected pair's remote address.
func (c *iceMediaConn) RemoteAddr() netip.AddrPort { return c.remote }

// SetReadDeadline makes a blocked ReadFrom return a timeout error at t (the relay stops its
// readers with a past deadline). After a failure reads stay unblocked and return the failure.
func (c *iceMediaConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dl = t
	if c.err != nil {
		return nil
	}
	return c.ice.SetReadDeadline(t)
}

// Close closes the whole leg (DTLS close_notify, ICE agent, sockets): the relay owns the conn it
// is given and closes it once its goroutines are gone (relay.go), which is when the leg is done.
func (c *iceMediaConn) Close() error { return c.close() }
