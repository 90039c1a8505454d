package bridge_test

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	wsip "github.com/wabridge/wabridge/sip"
)

// TestRegistersWithPBX: with pbx.register enabled, wabridge keeps a digest-authenticated
// registration at the PBX (for PBXs that only route to registered contacts) and reports it.
func TestRegistersWithPBX(t *testing.T) {
	t.Parallel()
	const user, password = "wabridge", "pbx-secret"
	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	auth := wsip.NewAuthenticator("pbx.test")
	var registered atomic.Int32
	var contact atomic.Value
	srv.OnRegister(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		switch res := auth.Check(req, user, password); res.Verdict {
		case wsip.AuthOK:
			registered.Add(1)
			if c := req.Contact(); c != nil {
				contact.Store(c.Address.String())
			}
			resp := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
			resp.AppendHeader(sipmsg.NewHeader("Expires", "60"))
			_ = tx.Respond(resp)
		case wsip.AuthChallenge:
			_ = tx.Respond(auth.Challenge(req, res.Stale))
		default:
			_ = tx.Respond(sipmsg.NewResponseFromRequest(req, 403, "Forbidden", nil))
		}
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() { _ = srv.ServeUDP(pc); close(served) }()
	t.Cleanup(func() { _ = pc.Close(); <-served })

	h := newHarness(t, harnessOptions{pbxAddr: pc.LocalAddr().String(),
		pbxExtra: "  register: {enabled: true, username: " + user + ", password: " + password + ", expires: 60s}"})
	require.Eventually(t, func() bool {
		return h.srv.RegistrationStates()["pbx"] == wsip.RegRegistered
	}, 10*time.Second, 50*time.Millisecond)
	assert.Positive(t, registered.Load())
	assert.Contains(t, scrape(t, h), `wabridge_registration_up{name="pbx"} 1`)
	assert.Contains(t, contact.Load(), h.srv.Addrs().PBXUDP.String(), "the PBX must learn our PBX-side listener")
}
