package sip

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testRealm    = "meta-voip.example.com"
	testUser     = "12145551869"
	testPassword = "s3cret-meta-password"
)

func TestChallenge(t *testing.T) {
	t.Parallel()
	a := NewAuthenticator(testRealm, WithAlgorithms(AlgorithmMD5, AlgorithmSHA256))
	req := parseRequest(t, metaInvite("sip:+12145551869@meta-voip.example.com;transport=tls"))

	for _, stale := range []bool{false, true} {
		res := a.Challenge(req, stale)
		assert.Equal(t, 407, res.StatusCode)
		assert.Equal(t, "Proxy Authentication Required", res.Reason)
		to := res.To()
		require.NotNil(t, to)
		assert.True(t, to.Params.Has("tag"), "RFC 3261 §8.2.6.2: final responses carry a To tag")

		hdrs := res.GetHeaders("Proxy-Authenticate")
		require.Len(t, hdrs, 2)
		var algs []string
		nonces := map[string]bool{}
		for _, h := range hdrs {
			chal, err := digest.ParseChallenge(h.Value())
			require.NoError(t, err)
			algs = append(algs, chal.Algorithm)
			assert.Equal(t, testRealm, chal.Realm)
			assert.Equal(t, []string{"auth"}, chal.QOP)
			assert.Equal(t, stale, chal.Stale)
			assert.NoError(t, a.checkNonce(chal.Nonce))
			nonces[chal.Nonce] = true
		}
		assert.Equal(t, []string{"MD5", "SHA-256"}, algs, "MD5 first: clients that take the first challenge (baresip, sipgo) must work")
		assert.Len(t, nonces, 1, "both challenges share one nonce")
		assert.Contains(t, hdrs[0].Value(), `qop="auth"`)
	}
}

// answer builds the credentials header a client would send for chal.
type answer struct {
	header    string // Proxy-Authorization or Authorization
	alg       string
	qop       bool
	user      string
	password  string
	uri       string
	nonce     string // overrides the challenge nonce
	nonceAge  time.Duration
	realm     string // overrides the realm
	mutate    func(c *digest.Credentials)
	rawHeader string // sent verbatim instead
}

func (an answer) apply(t *testing.T, a *Authenticator, req *sipmsg.Request) {
	t.Helper()
	if an.rawHeader != "" {
		req.AppendHeader(sipmsg.NewHeader(an.header, an.rawHeader))
		return
	}
	chal := &digest.Challenge{Realm: a.realm, Nonce: a.newNonce(), Algorithm: an.alg}
	if an.realm != "" {
		chal.Realm = an.realm
	}
	if an.nonce != "" {
		chal.Nonce = an.nonce
	}
	if an.nonceAge != 0 {
		// Our own key, an old timestamp.
		old := *a
		old.now = func() time.Time { return a.now().Add(-an.nonceAge) }
		chal.Nonce = old.newNonce()
	}
	if an.qop {
		chal.QOP = []string{"auth"}
	}
	cred, err := digest.Digest(chal, digest.Options{
		Method: req.Method.String(), URI: an.uri, Username: an.user, Password: an.password,
	})
	require.NoError(t, err)
	if an.mutate != nil {
		an.mutate(cred)
	}
	req.AppendHeader(sipmsg.NewHeader(an.header, cred.String()))
}

func TestAuthenticatorCheck(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clock := func() time.Time { return now }
	const uri = "sip:+12145551869@meta-voip.example.com"
	good := answer{header: "Proxy-Authorization", alg: "SHA-256", qop: true, user: testUser, password: testPassword, uri: uri}
	with := func(f func(*answer)) *answer { an := good; f(&an); return &an }

	// A nonce signed by another process (after a restart, say).
	foreignNonce := NewAuthenticator(testRealm).newNonce()

	tests := []struct {
		name      string
		answers   []*answer
		want      Verdict
		wantStale bool
		reason    string
	}{
		{name: "sha-256 qop=auth", answers: []*answer{&good}, want: AuthOK},
		{name: "md5 qop=auth (Meta's documented form)", answers: []*answer{with(func(a *answer) { a.alg = "MD5" })}, want: AuthOK},
		{name: "md5 without qop (RFC 2069)", answers: []*answer{with(func(a *answer) { a.alg = "MD5"; a.qop = false })}, want: AuthOK},
		{name: "no algorithm means MD5", answers: []*answer{with(func(a *answer) { a.alg = "" })}, want: AuthOK},
		{name: "lower-case algorithm", answers: []*answer{with(func(a *answer) { a.alg = "md5" })}, want: AuthOK},
		{name: "401-style Authorization header", answers: []*answer{with(func(a *answer) { a.header = "Authorization" })}, want: AuthOK},
		{name: "uri with transport param", answers: []*answer{with(func(a *answer) { a.uri = uri + ";transport=tls" })}, want: AuthOK},
		{name: "uri host case and explicit port", answers: []*answer{with(func(a *answer) { a.uri = "sip:+12145551869@META-VOIP.example.com:5061" })}, want: AuthOK},
		{name: "upper-case hex response", answers: []*answer{with(func(a *answer) {
			a.mutate = func(c *digest.Credentials) { c.Response = strings.ToUpper(c.Response) }
		})}, want: AuthOK},
		{name: "credentials for another realm are skipped", answers: []*answer{with(func(a *answer) { a.realm = "other" }), &good}, want: AuthOK},

		{name: "no credentials", want: AuthChallenge, reason: "no credentials"},
		{name: "only another realm", answers: []*answer{with(func(a *answer) { a.realm = "other" })}, want: AuthChallenge, reason: "no credentials"},
		{name: "expired nonce, right password", answers: []*answer{with(func(a *answer) { a.nonceAge = 10 * time.Minute })}, want: AuthChallenge, wantStale: true, reason: "nonce expired"},
		{name: "foreign nonce, right password", answers: []*answer{with(func(a *answer) { a.nonce = foreignNonce })}, want: AuthChallenge, wantStale: true, reason: "nonce not issued by us"},

		{name: "wrong password", answers: []*answer{with(func(a *answer) { a.password = "guess" })}, want: AuthFailed, reason: "wrong response"},
		{name: "wrong username", answers: []*answer{with(func(a *answer) { a.user = "+12145551869" })}, want: AuthFailed, reason: "wrong username"},
		{name: "uri names another number", answers: []*answer{with(func(a *answer) { a.uri = "sip:+19995551869@meta-voip.example.com" })}, want: AuthFailed, reason: "uri mismatch"},
		{name: "uri names another host", answers: []*answer{with(func(a *answer) { a.uri = "sip:+12145551869@evil.example.com" })}, want: AuthFailed, reason: "uri mismatch"},
		{name: "expired nonce, wrong password", answers: []*answer{with(func(a *answer) { a.nonceAge = 10 * time.Minute; a.password = "guess" })}, want: AuthFailed, reason: "wrong response"},
		{name: "forged nonce, wrong password", answers: []*answer{with(func(a *answer) { a.nonce = "bm90LW91ci1ub25jZQ"; a.password = "guess" })}, want: AuthFailed, reason: "wrong response"},
		{name: "nc changed after hashing", answers: []*answer{with(func(a *answer) {
			a.mutate = func(c *digest.Credentials) { c.Nc = 2 }
		})}, want: AuthFailed, reason: "wrong response"},
		{name: "cnonce changed after hashing", answers: []*answer{with(func(a *answer) {
			a.mutate = func(c *digest.Credentials) { c.Cnonce = "other" }
		})}, want: AuthFailed, reason: "wrong response"},
		{name: "qop=auth without cnonce", answers: []*answer{with(func(a *answer) {
			a.mutate = func(c *digest.Credentials) { c.Cnonce = "" }
		})}, want: AuthFailed, reason: "qop=auth without cnonce or nc"},
		{name: "qop=auth-int not offered", answers: []*answer{with(func(a *answer) {
			a.mutate = func(c *digest.Credentials) { c.QOP = "auth-int" }
		})}, want: AuthFailed, reason: "unsupported qop auth-int"},
		{name: "sha-512 not offered", answers: []*answer{with(func(a *answer) { a.alg = "SHA-512" })}, want: AuthFailed, reason: "unsupported algorithm SHA-512"},
		{name: "malformed credentials", answers: []*answer{{header: "Proxy-Authorization", rawHeader: `Digest username="12145551869, realm="meta-voip.example.com"`}}, want: AuthFailed, reason: "malformed credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := NewAuthenticator(testRealm, WithClock(clock))
			req := parseRequest(t, metaInvite("sip:+12145551869;tgrp=wacall@meta-voip.example.com;transport=tls"))
			for _, an := range tc.answers {
				an.apply(t, a, req)
			}
			res := a.Check(req, testUser, testPassword)
			assert.Equal(t, tc.want, res.Verdict, "reason %q", res.Reason)
			assert.Equal(t, tc.wantStale, res.Stale)
			if tc.reason != "" {
				assert.Equal(t, tc.reason, res.Reason)
			}
			assert.NotContains(t, res.Reason, testPassword)
		})
	}
}

func TestNonceExpiry(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := NewAuthenticator(testRealm, WithClock(clock), WithNonceTTL(time.Minute))
	nonce := a.newNonce()
	assert.NoError(t, a.checkNonce(nonce))

	mu.Lock()
	now = now.Add(59 * time.Second)
	mu.Unlock()
	assert.NoError(t, a.checkNonce(nonce))

	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	assert.ErrorIs(t, a.checkNonce(nonce), errNonceExpired)

	// Flip one bit of the signed timestamp: the MAC no longer matches.
	b := []byte(nonce)
	b[3] ^= 1
	assert.ErrorIs(t, a.checkNonce(string(b)), errNonceForeign)
	assert.ErrorIs(t, NewAuthenticator("other-realm").checkNonce(a.newNonce()), errNonceForeign)
}

func TestSelectChallenge(t *testing.T) {
	t.Parallel()
	chal := func(alg, qop string) string {
		s := `Digest realm="wa.meta.vc", nonce="n-` + alg + `"`
		if alg != "" {
			s += ", algorithm=" + alg
		}
		if qop != "" {
			s += `, qop="` + qop + `"`
		}
		return s
	}
	tests := []struct {
		name    string
		code    int
		offered []string
		wantAlg string // "" with wantNil
		wantNil bool
	}{
		{name: "meta md5 only", code: 407, offered: []string{chal("MD5", "auth")}, wantAlg: "MD5"},
		{name: "md5 then sha-256", code: 407, offered: []string{chal("MD5", "auth"), chal("SHA-256", "auth")}, wantAlg: "SHA-256"},
		{name: "unsupported first", code: 407, offered: []string{chal("AKAv1-MD5", "auth"), chal("MD5", "auth")}, wantAlg: "MD5"},
		{name: "auth-int only is skipped", code: 407, offered: []string{chal("SHA-256", "auth-int"), chal("MD5", "auth, auth-int")}, wantAlg: "MD5"},
		{name: "401 uses WWW-Authenticate", code: 401, offered: []string{chal("MD5", ""), chal("SHA-256", "auth")}, wantAlg: "SHA-256"},
		{name: "nothing usable", code: 407, offered: []string{chal("AKAv1-MD5", "auth")}, wantNil: true},
		{name: "no challenge", code: 407, wantNil: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := "Proxy-Authenticate"
			if tc.code == 401 {
				name = "WWW-Authenticate"
			}
			res := sipmsg.NewResponse(tc.code, "Auth")
			res.AppendHeader(sipmsg.NewHeader("Via", "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKx"))
			for _, o := range tc.offered {
				res.AppendHeader(sipmsg.NewHeader(name, o))
			}
			got := SelectChallenge(res)
			if tc.wantNil {
				assert.Nil(t, got)
				assert.Len(t, res.GetHeaders(name), len(tc.offered), "left untouched")
				return
			}
			require.NotNil(t, got)
			assert.Equal(t, tc.wantAlg, got.Algorithm)
			hdrs := res.GetHeaders(name)
			require.Len(t, hdrs, len(tc.offered), "no challenge lost")
			first, err := digest.ParseChallenge(hdrs[0].Value())
			require.NoError(t, err)
			assert.Equal(t, tc.wantAlg, first.Algorithm, "chosen challenge is first, where sipgo looks")
			assert.NotNil(t, res.Via(), "other headers kept")
		})
	}
}

// TestSipgoClientAnswersOurChallenge runs sipgo's own client (DialogClientSession.WaitAnswer
// with AnswerOptions.Username/Password) against a UAS that uses Authenticator, over TCP
// loopback. It shows that sipgo answers the first of our two Proxy-Authenticate headers
// (MD5), hashing uri = Request-URI without its parameters.
func TestSipgoClientAnswersOurChallenge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		password string
		wantCode int
		verdicts []Verdict
	}{
		{name: "right password", password: testPassword, wantCode: 200, verdicts: []Verdict{AuthChallenge, AuthOK}},
		{name: "wrong password gets 403 after one challenge", password: "guess", wantCode: 403, verdicts: []Verdict{AuthChallenge, AuthFailed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			auth := NewAuthenticator(testRealm)

			uasUA, err := sipgo.NewUA()
			require.NoError(t, err)
			defer uasUA.Close()
			srv, err := sipgo.NewServer(uasUA)
			require.NoError(t, err)

			var mu sync.Mutex
			var verdicts []Verdict
			var creds []*digest.Credentials
			srv.OnInvite(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
				res := auth.Check(req, testUser, testPassword)
				mu.Lock()
				verdicts = append(verdicts, res.Verdict)
				if h := req.GetHeader("Proxy-Authorization"); h != nil {
					c, err := digest.ParseCredentials(h.Value())
					if err == nil {
						creds = append(creds, c)
					}
				}
				mu.Unlock()
				switch res.Verdict {
				case AuthChallenge:
					_ = tx.Respond(auth.Challenge(req, res.Stale))
				case AuthFailed:
					_ = tx.Respond(sipmsg.NewResponseFromRequest(req, 403, "Forbidden", nil))
				case AuthOK:
					_ = tx.Respond(sipmsg.NewSDPResponseFromRequest(req, []byte("v=0\r\n")))
				}
			})
			srv.OnAck(func(*sipmsg.Request, sipmsg.ServerTransaction) {})

			l, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			served := make(chan struct{})
			go func() { defer close(served); _ = srv.ServeTCP(l) }()
			defer func() { l.Close(); <-served }()

			uacUA, err := sipgo.NewUA()
			require.NoError(t, err)
			defer uacUA.Close()
			cli, err := sipgo.NewClient(uacUA, sipgo.WithClientHostname("127.0.0.1"))
			require.NoError(t, err)
			dua := sipgo.DialogUA{Client: cli, ContactHDR: sipmsg.ContactHeader{
				Address: sipmsg.Uri{Scheme: "sip", User: "meta", Host: "127.0.0.1"},
			}}

			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			port := portOf(t, l.Addr())
			recipient := sipmsg.Uri{Scheme: "sip", User: "+12145551869", Host: "127.0.0.1", Port: port,
				UriParams: sipmsg.HeaderParams{{K: "transport", V: "tcp"}}}
			sess, err := dua.Invite(ctx, recipient, []byte("v=0\r\n"))
			require.NoError(t, err)
			defer sess.Close()
			err = sess.WaitAnswer(ctx, sipgo.AnswerOptions{Username: testUser, Password: tc.password})
			if tc.wantCode == 200 {
				require.NoError(t, err)
				require.NoError(t, sess.Ack(ctx))
			} else {
				var re *sipgo.ErrDialogResponse
				require.True(t, errors.As(err, &re), "got %v", err)
				assert.Equal(t, tc.wantCode, re.Res.StatusCode)
			}

			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, tc.verdicts, verdicts)
			require.Len(t, creds, 1)
			assert.Equal(t, "MD5", creds[0].Algorithm, "sipgo answers the first challenge")
			assert.Equal(t, "auth", creds[0].QOP)
			assert.Equal(t, recipient.Addr(), creds[0].URI, "sipgo hashes the Request-URI without parameters")
			assert.NotContains(t, recipient.Addr(), "transport")
		})
	}
}

func TestCheckRefusesEmptyServerCredentials(t *testing.T) {
	t.Parallel()
	a := NewAuthenticator(testRealm)
	req := parseRequest(t, metaInvite("sip:+12145551869@meta-voip.example.com"))
	answer{header: "Proxy-Authorization", alg: "MD5", qop: true, user: testUser, password: "",
		uri: "sip:+12145551869@meta-voip.example.com"}.apply(t, a, req)
	res := a.Check(req, testUser, "")
	assert.Equal(t, AuthFailed, res.Verdict)
	assert.Equal(t, "server credentials not configured", res.Reason)
	assert.Equal(t, AuthFailed, a.Check(req, "", testPassword).Verdict)
	assert.Equal(t, "failed", AuthFailed.String())
	assert.Equal(t, "challenge", AuthChallenge.String())
	assert.Equal(t, "ok", AuthOK.String())
}
