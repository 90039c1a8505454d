package peertest

import (
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWritePCAPRoundTrip(t *testing.T) {
	t.Parallel()
	payloads := OpusLikePayloads(50, 7)
	pkts := RTPStream(payloads, 111, 0x11223344, 65530, 4294967000, 960) // both counters wrap
	dst := netip.MustParseAddrPort("127.0.0.1:40000")
	path := filepath.Join(t.TempDir(), "a.pcap")
	require.NoError(t, WritePCAP(path, pkts, dst))

	got, err := ReadPCAP(path)
	require.NoError(t, err)
	require.Len(t, got, len(pkts))
	for i, g := range got {
		assert.Equal(t, dst, g.Dst)
		assert.Equal(t, pcapEpoch.Add(time.Duration(i)*20*time.Millisecond), g.Time)
		p, err := ParseRTP(g.Payload)
		require.NoError(t, err)
		assert.Equal(t, pkts[i], p, "packet %d", i)
	}
	assert.Equal(t, uint16(65535), mustRTP(t, got[5].Payload).Seq)
	assert.Equal(t, uint16(0), mustRTP(t, got[6].Payload).Seq)
	assert.True(t, mustRTP(t, got[0].Payload).Marker)
	assert.False(t, mustRTP(t, got[1].Payload).Marker)
}

func TestWritePCAPChecksums(t *testing.T) {
	t.Parallel()
	frame := udpFrame(netip.MustParseAddrPort("127.0.0.1:6000"), netip.MustParseAddrPort("127.0.0.1:40001"), 3,
		RTPPacket{PT: 0, Payload: []byte{1, 2, 3}}.Marshal()) // odd length exercises the padding byte
	ip := frame[14:34]
	assert.Equal(t, uint16(0), checksum(ip, 0), "IPv4 header checksum")
	udp := frame[34:]
	var pseudo uint32 = 0x7f00 + 0x0001 + 0x7f00 + 0x0001 + 17 + uint32(len(udp))
	assert.Equal(t, uint16(0), checksum(udp, pseudo), "UDP checksum")
	assert.Equal(t, uint16(len(udp)), binary.BigEndian.Uint16(udp[4:]))
}

func TestWritePCAPRejectsIPv6(t *testing.T) {
	t.Parallel()
	err := WritePCAP(filepath.Join(t.TempDir(), "a.pcap"), nil, netip.MustParseAddrPort("[::1]:4000"))
	require.Error(t, err)
}

func TestParseRTPExtensionAndPadding(t *testing.T) {
	t.Parallel()
	b := RTPPacket{PT: 96, Seq: 1, TS: 2, SSRC: 3, Payload: []byte{9, 9, 0, 0, 2}}.Marshal()
	// One CSRC, a one-word extension and two padding bytes around the payload {9, 9}.
	b[0] |= 0x01 | 0x10 | 0x20
	pkt := append(append([]byte{}, b[:12]...), 0, 0, 0, 1) // CSRC
	pkt = append(pkt, 0xbe, 0xde, 0, 1, 1, 2, 3, 4)        // extension header + 1 word
	pkt = append(pkt, b[12:]...)
	p, err := ParseRTP(pkt)
	require.NoError(t, err)
	assert.Equal(t, []byte{9, 9, 0}, p.Payload)

	_, err = ParseRTP([]byte{0x80, 0})
	require.Error(t, err)
}

func mustRTP(t *testing.T, b []byte) RTPPacket {
	t.Helper()
	p, err := ParseRTP(b)
	require.NoError(t, err)
	return p
}
