package media

import "github.com/pion/srtp/v3"

// SDES crypto suites (RFC 4568, RFC 6188, RFC 7714) in our order of preference.
const (
	SuiteAES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES128SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
	SuiteAES256SHA1_80 = "AES_256_CM_HMAC_SHA1_80"
	SuiteAEADAES128GCM = "AEAD_AES_128_GCM"
)

// Crypto is one a=crypto line: "<tag> <suite> inline:<base64 key||salt>[|lifetime][|mki:len]".
type Crypto struct {
	Tag     int
	Suite   string
	KeySalt []byte // master key followed by master salt
	Params  string // "|2^31|1:1" etc. after the key, kept verbatim; empty when none
}

// ParseCrypto parses the value of an a=crypto attribute. Missing base64 padding is tolerated.
func ParseCrypto(value string) (Crypto, error) { panic("TODO") }

// NewCrypto makes a crypto line with a fresh random key for suite.
func NewCrypto(tag int, suite string) (Crypto, error) { panic("TODO") }

// String renders the attribute value (without "a=crypto:").
func (c Crypto) String() string { panic("TODO") }

// Profile maps the suite to pion's protection profile.
func (c Crypto) Profile() (srtp.ProtectionProfile, error) { panic("TODO") }

// KeyAndSalt splits KeySalt according to the suite.
func (c Crypto) KeyAndSalt() (key, salt []byte, err error) { panic("TODO") }

// AnswerCrypto picks the first offered crypto line with a supported suite and returns it with our
// answer (same tag and suite, fresh key). Fails with ErrNoCrypto.
func AnswerCrypto(offered []Crypto) (remote, local Crypto, err error) { panic("TODO") }

// OfferCrypto returns our offer: one line per supported suite, tags 1..n, fresh keys.
func OfferCrypto() ([]Crypto, error) { panic("TODO") }
