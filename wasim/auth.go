package wasim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest algorithms the edge can challenge with. Meta's documented challenge is MD5; a
// LiveKit trace shows SHA-256 (whatsapp-calling.md §5.3 step 2).
const (
	DigestMD5    = "MD5"
	DigestSHA256 = "SHA-256"
)

// nonceTTL is how long a nonce the edge issued can be used.
const nonceTTL = 5 * time.Minute

// authVerdict is the outcome of digestServer.verify.
type authVerdict int

const (
	authOK        authVerdict = iota
	authChallenge             // unknown or expired nonce: challenge again (stale=true)
	authFailed                // wrong credentials: 403
)

// digestServer checks the Proxy-Authorization of business-initiated INVITEs the way Meta's
// edge does (realm wa.meta.vc, qop=auth, opaque, one algorithm). It is written independently
// of wabridge's own digest code on purpose, so a bug shared by both cannot hide.
type digestServer struct {
	realm     string
	algorithm string
	opaque    string

	mu     sync.Mutex
	nonces map[string]*nonceState
}

type nonceState struct {
	issued time.Time
	lastNC int
}

func newDigestServer(algorithm string) *digestServer {
	return &digestServer{
		realm:     MetaDomain,
		algorithm: algorithm,
		opaque:    randomHex(16),
		nonces:    make(map[string]*nonceState),
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// challenge issues a fresh nonce and returns the Proxy-Authenticate value, e.g.
// Digest realm="wa.meta.vc", nonce="…", opaque="…", algorithm=MD5, qop="auth".
func (d *digestServer) challenge(stale bool) string {
	nonce := randomHex(16)
	now := time.Now()
	d.mu.Lock()
	for n, st := range d.nonces {
		if now.Sub(st.issued) > nonceTTL {
			delete(d.nonces, n)
		}
	}
	d.nonces[nonce] = &nonceState{issued: now}
	d.mu.Unlock()
	ch := digest.Challenge{
		Realm:     d.realm,
		Nonce:     nonce,
		Opaque:    d.opaque,
		Stale:     stale,
		Algorithm: d.algorithm,
		QOP:       []string{"auth"},
	}
	return ch.String()
}

// verify checks credentials for req. password looks up the password of a digest username
// (business digits without '+'). The returned reason is safe to log.
func (d *digestServer) verify(value string, req *sip.Request, password func(username string) (string, bool)) (authVerdict, string, string) {
	cred, err := digest.ParseCredentials(value)
	if err != nil {
		return authFailed, "", "malformed credentials"
	}
	switch {
	case cred.Realm != d.realm:
		return authFailed, cred.Username, fmt.Sprintf("realm %q", cred.Realm)
	case !strings.EqualFold(orDefault(cred.Algorithm, DigestMD5), d.algorithm):
		return authFailed, cred.Username, fmt.Sprintf("algorithm %q, challenged %s", cred.Algorithm, d.algorithm)
	case cred.QOP != "auth":
		return authFailed, cred.Username, fmt.Sprintf("qop %q, challenged auth", cred.QOP)
	case cred.Opaque != d.opaque:
		return authFailed, cred.Username, "opaque does not match the challenge"
	case cred.Cnonce == "" || cred.Nc <= 0:
		return authFailed, cred.Username, "qop=auth without cnonce or nc"
	case !uriNamesRequest(cred.URI, &req.Recipient):
		return authFailed, cred.Username, fmt.Sprintf("digest uri %q does not name the Request-URI", cred.URI)
	}

	d.mu.Lock()
	st, ok := d.nonces[cred.Nonce]
	if ok && time.Since(st.issued) > nonceTTL {
		delete(d.nonces, cred.Nonce)
		ok = false
	}
	d.mu.Unlock()
	if !ok {
		return authChallenge, cred.Username, "unknown or expired nonce"
	}

	pw, known := password(cred.Username)
	if !known {
		return authFailed, cred.Username, "unknown username"
	}
	want, err := digest.Digest(&digest.Challenge{
		Realm:     d.realm,
		Nonce:     cred.Nonce,
		Opaque:    d.opaque,
		Algorithm: d.algorithm,
		QOP:       []string{"auth"},
	}, digest.Options{
		Method:   req.Method.String(),
		URI:      cred.URI, // the hash covers the uri string the client sent
		Username: cred.Username,
		Password: pw,
		Cnonce:   cred.Cnonce,
		Count:    cred.Nc,
	})
	if err != nil {
		return authFailed, cred.Username, err.Error()
	}
	if subtle.ConstantTimeCompare([]byte(want.Response), []byte(strings.ToLower(cred.Response))) != 1 {
		return authFailed, cred.Username, "wrong digest response"
	}

	// A nonce count that does not grow is a replay (RFC 7616 §3.4).
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.nonces[cred.Nonce]; ok {
		if cred.Nc <= st.lastNC {
			return authFailed, cred.Username, "nonce count replayed"
		}
		st.lastNC = cred.Nc
	}
	return authOK, cred.Username, ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// uriNamesRequest checks that a digest uri names the Request-URI: same user (user-params
// aside) and host. Clients differ on whether they include URI parameters (Meta's own sample
// drops ";transport=tls"), so parameters are ignored.
func uriNamesRequest(credURI string, r *sip.Uri) bool {
	var u sip.Uri
	if err := sip.ParseUri(credURI, &u); err != nil {
		return false
	}
	userA, _, _ := strings.Cut(u.User, ";")
	userB, _, _ := strings.Cut(r.User, ";")
	return userA == userB && strings.EqualFold(u.Host, r.Host)
}

// clientCredentials answers a 401/407 from wabridge as Meta does: username is the business
// number's digits, uri is "sip:+<business>@<host>" without parameters (§5.2). It returns the
// header name (Authorization or Proxy-Authorization) and value.
func clientCredentials(res *sip.Response, method, uri, username, password string) (string, string, error) {
	challengeHdr, authHdr := "WWW-Authenticate", "Authorization"
	if res.StatusCode == sip.StatusProxyAuthRequired {
		challengeHdr, authHdr = "Proxy-Authenticate", "Proxy-Authorization"
	}
	var last error
	for _, v := range headerValues(res, challengeHdr) {
		ch, err := digest.ParseChallenge(v)
		if err != nil {
			last = err
			continue
		}
		ch.Algorithm = strings.ToUpper(ch.Algorithm)
		if !digest.CanDigest(ch) || (len(ch.QOP) > 0 && !ch.SupportsQOP("auth")) {
			last = fmt.Errorf("unsupported challenge algorithm=%q qop=%q", ch.Algorithm, ch.QOP)
			continue
		}
		if len(ch.QOP) > 0 {
			ch.QOP = []string{"auth"} // never auth-int: Meta does not do it
		}
		cred, err := digest.Digest(ch, digest.Options{Method: method, URI: uri, Username: username, Password: password})
		if err != nil {
			last = err
			continue
		}
		return authHdr, cred.String(), nil
	}
	if last == nil {
		last = fmt.Errorf("no %s header", challengeHdr)
	}
	return "", "", fmt.Errorf("wasim: cannot answer the %d challenge: %w", res.StatusCode, last)
}
