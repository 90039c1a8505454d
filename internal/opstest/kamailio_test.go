package opstest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

// TestKamailioConfigCheck: `kamailio -c` accepts the shipped config as it is (its defaults
// included), and rejects a broken copy, which shows the check has teeth on this version.
func TestKamailioConfigCheck(t *testing.T) {
	t.Parallel()
	bin := requireTool(t, "kamailio", kamailioPkg)
	out, code := runTool(t, time.Minute, bin, "-c", "-f", repoPath(t, kamailioCfg))
	require.Equal(t, 0, code, "kamailio -c:\n%s", out)
	assert.Contains(t, out, "config file ok")
	text := readRepoFile(t, kamailioCfg)

	broken := filepath.Join(t.TempDir(), "kamailio.cfg")
	require.Contains(t, text, "if (!ds_next_dst())")
	require.NoError(t, os.WriteFile(broken, []byte(strings.Replace(text, "if (!ds_next_dst())", "if (!ds_next_destination())", 1)), 0o644))
	out, code = runTool(t, time.Minute, bin, "-c", "-f", broken)
	assert.NotEqual(t, 0, code, "kamailio -c accepted an unknown function:\n%s", out)
}

// TestKamailioReportsATakenPort: startKamailio tells a port taken before Kamailio could bind
// it (which newCluster retries with another port) from any other start-up failure.
func TestKamailioReportsATakenPort(t *testing.T) {
	t.Parallel()
	requireTool(t, "kamailio", kamailioPkg)
	taken := startHungInstance(t) // a bound UDP port
	_, err := startKamailio(t, kamailioOptions{port: int(taken.Port()), pbx: netip.MustParseAddrPort("127.0.0.1:9")})
	require.ErrorIs(t, err, errKamailioBind)
}

// TestKamailioDispatcherList checks the shipped list's format and the config's default path to it.
func TestKamailioDispatcherList(t *testing.T) {
	t.Parallel()
	text := readRepoFile(t, kamailioCfg)
	// "setid sip:host:port flags priority [attrs]" lines, all in set 1.
	var dests int
	entry := regexp.MustCompile(`^1\s+sip:\d+\.\d+\.\d+\.\d+:\d+\s+0\s+\d+(\s+\S+)?$`)
	for _, l := range strings.Split(readRepoFile(t, "examples/kamailio/dispatcher.list"), "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		assert.Regexp(t, entry, l, "dispatcher.list entry")
		dests++
	}
	assert.GreaterOrEqual(t, dests, 2, "the example should show several instances")
	assert.Contains(t, text, `#!define DISPATCHER_LIST "/etc/kamailio/dispatcher.list"`)
}

// TestKamailioDispatchesBusinessInitiatedCalls is the kit's point: a PBX (sipp) calls WhatsApp
// users through Kamailio, which spreads the calls over two wabridge instances. The media flows
// both ways, the PBX's BYE and the WhatsApp user's BYE both follow Kamailio's Record-Route, and
// Kamailio's OPTIONS probes see both instances up.
func TestKamailioDispatchesBusinessInitiatedCalls(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{instances: 2, onInvite: func(wasim.InviteInfo) wasim.Answer {
		return wasim.Answer{Code: 200, RingFor: 100 * time.Millisecond}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Call 1: the PBX plays audio and hangs up.
	sent := peertest.OpusLikePayloads(50, 1)
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_call.xml"),
		Remote: c.kam.addr.String(), Service: waUser,
		Vars:         map[string]string{"business": business, "pcap": pbxPCAP(t, sent)},
		CallDuration: 2 * time.Second, RTPEcho: true, Timeout: 30 * time.Second})
	call, err := c.edge.NextCall(ctx)
	require.NoError(t, err)
	assert.Equal(t, waUser, call.User)
	assert.Equal(t, business, call.Business)
	waitOrFail(t, ctx, call.Answered(), "WhatsApp leg not answered")
	back := peertest.OpusLikePayloads(25, 2)
	require.NoError(t, call.Media.Send(ctx, back, opusPT, ptime)) // echoed by sipp
	waitOrFail(t, ctx, call.Done(), "WhatsApp leg did not end after the PBX's BYE")
	assert.Equal(t, wasim.EndedRemoteBye, call.EndedBy())
	got := audioPayloads(call.Media.Received())
	assert.Equal(t, sent, withSeed(got, 1), "the PBX's audio must reach WhatsApp byte for byte")
	assert.Equal(t, back, withSeed(got, 2), "WhatsApp's audio must make the round trip through the PBX")
	sipp.RequireSuccess(t, 10*time.Second)
	msgs := sippMessages(sipp.Messages())
	assert.True(t, msgs.has("received", "SIP/2.0 200 OK", recordRoute(c.kam.addr)), "the 200 OK must carry Kamailio's Record-Route")
	assert.True(t, msgs.has("sent", "BYE sip:", routeTo(c.kam.addr)), "the PBX's BYE must go through Kamailio")
	assert.Empty(t, call.Violations())

	// Call 2: the WhatsApp user hangs up; wabridge's BYE reaches the PBX through Kamailio.
	sipp = peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_wait_bye.xml"),
		Remote: c.kam.addr.String(), Service: waUser, Vars: map[string]string{"business": business},
		RTPEcho: true, Timeout: 30 * time.Second})
	call, err = c.edge.NextCall(ctx)
	require.NoError(t, err)
	waitOrFail(t, ctx, call.Answered(), "WhatsApp leg not answered")
	waitEstablished(t, ctx, sipp, call)
	require.NoError(t, call.Hangup(ctx))
	sipp.RequireSuccess(t, 10*time.Second)
	msgs = sippMessages(sipp.Messages())
	assert.True(t, msgs.has("received", "BYE sip:", "Via: SIP/2.0/UDP "+c.kam.addr.String()), "wabridge's BYE must come through Kamailio")
	assert.Empty(t, call.Violations())

	// Round robin: one call on each instance.
	dispatched := c.kam.dispatched()
	require.Len(t, dispatched, 2, "kamailio log:\n%s", tailString(c.kam.log(), 40))
	assert.ElementsMatch(t, c.instanceAddrs(), dispatched, "each instance should take one of the two calls")

	// Both instances answer Kamailio's OPTIONS probes.
	require.Eventually(t, func() bool {
		flags := c.kam.dispatcherFlags(t)
		for _, a := range c.instanceAddrs() {
			if flags[a] != "AP" {
				return false
			}
		}
		return true
	}, 5*time.Second, 100*time.Millisecond, "instances not active and probed: %v", c.kam.dispatcherFlags(t))
	c.waitIdle()
	assert.Empty(t, c.edge.Violations())
}

// TestKamailioFailsOverToALiveInstance puts a wedged instance (never answers) and one that
// refuses calls (503 with Retry-After, as a draining wabridge should) ahead of a working one:
// every call must still connect, the wedged one must leave the rotation.
func TestKamailioFailsOverToALiveInstance(t *testing.T) {
	t.Parallel()
	hung := startHungInstance(t)
	refusing := startRefusingInstance(t)
	c := newCluster(t, clusterOptions{instances: 1, before: []netip.AddrPort{hung, refusing.addr}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Three calls: round robin starts each at a different destination, so the failover path
	// through the refusing one is taken at least once whatever the wedged one's state.
	for i := range 3 {
		sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uac_wait_bye.xml"),
			Remote: c.kam.addr.String(), Service: waUser, Vars: map[string]string{"business": business},
			RTPEcho: true, Timeout: 30 * time.Second})
		call, err := c.edge.NextCall(ctx)
		require.NoError(t, err, "call %d", i+1)
		waitOrFail(t, ctx, call.Answered(), fmt.Sprintf("call %d not answered", i+1))
		waitEstablished(t, ctx, sipp, call)
		require.NoError(t, call.Hangup(ctx))
		sipp.RequireSuccess(t, 10*time.Second)
	}
	assert.GreaterOrEqual(t, refusing.invites.Load(), int32(1), "no call was offered to the refusing instance first")
	assert.Contains(t, c.kam.log(), "refused the call")
	assert.GreaterOrEqual(t, refusing.options.Load(), int32(1), "kamailio never probed the refusing instance")

	require.Eventually(t, func() bool {
		flags := c.kam.dispatcherFlags(t)
		return strings.HasPrefix(flags[hung.String()], "I") && flags[c.instanceAddrs()[0]] == "AP"
	}, 5*time.Second, 100*time.Millisecond, "the wedged instance should be inactive, the live one active: %v", c.kam.dispatcherFlags(t))
	c.waitIdle()
}

// TestKamailioDoesNotRetryWhatsAppFailures: a failure that came back from WhatsApp's side
// (wabridge maps Meta's 5xx to 503 and passes 408 on) goes to the PBX as it is. Failing over
// would make a second instance dial the same WhatsApp user again.
func TestKamailioDoesNotRetryWhatsAppFailures(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		meta wasim.Answer
		pbx  int // what the PBX gets
	}{
		// wabridge maps Meta's 5xx to 503, which Kamailio, like any proxy, relays as 500
		// (RFC 3261 §16.7 step 6: a 503 must not be forwarded upstream as is).
		"+15557650503": {wasim.Answer{Code: 503, Reason: "Service Unavailable"}, 500},
		"+15557650408": {wasim.Answer{Code: 408, Reason: "RTP Timeout"}, 408},
	}
	var mu sync.Mutex
	invites := map[string]int{}
	c := newCluster(t, clusterOptions{instances: 2, onInvite: func(info wasim.InviteInfo) wasim.Answer {
		mu.Lock()
		invites[info.User]++
		mu.Unlock()
		return cases[info.User].meta
	}})
	for user, tc := range cases {
		sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.UACRejectScenario(t, tc.pbx),
			Remote: c.kam.addr.String(), Service: user, Vars: map[string]string{"business": business},
			Timeout: 20 * time.Second})
		sipp.RequireSuccess(t, 20*time.Second)
	}
	mu.Lock()
	defer mu.Unlock()
	for user := range cases {
		assert.Equal(t, 1, invites[user], "WhatsApp user %s was dialled %d times", user, invites[user])
	}
	assert.NotContains(t, c.kam.log(), "failover ->")
	c.waitIdle()
}

// TestKamailioCarriesUserInitiatedCallsToThePBX: an instance's call toward the PBX goes
// through Kamailio (the PBX has one trunk peer), with the WhatsApp headers intact, audio both
// ways, and the WhatsApp user's hang-up reaching the PBX along the Record-Route.
func TestKamailioCarriesUserInitiatedCallsToThePBX(t *testing.T) {
	t.Parallel()
	pbx := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	c := newCluster(t, clusterOptions{instances: 2, pbx: pbx.SIPAddr})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	in := c.instances[1]
	call, err := c.edge.Dial(ctx, wasim.DialOptions{Target: in.srv.Addrs().WhatsAppTLS, ServerName: sipHostname,
		RootCAs: c.roots, Business: business, User: waUser, CTAPayload: "opstest-cta"})
	require.NoError(t, err)
	sent := peertest.OpusLikePayloads(50, 3)
	require.NoError(t, call.Media.Send(ctx, sent, opusPT, ptime))
	require.Eventually(t, func() bool { return len(withSeed(audioPayloads(call.Media.Received()), 3)) >= len(sent) },
		5*time.Second, 20*time.Millisecond, "the PBX's echo did not come back")
	assert.Equal(t, sent, withSeed(audioPayloads(call.Media.Received()), 3))

	msgs := sippMessages(pbx.Messages())
	assert.True(t, msgs.has("received", "INVITE sip:", recordRoute(c.kam.addr)), "the INVITE must come through Kamailio")
	assert.True(t, msgs.has("received", "INVITE sip:", "X-WA-Meta-WACID: "+call.WACID), "WhatsApp headers must pass through")
	assert.True(t, msgs.has("received", "INVITE sip:", "X-WA-Meta-CTA-Payload: opstest-cta"))
	assert.Regexp(t, regexp.MustCompile(`wabridge-lb: INVITE \S+ from `+regexp.QuoteMeta(in.srv.Addrs().PBXUDP.String())+
		` -> sip:\S+@`+regexp.QuoteMeta(pbx.SIPAddr.String())), c.kam.log())

	require.NoError(t, call.Hangup(ctx))
	pbx.RequireSuccess(t, 10*time.Second) // the BYE arrived and was answered
	assert.True(t, sippMessages(pbx.Messages()).has("received", "BYE sip:", "Via: SIP/2.0/UDP "+c.kam.addr.String()),
		"the BYE must come through Kamailio")
	c.waitIdle()
	assert.Empty(t, call.Violations())
}

// ---- helpers ----

// waitEstablished waits until a business-initiated call is up end to end before the test hangs
// it up from the WhatsApp side: the PBX (sipp, with -rtp_echo) has sent its ACK and echoes
// audio. Hanging up earlier hits a wabridge race that this kit's tests are not about: a
// WhatsApp BYE that arrives after wabridge's 200 OK to the PBX but before the PBX's ACK ends
// the call without a BYE to the PBX (reported to the bridge's owner).
func waitEstablished(t *testing.T, ctx context.Context, sipp *peertest.SippProc, call *wasim.Call) {
	t.Helper()
	require.Eventually(t, func() bool { return sippMessages(sipp.Messages()).has("sent", "ACK sip:", "") },
		5*time.Second, 10*time.Millisecond, "the PBX never sent its ACK")
	probe := peertest.OpusLikePayloads(5, 9)
	require.NoError(t, call.Media.Send(ctx, probe, opusPT, ptime))
	require.Eventually(t, func() bool { return len(withSeed(audioPayloads(call.Media.Received()), 9)) > 0 },
		5*time.Second, 10*time.Millisecond, "no audio came back through the PBX")
}

func waitOrFail(t *testing.T, ctx context.Context, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatal(msg)
	}
}

// pbxPCAP writes the RTP a sipp PBX plays: the payloads as Opus on one SSRC.
func pbxPCAP(t *testing.T, payloads [][]byte) string {
	t.Helper()
	pkts := peertest.RTPStream(payloads, opusPT, 0x0b5e0001, 1000, 160000, 960)
	path := filepath.Join(t.TempDir(), "pbx.pcap")
	// sipp sends to the SDP address it negotiated, whatever the pcap says.
	require.NoError(t, peertest.WritePCAP(path, pkts, netip.MustParseAddrPort("127.0.0.1:9")))
	return path
}

// opusSilence is wabridge's silence fill toward WhatsApp (an Opus DTX frame), not the PBX's audio.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// audioPayloads are the Opus payloads the edge received, without wabridge's silence fill.
func audioPayloads(pkts []wasim.Packet) [][]byte {
	var out [][]byte
	for _, p := range pkts {
		if p.PT == opusPT && !bytes.Equal(p.Payload, opusSilence) {
			out = append(out, p.Payload)
		}
	}
	return out
}

// withSeed keeps the payloads made by peertest.OpusLikePayloads with this seed.
func withSeed(ps [][]byte, seed uint64) [][]byte {
	var out [][]byte
	for _, p := range ps {
		if _, ok := peertest.PayloadIndex(p, seed); ok {
			out = append(out, p)
		}
	}
	return out
}

func recordRoute(proxy netip.AddrPort) string { return "Record-Route: <sip:" + proxy.String() + ";lr" }
func routeTo(proxy netip.AddrPort) string     { return "Route: <sip:" + proxy.String() + ";lr" }

// sippTrace is sipp's -trace_msg log split into messages.
type sippTrace []sippMessage

type sippMessage struct {
	direction string // "sent" or "received"
	text      string
}

// sippMessages splits sipp 3.6's message trace: each message follows a line
// "UDP message sent (N bytes):" or "UDP message received [N] bytes :".
func sippMessages(log string) sippTrace {
	re := regexp.MustCompile(`(?m)^\w+ message (sent|received) (?:\(\d+ bytes\)|\[\d+\] bytes) ?:\s*$`)
	idx := re.FindAllStringSubmatchIndex(log, -1)
	var out sippTrace
	for i, m := range idx {
		end := len(log)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		out = append(out, sippMessage{direction: log[m[2]:m[3]], text: strings.TrimSpace(log[m[1]:end])})
	}
	return out
}

// has reports whether a message in that direction starts with start and contains want.
func (tr sippTrace) has(direction, start, want string) bool {
	for _, m := range tr {
		if m.direction == direction && strings.HasPrefix(m.text, start) && strings.Contains(m.text, want) {
			return true
		}
	}
	return false
}
