package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
)

const examplePath = "../examples/wabridge.yaml"

// TestExampleConfig loads the shipped example the way an operator would run check-config: the
// certificate paths (/etc/wabridge/tls/...) are redirected to test files through environment
// overrides and the password variables it names are set.
func TestExampleConfig(t *testing.T) {
	cert, key := configtest.WriteCert(t, t.TempDir(), "sip.example.com")
	t.Setenv("WABRIDGE_SIP__WHATSAPP_LISTEN__CERT_FILE", cert)
	t.Setenv("WABRIDGE_SIP__WHATSAPP_LISTEN__KEY_FILE", key)
	t.Setenv("WABRIDGE_SIP_PASSWORD_15551230001", "meta-sip-password")
	t.Setenv("WABRIDGE_GRAPH_TOKEN", "graph-token")
	t.Setenv("WABRIDGE_WEBHOOK_VERIFY_TOKEN", "verify-token")
	t.Setenv("WABRIDGE_APP_SECRET", "app-secret")

	cfg, err := config.Load(examplePath)
	require.NoError(t, err)
	require.Len(t, cfg.Numbers, 2)

	n, ok := cfg.Number("+15551230001")
	require.True(t, ok)
	pw, err := n.SIPPassword()
	require.NoError(t, err)
	assert.Equal(t, "meta-sip-password", pw)
	assert.Equal(t, "15551230001", n.DigestUsername())
	assert.Equal(t, "wa.meta.vc:5061", n.EdgeAddress())
	assert.Equal(t, "15551230001", n.PBXExtension())
	assert.Equal(t, config.KeyExchangeSDES, n.SIP.SRTP)

	api, ok := cfg.Number("+15551230002")
	require.True(t, ok)
	assert.Equal(t, config.ModeAPI, api.Mode)
	assert.Equal(t, "2000", api.PBXExtension())
}

// TestExampleConfigShowsDefaults keeps the example honest: the values it presents as defaults
// must be the defaults, so the example loaded must equal a minimal config loaded.
func TestExampleConfigShowsDefaults(t *testing.T) {
	cert, key := configtest.WriteCert(t, t.TempDir(), "sip.example.com")
	t.Setenv("WABRIDGE_SIP__WHATSAPP_LISTEN__CERT_FILE", cert)
	t.Setenv("WABRIDGE_SIP__WHATSAPP_LISTEN__KEY_FILE", key)
	t.Setenv("WABRIDGE_SIP_PASSWORD_15551230001", "pw")
	t.Setenv("WABRIDGE_GRAPH_TOKEN", "graph-token")
	t.Setenv("WABRIDGE_WEBHOOK_VERIFY_TOKEN", "verify-token")
	t.Setenv("WABRIDGE_APP_SECRET", "app-secret")
	example, err := config.Load(examplePath)
	require.NoError(t, err)

	// The same settings with every default left out.
	minimal := `
sip:
  hostname: sip.example.com
  whatsapp_listen: {cert_file: CERT, key_file: KEY}
media: {public_ip: 203.0.113.10}
pbx:
  address: 127.0.0.1:5070
  register: {username: wabridge, password_env: WABRIDGE_PBX_PASSWORD}
http:
  listen: "0.0.0.0:8080"
webhook: {verify_token_env: WABRIDGE_WEBHOOK_VERIFY_TOKEN, app_secret_env: WABRIDGE_APP_SECRET}
numbers:
  - number: "+15551230001"
    phone_number_id: "1234567890"
    sip: {hostname: sip.example.com, password_env: WABRIDGE_SIP_PASSWORD_15551230001, srtp: sdes}
  - number: "+15551230002"
    phone_number_id: "1234567891"
    mode: api
    api: {provider: meta, token_env: WABRIDGE_GRAPH_TOKEN}
    pbx_route: {extension: "2000"}
`
	path := writeFile(t, "minimal.yaml", minimal) // CERT/KEY come from the environment overrides
	got, err := config.Load(path)
	require.NoError(t, err)

	// The example spells out empty lists; YAML's [] and an absent key differ only in nil-ness.
	example.Numbers[0].SIP.AdditionalCodecs = nil
	assert.Equal(t, got, example)
}
