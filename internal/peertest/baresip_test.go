package peertest

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBaresipTLSSRTPCall: two baresips call each other over SIP/TLS with mandatory SDES-SRTP
// and Opus (test-peers.md §2.6); both report the crypto suite, and each records the other's sine.
func TestBaresipTLSSRTPCall(t *testing.T) {
	t.Parallel()
	cert, key := SelfSignedCert(t)
	const media = ";regint=0;mediaenc=srtp-mand;audio_codecs=opus/48000/2"
	bob := StartBaresip(t, BaresipOptions{
		TLS: true, CertPEM: cert, KeyPEM: key,
		Account:     "<sip:bob@127.0.0.1;transport=tls>" + media + ";answermode=auto",
		AudioSource: "ausine,440",
	})
	alice := StartBaresip(t, BaresipOptions{
		TLS: true, CertPEM: cert, KeyPEM: key,
		Account:     "<sip:alice@127.0.0.1;transport=tls>" + media,
		AudioSource: "ausine,1000",
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// No ;transport=tls here: baresip 1.0 appends the account's own transport parameter to the
	// dialled URI (it would appear twice).
	require.NoError(t, alice.Dial(fmt.Sprintf("sip:bob@%s", bob.TLSAddr)))
	for _, ua := range []*Baresip{alice, bob} {
		ev, err := ua.WaitEvent(ctx, "CALL_MENC", "CALL_CLOSED")
		require.NoError(t, err)
		require.Equal(t, "CALL_MENC", ev.Type, "call closed before SRTP was set up: %s", ev.Param)
		assert.Equal(t, "0,audio,AES_CM_128_HMAC_SHA1_80", ev.Param)
		ev, err = ua.WaitEvent(ctx, "CALL_ESTABLISHED", "CALL_CLOSED")
		require.NoError(t, err)
		require.Equal(t, "CALL_ESTABLISHED", ev.Type, ev.Param)
	}
	// The INVITE reached bob's TLS port over TLS (-s traces each message as "TLS from -> to").
	assert.Regexp(t, `TLS 127\.0\.0\.1:\d+ -> `+regexp.QuoteMeta(bob.TLSAddr.String())+`\s+INVITE `, bob.logTail("stdout.log", 1<<20))

	time.Sleep(2500 * time.Millisecond) // let audio flow
	require.NoError(t, alice.Hangup())
	for _, ua := range []*Baresip{alice, bob} {
		_, err := ua.WaitEvent(ctx, "CALL_CLOSED")
		require.NoError(t, err)
	}
	alice.Stop() // SIGTERM: recordings are closed
	bob.Stop()

	for _, tc := range []struct {
		ua   *Baresip
		want float64
	}{{alice, 440}, {bob, 1000}} {
		recs := tc.ua.Recordings()
		require.Len(t, recs, 1)
		w, err := ReadWAV(recs[0])
		require.NoError(t, err)
		assert.Greater(t, w.Duration(), 1.5)
		f, err := w.DominantFrequency()
		require.NoError(t, err)
		assert.InDelta(t, tc.want, f, 5, "recording %s", recs[0])
	}
}
