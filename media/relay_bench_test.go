package media

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// Benchmarks for docs/performance.md "## Relay":
//
//	go test -bench . -benchmem -run xxx ./media/
//
// The handler benchmarks measure what a reader goroutine does per datagram after ReadFrom
// returns: validation, SRTP, PT remap, the rewrite toward WhatsApp, encryption and the call to
// WriteTo on a PacketConn that discards (no syscall). The payload is 160 bytes (a G.711 frame,
// about twice a typical Opus frame), as in go-libs §3.

const benchPayload = 160

func benchSuites() []string { return []string{SuiteAES128SHA1_80, SuiteAEADAES128GCM} }

func BenchmarkRelaySRTPToRTP(b *testing.B) {
	for _, suite := range benchSuites() {
		b.Run(suite, func(b *testing.B) {
			r, wa, _ := offlineRelay(b, suite, "")
			from := netip.MustParseAddrPort("192.0.2.1:3480")
			// Each SRTP packet can be accepted once (replay window), so packets are sealed in
			// batches with the timer stopped; buffers are reused so sealing does not churn the GC.
			const batch = 4096
			pkts := make([][]byte, batch)
			for i := range pkts {
				pkts[i] = make([]byte, 0, maxDatagram)
			}
			plain := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: waOpusPT, SSRC: 0x1234}, Payload: randPayload(benchPayload)}
			raw := make([]byte, 0, maxDatagram)
			seq := 0
			seal := func() {
				for i := range pkts {
					plain.SequenceNumber = uint16(seq)
					plain.Timestamp = uint32(960 * seq)
					seq++
					n, err := plain.MarshalTo(raw[:cap(raw)])
					require.NoError(b, err)
					pkts[i], err = wa.enc.EncryptRTP(pkts[i][:0], raw[:n], nil)
					require.NoError(b, err)
				}
			}
			buf := make([]byte, maxDatagram+1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == 0 {
					b.StopTimer()
					seal()
					b.StartTimer()
				}
				n := copy(buf, pkts[i%batch])
				r.handleWhatsAppRTP(buf[:n], from, time.Now())
			}
			b.StopTimer()
			require.Equal(b, uint64(b.N), r.Stats().PBX.PacketsOut)
		})
	}
}

func BenchmarkRelayRTPToSRTP(b *testing.B) {
	for _, suite := range benchSuites() {
		b.Run(suite, func(b *testing.B) {
			r, _, pbx := offlineRelay(b, suite, "")
			from := netip.MustParseAddrPort("192.0.2.2:10000")
			tmpl := pbx.seal(&rtp.Packet{Header: rtp.Header{PayloadType: pbxOpusPT, SSRC: 0x4321}, Payload: randPayload(benchPayload)})
			buf := make([]byte, maxDatagram+1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := copy(buf, tmpl)
				buf[2], buf[3] = byte(i>>8), byte(i)
				r.handlePBXRTP(buf[:n], from, time.Now())
			}
			b.StopTimer()
			require.Equal(b, uint64(b.N), r.Stats().WhatsApp.PacketsOut)
		})
	}
}

// BenchmarkRelayLoopback sends through real loopback sockets: peer sendto, relay recvfrom,
// handler, relay sendto, peer recvfrom. ns/op is per packet, both syscall pairs included, with
// at most 32 packets in flight so the socket buffers never overflow. The peers do not encrypt
// or decrypt inside the timed part.
func BenchmarkRelayLoopback(b *testing.B) {
	const window = 32
	// The same traffic pattern peer to peer without the relay: what the two peer-side syscalls
	// and wake-ups cost, to subtract from the figures below.
	b.Run("Direct", func(b *testing.B) {
		src, dst := listen(b), listen(b)
		pkt := randPayload(rtpHeaderSize + benchPayload)
		rbuf := make([]byte, 2048)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += window {
			k := min(window, b.N-i)
			for range k {
				if _, err := src.WriteTo(pkt, dst.LocalAddr()); err != nil {
					b.Fatal(err)
				}
			}
			readN(b, dst, rbuf, k)
		}
	})
	for _, suite := range benchSuites() {
		b.Run("PBXToWhatsApp/"+suite, func(b *testing.B) {
			h := newHarness(b, suite, func(c *RelayConfig) { c.SilenceAfter = time.Hour })
			h.cfg.Log.Logger.SetLevel(0)
			require.NoError(b, h.relay.Start(context.Background()))
			h.wa.mustRecv() // the maiden packet
			tmpl := h.pbx.seal(&rtp.Packet{Header: rtp.Header{PayloadType: pbxOpusPT, SSRC: 1}, Payload: randPayload(benchPayload)})
			rbuf := make([]byte, 2048)
			to := h.pbxAddr()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += window {
				k := min(window, b.N-i)
				for j := range k {
					tmpl[2], tmpl[3] = byte((i+j)>>8), byte(i+j)
					if _, err := h.pbx.conn.WriteTo(tmpl, to); err != nil {
						b.Fatal(err)
					}
				}
				readN(b, h.wa.conn, rbuf, k)
			}
		})
		b.Run("WhatsAppToPBX/"+suite, func(b *testing.B) {
			h := newHarness(b, suite, func(c *RelayConfig) { c.SilenceAfter = time.Hour })
			h.cfg.Log.Logger.SetLevel(0)
			require.NoError(b, h.relay.Start(context.Background()))
			const batch = 4096 // sealed with the timer stopped, as in BenchmarkRelaySRTPToRTP
			pkts := make([][]byte, batch)
			plain := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: waOpusPT, SSRC: 2}, Payload: randPayload(benchPayload)}
			raw := make([]byte, maxDatagram)
			seq := 0
			seal := func() {
				for j := range pkts {
					plain.SequenceNumber = uint16(seq)
					seq++
					n, err := plain.MarshalTo(raw)
					require.NoError(b, err)
					pkts[j], err = h.wa.enc.EncryptRTP(pkts[j][:0], raw[:n], nil)
					require.NoError(b, err)
				}
			}
			rbuf := make([]byte, 2048)
			to := h.waAddr()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += window {
				if i%batch == 0 {
					b.StopTimer()
					seal()
					b.StartTimer()
				}
				k := min(window, b.N-i)
				for j := range k {
					if _, err := h.wa.conn.WriteTo(pkts[(i+j)%batch], to); err != nil {
						b.Fatal(err)
					}
				}
				readN(b, h.pbx.conn, rbuf, k)
			}
		})
	}
}

func readN(b *testing.B, c *UDPConn, buf []byte, n int) {
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		b.Fatal(err)
	}
	for range n {
		if _, _, err := c.ReadFrom(buf); err != nil {
			b.Fatalf("loopback packet lost: %v", err)
		}
	}
}
