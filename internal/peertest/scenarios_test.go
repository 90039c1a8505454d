package peertest

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Self-tests of the scenarios in examples/sipp: each runs against another sipp or against a
// sipgo peer and must end the way the scenario's header comment promises.

const (
	testUser     = "15551234567"  // the WhatsApp user a PBX calls ([service])
	testBusiness = "+15550001111" // -key business
	sippWait     = 12 * time.Second
)

// sippBase is what every self-test sipp gets: bounded so a stuck scenario fails the test.
func sippBase(scenario string) SippOptions {
	return SippOptions{Scenario: scenario, Timeout: 10 * time.Second}
}

// writeTestPCAP writes pkts to a pcap in the test's directory and returns its path.
func writeTestPCAP(t *testing.T, pkts []RTPPacket) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audio.pcap")
	require.NoError(t, WritePCAP(path, pkts, netip.MustParseAddrPort("127.0.0.1:40000")))
	return path
}

// opusAndDTMF is 40 Opus-like packets followed by an RFC 4733 digit in the same stream.
func opusAndDTMF(t *testing.T, seed uint64) []RTPPacket {
	t.Helper()
	pkts := RTPStream(OpusLikePayloads(40, seed), 111, 0xcafe0000|uint32(seed), 1000, 48000, 960)
	dtmf, err := DTMFPackets(DTMFEvent{Digit: '5', PT: 101, SSRC: pkts[0].SSRC, Seq: 1040, TS: 48000 + 40*960})
	require.NoError(t, err)
	return append(pkts, dtmf...)
}

// sdpPort finds the audio port of the SDP in the first message of trace that matches
// firstLine, e.g. "SIP/2.0 200 OK".
func sdpPort(trace, firstLine string) (int, bool) {
	i := strings.Index(trace, "\n"+firstLine)
	if i < 0 {
		return 0, false
	}
	m := regexp.MustCompile(`m=audio (\d+) `).FindStringSubmatch(trace[i:])
	if m == nil {
		return 0, false
	}
	port, err := strconv.Atoi(m[1])
	return port, err == nil
}

// TestScenarioUACCallToUASEcho: pbx_uac_call.xml calls pbx_uas_echo.xml (sipp to sipp) and plays
// a pcap; the UAS's SDP names its echo port, and RTP sent there comes back byte for byte.
func TestScenarioUACCallToUASEcho(t *testing.T) {
	t.Parallel()
	pcap := writeTestPCAP(t, opusAndDTMF(t, 1))
	uasOpts := sippBase(ScenarioPath("pbx_uas_echo.xml"))
	uasOpts.RTPEcho = true
	uas := StartSipp(t, uasOpts)

	uacOpts := sippBase(ScenarioPath("pbx_uac_call.xml"))
	uacOpts.Remote = uas.SIPAddr.String()
	uacOpts.Service = testUser
	uacOpts.Vars = map[string]string{"business": testBusiness, "pcap": pcap}
	uacOpts.CallDuration = 1500 * time.Millisecond
	uac := StartSipp(t, uacOpts)

	var port int
	require.Eventually(t, func() bool {
		var ok bool
		port, ok = sdpPort(uac.Messages(), "SIP/2.0 200 OK")
		return ok
	}, 5*time.Second, 20*time.Millisecond, "no 200 with SDP reached the UAC")
	require.Equal(t, int(uas.MediaAddr.Port()), port, "the 200's SDP must name the echo port")

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	sent := RTPStream(OpusLikePayloads(10, 99), 111, 42, 1, 0, 960)
	for _, p := range sent {
		_, err := conn.WriteToUDPAddrPort(p.Marshal(), uas.MediaAddr)
		require.NoError(t, err)
	}
	got := readRTP(t, conn, len(sent), 3*time.Second)
	require.Equal(t, sent, got, "-rtp_echo returns every packet unchanged")

	uac.RequireSuccess(t, sippWait)
	uas.RequireSuccess(t, sippWait)
}

// TestScenarioUASPlay: pbx_uas_play.xml answers a sipgo UAC and plays a pcap of Opus-like
// packets and a DTMF digit; every packet arrives unchanged at the SDP address of the offer.
func TestScenarioUASPlay(t *testing.T) {
	t.Parallel()
	want := opusAndDTMF(t, 2)
	opts := sippBase(ScenarioPath("pbx_uas_play.xml"))
	opts.Vars = map[string]string{"pcap": writeTestPCAP(t, want)}
	uas := StartSipp(t, opts)

	peer := newSIPGoPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), sippWait)
	defer cancel()
	sess, err := peer.invite(ctx, uas.SIPAddr, "echo")
	require.NoError(t, err)
	require.Equal(t, 200, sess.InviteResponse.StatusCode)
	assert.Contains(t, string(sess.InviteResponse.Body()), "m=audio "+strconv.Itoa(int(uas.MediaAddr.Port()))+" RTP/AVP 111 101")
	require.NoError(t, sess.Ack(ctx))

	got := peer.readRTP(len(want), 5*time.Second)
	require.Equal(t, want, got, "sipp plays the pcap's RTP headers and payloads unchanged")

	require.NoError(t, sess.Bye(ctx))
	uas.RequireSuccess(t, sippWait)
}

// TestScenarioUACCallToSIPGo: pbx_uac_call.xml calls a sipgo UAS; the INVITE names the user and
// the business number, offers Opus + telephone-event, and the pcap's packets arrive unchanged
// before the BYE.
func TestScenarioUACCallToSIPGo(t *testing.T) {
	t.Parallel()
	want := opusAndDTMF(t, 3)
	peer := newSIPGoPeer(t)
	answerAsUAS(t, peer)

	opts := sippBase(ScenarioPath("pbx_uac_call.xml"))
	opts.Remote = peer.addr.String()
	opts.Service = testUser
	opts.Vars = map[string]string{"business": testBusiness, "pcap": writeTestPCAP(t, want)}
	opts.CallDuration = 1500 * time.Millisecond
	uac := StartSipp(t, opts)

	got := peer.readRTP(len(want), 5*time.Second)
	require.Equal(t, want, got)
	uac.RequireSuccess(t, sippWait)

	invites := peer.received(sip.INVITE)
	require.Len(t, invites, 1)
	inv := invites[0]
	assert.Equal(t, testUser, inv.Recipient.User)
	assert.Equal(t, testBusiness, inv.From().Address.User)
	require.NotNil(t, inv.GetHeader("X-WA-Business-Number"))
	assert.Equal(t, testBusiness, inv.GetHeader("X-WA-Business-Number").Value())
	body := string(inv.Body())
	assert.Contains(t, body, "m=audio "+strconv.Itoa(int(uac.MediaAddr.Port()))+" RTP/AVP 111 101")
	assert.Contains(t, body, "a=rtpmap:111 opus/48000/2")
	assert.Contains(t, body, "a=rtpmap:101 telephone-event/8000")
	require.Eventually(t, func() bool { return len(peer.received(sip.BYE)) == 1 }, time.Second, 10*time.Millisecond)
}

// answerAsUAS makes peer answer INVITEs with 180 and 200 + SDP through sipgo's dialog server.
func answerAsUAS(t *testing.T, peer *sipgoPeer) {
	dialogs := sipgo.NewDialogServerCache(peer.cli, peer.contact)
	peer.on(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
		sess, err := dialogs.ReadInvite(req, tx)
		if err != nil {
			t.Errorf("ReadInvite: %v", err)
			return
		}
		if err := sess.Respond(180, "Ringing", nil); err != nil {
			t.Errorf("180: %v", err)
			return
		}
		if err := sess.RespondSDP(peer.sdp("sendrecv")); err != nil { // returns once ACKed
			t.Errorf("200: %v", err)
		}
	})
	peer.on(sip.ACK, func(req *sip.Request, tx sip.ServerTransaction) {
		_ = dialogs.ReadAck(req, tx)
	})
	peer.on(sip.BYE, func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dialogs.ReadBye(req, tx); err != nil {
			t.Errorf("BYE: %v", err)
		}
	})
}

// TestScenarioRejects: the UAS rejection scenarios against pbx_uac_reject.xml expecting their code.
func TestScenarioRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		uas, uac  func(t *testing.T) string
		transport string
	}{
		{"busy 486", func(*testing.T) string { return ScenarioPath("pbx_uas_busy.xml") },
			func(t *testing.T) string { return UACRejectScenario(t, 486) }, "u1"},
		{"busy 486 over TCP", func(*testing.T) string { return ScenarioPath("pbx_uas_busy.xml") },
			func(t *testing.T) string { return UACRejectScenario(t, 486) }, "t1"},
		{"decline 603 as written", func(*testing.T) string { return ScenarioPath("pbx_uas_reject.xml") },
			func(*testing.T) string { return ScenarioPath("pbx_uac_reject.xml") }, "u1"},
		{"rendered 480", func(t *testing.T) string { return UASRejectScenario(t, 480, "Temporarily Unavailable") },
			func(t *testing.T) string { return UACRejectScenario(t, 480) }, "u1"},
		{"rendered 403", func(t *testing.T) string { return UASRejectScenario(t, 403, "Forbidden") },
			func(t *testing.T) string { return UACRejectScenario(t, 403) }, "u1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			uasOpts := sippBase(tc.uas(t))
			uasOpts.Transport = tc.transport
			uas := StartSipp(t, uasOpts)
			uacOpts := sippBase(tc.uac(t))
			uacOpts.Transport = tc.transport
			uacOpts.Remote = uas.SIPAddr.String()
			uacOpts.Service = testUser
			uacOpts.Vars = map[string]string{"business": testBusiness}
			uac := StartSipp(t, uacOpts)
			uac.RequireSuccess(t, sippWait)
			uas.RequireSuccess(t, sippWait)
		})
	}
}

// TestScenarioRejectWrongCodeFails proves pbx_uac_reject.xml checks the code: expecting 486 but
// getting 603 fails the call.
func TestScenarioRejectWrongCodeFails(t *testing.T) {
	t.Parallel()
	uas := StartSipp(t, sippBase(ScenarioPath("pbx_uas_reject.xml")))
	uacOpts := sippBase(UACRejectScenario(t, 486))
	uacOpts.Remote = uas.SIPAddr.String()
	uacOpts.Service = testUser
	uacOpts.Vars = map[string]string{"business": testBusiness}
	uacOpts.Timeout = 3 * time.Second
	uac := StartSipp(t, uacOpts)
	uac.RequireExit(t, sippWait, SippExitCallFailed)
}

// TestScenarioCancel: pbx_uac_cancel.xml cancels pbx_uas_noanswer.xml while it rings.
func TestScenarioCancel(t *testing.T) {
	t.Parallel()
	uas := StartSipp(t, sippBase(ScenarioPath("pbx_uas_noanswer.xml")))
	uacOpts := sippBase(ScenarioPath("pbx_uac_cancel.xml"))
	uacOpts.Remote = uas.SIPAddr.String()
	uacOpts.Service = testUser
	uacOpts.Vars = map[string]string{"business": testBusiness}
	uacOpts.CallDuration = 300 * time.Millisecond
	uac := StartSipp(t, uacOpts)
	uac.RequireSuccess(t, sippWait)
	uas.RequireSuccess(t, sippWait)
	// The 487 belongs to the INVITE transaction (RFC 3261 §9.2).
	assert.Regexp(t, `(?s)SIP/2.0 487 Request Terminated\r?\nVia: SIP/2.0/UDP [^\n]*branch=z9hG4bK[^\n]*\n.*CSeq: 1 INVITE`, uas.Messages())
}

// TestScenarioHangupToWaitBye: pbx_uas_hangup.xml answers pbx_uac_wait_bye.xml and hangs up.
func TestScenarioHangupToWaitBye(t *testing.T) {
	t.Parallel()
	uasOpts := sippBase(ScenarioPath("pbx_uas_hangup.xml"))
	uasOpts.CallDuration = 300 * time.Millisecond
	uas := StartSipp(t, uasOpts)
	uacOpts := sippBase(ScenarioPath("pbx_uac_wait_bye.xml"))
	uacOpts.Remote = uas.SIPAddr.String()
	uacOpts.Service = testUser
	uacOpts.Vars = map[string]string{"business": testBusiness}
	uac := StartSipp(t, uacOpts)
	uac.RequireSuccess(t, sippWait)
	uas.RequireSuccess(t, sippWait)
}

// recordRoute stands in for two proxies between the caller and sipp that record-routed. Both
// entries point at sipp itself, so the caller's ACK and BYE (sent to the top Route) still reach
// it, and the hop parameter shows the order.
func recordRoute(to netip.AddrPort) sip.Header {
	return sip.NewHeader("Record-Route", "<sip:"+to.String()+";lr;hop=1>, <sip:"+to.String()+";lr;hop=2>")
}

// wantRoutes is the Route set recordRoute produces for requests from the callee.
func wantRoutes(to netip.AddrPort) string {
	return "<sip:" + to.String() + ";lr;hop=1>, <sip:" + to.String() + ";lr;hop=2>"
}

// routes joins the values of a request's Route headers (sipgo splits "Route: a, b" in two).
func routes(req *sip.Request) string {
	var out []string
	for _, h := range req.GetHeaders("Route") {
		out = append(out, h.Value())
	}
	return strings.Join(out, ", ")
}

// TestScenarioHangupFollowsRecordRoute: pbx_uas_hangup.xml's BYE is a correct in-dialog request
// (RFC 3261 §12.2.1.1): Request-URI is the caller's Contact, Route is the record-route set in the
// INVITE's order, From/To swap the dialog's tags, and sipgo's dialog accepts it.
func TestScenarioHangupFollowsRecordRoute(t *testing.T) {
	t.Parallel()
	uasOpts := sippBase(ScenarioPath("pbx_uas_hangup.xml"))
	uasOpts.CallDuration = 300 * time.Millisecond
	uas := StartSipp(t, uasOpts)

	peer := newSIPGoPeer(t)
	byes := make(chan error, 1)
	var sess *sipgo.DialogClientSession
	answered := make(chan struct{}) // closed once sess is set
	peer.on(sip.BYE, func(req *sip.Request, tx sip.ServerTransaction) {
		var err error
		select {
		case <-answered:
			err = sess.ReadBye(req, tx)
		case <-time.After(sippWait):
			err = errors.New("BYE before the INVITE was answered")
		}
		select { // a retransmission finds the channel full
		case byes <- err:
		default:
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), sippWait)
	defer cancel()
	var err error
	sess, err = peer.invite(ctx, uas.SIPAddr, "pbx", recordRoute(uas.SIPAddr))
	require.NoError(t, err)
	close(answered)
	require.NoError(t, sess.Ack(ctx))

	select {
	case err := <-byes:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatalf("no BYE from the UAS\n%s", uas.Logs())
	}
	uas.RequireSuccess(t, sippWait)

	bye := peer.received(sip.BYE)[0]
	assert.Equal(t, peer.contact.Address.String(), bye.Recipient.String(), "Request-URI is our Contact")
	assert.Equal(t, wantRoutes(uas.SIPAddr), routes(bye), "Route is the INVITE's Record-Route, in order")
	fromTag, _ := bye.From().Params.Get("tag")
	toTag, _ := bye.To().Params.Get("tag")
	inviteFromTag, _ := sess.InviteRequest.From().Params.Get("tag")
	answerToTag, _ := sess.InviteResponse.To().Params.Get("tag")
	assert.Equal(t, inviteFromTag, toTag)
	assert.Equal(t, answerToTag, fromTag)
	assert.Equal(t, sess.InviteRequest.CallID().Value(), bye.CallID().Value())
}

// TestScenarioReinviteHold: pbx_uas_reinvite.xml puts a sipgo caller on hold with a=sendonly and
// accepts the a=recvonly answer; the caller then hangs up. Answering sendrecv instead fails the
// scenario's check (the call still runs to the BYE, then sipp exits 1).
func TestScenarioReinviteHold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		answer   string
		wantExit int
	}{
		{"recvonly", SippExitSuccess},
		{"sendrecv", SippExitCallFailed},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			t.Parallel()
			uasOpts := sippBase(ScenarioPath("pbx_uas_reinvite.xml"))
			uasOpts.CallDuration = 200 * time.Millisecond
			uasOpts.Timeout = 5 * time.Second
			uas := StartSipp(t, uasOpts)

			peer := newSIPGoPeer(t)
			held := make(chan string, 1)
			peer.on(sip.INVITE, func(req *sip.Request, tx sip.ServerTransaction) {
				res := sip.NewSDPResponseFromRequest(req, peer.sdp(tc.answer))
				res.AppendHeader(&peer.contact)
				if err := tx.Respond(res); err != nil {
					t.Errorf("200 to re-INVITE: %v", err)
				}
				select { // a retransmission finds the channel full
				case held <- string(req.Body()):
				default:
				}
			})
			acked := make(chan struct{}, 1)
			peer.on(sip.ACK, func(req *sip.Request, tx sip.ServerTransaction) {
				select {
				case acked <- struct{}{}:
				default:
				}
			})

			ctx, cancel := context.WithTimeout(context.Background(), sippWait)
			defer cancel()
			sess, err := peer.invite(ctx, uas.SIPAddr, "pbx", recordRoute(uas.SIPAddr))
			require.NoError(t, err)
			require.NoError(t, sess.Ack(ctx))

			select {
			case body := <-held:
				assert.Contains(t, body, "a=sendonly")
				assert.Contains(t, body, "o=pbx 1001 2 ", "a new offer raises the o= version (RFC 3264 §8)")
			case <-ctx.Done():
				t.Fatalf("no re-INVITE\n%s", uas.Logs())
			}
			select {
			case <-acked:
			case <-ctx.Done():
				t.Fatalf("no ACK for the re-INVITE\n%s", uas.Logs())
			}
			reinvite := peer.received(sip.INVITE)[0]
			assert.Equal(t, peer.contact.Address.String(), reinvite.Recipient.String())
			assert.Equal(t, wantRoutes(uas.SIPAddr), routes(reinvite), "Route is the INVITE's Record-Route, in order")
			require.NoError(t, sess.Bye(ctx))
			uas.RequireExit(t, sippWait, tc.wantExit)
		})
	}
}

// TestScenarioPCMU: pbx_uas_pcmu.xml answers pbx_uac_call.xml with PCMU and telephone-event only.
func TestScenarioPCMU(t *testing.T) {
	t.Parallel()
	uasOpts := sippBase(ScenarioPath("pbx_uas_pcmu.xml"))
	uasOpts.RTPEcho = true
	uas := StartSipp(t, uasOpts)
	uacOpts := sippBase(ScenarioPath("pbx_uac_call.xml"))
	uacOpts.Remote = uas.SIPAddr.String()
	uacOpts.Service = testUser
	uacOpts.Vars = map[string]string{"business": testBusiness, "pcap": writeTestPCAP(t, opusAndDTMF(t, 4))}
	uacOpts.CallDuration = 300 * time.Millisecond
	uac := StartSipp(t, uacOpts)
	uac.RequireSuccess(t, sippWait)
	uas.RequireSuccess(t, sippWait)
	msgs := uac.Messages()
	assert.Contains(t, msgs, "m=audio "+strconv.Itoa(int(uas.MediaAddr.Port()))+" RTP/AVP 0 101")
	assert.Contains(t, msgs, "a=rtpmap:0 PCMU/8000")
}
