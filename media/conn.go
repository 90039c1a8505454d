package media

import (
	"context"
	"net/netip"
	"time"
)

// PacketConn is the seam between the relay and the socket I/O model. Today each leg has its own
// UDP socket; at 1,000 calls the plan is shared sockets with batched reads/writes (recvmmsg), which
// only needs another implementation of this interface. Implementations must not allocate per call.
type PacketConn interface {
	ReadFrom(b []byte) (n int, from netip.AddrPort, err error)
	WriteTo(b []byte, to netip.AddrPort) (int, error)
	LocalAddr() netip.AddrPort
	SetReadDeadline(t time.Time) error
	Close() error
}

// Endpoint is one leg's local media address: RTP plus the RTCP port next to it.
type Endpoint struct {
	RTP  PacketConn
	RTCP PacketConn // the odd port after RTP; used only when the peer does not mux
}

// Close closes both sockets.
func (e *Endpoint) Close() error { panic("TODO") }

// Ports hands out RTP/RTCP port pairs from the configured range.
type Ports struct{}

// NewPorts binds on ip and uses even ports in [min, max].
func NewPorts(ip netip.Addr, min, max int) (*Ports, error) { panic("TODO") }

// Open binds the next free even port and port+1. Fails when the range is exhausted.
func (p *Ports) Open(ctx context.Context) (*Endpoint, error) { panic("TODO") }
