package demo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
	"github.com/wabridge/wabridge/internal/peertest"
)

// selfTestConfig is an admin's config pointing at a PBX (sipp here) on loopback.
func selfTestConfig(t *testing.T, pbx string) *config.Config {
	t.Helper()
	cert, key := configtest.WriteCert(t, t.TempDir(), "sip.example.com")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
sip:
  hostname: 127.0.0.1
  pbx_listen: {udp: "127.0.0.1:0", tcp: ""}
  whatsapp_listen: {tls: "127.0.0.1:0", cert_file: %q, key_file: %q}
media: {bind_ip: 127.0.0.1}
pbx: {address: %q}
numbers:
  - number: "+15551230001"
    sip: {hostname: sip.example.com, password: real-secret, srtp: dtls}
`, cert, key, pbx)))
	require.NoError(t, err)
	return cfg
}

// TestSelfTestDiagnoses runs the self-test against sipp PBXs that work and that are broken in
// the ways admins meet: the report must say what is wrong, and OK only for the working one.
func TestSelfTestDiagnoses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		scenario string
		echo     bool
		ok       bool
		want     string
	}{
		{"echo test works", "pbx_uas_echo.xml", true, true, ""},
		{"PBX answers PCMU only", "pbx_uas_pcmu.xml", true, false, "answered without Opus"},
		{"PBX sends no RTP", "pbx_uas_echo.xml", false, false, "no RTP at all"},
		{"PBX busy", "pbx_uas_busy.xml", false, false, "rejected the call: 486"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath(tc.scenario),
				RTPEcho: tc.echo, Timeout: 40 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := SelfTest(ctx, selfTestConfig(t, sipp.SIPAddr.String()), SelfTestOptions{To: "600", Frames: 50})
			require.NoError(t, err)
			var text strings.Builder
			require.NoError(t, rep.WriteText(&text))
			assert.Equal(t, tc.ok, rep.OK, text.String())
			if tc.want != "" {
				assert.Contains(t, text.String(), tc.want)
			}
			assert.Contains(t, sipp.Messages(), "INVITE sip:600@", "the self-test dials --to on the real trunk")
			assert.NotContains(t, text.String(), "real-secret")
		})
	}
}
