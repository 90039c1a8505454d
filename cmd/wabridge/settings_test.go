package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
	"github.com/wabridge/wabridge/config/configtest"
)

// TestSettingsRoundTrip drives `wabridge settings` against Meta's emulator: set fields, read
// them back, read the SIP password, and change call hours without wiping the holidays.
func TestSettingsRoundTrip(t *testing.T) {
	sim, err := bspsim.New(bspsim.Config{Provider: bsp.ProviderMeta, Token: "tok-secret", PhoneNumberID: "1000001",
		DisplayNumber: "15550001111", SIPPassword: "meta-sip-pw"})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	require.NoError(t, sim.SetSettingsJSON([]byte(`{"status":"ENABLED","call_hours":{"status":"ENABLED","timezone_id":"America/Manaus",
		"weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0400","close_time":"1020"}],
		"holiday_schedule":[{"date":"2030-01-01","start_time":"0000","end_time":"2359"}]}}`)))

	dir := t.TempDir()
	cert, key := configtest.WriteCert(t, dir, "sip.example.com")
	cfgPath := filepath.Join(dir, "wabridge.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
sip:
  whatsapp_listen: {tls: "127.0.0.1:0", cert_file: %q, key_file: %q}
media: {bind_ip: 127.0.0.1}
pbx: {address: "127.0.0.1:9"}
numbers:
  - number: "+15550001111"
    phone_number_id: "1000001"
    sip: {hostname: sip.example.com, password: x, srtp: sdes}
    api: {provider: meta, base_url: %q, token: tok-secret}
`, cert, key, sim.URL())), 0o600))

	r := runCLI(t, nil, "settings", "set", "--config", cfgPath, "--srtp", "SDES", "--sip-status", "ENABLED",
		"--sip-server", "sip.example.com:5061", "--callback", "ENABLED")
	require.Equal(t, exitOK, r.code, r.stderr)

	hours := filepath.Join(dir, "hours.json")
	require.NoError(t, os.WriteFile(hours, []byte(`{"status":"ENABLED","timezone_id":"America/Sao_Paulo",
		"weekly_operating_hours":[{"day_of_week":"TUESDAY","open_time":"0900","close_time":"1800"}]}`), 0o600))
	r = runCLI(t, nil, "settings", "set", "--config", cfgPath, "--call-hours", hours)
	require.Equal(t, exitOK, r.code, r.stderr)

	r = runCLI(t, nil, "settings", "get", "--config", cfgPath, "--show-sip-password")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "America/Sao_Paulo")
	assert.Contains(t, r.stdout, "2030-01-01", "holidays the call-hours file left out must survive")
	assert.Contains(t, r.stdout, "SDES")
	assert.Contains(t, r.stdout, "sip_user_password (sip.example.com): meta-sip-pw")
	assert.NotContains(t, r.stdout+r.stderr, "tok-secret")

	var raw map[string]any
	require.NoError(t, json.Unmarshal(sim.SettingsJSON(), &raw))
	assert.Equal(t, "ENABLED", raw["callback_permission_status"])
}
