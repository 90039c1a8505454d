package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config/configtest"
	"github.com/wabridge/wabridge/internal/peertest"
)

// TestSelftestCLI runs `wabridge selftest --json` against sipp PBXs: a working echo exits 0, a
// PBX answering PCMU only exits 1 with the diagnosis in the JSON report.
func TestSelftestCLI(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		echo     bool
		code     int
		problem  string
	}{
		{"pbx_uas_echo.xml", true, exitOK, ""},
		{"pbx_uas_pcmu.xml", true, exitFailure, "answered without Opus"},
		{"pbx_uas_echo.xml", false, exitFailure, "no RTP at all"},
	} {
		t.Run(fmt.Sprintf("%s/echo=%v", tc.scenario, tc.echo), func(t *testing.T) {
			sipp := peertest.StartSipp(t, peertest.SippOptions{Scenario: peertest.ScenarioPath(tc.scenario),
				RTPEcho: tc.echo, Timeout: 40 * time.Second})
			dir := t.TempDir()
			cert, key := configtest.WriteCert(t, dir, "sip.example.com")
			path := filepath.Join(dir, "wabridge.yaml")
			require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`
sip:
  pbx_listen: {udp: "127.0.0.1:0", tcp: ""}
  whatsapp_listen: {tls: "127.0.0.1:0", cert_file: %q, key_file: %q}
media: {bind_ip: 127.0.0.1}
pbx: {address: %q}
numbers:
  - number: "+15551230001"
    sip: {hostname: sip.example.com, password: real-secret, srtp: sdes}
`, cert, key, sipp.SIPAddr.String())), 0o600))
			r := runCLI(t, nil, "selftest", "--config", path, "--to", "600", "--json")
			assert.Equal(t, tc.code, r.code, r.stderr)
			var rep struct {
				OK    bool `json:"ok"`
				Calls []struct {
					Problems []string `json:"problems"`
				} `json:"calls"`
			}
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
			assert.Equal(t, tc.code == exitOK, rep.OK)
			require.Len(t, rep.Calls, 1)
			if tc.problem != "" {
				assert.Contains(t, strings.Join(rep.Calls[0].Problems, "\n"), tc.problem)
			}
			assert.NotContains(t, r.stdout+r.stderr, "real-secret")
		})
	}
}
