package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
)

// Tests here use t.Setenv, so they cannot run in parallel.

func TestLoadEnvOverrides(t *testing.T) {
	path := writeFile(t, "wabridge.yaml", withCert(t, baseYAML))
	t.Setenv("WABRIDGE_PBX__ADDRESS", "10.0.0.5:5060")
	t.Setenv("WABRIDGE_PBX__SRTP", "true")
	t.Setenv("WABRIDGE_LOG__LEVEL", "debug")
	t.Setenv("WABRIDGE_MEDIA__RTP_PORT_MIN", "40000")
	t.Setenv("WABRIDGE_MEDIA__RTP_PORT_MAX", "40999")
	t.Setenv("WABRIDGE_MEDIA__INACTIVITY_TIMEOUT", "45s")
	t.Setenv("WABRIDGE_SIP__PBX_LISTEN__TCP", "") // "" disables, rather than reverting to the default
	// Not overrides (no "__"): secrets referenced by password_env may share the prefix.
	t.Setenv("WABRIDGE_SIP_PASSWORD_15551230001", "whatever")
	t.Setenv("WABRIDGE_CONFIG", "/somewhere")

	cfg, err := config.Load(path)
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.5:5060", cfg.PBX.Address)
	assert.Equal(t, "10.0.0.5:5060", cfg.PBX.Register.Registrar, "derived defaults see overridden values")
	assert.True(t, cfg.PBX.SRTP)
	assert.Equal(t, "debug", cfg.Log.Level)
	assert.Equal(t, 40000, cfg.Media.RTPPortMin)
	assert.Equal(t, 40999, cfg.Media.RTPPortMax)
	assert.Equal(t, 45*time.Second, cfg.Media.InactivityTimeout.Duration())
	assert.Empty(t, cfg.SIP.PBXListen.TCP)
	assert.Equal(t, config.DefaultPBXListen, cfg.SIP.PBXListen.UDP)
	assert.Equal(t, "+15551230001", cfg.Numbers[0].Number, "file values survive overrides of other keys")
}

func TestLoadEnvOverrideProblems(t *testing.T) {
	tests := []struct {
		env, value string
		want       string
	}{
		{"WABRIDGE_PBX__ADRESS", "x", "WABRIDGE_PBX__ADRESS: pbx.adress is not a config key (did you mean pbx.address?)"},
		{"WABRIDGE_NUMBERS__0__NUMBER", "x", "WABRIDGE_NUMBERS__0__NUMBER: numbers cannot be overridden from the environment"},
		{"WABRIDGE_SIP__PBX_LISTEN", "x", "WABRIDGE_SIP__PBX_LISTEN: sip.pbx_listen is a section; name one of its keys"},
		{"WABRIDGE_LOG__LEVEL__X", "x", "WABRIDGE_LOG__LEVEL__X: log.level is not a section"},
		{"WABRIDGE_MEDIA__RTP_PORT_MIN", "low", "media.rtp_port_min: cannot parse"},
		{"WABRIDGE_MEDIA__INACTIVITY_TIMEOUT", "30", `media.inactivity_timeout: "30" is not a duration`},
		{"WABRIDGE_LOG__LEVEL", "chatty", `log.level: "chatty" is not a level`},
	}
	path := writeFile(t, "wabridge.yaml", withCert(t, baseYAML))
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			_, err := config.Load(path)
			require.Error(t, err)
			got := problems(err)
			assert.Len(t, got, 1, strings.Join(got, "\n"))
			assert.Contains(t, got[0], tt.want)
		})
	}
}

func TestParseIgnoresEnvironment(t *testing.T) {
	t.Setenv("WABRIDGE_PBX__ADDRESS", "10.0.0.5:5060")
	t.Setenv("WABRIDGE_PBX__ADRESS", "typo")
	cfg, err := config.Parse([]byte(withCert(t, baseYAML)))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:5070", cfg.PBX.Address)
}

func TestLoadFileErrors(t *testing.T) {
	_, err := config.Load("/nonexistent/wabridge.yaml")
	assert.ErrorContains(t, err, "read config: open /nonexistent/wabridge.yaml")

	_, err = config.Load(writeFile(t, "bad.yaml", "pbx: [\n"))
	assert.ErrorContains(t, err, "parse YAML: yaml: line 1")
}
