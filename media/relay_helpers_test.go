package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
)

// Payload types used by the relay tests. Different numbers on each leg, so a missing remap shows.
const (
	waOpusPT  = 111
	waDTMFPT  = 126
	pbxOpusPT = 96
	pbxDTMFPT = 101
	testSSRC  = 0x5eed5eed
	recvWait  = 2 * time.Second
)

func testPTMaps() (wa, pbx map[uint8]uint8) {
	return map[uint8]uint8{waOpusPT: pbxOpusPT, waDTMFPT: pbxDTMFPT},
		map[uint8]uint8{pbxOpusPT: waOpusPT, pbxDTMFPT: waDTMFPT}
}

// testProfile is the tests' own suite table (go-libs §3), independent of sdes.go: the fake
// peers build their contexts from it, and the relay uses it until Crypto.Profile lands.
func testProfile(suite string) (srtp.ProtectionProfile, error) {
	switch suite {
	case SuiteAES128SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	case SuiteAES128SHA1_32:
		return srtp.ProtectionProfileAes128CmHmacSha1_32, nil
	case SuiteAES256SHA1_80:
		return srtp.ProtectionProfileAes256CmHmacSha1_80, nil
	case SuiteAEADAES128GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	}
	return 0, errors.New("test: unknown suite " + suite)
}

func testSRTPParams(c Crypto) (srtp.ProtectionProfile, []byte, []byte, error) {
	prof, err := testProfile(c.Suite)
	if err != nil {
		return 0, nil, nil, err
	}
	kl, _ := prof.KeyLen()
	sl, _ := prof.SaltLen()
	if len(c.KeySalt) != kl+sl {
		return 0, nil, nil, errors.New("test: wrong key length")
	}
	return prof, c.KeySalt[:kl], c.KeySalt[kl:], nil
}

// sdesReady reports whether sdes.go's Crypto.Profile/KeyAndSalt have replaced their TODO stubs.
func sdesReady() (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	c := Crypto{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: make([]byte, 30)}
	if _, err := c.Profile(); err != nil {
		return false
	}
	_, _, err := c.KeyAndSalt()
	return err == nil
}

// testCrypto makes a crypto line with a fresh key: with sdes.go's NewCrypto once it exists, so the
// relay is tested with the keys production generates.
func testCrypto(t testing.TB, suite string) Crypto {
	t.Helper()
	if sdesReady() {
		c, err := NewCrypto(1, suite)
		require.NoError(t, err)
		return c
	}
	prof, err := testProfile(suite)
	require.NoError(t, err)
	kl, _ := prof.KeyLen()
	sl, _ := prof.SaltLen()
	return Crypto{Tag: 1, Suite: suite, KeySalt: randPayload(kl + sl)}
}

// newTestRelay builds the relay through the production path (NewRelay, Crypto.Profile) once
// sdes.go is implemented, and through the tests' suite table until then.
func newTestRelay(t testing.TB, cfg RelayConfig) (*Relay, error) {
	if sdesReady() {
		return NewRelay(cfg)
	}
	return newRelay(cfg, testSRTPParams)
}

func testLog(t testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return l.WithField("call_id", t.Name())
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

func listen(t testing.TB) *UDPConn {
	t.Helper()
	c, err := ListenUDP(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func loopbackEndpoint(t testing.TB) *Endpoint {
	t.Helper()
	return &Endpoint{RTP: listen(t), RTCP: listen(t)}
}

// peer is a fake media peer: WhatsApp (SRTP) or a PBX (plain RTP, or SRTP when keys are set).
type peer struct {
	t        testing.TB
	conn     *UDPConn
	enc, dec *srtp.Context
	hdr      rtp.Header
}

// newPeer makes a peer whose keys mirror the relay leg's: it encrypts with the leg's Remote
// key and decrypts with the leg's Local key.
func newPeer(t testing.TB, keys *SRTPKeys) *peer {
	t.Helper()
	p := newCipherPeer(t, keys)
	p.conn = listen(t)
	return p
}

// newCipherPeer is a peer without a socket, for feeding handlers directly.
func newCipherPeer(t testing.TB, keys *SRTPKeys) *peer {
	t.Helper()
	p := &peer{t: t}
	if keys == nil {
		return p
	}
	prof, key, salt, err := testSRTPParams(keys.Remote)
	require.NoError(t, err)
	p.enc, err = srtp.CreateContext(key, salt, prof)
	require.NoError(t, err)
	prof, key, salt, err = testSRTPParams(keys.Local)
	require.NoError(t, err)
	p.dec, err = srtp.CreateContext(key, salt, prof, srtp.SRTPReplayProtection(64))
	require.NoError(t, err)
	return p
}

func (p *peer) addr() netip.AddrPort { return p.conn.LocalAddr() }

// seal marshals (and encrypts) an RTP packet.
func (p *peer) seal(pkt *rtp.Packet) []byte {
	p.t.Helper()
	pkt.Version = 2
	b, err := pkt.Marshal()
	require.NoError(p.t, err)
	if p.enc != nil {
		b, err = p.enc.EncryptRTP(nil, b, nil)
		require.NoError(p.t, err)
	}
	return b
}

func (p *peer) sendRaw(to netip.AddrPort, b []byte) {
	p.t.Helper()
	_, err := p.conn.WriteTo(b, to)
	require.NoError(p.t, err)
}

func (p *peer) send(to netip.AddrPort, pkt *rtp.Packet) []byte {
	p.t.Helper()
	b := p.seal(pkt)
	p.sendRaw(to, b)
	return b
}

func (p *peer) sendRTCP(to netip.AddrPort) {
	p.t.Helper()
	b, err := (&rtcp.ReceiverReport{SSRC: 42}).Marshal()
	require.NoError(p.t, err)
	if p.enc != nil {
		b, err = p.enc.EncryptRTCP(nil, b, nil)
		require.NoError(p.t, err)
	}
	p.sendRaw(to, b)
}

// recv returns the next RTP packet (decrypted), or false after wait.
func (p *peer) recv(wait time.Duration) (*rtp.Packet, bool) {
	p.t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(wait)
	for {
		require.NoError(p.t, p.conn.SetReadDeadline(deadline))
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return nil, false
		}
		b := buf[:n]
		if p.dec != nil {
			b, err = p.dec.DecryptRTP(nil, b, nil)
			require.NoError(p.t, err, "relay sent a packet the peer cannot decrypt")
		}
		pkt := &rtp.Packet{}
		require.NoError(p.t, pkt.Unmarshal(append([]byte(nil), b...)))
		return pkt, true
	}
}

func (p *peer) mustRecv() *rtp.Packet {
	p.t.Helper()
	pkt, ok := p.recv(recvWait)
	require.True(p.t, ok, "no packet within %s", recvWait)
	return pkt
}

// recvNonSilence skips silence frames (the relay's own) and returns the next forwarded packet.
func (p *peer) recvNonSilence(silence []byte) (*rtp.Packet, []*rtp.Packet) {
	p.t.Helper()
	var all []*rtp.Packet
	for {
		pkt := p.mustRecv()
		all = append(all, pkt)
		if !bytes.Equal(pkt.Payload, silence) {
			return pkt, all
		}
	}
}

func randPayload(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// harness is a relay between a fake WhatsApp peer (SRTP) and a fake PBX (plain RTP).
type harness struct {
	t     testing.TB
	cfg   RelayConfig
	relay *Relay
	wa    *peer
	pbx   *peer
}

func newHarness(t testing.TB, suite string, mutate func(*RelayConfig)) *harness {
	t.Helper()
	waKeys := &SRTPKeys{Local: testCrypto(t, suite), Remote: testCrypto(t, suite)}
	h := &harness{t: t, wa: newPeer(t, waKeys), pbx: newPeer(t, nil)}
	waMap, pbxMap := testPTMaps()
	h.cfg = RelayConfig{
		WhatsApp: LegConfig{
			Endpoint: loopbackEndpoint(t), Remote: h.wa.addr(), RTCPMux: true, SRTP: waKeys, PTMap: waMap,
		},
		PBX: LegConfig{
			Endpoint: loopbackEndpoint(t), Remote: h.pbx.addr(), PTMap: pbxMap,
		},
		WhatsAppSSRC: testSSRC,
		AudioPT:      waOpusPT,
		ClockRate:    48000,
		Log:          testLog(t),
	}
	if mutate != nil {
		mutate(&h.cfg)
	}
	if h.cfg.PBX.SRTP != nil {
		h.pbx = newPeer(t, h.cfg.PBX.SRTP)
		if h.cfg.PBX.Remote.IsValid() {
			h.cfg.PBX.Remote = h.pbx.addr()
		}
	}
	r, err := newTestRelay(t, h.cfg)
	require.NoError(t, err)
	h.relay = r
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return h
}

func (h *harness) start() {
	h.t.Helper()
	require.NoError(h.t, h.relay.Start(context.Background()))
}

func (h *harness) waAddr() netip.AddrPort  { return h.cfg.WhatsApp.Endpoint.RTP.LocalAddr() }
func (h *harness) pbxAddr() netip.AddrPort { return h.cfg.PBX.Endpoint.RTP.LocalAddr() }

func (h *harness) silence() []byte {
	if len(h.cfg.SilencePayload) > 0 {
		return h.cfg.SilencePayload
	}
	return []byte(OpusSilenceFrame)
}

// eventually waits for cond on the relay's stats.
func (h *harness) eventually(cond func(Stats) bool, msg string) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return cond(h.relay.Stats()) }, recvWait, 5*time.Millisecond, msg)
}

// discardConn is a PacketConn without a socket: writes vanish, reads block until Close. It
// isolates the per-packet handlers from syscalls in benchmarks, fuzzing and allocation tests.
type discardConn struct {
	local     netip.AddrPort
	closeOnce sync.Once
	closed    chan struct{}
	mu        sync.Mutex
	writes    int
}

func newDiscardConn(port uint16) *discardConn {
	return &discardConn{local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), closed: make(chan struct{})}
}

func (d *discardConn) ReadFrom([]byte) (int, netip.AddrPort, error) {
	<-d.closed
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (d *discardConn) WriteTo(b []byte, _ netip.AddrPort) (int, error) {
	d.mu.Lock()
	d.writes++
	d.mu.Unlock()
	return len(b), nil
}

func (d *discardConn) LocalAddr() netip.AddrPort       { return d.local }
func (d *discardConn) SetReadDeadline(time.Time) error { return nil }
func (d *discardConn) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return nil
}

// offlineRelay is a relay over discardConns, never started: tests call its handlers directly.
// pbxSuite "" makes the PBX leg plain RTP; waSuite "" makes the WhatsApp leg plain too.
func offlineRelay(t testing.TB, waSuite, pbxSuite string) (r *Relay, waPeer, pbxPeer *peer) {
	t.Helper()
	waMap, pbxMap := testPTMaps()
	cfg := RelayConfig{
		WhatsApp: LegConfig{
			Endpoint: &Endpoint{RTP: newDiscardConn(4000)},
			Remote:   netip.MustParseAddrPort("192.0.2.1:3480"), RTCPMux: true, PTMap: waMap,
		},
		PBX: LegConfig{
			Endpoint: &Endpoint{RTP: newDiscardConn(4002)},
			Remote:   netip.MustParseAddrPort("192.0.2.2:10000"), PTMap: pbxMap,
		},
		WhatsAppSSRC: testSSRC,
		AudioPT:      waOpusPT,
		Log:          logrus.NewEntry(discardLogger()),
	}
	if waSuite != "" {
		cfg.WhatsApp.SRTP = &SRTPKeys{Local: testCrypto(t, waSuite), Remote: testCrypto(t, waSuite)}
	}
	if pbxSuite != "" {
		cfg.PBX.SRTP = &SRTPKeys{Local: testCrypto(t, pbxSuite), Remote: testCrypto(t, pbxSuite)}
	}
	r, err := newTestRelay(t, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r, newCipherPeer(t, cfg.WhatsApp.SRTP), newCipherPeer(t, cfg.PBX.SRTP)
}

func discardLogger() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
