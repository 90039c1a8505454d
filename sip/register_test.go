package sip

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// registrar is a small sipgo UAS that answers REGISTER like a PBX (digest 401, then 200
// with a short Expires) or like Meta's edge (403).
type registrar struct {
	mode     string // "digest", "forbidden", "brief"
	grant    int    // seconds granted on 200
	auth     *Authenticator
	password string

	mu   sync.Mutex
	reqs []registerSeen
}

type registerSeen struct {
	at         time.Time
	callID     string
	cseq       uint32
	expires    int
	authorized bool
}

func (r *registrar) seen() []registerSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]registerSeen(nil), r.reqs...)
}

func (r *registrar) onRegister(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	exp := -1
	if h := req.GetHeader("Expires"); h != nil {
		exp, _ = strconv.Atoi(h.Value())
	}
	seen := registerSeen{at: time.Now(), callID: req.CallID().Value(), cseq: req.CSeq().SeqNo, expires: exp}
	respond := func(res *sipmsg.Response) { _ = tx.Respond(res) }

	switch r.mode {
	case "forbidden":
		res := sipmsg.NewResponseFromRequest(req, 403, "Forbidden", nil)
		res.AppendHeader(sipmsg.NewHeader("Warning", `399 wa.meta.vc "REGISTER is not supported"`))
		r.record(seen)
		respond(res)
		return
	case "brief":
		if exp > 0 && exp < 60 {
			res := sipmsg.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
			res.AppendHeader(sipmsg.NewHeader("Min-Expires", "60"))
			r.record(seen)
			respond(res)
			return
		}
		seen.authorized = true
		r.record(seen)
		respond(r.ok(req, exp))
		return
	}

	result := r.auth.Check(req, testUser, r.password)
	switch result.Verdict {
	case AuthChallenge:
		// A PBX challenges REGISTER with 401 and WWW-Authenticate (RFC 3261 §22.2); reuse
		// our 407's challenges.
		chal := r.auth.Challenge(req, result.Stale)
		res := sipmsg.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		for _, h := range chal.GetHeaders("Proxy-Authenticate") {
			res.AppendHeader(sipmsg.NewHeader("WWW-Authenticate", h.Value()))
		}
		r.record(seen)
		respond(res)
	case AuthFailed:
		r.record(seen)
		respond(sipmsg.NewResponseFromRequest(req, 403, "Forbidden", nil))
	case AuthOK:
		seen.authorized = true
		r.record(seen)
		respond(r.ok(req, exp))
	}
}

func (r *registrar) ok(req *sipmsg.Request, requested int) *sipmsg.Response {
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	if requested == 0 {
		return res
	}
	grant := r.grant
	if grant == 0 {
		grant = requested
	}
	c := req.Contact().Clone()
	c.Params = sipmsg.NewParams()
	c.Params.Add("expires", strconv.Itoa(grant))
	res.AppendHeader(c)
	// A different Expires header: the Contact parameter must win (RFC 3261 §10.2.4).
	res.AppendHeader(sipmsg.NewHeader("Expires", "3600"))
	return res
}

func (r *registrar) record(s registerSeen) {
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
}

// startRegistrar serves r on an OS-chosen loopback port and returns the registrar URI.
func startRegistrar(t *testing.T, r *registrar, transport string) sipmsg.Uri {
	t.Helper()
	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	srv.OnRegister(r.onRegister)

	served := make(chan struct{})
	var addr net.Addr
	var closer func() error
	switch transport {
	case "udp":
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		addr, closer = pc.LocalAddr(), pc.Close
		go func() { defer close(served); _ = srv.ServeUDP(pc) }()
	case "tcp":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr, closer = l.Addr(), l.Close
		go func() { defer close(served); _ = srv.ServeTCP(l) }()
	}
	t.Cleanup(func() {
		_ = closer()
		<-served
		_ = ua.Close()
	})
	return sipmsg.Uri{Scheme: "sip", Host: "127.0.0.1", Port: portOf(t, addr),
		UriParams: sipmsg.HeaderParams{{K: "transport", V: transport}}}
}

func newRegClient(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("wabridge-test"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	return cli
}

func regConfig(registrarURI sipmsg.Uri, password string, log *logrus.Entry) RegistrationConfig {
	return RegistrationConfig{
		Registrar: registrarURI,
		AOR:       sipmsg.Uri{Scheme: "sip", User: "wabridge", Host: "pbx.example.com"},
		Contact:   sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "wabridge", Host: "127.0.0.1", Port: 5099}},
		Username:  testUser,
		Password:  password,
		Expires:   2 * time.Second,
		RetryMin:  50 * time.Millisecond,
		RetryMax:  200 * time.Millisecond,
		Log:       log,
	}
}

func TestRegistrationRefreshesAndUnregisters(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			reg := &registrar{mode: "digest", grant: 2, auth: NewAuthenticator("pbx.example.com"), password: testPassword}
			uri := startRegistrar(t, reg, transport)
			log, hook := newTestLogger(logrus.DebugLevel)

			r, err := NewRegistration(newRegClient(t), regConfig(uri, testPassword, log))
			require.NoError(t, err)
			assert.Equal(t, RegUnregistered, r.State())

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()

			require.Eventually(t, func() bool { return r.State() == RegRegistered }, testTimeout, 10*time.Millisecond)
			// Granted 2 s: the refresh comes at ~1.6 s.
			require.Eventually(t, func() bool {
				n := 0
				for _, s := range reg.seen() {
					if s.authorized && s.expires > 0 {
						n++
					}
				}
				return n >= 2
			}, testTimeout, 20*time.Millisecond)
			assert.Equal(t, RegRegistered, r.State())

			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(testTimeout):
				t.Fatal("Run did not return")
			}
			assert.Equal(t, RegUnregistered, r.State())

			seen := reg.seen()
			var okTimes []time.Time
			for i, s := range seen {
				assert.Equal(t, seen[0].callID, s.callID, "RFC 3261 §10.2: one Call-ID per registrar")
				if i > 0 {
					assert.Greater(t, s.cseq, seen[i-1].cseq, "CSeq increases")
				}
				if s.authorized && s.expires > 0 {
					okTimes = append(okTimes, s.at)
				}
			}
			require.GreaterOrEqual(t, len(okTimes), 2)
			gap := okTimes[1].Sub(okTimes[0])
			assert.InDelta(t, 1600, gap.Milliseconds(), 600, "refresh at 80%% of 2 s, got %v", gap)
			assert.False(t, seen[0].authorized, "first REGISTER is challenged")
			last := seen[len(seen)-1]
			assert.Equal(t, 0, last.expires, "unregister with Expires: 0")
			assert.True(t, last.authorized)

			for _, e := range hook.AllEntries() {
				s, _ := e.String()
				assert.NotContains(t, s, testPassword)
			}
		})
	}
}

func TestRegistrationFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mode     string
		password string
		wantLog  string
	}{
		{name: "403 like Meta's edge", mode: "forbidden", password: testPassword, wantLog: `403 Forbidden (REGISTER is not supported)`},
		{name: "wrong password", mode: "digest", password: "guess", wantLog: "403 Forbidden"},
		{name: "challenged without password", mode: "digest", password: "", wantLog: "challenged but no password configured"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := &registrar{mode: tc.mode, auth: NewAuthenticator("pbx.example.com"), password: testPassword}
			uri := startRegistrar(t, reg, "udp")
			log, hook := newTestLogger(logrus.DebugLevel)

			r, err := NewRegistration(newRegClient(t), regConfig(uri, tc.password, log))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()

			require.Eventually(t, func() bool { return r.State() == RegFailed }, testTimeout, 10*time.Millisecond)
			// Retries with backoff (50 ms doubling to 200 ms).
			require.Eventually(t, func() bool { return len(reg.seen()) >= 4 }, testTimeout, 10*time.Millisecond)
			assert.Equal(t, RegFailed, r.State())

			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(testTimeout):
				t.Fatal("Run did not return")
			}
			assert.Equal(t, RegUnregistered, r.State())
			for _, s := range reg.seen() {
				assert.NotEqual(t, 0, s.expires, "never bound, so no unregister")
			}

			var warned int
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.WarnLevel && e.Message == "SIP registration failed" {
					warned++
					assert.Contains(t, e.Data[logrus.ErrorKey].(error).Error(), tc.wantLog)
				}
			}
			assert.Equal(t, 1, warned, "a failure streak is logged once at Warn")
		})
	}
}

func TestRegistrationIntervalTooBrief(t *testing.T) {
	t.Parallel()
	reg := &registrar{mode: "brief"}
	uri := startRegistrar(t, reg, "udp")
	log, _ := newTestLogger(logrus.WarnLevel)
	r, err := NewRegistration(newRegClient(t), regConfig(uri, testPassword, log))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.Eventually(t, func() bool { return r.State() == RegRegistered }, testTimeout, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	seen := reg.seen()
	require.Len(t, seen, 3)
	assert.Equal(t, []int{2, 60, 0}, []int{seen[0].expires, seen[1].expires, seen[2].expires}, "RFC 3261 §10.2.8: retry with Min-Expires")
}

func TestNewRegistrationValidates(t *testing.T) {
	t.Parallel()
	cli := newRegClient(t)
	good := regConfig(sipmsg.Uri{Scheme: "sip", Host: "pbx.example.com"}, "pw", nil)
	tests := []struct {
		name    string
		mutate  func(c *RegistrationConfig)
		wantErr string
	}{
		{name: "ok", mutate: func(*RegistrationConfig) {}},
		{name: "no registrar", mutate: func(c *RegistrationConfig) { c.Registrar = sipmsg.Uri{} }, wantErr: "registrar"},
		{name: "no aor", mutate: func(c *RegistrationConfig) { c.AOR = sipmsg.Uri{} }, wantErr: "address-of-record"},
		{name: "meta edge", mutate: func(c *RegistrationConfig) { c.Registrar.Host = "wa.meta.vc" }, wantErr: "403"},
		{name: "meta edge upper case", mutate: func(c *RegistrationConfig) { c.Registrar.Host = "WA.META.VC" }, wantErr: "403"},
		{name: "negative expiry", mutate: func(c *RegistrationConfig) { c.Expires = -time.Second }, wantErr: "negative"},
	}
	for _, tc := range tests {
		cfg := good
		tc.mutate(&cfg)
		r, err := NewRegistration(cli, cfg)
		if tc.wantErr == "" {
			require.NoError(t, err, tc.name)
			assert.NotNil(t, r)
			continue
		}
		require.Error(t, err, tc.name)
		assert.True(t, strings.Contains(err.Error(), tc.wantErr), "%s: %v", tc.name, err)
	}
	_, err := NewRegistration(nil, good)
	assert.Error(t, err)

	r, err := NewRegistration(cli, RegistrationConfig{Registrar: good.Registrar, AOR: good.AOR})
	require.NoError(t, err)
	assert.Equal(t, DefaultRegisterExpires, r.cfg.Expires)
	assert.Equal(t, DefaultRegisterRetryMin, r.cfg.RetryMin)
	assert.Equal(t, DefaultRegisterRetryMax, r.cfg.RetryMax)
	assert.Equal(t, "registered", RegRegistered.String())
}
