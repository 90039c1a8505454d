package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest algorithms we offer and accept. RFC 8760 §2.4: a UAS offering several algorithms
// sends one challenge per algorithm, most preferred first; SHA-256 before MD5. Meta's edge
// challenges with MD5 (whatsapp-calling.md §5.3) and one trace shows it using SHA-256, so
// its client side handles both.
const (
	AlgorithmSHA256 = "SHA-256"
	AlgorithmMD5    = "MD5"
)

// DefaultNonceTTL is how long a nonce we issued stays valid. A UIC INVITE is retried with
// credentials within a round trip; five minutes leaves room for slow clients while keeping
// captured credentials short-lived (there is no per-nonce replay table, see Authenticator).
const DefaultNonceTTL = 5 * time.Minute

// Verdict is the outcome of Authenticator.Check.
type Verdict int

const (
	// AuthOK: the credentials are valid; process the request.
	AuthOK Verdict = iota
	// AuthChallenge: answer with Authenticator.Challenge (no credentials for our realm,
	// or a stale nonce with otherwise correct credentials; see Result.Stale).
	AuthChallenge
	// AuthFailed: credentials were presented and are wrong. Answer 403: Meta's guidance is
	// that a server which keeps answering 401/407 looks like misconfigured credentials
	// (whatsapp-calling.md §5.2), so we challenge once and then refuse.
	AuthFailed
)

func (v Verdict) String() string {
	switch v {
	case AuthOK:
		return "ok"
	case AuthChallenge:
		return "challenge"
	case AuthFailed:
		return "failed"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Result explains a Check. Reason and Username are safe to log: they never contain the
// password or the digest response.
type Result struct {
	Verdict Verdict
	// Stale is set with AuthChallenge when the nonce expired (or is not ours) but the
	// response was computed with the right password; the challenge then carries
	// stale=true so the client retries without treating it as a bad password
	// (RFC 7616 §3.3, RFC 3261 §22.4).
	Stale bool
	// Reason is a short machine-friendly explanation ("no credentials", "uri mismatch", …).
	Reason string
	// Username is the username the client presented, if any.
	Username string
}

// Authenticator is a SIP digest server (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760) for
// challenging Meta's INVITEs. Nonces are stateless: each one is a timestamp and random
// bytes signed with HMAC-SHA256 under a per-process random key, so issuing them needs no
// map and verifying them needs no lookup. The price is that nonce counts are not tracked:
// a captured Authorization could be replayed for the same method and URI until the nonce
// expires. Meta's SIP only runs over TLS, so nothing can be captured on the wire, and
// INVITEs carry fresh Call-IDs that the bridge deduplicates anyway.
//
// An Authenticator is safe for concurrent use.
type Authenticator struct {
	realm string
	algs  []string // challenged algorithms, in header order
	ttl   time.Duration
	now   func() time.Time
	key   [32]byte
}

// AuthenticatorOption configures NewAuthenticator.
type AuthenticatorOption func(*Authenticator)

// WithNonceTTL sets how long issued nonces stay valid (DefaultNonceTTL otherwise).
func WithNonceTTL(d time.Duration) AuthenticatorOption {
	return func(a *Authenticator) {
		if d > 0 {
			a.ttl = d
		}
	}
}

// WithAlgorithms sets the algorithms we challenge with, one Proxy-Authenticate header each, in
// this order. The default is MD5 alone: baresip 1.0 (libre) fails the whole call with ENOSYS
// when any header in the 407 names SHA-256, and Meta's own sample challenge is MD5
// (whatsapp-calling.md §5.2). Responses with either algorithm are always accepted. Unknown
// names are ignored.
func WithAlgorithms(algs ...string) AuthenticatorOption {
	return func(a *Authenticator) {
		var keep []string
		for _, alg := range algs {
			if alg == AlgorithmMD5 || alg == AlgorithmSHA256 {
				keep = append(keep, alg)
			}
		}
		if len(keep) > 0 {
			a.algs = keep
		}
	}
}

// WithClock replaces time.Now, for tests of nonce expiry.
func WithClock(now func() time.Time) AuthenticatorOption {
	return func(a *Authenticator) {
		if now != nil {
			a.now = now
		}
	}
}

// NewAuthenticator creates a digest server for realm. Meta's own sample uses the
// business's SIP domain as the realm when it is challenged (whatsapp-calling.md §5.2).
func NewAuthenticator(realm string, opts ...AuthenticatorOption) *Authenticator {
	a := &Authenticator{realm: realm, algs: []string{AlgorithmMD5}, ttl: DefaultNonceTTL, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		// crypto/rand does not fail on supported platforms (Go ≥ 1.24 panics itself).
		panic(fmt.Sprintf("sip: crypto/rand: %v", err))
	}
	return a
}

// Realm returns the realm we challenge with.
func (a *Authenticator) Realm() string { return a.realm }

// Nonce layout before base64url: 8 bytes Unix nanoseconds, 12 random bytes, 16 bytes of
// HMAC-SHA256(key, realm | first 20 bytes). Binding the realm keeps nonces of two
// Authenticators apart even if they shared a key.
const (
	nonceTimeLen = 8
	nonceRandLen = 12
	nonceMACLen  = 16
	nonceLen     = nonceTimeLen + nonceRandLen + nonceMACLen
)

func (a *Authenticator) newNonce() string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:nonceTimeLen], uint64(a.now().UnixNano()))
	if _, err := rand.Read(b[nonceTimeLen : nonceTimeLen+nonceRandLen]); err != nil {
		panic(fmt.Sprintf("sip: crypto/rand: %v", err))
	}
	copy(b[nonceTimeLen+nonceRandLen:], a.mac(b[:nonceTimeLen+nonceRandLen]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (a *Authenticator) mac(data []byte) []byte {
	m := hmac.New(sha256.New, a.key[:])
	m.Write([]byte(a.realm))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)[:nonceMACLen]
}

var (
	errNonceForeign = errors.New("nonce not issued by us")
	errNonceExpired = errors.New("nonce expired")
)

// checkNonce reports whether nonce is one of ours and still fresh.
func (a *Authenticator) checkNonce(nonce string) error {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return errNonceForeign
	}
	if !hmac.Equal(b[nonceTimeLen+nonceRandLen:], a.mac(b[:nonceTimeLen+nonceRandLen])) {
		return errNonceForeign
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b[:nonceTimeLen])))
	age := a.now().Sub(issued)
	// A nonce "from the future" is tolerated for a second of clock step.
	if age > a.ttl || age < -time.Second {
		return errNonceExpired
	}
	return nil
}

// Challenge builds "407 Proxy Authentication Required" for req with one Proxy-Authenticate
// header per configured algorithm (WithAlgorithms; MD5 alone by default), sharing one fresh
// nonce, qop="auth". With several, MD5 should come first: clients such as sipgo answer the
// first header whatever it says (see SelectChallenge), and libre-based ones fail on any
// SHA-256 header. The signalling runs inside TLS, so MD5 costs nothing real here. stale=true tells the client that only the nonce
// was wrong. We use 407 rather than 401 because that is what Meta's sample shows; Meta
// answers either (whatsapp-calling.md §5.2).
func (a *Authenticator) Challenge(req *sipmsg.Request, stale bool) *sipmsg.Response {
	res := sipmsg.NewResponseFromRequest(req, sipmsg.StatusProxyAuthRequired, "Proxy Authentication Required", nil)
	nonce := a.newNonce()
	for _, alg := range a.algs {
		chal := digest.Challenge{
			Realm:     a.realm,
			Nonce:     nonce,
			Algorithm: alg,
			QOP:       []string{"auth"},
			Stale:     stale,
		}
		res.AppendHeader(sipmsg.NewHeader("Proxy-Authenticate", chal.String()))
	}
	return res
}

// Check verifies req's digest credentials against username and password (for Meta: the
// business number's DigestUsername and the SIP password from the number's settings). It
// reads Proxy-Authorization, and Authorization too, since a client may answer as if it got
// a 401. Credentials for another realm are ignored. Both qop=auth (cnonce and nc enter the
// hash) and the RFC 2069 form without qop are accepted; qop=auth-int and userhash are not
// offered and therefore refused. An empty username or password always fails.
func (a *Authenticator) Check(req *sipmsg.Request, username, password string) Result {
	if username == "" || password == "" {
		// Never let an unset password authenticate a client that sends an empty one.
		return Result{Verdict: AuthFailed, Reason: "server credentials not configured"}
	}
	cred, err := a.credentials(req)
	if err != nil {
		return Result{Verdict: AuthFailed, Reason: err.Error()}
	}
	if cred == nil {
		return Result{Verdict: AuthChallenge, Reason: "no credentials"}
	}
	fail := func(reason string) Result {
		return Result{Verdict: AuthFailed, Reason: reason, Username: cred.Username}
	}

	alg := strings.ToUpper(cred.Algorithm)
	switch alg {
	case "", AlgorithmMD5, AlgorithmSHA256:
	default:
		return fail("unsupported algorithm " + cred.Algorithm)
	}
	if cred.Userhash {
		return fail("userhash not offered")
	}
	var qop []string
	switch cred.QOP {
	case "":
	case "auth":
		// RFC 7616 §3.4: with qop, cnonce and nc are required, and they are part of the hash.
		if cred.Cnonce == "" || cred.Nc <= 0 {
			return fail("qop=auth without cnonce or nc")
		}
		qop = []string{"auth"}
	default:
		return fail("unsupported qop " + cred.QOP)
	}
	if subtle.ConstantTimeCompare([]byte(cred.Username), []byte(username)) != 1 {
		return fail("wrong username")
	}
	if !sameResource(cred.URI, &req.Recipient) {
		return fail("uri mismatch")
	}

	want, err := digest.Digest(&digest.Challenge{
		Realm:     a.realm,
		Nonce:     cred.Nonce,
		Algorithm: alg,
		QOP:       qop,
	}, digest.Options{
		Method:   req.Method.String(),
		URI:      cred.URI, // the hash covers the uri string the client sent (RFC 7616 §3.4.6)
		Username: username,
		Password: password,
		Cnonce:   cred.Cnonce,
		Count:    cred.Nc,
	})
	if err != nil {
		return fail(err.Error())
	}
	// Hex digits are case-insensitive; lower-case both before the constant-time compare.
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(want.Response)), []byte(strings.ToLower(cred.Response))) != 1 {
		return fail("wrong response")
	}

	// The response is right; now the nonce. RFC 7616 §3.3: stale=true only when the nonce
	// is invalid but the digest for it is valid — which also covers nonces from before a
	// restart (our key is per-process), so a client holding one is re-challenged, not
	// refused.
	if err := a.checkNonce(cred.Nonce); err != nil {
		return Result{Verdict: AuthChallenge, Stale: true, Reason: err.Error(), Username: cred.Username}
	}
	return Result{Verdict: AuthOK, Username: cred.Username}
}

// credentials returns the first Digest credentials for our realm, nil if there are none,
// or an error if a credentials header for our realm (or with no realm) cannot be parsed.
func (a *Authenticator) credentials(req *sipmsg.Request) (*digest.Credentials, error) {
	for _, name := range []string{"Proxy-Authorization", "Authorization"} {
		for _, h := range req.GetHeaders(name) {
			v := strings.TrimSpace(h.Value())
			if !digest.IsDigest(v) {
				continue
			}
			cred, err := digest.ParseCredentials(v)
			if err != nil {
				return nil, errors.New("malformed credentials")
			}
			if cred.Realm != a.realm {
				continue // for another proxy on the path (RFC 3261 §22.3)
			}
			return cred, nil
		}
	}
	return nil, nil
}

// sameResource implements the RFC 7616 §3.4.6 check that the digest uri names the
// Request-URI, so credentials computed for one resource cannot be replayed for another.
// It compares scheme, user (without user-params), host (case-insensitive) and port, and
// ignores URI parameters: Meta's sample shows uri="sip:+<business>@<host>" for a
// Request-URI with ";transport=tls" and user-params (whatsapp-calling.md §5.2), and
// sipgo's own client strips parameters too (it hashes Recipient.Addr()).
func sameResource(credURI string, r *sipmsg.Uri) bool {
	var u sipmsg.Uri
	if err := sipmsg.ParseUri(credURI, &u); err != nil {
		return false
	}
	scheme := func(s string) string {
		if s == "" {
			return "sip"
		}
		return strings.ToLower(s)
	}
	userA, _ := splitUserParams(uriUser(&u))
	userB, _ := splitUserParams(uriUser(r))
	portA, portB := u.Port, r.Port
	if portA == 0 || portB == 0 { // "host" and "host:5061" name the same server
		portA, portB = 0, 0
	}
	return scheme(u.Scheme) == scheme(r.Scheme) &&
		userA == userB &&
		strings.EqualFold(u.Host, r.Host) &&
		portA == portB
}

// SelectChallenge reorders res's digest challenges (Proxy-Authenticate for 407,
// WWW-Authenticate otherwise) so that the first one is one we can answer, preferring
// SHA-256 over MD5 (RFC 8760 §2.4 leaves the choice to the client).
//
// Why: sipgo v1.7.2's client (Client.DoDigestAuth and DialogClientSession.WaitAnswer)
// reads only the first challenge header (res.GetHeader) and fails if icholy/digest cannot
// answer it. icholy/digest answers MD5, SHA-256, SHA-512 and SHA-512-256 with qop auth or
// none, so Meta's MD5 and SHA-256 challenges work in either order; this only matters if a
// peer leads with something else (e.g. AKAv1-MD5, qop=auth-int only). Call it on the
// challenge before DoDigestAuth, or from AnswerOptions.OnResponse, which WaitAnswer runs on
// the same response before it computes the digest. It returns the chosen challenge, or nil
// (leaving res untouched) when none is usable.
func SelectChallenge(res *sipmsg.Response) *digest.Challenge {
	if res == nil {
		return nil
	}
	name := "WWW-Authenticate"
	if res.StatusCode == sipmsg.StatusProxyAuthRequired {
		name = "Proxy-Authenticate"
	}
	hdrs := res.GetHeaders(name)
	best, bestRank := -1, 0
	var bestChal *digest.Challenge
	for i, h := range hdrs {
		chal, err := digest.ParseChallenge(strings.TrimSpace(h.Value()))
		if err != nil {
			continue
		}
		// icholy/digest splits qop on ',' without trimming ("auth, auth-int").
		for j := range chal.QOP {
			chal.QOP[j] = strings.TrimSpace(chal.QOP[j])
		}
		if !(len(chal.QOP) == 0 || chal.SupportsQOP("auth")) {
			continue
		}
		rank := 0
		switch strings.ToUpper(chal.Algorithm) {
		case AlgorithmSHA256:
			rank = 3
		case "", AlgorithmMD5:
			rank = 2
		case "SHA-512", "SHA-512-256":
			rank = 1
		}
		if rank > bestRank {
			best, bestRank, bestChal = i, rank, chal
		}
	}
	if best < 0 {
		return nil
	}
	if best > 0 {
		// Put the chosen challenge first. sipgo's RemoveHeader matches the exact Name() and
		// removes one header per call, while GetHeaders matched case-insensitively.
		for _, h := range hdrs {
			for res.RemoveHeader(h.Name()) {
			}
		}
		res.AppendHeader(hdrs[best])
		for i, h := range hdrs {
			if i != best {
				res.AppendHeader(h)
			}
		}
	}
	return bestChal
}
