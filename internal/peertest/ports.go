package peertest

import (
	"net"
	"net/netip"
	"testing"
)

// Ports are picked by letting the OS choose (bind :0) and closing the socket again, so a child
// process can bind them. Another process can take such a port in between; the Start functions
// notice a failed bind and retry with new ports instead of leaving the test flaky.

const portAttempts = 20

// loopback is where peers bind unless their options say otherwise (BindIP).
var loopback = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// bindIPOr returns ip, or 127.0.0.1 when ip is the zero Addr.
func bindIPOr(ip netip.Addr) netip.Addr {
	if !ip.IsValid() {
		return loopback
	}
	return ip.Unmap()
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	return freeUDPPortOn(t, loopback)
}

// FreeTCPPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	return freeTCPPortOn(t, loopback)
}

// FreeUDPPortRange returns an even port P such that UDP ports P to P+n-1 on 127.0.0.1 were all
// free a moment ago. RTP wants the even port with RTCP on the next one (RFC 3550 §11), and sipp's
// -mp takes P for audio and P+2 for video, so callers ask for n=4 there.
func FreeUDPPortRange(t testing.TB, n int) int {
	t.Helper()
	return freeUDPPortRangeOn(t, loopback, n)
}

func freeUDPPortOn(t testing.TB, ip netip.Addr) int {
	t.Helper()
	for range portAttempts {
		if p, err := freeUDPPort(ip); err == nil {
			return p
		}
	}
	t.Fatalf("peertest: no free UDP port on %s", ip)
	return 0
}

func freeTCPPortOn(t testing.TB, ip netip.Addr) int {
	t.Helper()
	for range portAttempts {
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			continue
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		return p
	}
	t.Fatalf("peertest: no free TCP port on %s", ip)
	return 0
}

func freeUDPPortRangeOn(t testing.TB, ip netip.Addr, n int) int {
	t.Helper()
	for range portAttempts {
		base, err := freeUDPPort(ip)
		if err != nil {
			continue
		}
		base &^= 1
		if base+n-1 > 65535 {
			continue
		}
		if udpRangeFree(ip, base, n) {
			return base
		}
	}
	t.Fatalf("peertest: no %d consecutive free UDP ports on %s", n, ip)
	return 0
}

func freeUDPPort(ip netip.Addr) (int, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// udpRangeFree binds every port of the range to prove it is free, then releases them all.
func udpRangeFree(ip netip.Addr, base, n int) bool {
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
		if err != nil {
			return false
		}
		held = append(held, c)
	}
	return true
}
