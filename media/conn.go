package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// PacketConn is the seam between the relay and the socket I/O model. Today each leg has its own
// UDP socket; at 1,000 calls the plan is shared sockets with batched reads/writes (recvmmsg), which
// only needs another implementation of this interface. Implementations must not allocate per call.
//
// The relay stops its readers with SetReadDeadline (a time in the past must make a pending
// ReadFrom return a timeout error, as net.Conn does) and closes the conns only after its
// goroutines have returned, so a shared-socket implementation can detach a call's view without
// closing the socket under the other calls.
type PacketConn interface {
	ReadFrom(b []byte) (n int, from netip.AddrPort, err error)
	WriteTo(b []byte, to netip.AddrPort) (int, error)
	LocalAddr() netip.AddrPort
	SetReadDeadline(t time.Time) error
	Close() error
}

// ErrPortsExhausted is returned by Ports.Open when no even/odd pair in the range could be bound.
var ErrPortsExhausted = errors.New("media port range exhausted")

// UDPConn is the PacketConn of one UDP socket. ReadFrom and WriteTo go through
// ReadFromUDPAddrPort/WriteToUDPAddrPort, which do not allocate (the net.Addr-based calls allocate
// one *net.UDPAddr per packet).
type UDPConn struct {
	conn  *net.UDPConn
	local netip.AddrPort
}

var _ PacketConn = (*UDPConn)(nil)

// NewUDPConn wraps an already bound socket. The UDPConn owns it from then on.
func NewUDPConn(c *net.UDPConn) *UDPConn {
	return &UDPConn{conn: c, local: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// ListenUDP binds addr (port 0: any free port) and wraps the socket.
func ListenUDP(addr netip.AddrPort) (*UDPConn, error) {
	c, err := net.ListenUDP(udpNetwork(addr.Addr()), net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("bind media socket %s: %w", addr, err)
	}
	return NewUDPConn(c), nil
}

// udpNetwork pins the address family: "udp" on an IPv4 address would still create a dual-stack
// socket on some systems, and an IPv4 media port must not be shared with an IPv6 listener.
func udpNetwork(ip netip.Addr) string {
	if ip.Is4() || ip.Is4In6() {
		return "udp4"
	}
	return "udp6"
}

// ReadFrom reads one datagram. IPv4-mapped IPv6 sources are unmapped so that they compare equal
// to the IPv4 addresses found in SDP.
func (u *UDPConn) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	n, from, err := u.conn.ReadFromUDPAddrPort(b)
	if from.Addr().Is4In6() {
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	}
	return n, from, err
}

// WriteTo sends one datagram to to.
func (u *UDPConn) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	return u.conn.WriteToUDPAddrPort(b, to)
}

// LocalAddr is the bound address.
func (u *UDPConn) LocalAddr() netip.AddrPort { return u.local }

// SetReadDeadline makes a blocked ReadFrom return a timeout error at t.
func (u *UDPConn) SetReadDeadline(t time.Time) error { return u.conn.SetReadDeadline(t) }

// Close closes the socket. Closing an already closed UDPConn is not an error, so that the relay
// and the caller may both close an Endpoint.
func (u *UDPConn) Close() error {
	if err := u.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close media socket %s: %w", u.local, err)
	}
	return nil
}

// Endpoint is one leg's local media address: RTP plus the RTCP port next to it.
type Endpoint struct {
	RTP  PacketConn
	RTCP PacketConn // the odd port after RTP; used only when the peer does not mux
}

// Close closes both sockets.
func (e *Endpoint) Close() error {
	var errs []error
	if e.RTP != nil {
		errs = append(errs, e.RTP.Close())
	}
	if e.RTCP != nil {
		errs = append(errs, e.RTCP.Close())
	}
	return errors.Join(errs...)
}

// Ports hands out RTP/RTCP port pairs from the configured range. It is safe for concurrent use.
//
// Pairs are handed out round-robin: the scan continues after the last pair handed out instead of
// restarting at the bottom of the range, so a port freed by a call that just ended is reused only
// after the whole range has been cycled. The old call's peer may still be sending media to it for
// a while (late BYE, Meta's relay tearing down), and a new call must not receive that stale
// stream. livekit/sip keeps ports "draining" for 30 s for the same reason (style.md).
type Ports struct {
	ip       netip.Addr
	min, max int // even RTP ports P with min <= P and P+1 <= max

	mu   sync.Mutex
	next int // the even port where the next scan starts
}

// NewPorts binds on ip and uses even ports in [min, max]. Each pair is P (RTP, even) and P+1
// (RTCP), both inside the range: with an even max, max itself is never used.
func NewPorts(ip netip.Addr, min, max int) (*Ports, error) {
	switch {
	case !ip.IsValid():
		return nil, errors.New("media ports: invalid bind address")
	case min <= 0 || max > 65535:
		return nil, fmt.Errorf("media ports: range %d-%d outside 1-65535", min, max)
	case min%2 != 0:
		// RFC 3550 §11: RTP on an even port, RTCP on the next odd one.
		return nil, fmt.Errorf("media ports: range start %d must be even", min)
	case max <= min:
		return nil, fmt.Errorf("media ports: range end %d must be above start %d", max, min)
	}
	p := &Ports{ip: ip.Unmap(), min: min, max: max}
	// Start at a random pair so that a restarted daemon does not immediately reuse the ports of
	// the calls it just dropped (same stale-media reasoning as the round-robin).
	p.next = min + 2*rand.IntN(p.pairs())
	return p, nil
}

// pairs is how many RTP/RTCP pairs the range holds.
func (p *Ports) pairs() int { return (p.max - p.min + 1) / 2 }

// Open binds the next free even port and port+1. Fails when the range is exhausted.
// Ports that cannot be bound (used by another call or another process) are skipped.
func (p *Ports) Open(ctx context.Context) (*Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.pairs()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("open media ports: %w", context.Cause(ctx))
		}
		port := p.next
		p.next += 2
		if p.next+1 > p.max {
			p.next = p.min
		}
		ep, err := p.bindPair(port)
		if err != nil {
			continue // in use; try the next pair
		}
		return ep, nil
	}
	return nil, fmt.Errorf("open media ports on %s %d-%d: %w", p.ip, p.min, p.max, ErrPortsExhausted)
}

func (p *Ports) bindPair(port int) (*Endpoint, error) {
	rtpConn, err := ListenUDP(netip.AddrPortFrom(p.ip, uint16(port)))
	if err != nil {
		return nil, err
	}
	rtcpConn, err := ListenUDP(netip.AddrPortFrom(p.ip, uint16(port+1)))
	if err != nil {
		_ = rtpConn.Close()
		return nil, err
	}
	return &Endpoint{RTP: rtpConn, RTCP: rtcpConn}, nil
}
