package media

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // only to check a peer's "sha-1" a=fingerprint (RFC 8122 §5), never to sign
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
)

// dtlsCertLifetime is how long a NewDTLSCertificate stays valid. WebRTC peers authenticate the
// certificate by the SDP fingerprint alone (RFC 8122 §5, RFC 5763 §5), so validity is a formality,
// but a peer that does check it must never see an expired one during the life of a daemon. The
// process makes one certificate at start; a daemon that runs longer than this must make another
// (Expires tells when).
const dtlsCertLifetime = 365 * 24 * time.Hour

// dtlsClockSkew backdates NotBefore so that a peer whose clock runs behind ours accepts the
// certificate the moment it is made.
const dtlsClockSkew = 24 * time.Hour

// DTLSCertificate is the certificate the WhatsApp leg presents in the DTLS handshake, with its
// SDP fingerprint computed once. One per process is enough: every leg shares it, and it is
// read-only after NewDTLSCertificate.
type DTLSCertificate struct {
	cert        tls.Certificate
	fingerprint string // a=fingerprint value: "sha-256 AB:CD:..."
	expires     time.Time
}

// NewDTLSCertificate makes a self-signed ECDSA P-256 certificate. ECDSA keeps the certificate
// small enough for one datagram, so the handshake flights are not fragmented, and is what Meta
// recommends (whatsapp-calling.md §4.5).
func NewDTLSCertificate() (*DTLSCertificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "wabridge"},
		NotBefore:             now.Add(-dtlsClockSkew),
		NotAfter:              now.Add(dtlsCertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: parse: %w", err)
	}
	sum := sha256.Sum256(der)
	return &DTLSCertificate{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		fingerprint: "sha-256 " + formatFingerprint(sum[:]),
		expires:     tmpl.NotAfter,
	}, nil
}

// Fingerprint is the a=fingerprint value, "sha-256 AB:CD:...". SHA-256 because every WebRTC stack
// must accept it (RFC 8827 §6.5) and Meta's own SDPs use it (whatsapp-calling.md §4.3).
func (c *DTLSCertificate) Fingerprint() string { return c.fingerprint }

// Expires is when the certificate stops being valid.
func (c *DTLSCertificate) Expires() time.Time { return c.expires }

// formatFingerprint renders a digest as RFC 8122 §5 wants it: upper-case hex pairs joined by colons.
func formatFingerprint(sum []byte) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, 3*len(sum))
	for i, v := range sum {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[v>>4], digits[v&0x0f])
	}
	return string(b)
}

// peerFingerprint is one a=fingerprint line of the peer's SDP.
type peerFingerprint struct {
	name   string // hash function as written: "sha-256"
	hash   crypto.Hash
	digest []byte
}

// parseFingerprint parses "<hash-func> <XX:XX:...>" (RFC 8122 §5). Hash names compare
// case-insensitively; the hex may be either case. ok is false for a hash we cannot compute
// (md2, md5 or an unknown name), which the caller skips: RFC 8122 §5 lets an SDP carry several
// fingerprints and the receiver use the ones it supports.
func parseFingerprint(v string) (peerFingerprint, bool) {
	name, hexText, found := strings.Cut(strings.TrimSpace(v), " ")
	if !found {
		return peerFingerprint{}, false
	}
	var h crypto.Hash
	switch strings.ToLower(name) {
	case "sha-1":
		h = crypto.SHA1
	case "sha-224":
		h = crypto.SHA224
	case "sha-256":
		h = crypto.SHA256
	case "sha-384":
		h = crypto.SHA384
	case "sha-512":
		h = crypto.SHA512
	default:
		return peerFingerprint{}, false
	}
	digest, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hexText), ":", ""))
	if err != nil || len(digest) != h.Size() {
		return peerFingerprint{}, false
	}
	return peerFingerprint{name: strings.ToLower(name), hash: h, digest: digest}, true
}

// fingerprintOf hashes a DER certificate with one of the hashes parseFingerprint accepts.
func fingerprintOf(h crypto.Hash, der []byte) []byte {
	switch h {
	case crypto.SHA1:
		s := sha1.Sum(der) //nolint:gosec // see the import
		return s[:]
	case crypto.SHA224:
		s := sha256.Sum224(der)
		return s[:]
	case crypto.SHA256:
		s := sha256.Sum256(der)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(der)
		return s[:]
	default:
		s := sha512.Sum512(der)
		return s[:]
	}
}

// verifyFingerprint returns pion/dtls's VerifyPeerCertificate hook. The peer's certificate is
// self-signed, so the chain is not verified (InsecureSkipVerify); what authenticates the peer is
// that its end-entity certificate hashes to an a=fingerprint of its SDP (RFC 8122 §5, RFC 5763
// §5), which reached us over the authenticated signalling channel. A mismatch aborts the
// handshake with a fatal alert and an error wrapping ErrFingerprintMismatch.
func verifyFingerprint(want []peerFingerprint) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return fmt.Errorf("%w: peer sent no certificate", ErrFingerprintMismatch)
		}
		for _, fp := range want {
			if bytes.Equal(fingerprintOf(fp.hash, raw[0]), fp.digest) {
				return nil
			}
		}
		got := sha256.Sum256(raw[0])
		return fmt.Errorf("%w: peer certificate is sha-256 %s, SDP says %s %s",
			ErrFingerprintMismatch, formatFingerprint(got[:]), want[0].name, formatFingerprint(want[0].digest))
	}
}

// suiteForProfile names a negotiated DTLS-SRTP profile the way SDES does, so that the relay's
// SDES path (Crypto.Profile) reads the exported keys unchanged.
func suiteForProfile(p dtls.SRTPProtectionProfile) (string, bool) {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return SuiteAEADAES128GCM, true
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return SuiteAES128SHA1_80, true
	}
	return "", false
}

// exportSRTPKeys derives the SRTP master keys from the finished handshake (RFC 5764 §4.2: the
// exporter label "EXTRACTOR-dtls_srtp", laid out client key, server key, client salt, server
// salt) and expresses them as Crypto values: KeySalt = key||salt, as an a=crypto line carries them.
// The client's write key is the client's Local key and the server's Remote key.
func exportSRTPKeys(conn *dtls.Conn, isClient bool) (*SRTPKeys, error) {
	prof, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, errors.New("peer negotiated no SRTP protection profile (use_srtp, RFC 5764 §4.1.2)")
	}
	suite, ok := suiteForProfile(prof)
	if !ok {
		return nil, fmt.Errorf("peer chose SRTP protection profile %#04x, which we did not offer", uint16(prof))
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("read DTLS connection state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(prof)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, isClient); err != nil {
		return nil, fmt.Errorf("export SRTP keys: %w", err)
	}
	k := cfg.Keys
	return &SRTPKeys{
		Local:  Crypto{Tag: 1, Suite: suite, KeySalt: concat(k.LocalMasterKey, k.LocalMasterSalt)},
		Remote: Crypto{Tag: 1, Suite: suite, KeySalt: concat(k.RemoteMasterKey, k.RemoteMasterSalt)},
	}, nil
}

func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
