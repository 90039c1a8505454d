package media

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewDTLSCertificate(t *testing.T) {
	t.Parallel()
	c := testCert(t)
	leaf := c.cert.Leaf
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok, "ECDSA, as Meta recommends (§4.5)")
	require.Equal(t, elliptic.P256(), key.Curve)
	require.Less(t, len(leaf.Raw), 600, "small enough for one datagram with the rest of the flight")

	sum := sha256.Sum256(leaf.Raw)
	require.Equal(t, "sha-256 "+formatFingerprint(sum[:]), c.Fingerprint())
	require.Regexp(t, `^sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$`, c.Fingerprint())

	require.WithinDuration(t, time.Now().Add(dtlsCertLifetime), c.Expires(), time.Minute)
	require.True(t, leaf.NotBefore.Before(time.Now().Add(-time.Hour)), "backdated for peers with slow clocks")
	require.NotEqual(t, c.Fingerprint(), testCert(t).Fingerprint())
}

func TestParseFingerprint(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("x"))
	upper := formatFingerprint(sum[:])
	for _, tc := range []struct {
		in   string
		ok   bool
		name string
	}{
		{"sha-256 " + upper, true, "sha-256"},
		{"SHA-256 " + strings.ToLower(upper), true, "sha-256"}, // RFC 8122 §5: names and hex in any case
		{"  sha-256   " + upper + " ", true, "sha-256"},
		{"sha-1 " + upper[:59], true, "sha-1"},
		{"sha-512 " + strings.Repeat("AB:", 63) + "AB", true, "sha-512"},
		{"md5 " + upper[:47], false, ""},      // not accepted (RFC 8122 §5 forbids MD5/MD2 use)
		{"sha-256 " + upper[:92], false, ""},  // too short
		{"sha-256 ZZ" + upper[2:], false, ""}, // not hex
		{"sha-256", false, ""},
		{"", false, ""},
	} {
		fp, ok := parseFingerprint(tc.in)
		require.Equal(t, tc.ok, ok, "%q", tc.in)
		if ok {
			require.Equal(t, tc.name, fp.name)
		}
	}
}

func TestVerifyFingerprint(t *testing.T) {
	t.Parallel()
	ours, other := testCert(t), testCert(t)
	der := ours.cert.Certificate[0]
	parse := func(vals ...string) []peerFingerprint {
		var out []peerFingerprint
		for _, v := range vals {
			fp, ok := parseFingerprint(v)
			require.True(t, ok)
			out = append(out, fp)
		}
		return out
	}
	require.NoError(t, verifyFingerprint(parse(ours.Fingerprint()))([][]byte{der}, nil))
	// Any listed fingerprint may match (RFC 8122 §5 allows several).
	require.NoError(t, verifyFingerprint(parse(other.Fingerprint(), ours.Fingerprint()))([][]byte{der}, nil))
	sha512Line := "sha-512 " + formatFingerprint(fingerprintOf(crypto.SHA512, der))
	require.NoError(t, verifyFingerprint(parse(sha512Line))([][]byte{der}, nil))

	err := verifyFingerprint(parse(other.Fingerprint()))([][]byte{der}, nil)
	require.ErrorIs(t, err, ErrFingerprintMismatch)
	require.ErrorIs(t, verifyFingerprint(parse(ours.Fingerprint()))(nil, nil), ErrFingerprintMismatch)
}
