package media

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func decodeB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

// allSuites are the suites we accept; the first four are the ones we offer.
func acceptedSuites() []string {
	return []string{SuiteAES128SHA1_80, SuiteAES128SHA1_32, SuiteAES256SHA1_80, SuiteAEADAES128GCM,
		SuiteAES256SHA1_32, SuiteAEADAES256GCM}
}

func TestParseCrypto(t *testing.T) {
	const (
		key30 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"                           // 16+14
		key28 = "AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vg=="                           // 16+12
		key46 = "AwgNEhccISYrMDU6P0RJTlNYXWJnbHF2e4CFio+UmZ6jqK2yt7zBxsvQ1drf5A=="   // 32+14
		key44 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKyw="       // 32+12
		multi = "|2^20|1:4;inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1e|2^20|2:4" // RFC 4568 §9.2 allows several keys
	)
	tests := []struct {
		name, value string
		want        Crypto
	}{
		{"meta-like with lifetime and MKI", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^31|1:1",
			Crypto{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: decodeB64(t, key30), Params: "|2^31|1:1"}},
		{"no params", "2 AES_CM_128_HMAC_SHA1_32 inline:" + key30,
			Crypto{Tag: 2, Suite: SuiteAES128SHA1_32, KeySalt: decodeB64(t, key30)}},
		{"GCM padded", "3 AEAD_AES_128_GCM inline:" + key28,
			Crypto{Tag: 3, Suite: SuiteAEADAES128GCM, KeySalt: decodeB64(t, key28)}},
		{"GCM missing padding", "3 AEAD_AES_128_GCM inline:" + strings.TrimRight(key28, "="),
			Crypto{Tag: 3, Suite: SuiteAEADAES128GCM, KeySalt: decodeB64(t, key28)}},
		{"AES-256 missing padding", "4 AES_256_CM_HMAC_SHA1_80 inline:" + strings.TrimRight(key46, "=") + "|2^31",
			Crypto{Tag: 4, Suite: SuiteAES256SHA1_80, KeySalt: decodeB64(t, key46), Params: "|2^31"}},
		{"AES-256 SHA1_32", "5 AES_256_CM_HMAC_SHA1_32 inline:" + key46,
			Crypto{Tag: 5, Suite: SuiteAES256SHA1_32, KeySalt: decodeB64(t, key46)}},
		{"GCM-256", "6 AEAD_AES_256_GCM inline:" + key44,
			Crypto{Tag: 6, Suite: SuiteAEADAES256GCM, KeySalt: decodeB64(t, key44)}},
		{"case-insensitive suite and method, blanks", "  7\taes_cm_128_hmac_sha1_80   INLINE:" + key30 + "  ",
			Crypto{Tag: 7, Suite: SuiteAES128SHA1_80, KeySalt: decodeB64(t, key30)}},
		{"several keys kept verbatim", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + multi,
			Crypto{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: decodeB64(t, key30), Params: multi}},
		{"session parameters kept verbatim", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " KDR=0 UNENCRYPTED_SRTCP",
			Crypto{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: decodeB64(t, key30), Params: " KDR=0 UNENCRYPTED_SRTCP"}},
		{"tag 0 and 9 digits", "999999999 AES_CM_128_HMAC_SHA1_80 inline:" + key30,
			Crypto{Tag: 999999999, Suite: SuiteAES128SHA1_80, KeySalt: decodeB64(t, key30)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCrypto(tt.value)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			again, err := ParseCrypto(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again, "String must parse back")
		})
	}
}

func TestParseCryptoErrors(t *testing.T) {
	const key30 = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
	tests := []struct {
		name, value string
		want        error
	}{
		{"empty", "", ErrMalformedSDP},
		{"garbage", "not a crypto line", ErrMalformedSDP},
		{"tag only", "1", ErrMalformedSDP},
		{"tag and suite only", "1 AES_CM_128_HMAC_SHA1_80", ErrMalformedSDP},
		{"negative tag", "-1 AES_CM_128_HMAC_SHA1_80 inline:" + key30, ErrMalformedSDP},
		{"tag of 10 digits", "1000000000 AES_CM_128_HMAC_SHA1_80 inline:" + key30, ErrMalformedSDP},
		{"unknown suite", "1 F8_128_HMAC_SHA1_80 inline:" + key30, ErrNoCrypto},
		{"null cipher not accepted", "1 NULL_HMAC_SHA1_80 inline:" + key30, ErrNoCrypto},
		{"other key method", "1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key", ErrMalformedSDP},
		{"empty key", "1 AES_CM_128_HMAC_SHA1_80 inline:|2^31", ErrMalformedSDP},
		{"not base64", "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!notbase64!!!!", ErrMalformedSDP},
		{"key too short", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30[:32], ErrMalformedSDP},
		{"AES-256 suite with AES-128 key", "1 AES_256_CM_HMAC_SHA1_80 inline:" + key30, ErrMalformedSDP},
		{"GCM suite with AES-CM key", "1 AEAD_AES_128_GCM inline:" + key30, ErrMalformedSDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCrypto(tt.value)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSuiteTable(t *testing.T) {
	want := map[string]srtp.ProtectionProfile{
		SuiteAES128SHA1_80: srtp.ProtectionProfileAes128CmHmacSha1_80,
		SuiteAES128SHA1_32: srtp.ProtectionProfileAes128CmHmacSha1_32,
		SuiteAES256SHA1_80: srtp.ProtectionProfileAes256CmHmacSha1_80,
		SuiteAES256SHA1_32: srtp.ProtectionProfileAes256CmHmacSha1_32,
		SuiteAEADAES128GCM: srtp.ProtectionProfileAeadAes128Gcm,
		SuiteAEADAES256GCM: srtp.ProtectionProfileAeadAes256Gcm,
	}
	for _, name := range acceptedSuites() {
		t.Run(name, func(t *testing.T) {
			c, err := NewCrypto(1, name)
			require.NoError(t, err)
			p, err := c.Profile()
			require.NoError(t, err)
			assert.Equal(t, want[name], p)

			// Our lengths must be the ones pion derives keys with.
			keyLen, err := p.KeyLen()
			require.NoError(t, err)
			saltLen, err := p.SaltLen()
			require.NoError(t, err)
			key, salt, err := c.KeyAndSalt()
			require.NoError(t, err)
			assert.Len(t, key, keyLen)
			assert.Len(t, salt, saltLen)
			assert.Equal(t, c.KeySalt, append(append([]byte{}, key...), salt...))

			// Appending to the key must not overwrite the salt.
			saltCopy := bytes.Clone(salt)
			_ = append(key, 0xff)
			assert.Equal(t, saltCopy, salt)
		})
	}
	_, err := Crypto{Suite: "F8_128_HMAC_SHA1_80"}.Profile()
	require.ErrorIs(t, err, ErrNoCrypto)
	_, _, err = Crypto{Suite: SuiteAES128SHA1_80, KeySalt: make([]byte, 16)}.KeyAndSalt()
	require.ErrorIs(t, err, ErrMalformedSDP)
}

func TestNewCrypto(t *testing.T) {
	a, err := NewCrypto(7, SuiteAES128SHA1_80)
	require.NoError(t, err)
	b, err := NewCrypto(7, SuiteAES128SHA1_80)
	require.NoError(t, err)
	assert.Equal(t, 7, a.Tag)
	assert.Equal(t, SuiteAES128SHA1_80, a.Suite)
	assert.Empty(t, a.Params)
	assert.Len(t, a.KeySalt, 30)
	assert.NotEqual(t, a.KeySalt, b.KeySalt, "keys must be fresh")
	assert.Regexp(t, `^7 AES_CM_128_HMAC_SHA1_80 inline:[A-Za-z0-9+/]{40}$`, a.String())

	g, err := NewCrypto(1, "aead_aes_128_gcm")
	require.NoError(t, err)
	assert.Equal(t, SuiteAEADAES128GCM, g.Suite, "suite name is canonicalised")
	assert.Regexp(t, `^1 AEAD_AES_128_GCM inline:[A-Za-z0-9+/]{38}==$`, g.String(), "we always pad")

	_, err = NewCrypto(1, "F8_128_HMAC_SHA1_80")
	require.ErrorIs(t, err, ErrNoCrypto)
	_, err = NewCrypto(-1, SuiteAES128SHA1_80)
	require.Error(t, err)
	_, err = NewCrypto(1_000_000_000, SuiteAES128SHA1_80)
	require.Error(t, err)
}

func TestCryptoMKI(t *testing.T) {
	tests := []struct {
		params string
		want   []byte
		err    bool
	}{
		{"", nil, false},
		{"|2^31", nil, false},
		{"|2^31|1:1", []byte{1}, false},
		{"|1:1", []byte{1}, false},
		{"|2^20|1:32", append(make([]byte, 31), 1), false},
		{"|2^20|258:2", []byte{1, 2}, false},
		{"|2^20|1:4;inline:QUJD|2^20|2:4", []byte{0, 0, 0, 1}, false},
		{"|2^31|1:1 UNENCRYPTED_SRTCP", []byte{1}, false},
		{" KDR=1", nil, false},
		{"|256:1", nil, true}, // does not fit one byte
		{"|1:0", nil, true},
		{"|1:129", nil, true},
		{"|x:1", nil, true},
		{"2^31", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.params, func(t *testing.T) {
			got, err := Crypto{Params: tt.params}.MKI()
			if tt.err {
				require.ErrorIs(t, err, ErrMalformedSDP)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestAnswerCrypto(t *testing.T) {
	fresh := func(tag int, suite string) Crypto {
		c, err := NewCrypto(tag, suite)
		require.NoError(t, err)
		return c
	}
	short := Crypto{Tag: 1, Suite: SuiteAES128SHA1_80, KeySalt: make([]byte, 10)}
	unknown := Crypto{Tag: 2, Suite: "F8_128_HMAC_SHA1_80", KeySalt: make([]byte, 30)}
	badMKI := fresh(3, SuiteAEADAES128GCM)
	badMKI.Params = "|999:1"
	aes256 := fresh(4, SuiteAES256SHA1_80)
	aes256.Params = "|2^31|1:1"
	sessionParam := fresh(6, SuiteAES128SHA1_80)
	sessionParam.Params = "|2^31 UNENCRYPTED_SRTP"
	twoKeys := fresh(7, SuiteAES128SHA1_80)
	twoKeys.Params = "|2^31|1:1;inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1e|2^31|2:1"
	aes128 := fresh(5, SuiteAES128SHA1_80)

	// The offerer's order decides, not ours: AES-256 is offered before AES-128 here.
	remote, local, err := AnswerCrypto([]Crypto{short, unknown, badMKI, sessionParam, twoKeys, aes256, aes128})
	require.NoError(t, err)
	assert.Equal(t, aes256, remote)
	assert.Equal(t, 4, local.Tag)
	assert.Equal(t, SuiteAES256SHA1_80, local.Suite)
	assert.Empty(t, local.Params)
	assert.Len(t, local.KeySalt, 46)
	assert.NotEqual(t, remote.KeySalt, local.KeySalt)

	for name, offered := range map[string][]Crypto{
		"nil":         nil,
		"unsupported": {short, unknown, badMKI, sessionParam, twoKeys},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := AnswerCrypto(offered)
			require.ErrorIs(t, err, ErrNoCrypto)
		})
	}

	t.Run("from Meta's SDP", func(t *testing.T) {
		d, err := ParseDescription([]byte(sdpCRLF(metaSDESOffer)))
		require.NoError(t, err)
		remote, local, err := AnswerCrypto(d.Crypto)
		require.NoError(t, err)
		assert.Equal(t, d.Crypto[0], remote)
		assert.Equal(t, 1, local.Tag)
		assert.Equal(t, SuiteAES128SHA1_80, local.Suite)
	})
}

func TestOfferCrypto(t *testing.T) {
	offer, err := OfferCrypto()
	require.NoError(t, err)
	require.Len(t, offer, 4)
	wantSuites := []string{SuiteAES128SHA1_80, SuiteAES128SHA1_32, SuiteAES256SHA1_80, SuiteAEADAES128GCM}
	seen := map[string]bool{}
	for i, c := range offer {
		assert.Equal(t, i+1, c.Tag)
		assert.Equal(t, wantSuites[i], c.Suite)
		assert.Empty(t, c.Params)
		_, _, err := c.KeyAndSalt()
		require.NoError(t, err)
		assert.False(t, seen[string(c.KeySalt)], "each line gets its own key")
		seen[string(c.KeySalt)] = true
	}
}

// TestSDESRoundTripSRTP proves the key/salt split for every suite: the peer offers a key, we answer with
// ours, and packets encrypted with either side's line decrypt with the same line parsed back from SDP.
func TestSDESRoundTripSRTP(t *testing.T) {
	for _, suite := range acceptedSuites() {
		t.Run(suite, func(t *testing.T) {
			peerLine, err := NewCrypto(1, suite)
			require.NoError(t, err)
			offered, err := ParseCrypto(peerLine.String()) // what we read from the peer's SDP
			require.NoError(t, err)
			remote, local, err := AnswerCrypto([]Crypto{offered})
			require.NoError(t, err)
			ours, err := ParseCrypto(local.String()) // what the peer reads from our SDP
			require.NoError(t, err)

			// peer → us: the peer encrypts with its key, we decrypt with remote.
			sdesRoundTrip(t, peerLine, remote, nil)
			// us → peer: we encrypt with local, the peer decrypts with what it parsed.
			sdesRoundTrip(t, local, ours, nil)

			// A line from another call must not decrypt.
			other, err := NewCrypto(1, suite)
			require.NoError(t, err)
			enc := sdesEncrypt(t, sdesContext(t, local, nil), sdesTestPacket(t))
			_, err = sdesContext(t, other, nil).DecryptRTP(nil, enc, nil)
			require.Error(t, err)
		})
	}

	// A peer whose line carries an MKI appends it to every packet (RFC 3711 §3.1): decrypting needs it.
	t.Run("MKI", func(t *testing.T) {
		line, err := ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31|1:1")
		require.NoError(t, err)
		mki, err := line.MKI()
		require.NoError(t, err)
		sdesRoundTrip(t, line, line, mki)

		enc := sdesEncrypt(t, sdesContext(t, line, mki), sdesTestPacket(t))
		_, err = sdesContext(t, line, nil).DecryptRTP(nil, enc, nil)
		require.Error(t, err, "without the MKI the tag is read from the wrong bytes")
	})
}

func sdesRoundTrip(t *testing.T, sender, receiver Crypto, mki []byte) {
	t.Helper()
	plain := sdesTestPacket(t)
	enc := sdesEncrypt(t, sdesContext(t, sender, mki), plain)

	p, err := sender.Profile()
	require.NoError(t, err)
	tag, err := p.AuthTagRTPLen()
	require.NoError(t, err)
	aead, err := p.AEADAuthTagLen()
	require.NoError(t, err)
	assert.Equal(t, len(plain)+tag+aead+len(mki), len(enc), "SRTP overhead for %s", sender.Suite)
	assert.NotEqual(t, plain[12:], enc[12:len(plain)], "payload must be encrypted")

	got, err := sdesContext(t, receiver, mki).DecryptRTP(nil, enc, nil)
	require.NoError(t, err)
	assert.Equal(t, plain, got)

	enc[len(enc)-1-len(mki)] ^= 1
	_, err = sdesContext(t, receiver, mki).DecryptRTP(nil, enc, nil)
	require.Error(t, err, "tampered packet must fail authentication")
}

func sdesContext(t *testing.T, c Crypto, mki []byte) *srtp.Context {
	t.Helper()
	key, salt, err := c.KeyAndSalt()
	require.NoError(t, err)
	p, err := c.Profile()
	require.NoError(t, err)
	var opts []srtp.ContextOption
	if mki != nil {
		opts = append(opts, srtp.MasterKeyIndicator(mki))
	}
	ctx, err := srtp.CreateContext(key, salt, p, opts...)
	require.NoError(t, err)
	return ctx
}

func sdesEncrypt(t *testing.T, ctx *srtp.Context, plain []byte) []byte {
	t.Helper()
	enc, err := ctx.EncryptRTP(nil, plain, nil)
	require.NoError(t, err)
	return enc
}

func sdesTestPacket(t *testing.T) []byte {
	t.Helper()
	payload := bytes.Repeat([]byte{0xf8, 0xff, 0xfe}, 20) // Opus silence frames
	b, err := (&rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 4711, Timestamp: 960, SSRC: 0x11223344},
		Payload: payload,
	}).Marshal()
	require.NoError(t, err)
	return b
}

// FuzzParseCrypto checks that no a=crypto value panics and that what parses renders back to itself.
func FuzzParseCrypto(f *testing.F) {
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31|1:1")
	f.Add("3 AEAD_AES_128_GCM inline:AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vg")
	f.Add("1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;inline:x|2^20|2:4 KDR=0")
	f.Fuzz(func(t *testing.T, value string) {
		c, err := ParseCrypto(value)
		if err != nil {
			return
		}
		_, _ = c.MKI()
		again, err := ParseCrypto(c.String())
		require.NoError(t, err)
		require.Equal(t, c, again)
	})
}
