package media

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rtpLike is a 172-byte datagram that the demultiplexer takes for RTP (go-libs §3's size).
func rtpLike() []byte {
	p := make([]byte, 172)
	p[0] = 0x80
	p[1] = waOpusPT
	return p
}

// TestWebRTCConnDoesNotAllocate keeps the media path's 0 allocs/op in the ordinary test run.
// Both ends are pion/ice agents with the leg's demultiplexer (litePeer), and the count covers the
// whole process, so 0 means the leg's WriteTo and ReadFrom and pion's path under them.
// Not parallel: the malloc counter is process-wide.
func TestWebRTCConnDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	peer := newLitePeer(t, testCert(t))
	leg := newTestLeg(t, nil)
	conn, _ := connectLeg(t, leg, peer)
	pkt, buf := rtpLike(), make([]byte, maxDatagram+1)
	roundTrip := func() {
		_, _ = conn.WriteTo(pkt, netip.AddrPort{})
		_, _, _ = peer.conn.ReadFrom(buf)
		_, _ = peer.conn.WriteTo(pkt, netip.AddrPort{})
		_, _, _ = conn.ReadFrom(buf)
	}
	for range 100 {
		roundTrip() // warm pools
	}
	allocs := testing.AllocsPerRun(1000, roundTrip)
	t.Logf("allocations per round trip (2 datagrams): %.2f", allocs)
	require.Zero(t, allocs)
}

// BenchmarkWebRTCConnPacket is ping-pong, one datagram in flight, between two PacketConns over
// loopback: "udp" is two plain UDPConns (the SDES leg's path, the baseline), "ice" the leg's
// PacketConn and a lite peer's (pion's UDP mux and agent, the demultiplexer). ns/packet is one
// datagram's send, delivery and wake-up of the reader.
func BenchmarkWebRTCConnPacket(b *testing.B) {
	pingPong := func(b *testing.B, a, z PacketConn, to netip.AddrPort) {
		pkt, buf := rtpLike(), make([]byte, maxDatagram+1)
		back := a.LocalAddr()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU()
		for range b.N {
			_, _ = a.WriteTo(pkt, to)
			if _, _, err := z.ReadFrom(buf); err != nil {
				b.Fatal(err)
			}
			_, _ = z.WriteTo(pkt, back)
			if _, _, err := a.ReadFrom(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(2*b.N), "cpu-ns/packet")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/packet")
	}
	b.Run("udp", func(b *testing.B) {
		a, z := listen(b), listen(b)
		pingPong(b, a, z, z.LocalAddr())
	})
	b.Run("ice", func(b *testing.B) {
		peer := newLitePeer(b, testCert(b))
		leg := newTestLeg(b, func(c *WebRTCConfig) { c.Log = discardEntry() })
		conn, _ := connectLeg(b, leg, peer)
		pingPong(b, conn, peer.conn, netip.AddrPort{})
	})
}

// processCPU is the process's user plus system CPU time: with one datagram in flight most of
// a ping-pong's wall time is waiting, so CPU per packet is what scales with calls.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWebRTCCallSetup is a user-initiated call's media set-up against a pion PeerConnection
// configured like Meta (lite, actpass): NewWebRTCLeg (gathering), Answer, Connect (ICE + DTLS).
// ns/op is that span; the peer's own set-up is outside the timer. Metrics:
//   - connect-ms: Connect alone, ICE plus DTLS;
//   - ice-ms: its ICE part (check pacing: iceCheckInterval);
//   - first-pkt-µs: from Connect's return to the Meta peer receiving the relay's first packet
//     (NewRelay, Start, the maiden packet's flight, pion's SRTP and track set-up) — the figure
//     Meta's "business sends first" rule (§0 fact 6) puts on the critical path.
func BenchmarkWebRTCCallSetup(b *testing.B) {
	var connectTotal, iceTotal, firstTotal time.Duration
	for range b.N {
		b.StopTimer()
		meta := newMetaPeer(b, 0)
		offer := meta.offer()
		ep := loopbackEndpoint(b)
		cert := testCert(b)
		b.StartTimer()

		leg, err := NewWebRTCLeg(WebRTCConfig{Endpoint: ep, Certificate: cert, Log: discardEntry()})
		require.NoError(b, err)
		ans, err := leg.Answer(offer, metaCodecs())
		require.NoError(b, err)
		b.StopTimer()
		meta.setAnswer(ans) // the answer's trip to Meta is not ours to time
		b.StartTimer()
		connectStart := time.Now()
		conn, keys, err := leg.Connect(context.Background())
		connected := time.Now()
		b.StopTimer()
		require.NoError(b, err)
		connectTotal += connected.Sub(connectStart)
		iceTotal += leg.iceTook

		waMap, pbxMap := testPTMaps()
		pbxPeer := newPeer(b, nil)
		r, err := NewRelay(RelayConfig{
			WhatsApp: LegConfig{Endpoint: &Endpoint{RTP: conn}, Remote: leg.RemoteAddr(), RTCPMux: true, SRTP: keys, PTMap: waMap},
			PBX:      LegConfig{Endpoint: loopbackEndpoint(b), Remote: pbxPeer.addr(), PTMap: pbxMap},
			AudioPT:  waOpusPT, Log: discardEntry(),
		})
		require.NoError(b, err)
		require.NoError(b, r.Start(context.Background()))
		select {
		case at := <-meta.firstPkt:
			firstTotal += at.Sub(connected)
		case <-time.After(peerWait):
			b.Fatal("no first packet at the Meta peer")
		}
		require.NoError(b, r.Close())
		require.NoError(b, meta.pc.GracefulClose())
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(iceTotal.Microseconds())/n/1000, "ice-ms")
	b.ReportMetric(float64(connectTotal.Microseconds())/n/1000, "connect-ms")
	b.ReportMetric(float64(firstTotal.Microseconds())/n, "first-pkt-µs")
}

// footprintCalls is how many connected calls BenchmarkWebRTCLegFootprint holds at once.
const footprintCalls = 20

// BenchmarkWebRTCLegFootprint holds 20 connected calls (leg + relay + PBX endpoint, against
// lite peers) and reports what one costs:
//   - goroutines/call: goroutines carrying the pprof label the call was built under (labels are
//     inherited by every goroutine pion and the relay start from it), so the peers' are not
//     counted;
//   - heap-B/call: live heap freed by closing the calls (relay, leg, DTLS, agent), after GC.
//     The peers stay up, but they free some DTLS state when our close_notify arrives, so this
//     is an upper bound.
//
// Targets: 256 KiB and 25 goroutines per call.
func BenchmarkWebRTCLegFootprint(b *testing.B) {
	for range b.N {
		heap, goroutines := measureFootprint(b)
		b.ReportMetric(heap, "heap-B/call")
		b.ReportMetric(goroutines, "goroutines/call")
		if heap > 256<<10 || goroutines > 25 {
			b.Errorf("over target: %.0f B and %.1f goroutines per call", heap, goroutines)
		}
	}
}

func measureFootprint(b *testing.B) (heapPerCall, goroutinesPerCall float64) {
	b.Helper()
	type call struct {
		relay *Relay
		leg   *WebRTCLeg
	}
	calls := make([]call, 0, footprintCalls)
	peers := make([]*litePeer, 0, footprintCalls)
	pprof.Do(context.Background(), pprof.Labels("side", "peer"), func(context.Context) {
		for range footprintCalls {
			peers = append(peers, newLitePeer(b, testCert(b)))
		}
	})
	cert := testCert(b)
	for _, p := range peers {
		var leg *WebRTCLeg
		var ans *Description
		pprof.Do(context.Background(), pprof.Labels("side", "leg"), func(context.Context) {
			var err error
			leg, err = NewWebRTCLeg(WebRTCConfig{Endpoint: loopbackEndpoint(b), Certificate: cert, Log: discardEntry()})
			require.NoError(b, err)
			ans, err = leg.Answer(p.offer(), metaCodecs())
			require.NoError(b, err)
		})
		peerErr := make(chan error, 1)
		pprof.Do(context.Background(), pprof.Labels("side", "peer"), func(ctx context.Context) {
			go func() { peerErr <- p.connect(ctx, ans) }()
		})
		pprof.Do(context.Background(), pprof.Labels("side", "leg"), func(ctx context.Context) {
			conn, keys, err := leg.Connect(ctx)
			require.NoError(b, err)
			waMap, pbxMap := testPTMaps()
			r, err := NewRelay(RelayConfig{
				WhatsApp: LegConfig{Endpoint: &Endpoint{RTP: conn}, Remote: leg.RemoteAddr(), RTCPMux: true, SRTP: keys, PTMap: waMap},
				PBX:      LegConfig{Endpoint: loopbackEndpoint(b), Remote: netip.MustParseAddrPort("127.0.0.1:9"), PTMap: pbxMap},
				AudioPT:  waOpusPT, Log: discardEntry(),
			})
			require.NoError(b, err)
			require.NoError(b, r.Start(ctx))
			calls = append(calls, call{r, leg})
		})
		require.NoError(b, <-peerErr)
	}
	time.Sleep(200 * time.Millisecond) // silence fill and consent checks running: steady state
	goroutines := labeledGoroutines(b, `"side":"leg"`)
	before := liveHeap()
	for _, c := range calls {
		require.NoError(b, c.relay.Close())
		require.NoError(b, c.leg.Close())
	}
	after := liveHeap()
	return float64(before-after) / footprintCalls, float64(goroutines) / footprintCalls
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// labeledGoroutines counts goroutines whose pprof labels contain label, from the goroutine
// profile's debug=1 text ("<n> @ <pcs>" then "# labels: {...}").
func labeledGoroutines(b *testing.B, label string) int {
	b.Helper()
	var buf bytes.Buffer
	require.NoError(b, pprof.Lookup("goroutine").WriteTo(&buf, 1))
	total, count := 0, 0
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if n, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(n)
			continue
		}
		if strings.HasPrefix(line, "# labels:") && strings.Contains(line, label) {
			total += count
		}
	}
	return total
}
