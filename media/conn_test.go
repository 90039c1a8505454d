package media

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loopbackIP() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

// freeRange finds pairs free even/odd port pairs on loopback, below the kernel's ephemeral range
// so that the OS never hands them to a port-0 socket of a parallel test. Ranges are random and
// checked by binding, and the caller retries when a race with another test still loses.
func freeRange(t *testing.T, pairs int) (lo, hi int) {
	t.Helper()
	top := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 12000 {
				top = v
			}
		}
	}
	for range 50 {
		lo = 10000 + 2*rand.IntN((top-10000-2*pairs)/2)
		hi = lo + 2*pairs - 1
		free := true
		var held []*net.UDPConn
		for p := lo; p <= hi && free; p++ {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopbackIP(), uint16(p))))
			if err != nil {
				free = false
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			_ = c.Close()
		}
		if free {
			return lo, hi
		}
	}
	t.Fatal("no free port range found")
	return 0, 0
}

func rtpPort(ep *Endpoint) int  { return int(ep.RTP.LocalAddr().Port()) }
func rtcpPort(ep *Endpoint) int { return int(ep.RTCP.LocalAddr().Port()) }

func TestNewPortsValidation(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		ip       netip.Addr
		min, max int
	}{
		"odd start":       {loopbackIP(), 10001, 10010},
		"end below start": {loopbackIP(), 10000, 9000},
		"end equal start": {loopbackIP(), 10000, 10000},
		"zero start":      {loopbackIP(), 0, 100},
		"end too high":    {loopbackIP(), 65500, 65536},
		"invalid ip":      {netip.Addr{}, 10000, 10010},
	} {
		_, err := NewPorts(tc.ip, tc.min, tc.max)
		assert.Error(t, err, name)
	}
	p, err := NewPorts(loopbackIP(), 10000, 10001)
	require.NoError(t, err)
	assert.Equal(t, 1, p.pairs())
	p, err = NewPorts(loopbackIP(), 10000, 10010) // 10010 alone cannot hold a pair
	require.NoError(t, err)
	assert.Equal(t, 5, p.pairs())
}

func TestPortsOpenRoundRobin(t *testing.T) {
	t.Parallel()
	const pairs = 4
	for attempt := 0; ; attempt++ {
		lo, hi := freeRange(t, pairs)
		p, err := NewPorts(loopbackIP(), lo, hi)
		require.NoError(t, err)

		// Each endpoint is closed before the next Open, and still the next pair is used: a
		// just-freed port is not handed out again until the range has been cycled.
		var got []int
		ok := true
		for range 2 * pairs {
			ep, err := p.Open(context.Background())
			require.NoError(t, err)
			assert.Equal(t, rtpPort(ep)+1, rtcpPort(ep))
			assert.Zero(t, rtpPort(ep)%2)
			assert.True(t, rtpPort(ep) >= lo && rtcpPort(ep) <= hi)
			got = append(got, rtpPort(ep))
			require.NoError(t, ep.Close())
		}
		for i := 1; i < len(got); i++ {
			want := got[i-1] + 2
			if want > hi {
				want = lo
			}
			if got[i] != want {
				ok = false // another process took a port in between; only a retry can tell
			}
		}
		if ok {
			assert.Equal(t, got[:pairs], got[pairs:], "the cycle repeats")
			return
		}
		require.Less(t, attempt, 5, "round robin order broken: %v", got)
	}
}

func TestPortsSkipsBusyPorts(t *testing.T) {
	t.Parallel()
	lo, hi := freeRange(t, 3)
	p, err := NewPorts(loopbackIP(), lo, hi)
	require.NoError(t, err)
	first, err := p.Open(context.Background())
	require.NoError(t, err)
	defer first.Close()

	// Someone holds the RTCP (odd) port of the next pair: the whole pair is skipped.
	next := rtpPort(first) + 2
	if next > hi {
		next = lo
	}
	busy, err := ListenUDP(netip.AddrPortFrom(loopbackIP(), uint16(next+1)))
	require.NoError(t, err)
	defer busy.Close()

	ep, err := p.Open(context.Background())
	require.NoError(t, err)
	defer ep.Close()
	assert.NotEqual(t, next, rtpPort(ep))
	assert.NotEqual(t, rtpPort(first), rtpPort(ep))

	// The even port of the skipped pair was released again.
	c, err := ListenUDP(netip.AddrPortFrom(loopbackIP(), uint16(next)))
	require.NoError(t, err)
	require.NoError(t, c.Close())

	// All three pairs are now in use or blocked.
	_, err = p.Open(context.Background())
	assert.ErrorIs(t, err, ErrPortsExhausted)
}

func TestPortsExhausted(t *testing.T) {
	t.Parallel()
	lo, hi := freeRange(t, 2)
	p, err := NewPorts(loopbackIP(), lo, hi)
	require.NoError(t, err)
	a, err := p.Open(context.Background())
	require.NoError(t, err)
	b, err := p.Open(context.Background())
	require.NoError(t, err)
	_, err = p.Open(context.Background())
	require.ErrorIs(t, err, ErrPortsExhausted)

	require.NoError(t, a.Close())
	c, err := p.Open(context.Background())
	require.NoError(t, err, "a freed pair is usable again once it is the only one")
	assert.Equal(t, rtpPort(a), rtpPort(c))
	require.NoError(t, b.Close())
	require.NoError(t, c.Close())
}

func TestPortsContext(t *testing.T) {
	t.Parallel()
	lo, hi := freeRange(t, 1)
	p, err := NewPorts(loopbackIP(), lo, hi)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Open(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestEndpointAndUDPConn(t *testing.T) {
	t.Parallel()
	ep := &Endpoint{RTP: listen(t), RTCP: listen(t)}
	other := listen(t)

	// IPv4 in, IPv4 out: the source compares equal to an SDP address.
	_, err := other.WriteTo([]byte("hello"), ep.RTP.LocalAddr())
	require.NoError(t, err)
	require.NoError(t, ep.RTP.SetReadDeadline(time.Now().Add(recvWait)))
	buf := make([]byte, 64)
	n, from, err := ep.RTP.ReadFrom(buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf[:n]))
	assert.Equal(t, other.LocalAddr(), from)

	// A read deadline in the past unblocks a reader (how the relay stops its goroutines).
	require.NoError(t, ep.RTCP.SetReadDeadline(time.Unix(1, 0)))
	_, _, err = ep.RTCP.ReadFrom(buf)
	assert.True(t, isTimeout(err))

	require.NoError(t, ep.Close())
	require.NoError(t, ep.Close(), "closing twice is fine: the relay and its caller may both close")
	_, _, err = ep.RTP.ReadFrom(buf)
	assert.True(t, errors.Is(err, net.ErrClosed))
	assert.NoError(t, (&Endpoint{RTP: listen(t)}).Close(), "no RTCP socket")
}

func TestUDPConnWriteToDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	a, b := listen(t), listen(t)
	buf := make([]byte, 200)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := a.WriteTo(buf, b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}
