package bridge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

// TestBaresipAsWhatsAppSide proves SDES-SRTP and SIP/TLS interop with an implementation we did
// not write: baresip plays the WhatsApp side (TLS, srtp-mand, Opus, digest with the business
// number as username like Meta), wabridge bridges to sipp, sipp echoes. baresip must record its
// own 440 Hz tone coming back — decoded Opus that went SRTP → RTP → RTP → SRTP untouched.
func TestBaresipAsWhatsAppSide(t *testing.T) {
	t.Parallel()
	sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath("pbx_uas_echo.xml"),
		RTPEcho: true, Timeout: 40 * time.Second})
	h := newHarness(t, harnessOptions{pbxAddr: sipp.SIPAddr.String()})
	cert, key := peertest.SelfSignedCert(t)
	digits := strings.TrimPrefix(business, "+")
	ua := peertest.StartBaresip(t, peertest.BaresipOptions{
		TLS: true, CertPEM: cert, KeyPEM: key, CAPEM: h.cert,
		Account: fmt.Sprintf("<sip:%s@127.0.0.1;transport=tls>;auth_user=%s;auth_pass=%s;regint=0;"+
			"mediaenc=srtp-mand;audio_codecs=opus/48000/2", waUser, digits, sipPassword),
		AudioSource: "ausine,440",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	require.NoError(t, ua.Dial(fmt.Sprintf("sip:%s@%s", business, h.srv.Addrs().WhatsAppTLS)))
	ev, err := ua.WaitEvent(ctx, "CALL_MENC", "CALL_CLOSED")
	require.NoError(t, err)
	require.Equal(t, "CALL_MENC", ev.Type, "call closed before SRTP was set up: %s", ev.Param)
	assert.Contains(t, ev.Param, "AES_CM_128_HMAC_SHA1", "baresip negotiated SDES-SRTP with wabridge")
	ev, err = ua.WaitEvent(ctx, "CALL_ESTABLISHED", "CALL_CLOSED")
	require.NoError(t, err)
	require.Equal(t, "CALL_ESTABLISHED", ev.Type, ev.Param)

	time.Sleep(3 * time.Second) // let audio flow both ways
	require.NoError(t, ua.Hangup())
	_, err = ua.WaitEvent(ctx, "CALL_CLOSED")
	require.NoError(t, err)
	sipp.RequireSuccess(t, 10*time.Second) // the PBX leg ended with the WhatsApp side
	h.waitIdle()
	ua.Stop() // closes the recordings

	recs := ua.Recordings()
	require.Len(t, recs, 1)
	w, err := peertest.ReadWAV(recs[0])
	require.NoError(t, err)
	assert.Greater(t, w.Duration(), 2.0)
	f, err := w.DominantFrequency()
	require.NoError(t, err)
	assert.InDelta(t, 440, f, 5, "baresip must hear its own tone echoed through wabridge and the PBX")
}

// TestBaresipAsSRTPPBX: with pbx.srtp the PBX leg is SDES-SRTP too; baresip plays an SRTP-only
// PBX (srtp-mand, auto-answer). The WhatsApp side echoes, so baresip must record its own tone
// after two SRTP legs and two re-encryptions.
func TestBaresipAsSRTPPBX(t *testing.T) {
	t.Parallel()
	cert, key := peertest.SelfSignedCert(t)
	pbx := peertest.StartBaresip(t, peertest.BaresipOptions{
		CertPEM: cert, KeyPEM: key,
		Account:     "<sip:" + strings.TrimPrefix(business, "+") + "@127.0.0.1>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=opus/48000/2",
		AudioSource: "ausine,440",
	})
	h := newHarness(t, harnessOptions{pbxAddr: pbx.SIPAddr.String(), pbxExtra: "  srtp: true"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	call.Media.Echo(true)
	ev, err := pbx.WaitEvent(ctx, "CALL_MENC", "CALL_CLOSED")
	require.NoError(t, err)
	require.Equal(t, "CALL_MENC", ev.Type, ev.Param)
	assert.Contains(t, ev.Param, "AES_CM_128_HMAC_SHA1", "the PBX leg must be SDES-SRTP")

	time.Sleep(3 * time.Second)
	require.NoError(t, call.Hangup(ctx))
	_, err = pbx.WaitEvent(ctx, "CALL_CLOSED")
	require.NoError(t, err)
	h.waitIdle()
	pbx.Stop()
	recs := pbx.Recordings()
	require.Len(t, recs, 1)
	w, err := peertest.ReadWAV(recs[0])
	require.NoError(t, err)
	f, err := w.DominantFrequency()
	require.NoError(t, err)
	assert.InDelta(t, 440, f, 5, "the PBX must hear its own tone echoed by WhatsApp through two SRTP legs")
	assert.Zero(t, call.Media.Stats().AuthFailures)
}

// TestBaresipAsTLSPBX: pbx.transport tls — the trunk to the PBX is SIP over TLS (verified against
// pbx.ca_file) with SDES-SRTP media; baresip is the PBX.
func TestBaresipAsTLSPBX(t *testing.T) {
	t.Parallel()
	cert, key := peertest.SelfSignedCert(t)
	caFile := filepath.Join(t.TempDir(), "pbx-ca.pem")
	require.NoError(t, os.WriteFile(caFile, cert, 0o600))
	pbx := peertest.StartBaresip(t, peertest.BaresipOptions{
		TLS: true, CertPEM: cert, KeyPEM: key,
		Account:     "<sip:" + strings.TrimPrefix(business, "+") + "@127.0.0.1;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=opus/48000/2",
		AudioSource: "ausine,440",
	})
	h := newHarness(t, harnessOptions{pbxAddr: pbx.TLSAddr.String(), pbxTLS: true,
		pbxExtra: fmt.Sprintf("  transport: tls\n  srtp: true\n  ca_file: %q", caFile)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := h.dial(ctx, wasim.DialOptions{})
	require.NoError(t, err)
	call.Media.Echo(true)
	ev, err := pbx.WaitEvent(ctx, "CALL_MENC", "CALL_CLOSED")
	require.NoError(t, err)
	require.Equal(t, "CALL_MENC", ev.Type, ev.Param)
	time.Sleep(2 * time.Second)
	require.NoError(t, call.Hangup(ctx))
	_, err = pbx.WaitEvent(ctx, "CALL_CLOSED")
	require.NoError(t, err)
	h.waitIdle()
	pbx.Stop()
	// The INVITE reached baresip's TLS port over TLS.
	assert.Regexp(t, `TLS 127\.0\.0\.1:\d+ -> `+regexp.QuoteMeta(pbx.TLSAddr.String())+`\s+INVITE `, readFile(t, filepath.Join(pbx.Dir(), "stdout.log")))
	recs := pbx.Recordings()
	require.Len(t, recs, 1)
	f, err := peertest.DominantFrequency(recs[0])
	require.NoError(t, err)
	assert.InDelta(t, 440, f, 5)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
