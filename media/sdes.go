package media

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/srtp/v3"
)

// SDES crypto suites (RFC 4568, RFC 6188, RFC 7714) in our order of preference.
const (
	SuiteAES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES128SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
	SuiteAES256SHA1_80 = "AES_256_CM_HMAC_SHA1_80"
	SuiteAEADAES128GCM = "AEAD_AES_128_GCM"
)

// Suites we accept in an offer but do not offer ourselves. A LiveKit trace shows Meta accepting
// AES_256_CM_HMAC_SHA1_32 (whatsapp-calling.md §4.6), so answering it costs nothing.
const (
	SuiteAES256SHA1_32 = "AES_256_CM_HMAC_SHA1_32"
	SuiteAEADAES256GCM = "AEAD_AES_256_GCM"
)

// Crypto is one a=crypto line: "<tag> <suite> inline:<base64 key||salt>[|lifetime][|mki:len]".
type Crypto struct {
	Tag     int
	Suite   string
	KeySalt []byte // master key followed by master salt
	Params  string // "|2^31|1:1" etc. after the key, kept verbatim; empty when none
}

// suite is what wabridge knows about one crypto suite.
type suite struct {
	name    string
	profile srtp.ProtectionProfile
	keyLen  int
	saltLen int
}

// lookupSuite finds a suite by name. Names compare case-insensitively because RFC 4568 §9.2 gives them
// as ABNF quoted strings, which are case-insensitive (RFC 5234 §2.3).
func lookupSuite(name string) (suite, bool) {
	switch strings.ToUpper(name) {
	case SuiteAES128SHA1_80: // RFC 4568 §6.2.1
		return suite{SuiteAES128SHA1_80, srtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14}, true
	case SuiteAES128SHA1_32: // RFC 4568 §6.2.2
		return suite{SuiteAES128SHA1_32, srtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14}, true
	case SuiteAES256SHA1_80: // RFC 6188
		return suite{SuiteAES256SHA1_80, srtp.ProtectionProfileAes256CmHmacSha1_80, 32, 14}, true
	case SuiteAES256SHA1_32: // RFC 6188
		return suite{SuiteAES256SHA1_32, srtp.ProtectionProfileAes256CmHmacSha1_32, 32, 14}, true
	case SuiteAEADAES128GCM: // RFC 7714: GCM uses a 96-bit salt
		return suite{SuiteAEADAES128GCM, srtp.ProtectionProfileAeadAes128Gcm, 16, 12}, true
	case SuiteAEADAES256GCM: // RFC 7714
		return suite{SuiteAEADAES256GCM, srtp.ProtectionProfileAeadAes256Gcm, 32, 12}, true
	}
	return suite{}, false
}

// maxTag is the largest tag RFC 4568 §9.1 allows (tag = 1*9DIGIT).
const maxTag = 999_999_999

// ParseCrypto parses the value of an a=crypto attribute. Missing base64 padding is tolerated.
//
// Only the first key of the key-params is decoded; whatever follows it (lifetime, MKI, further keys,
// session parameters) is kept verbatim in Params. Errors wrap ErrNoCrypto for a suite we do not know and
// ErrMalformedSDP for everything else.
func ParseCrypto(value string) (Crypto, error) {
	// crypto-attribute = tag 1*WSP crypto-suite 1*WSP key-params *(1*WSP session-param) (RFC 4568 §9.1)
	tagText, rest := cutField(strings.TrimSpace(value))
	suiteName, rest := cutField(rest)
	tag, err := strconv.ParseUint(tagText, 10, 32)
	if err != nil || tag > maxTag {
		return Crypto{}, fmt.Errorf("%w: a=crypto tag %q", ErrMalformedSDP, tagText)
	}
	if rest == "" {
		return Crypto{}, fmt.Errorf("%w: a=crypto %q: want <tag> <suite> inline:<key>", ErrMalformedSDP, value)
	}
	s, ok := lookupSuite(suiteName)
	if !ok {
		return Crypto{}, fmt.Errorf("%w: a=crypto suite %q not supported", ErrNoCrypto, suiteName)
	}
	const method = "inline:" // the only key method RFC 4568 §6.1 defines for SRTP
	if len(rest) < len(method) || !strings.EqualFold(rest[:len(method)], method) {
		return Crypto{}, fmt.Errorf("%w: a=crypto key-params %q do not start with %q", ErrMalformedSDP, rest, method)
	}
	rest = rest[len(method):]
	end := strings.IndexAny(rest, "|; \t")
	if end < 0 {
		end = len(rest)
	}
	keySalt, err := decodeKeySalt(rest[:end])
	if err != nil {
		return Crypto{}, fmt.Errorf("%w: a=crypto key: %w", ErrMalformedSDP, err)
	}
	if want := s.keyLen + s.saltLen; len(keySalt) != want {
		return Crypto{}, fmt.Errorf("%w: a=crypto %s wants %d bytes of key||salt, got %d",
			ErrMalformedSDP, s.name, want, len(keySalt))
	}
	return Crypto{Tag: int(tag), Suite: s.name, KeySalt: keySalt, Params: rest[end:]}, nil
}

// cutField splits off the first whitespace-separated field of s.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// decodeKeySalt decodes the inline key. RFC 4568 §6.1 asks for padded base64, but some peers leave the
// padding out (go-libs.md §3), so unpadded input is accepted too.
func decodeKeySalt(b64 string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(b64)
}

// NewCrypto makes a crypto line with a fresh random key for suite.
func NewCrypto(tag int, suite string) (Crypto, error) {
	s, ok := lookupSuite(suite)
	if !ok {
		return Crypto{}, fmt.Errorf("%w: a=crypto suite %q not supported", ErrNoCrypto, suite)
	}
	if tag < 0 || tag > maxTag {
		return Crypto{}, fmt.Errorf("a=crypto tag %d out of range 0..%d", tag, maxTag)
	}
	keySalt := make([]byte, s.keyLen+s.saltLen)
	if _, err := rand.Read(keySalt); err != nil {
		return Crypto{}, fmt.Errorf("generate %s master key: %w", s.name, err)
	}
	return Crypto{Tag: tag, Suite: s.name, KeySalt: keySalt}, nil
}

// String renders the attribute value (without "a=crypto:").
func (c Crypto) String() string {
	return string(c.appendTo(make([]byte, 0, 64+len(c.Params))))
}

func (c Crypto) appendTo(b []byte) []byte {
	b = strconv.AppendInt(b, int64(c.Tag), 10)
	b = append(append(append(b, ' '), c.Suite...), " inline:"...)
	b = base64.StdEncoding.AppendEncode(b, c.KeySalt)
	return append(b, c.Params...)
}

// Profile maps the suite to pion's protection profile.
func (c Crypto) Profile() (srtp.ProtectionProfile, error) {
	s, ok := lookupSuite(c.Suite)
	if !ok {
		return 0, fmt.Errorf("%w: a=crypto suite %q not supported", ErrNoCrypto, c.Suite)
	}
	return s.profile, nil
}

// KeyAndSalt splits KeySalt according to the suite.
func (c Crypto) KeyAndSalt() (key, salt []byte, err error) {
	s, ok := lookupSuite(c.Suite)
	if !ok {
		return nil, nil, fmt.Errorf("%w: a=crypto suite %q not supported", ErrNoCrypto, c.Suite)
	}
	if len(c.KeySalt) != s.keyLen+s.saltLen {
		return nil, nil, fmt.Errorf("%w: a=crypto %s wants %d bytes of key||salt, got %d",
			ErrMalformedSDP, s.name, s.keyLen+s.saltLen, len(c.KeySalt))
	}
	// Capped so that appending to key cannot overwrite the salt.
	return c.KeySalt[:s.keyLen:s.keyLen], c.KeySalt[s.keyLen:], nil
}

// MKI returns the master key identifier of the first key ("|<value>:<length>" in Params, RFC 4568
// §6.1), encoded as the <length> big-endian bytes that the peer appends to every SRTP and SRTCP packet
// (RFC 3711 §3.1). It is nil when the line has none. A context that decrypts such a peer needs
// srtp.MasterKeyIndicator(mki), or every packet fails authentication.
func (c Crypto) MKI() ([]byte, error) {
	p := c.Params
	if end := strings.IndexAny(p, "; \t"); end >= 0 {
		p = p[:end] // only the first key's parameters; later keys and session params follow
	}
	if p == "" {
		return nil, nil
	}
	if p[0] != '|' {
		return nil, fmt.Errorf("%w: a=crypto key parameters %q", ErrMalformedSDP, c.Params)
	}
	for field := range strings.SplitSeq(p[1:], "|") {
		valueText, lenText, isMKI := strings.Cut(field, ":")
		if !isMKI {
			continue // lifetime
		}
		value, err1 := strconv.ParseUint(valueText, 10, 64)
		n, err2 := strconv.ParseUint(lenText, 10, 8)
		if err1 != nil || err2 != nil || n == 0 || n > 128 || (n < 8 && value>>(8*n) != 0) {
			return nil, fmt.Errorf("%w: a=crypto MKI %q", ErrMalformedSDP, field)
		}
		mki := make([]byte, n)
		for i := len(mki) - 1; i >= 0 && value != 0; i-- {
			mki[i] = byte(value)
			value >>= 8
		}
		return mki, nil
	}
	return nil, nil
}

// AnswerCrypto picks the first offered crypto line with a supported suite and returns it with our
// answer (same tag and suite, fresh key). Fails with ErrNoCrypto.
//
// The offerer lists its lines in its order of preference and the answerer accepts exactly one, echoing
// its tag and suite with its own key (RFC 4568 §7.1.1, §7.1.2). Lines we could not honour are passed
// over: a key of the wrong length, an MKI that does not parse, several keys (the peer could switch to
// one we never loaded), or session parameters (RFC 4568 §6.3: UNENCRYPTED_SRTP, KDR and the like change
// how packets are protected, and the relay applies none of them).
func AnswerCrypto(offered []Crypto) (remote, local Crypto, err error) {
	for _, c := range offered {
		if _, _, err := c.KeyAndSalt(); err != nil {
			continue
		}
		if _, err := c.MKI(); err != nil || strings.ContainsAny(c.Params, "; \t") {
			continue
		}
		local, err := NewCrypto(c.Tag, c.Suite)
		if err != nil {
			return Crypto{}, Crypto{}, err
		}
		return c, local, nil
	}
	return Crypto{}, Crypto{}, fmt.Errorf("%w: none of %d offered a=crypto lines is usable", ErrNoCrypto, len(offered))
}

// OfferCrypto returns our offer: one line per supported suite, tags 1..n, fresh keys.
//
// AES_CM_128_HMAC_SHA1_80 comes first because Meta's suites are undocumented and that one is known to
// work (whatsapp-calling.md §4.6), and AES-CM with HMAC-SHA1 is what every SRTP stack must implement
// (RFC 3711 §5).
func OfferCrypto() ([]Crypto, error) {
	suites := [...]string{SuiteAES128SHA1_80, SuiteAES128SHA1_32, SuiteAES256SHA1_80, SuiteAEADAES128GCM}
	offer := make([]Crypto, 0, len(suites))
	for i, s := range suites {
		c, err := NewCrypto(i+1, s)
		if err != nil {
			return nil, err
		}
		offer = append(offer, c)
	}
	return offer, nil
}
