package wasim

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/media"
)

var peerCodecs = []media.Codec{
	{PT: 111, Name: media.CodecOpus, ClockRate: 48000, Channels: 2},
	{PT: 126, Name: media.CodecTelEvent, ClockRate: 8000},
}

// peerPair connects a business-like peer (sends first) to a WhatsApp-like peer (waits for
// the maiden packet) with fresh SDES keys of suite.
func peerPair(t *testing.T, suite string) (biz, wa *Peer) {
	t.Helper()
	var err error
	biz, err = NewPeer(PeerConfig{Log: testLog(t), SendFirst: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = biz.Close() })
	wa, err = NewPeer(PeerConfig{Log: testLog(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = wa.Close() })
	kb, err := media.NewCrypto(1, suite)
	require.NoError(t, err)
	kw, err := media.NewCrypto(1, suite)
	require.NoError(t, err)
	require.NoError(t, biz.Connect(Link{Remote: wa.LocalAddr(), LocalKey: kb, RemoteKey: kw, Codecs: peerCodecs}))
	require.NoError(t, wa.Connect(Link{Remote: biz.LocalAddr(), LocalKey: kw, RemoteKey: kb, Codecs: peerCodecs}))
	return biz, wa
}

func TestPeersExchangeSRTP(t *testing.T) {
	t.Parallel()
	suites := []string{media.SuiteAES128SHA1_80, media.SuiteAES128SHA1_32, media.SuiteAES256SHA1_80, media.SuiteAEADAES128GCM}
	for _, suite := range suites {
		t.Run(suite, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			biz, wa := peerPair(t, suite)

			// The WhatsApp side must not send before the business's maiden packet.
			waSent := make(chan error, 1)
			fromWA := payloads(5)
			go func() { waSent <- wa.Send(ctx, fromWA, 111, 5*time.Millisecond) }()
			time.Sleep(100 * time.Millisecond)
			assert.Empty(t, biz.Received(), "WhatsApp peer sent before the maiden packet")
			assert.Zero(t, wa.Stats().PacketsOut)

			fromBiz := payloads(8)
			require.NoError(t, biz.Send(ctx, fromBiz, 111, 5*time.Millisecond))
			require.NoError(t, <-waSent)
			waitFor(t, "business packets", func() bool { return len(wa.Received()) == len(fromBiz) })
			waitFor(t, "WhatsApp packets", func() bool { return len(biz.Received()) == len(fromWA) })

			got := wa.Received()
			for i, p := range got {
				assert.Equal(t, fromBiz[i], p.Payload)
				assert.Equal(t, uint8(111), p.PT)
				assert.Equal(t, biz.SSRC(), p.SSRC)
				assert.Equal(t, i == 0, p.Marker, "marker only on the first packet")
				if i > 0 {
					assert.Equal(t, got[i-1].Seq+1, p.Seq)
					assert.Equal(t, got[i-1].TS+960, p.TS, "20 ms of Opus at 48 kHz")
				}
			}
			for i, p := range biz.Received() {
				assert.Equal(t, fromWA[i], p.Payload)
			}

			require.NoError(t, biz.SendDTMF(ctx, '7', 126, 60*time.Millisecond))
			require.NoError(t, biz.SendDTMF(ctx, '#', 126, 40*time.Millisecond))
			require.NoError(t, biz.SendDTMF(ctx, 'a', 126, 40*time.Millisecond))
			waitFor(t, "DTMF", func() bool { return wa.ReceivedDTMF() == "7#A" })

			// The DTMF packets of one event share its timestamp; the end packet is sent 3 times.
			var events []Packet
			waitFor(t, "all DTMF packets", func() bool {
				events = events[:0]
				for _, p := range wa.Received() {
					if p.PT == 126 {
						events = append(events, p)
					}
				}
				return len(events) == 3+3+2+3+2+3
			})
			for _, p := range events[:6] {
				assert.Equal(t, events[0].TS, p.TS)
			}
			assert.True(t, events[0].Marker)
			ev, end, dur, ok := media.DecodeTelephoneEvent(events[5].Payload)
			require.True(t, ok)
			assert.Equal(t, uint8(7), ev)
			assert.True(t, end)
			assert.Equal(t, uint16(480), dur, "60 ms in 8 kHz units")

			assert.Zero(t, wa.Stats().AuthFailures)
			assert.Empty(t, wa.Violations())
		})
	}
}

func TestPeerRejectsForgedAndCountsAuthFailures(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	biz, wa := peerPair(t, media.SuiteAES128SHA1_80)

	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(wa.LocalAddr()))
	require.NoError(t, err)
	defer conn.Close()
	forged := append([]byte{0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9}, make([]byte, 30)...)
	_, err = conn.Write(forged)
	require.NoError(t, err)
	waitFor(t, "auth failure", func() bool { return wa.Stats().AuthFailures == 1 })
	assert.Empty(t, wa.Received())
	assert.True(t, wa.FirstPacketAt().IsZero(), "a forged packet is not a maiden packet")

	require.NoError(t, biz.Send(ctx, payloads(1), 111, 0))
	waitFor(t, "valid packet", func() bool { return len(wa.Received()) == 1 })
	assert.False(t, wa.FirstPacketAt().IsZero())
}

func TestPeerEcho(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	biz, wa := peerPair(t, media.SuiteAES128SHA1_80)
	wa.Echo(true)
	sent := payloads(6)
	require.NoError(t, biz.Send(ctx, sent, 111, 5*time.Millisecond))
	waitFor(t, "echo", func() bool { return len(biz.Received()) == len(sent) })
	for i, p := range biz.Received() {
		assert.Equal(t, sent[i], p.Payload)
		assert.Equal(t, wa.SSRC(), p.SSRC)
	}
}

func TestPeerSendStopsOnContextAndClose(t *testing.T) {
	t.Parallel()
	_, wa := peerPair(t, media.SuiteAES128SHA1_80)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := wa.Send(ctx, payloads(1), 111, 0)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, wa.Close())
	require.ErrorIs(t, wa.Send(context.Background(), payloads(1), 111, 0), ErrPeerClosed)
}
