package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
)

const examplePath = "../../examples/wabridge.yaml"

// result is one in-process run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, serve serveFunc, args ...string) result {
	t.Helper()
	if serve == nil {
		serve = func(context.Context, *config.Config, func() (*config.Config, error), *logrus.Logger) error {
			t.Error("serve called unexpectedly")
			return nil
		}
	}
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, serve: serve}
	code := c.run(context.Background(), args)
	return result{code, stdout.String(), stderr.String()}
}

// exampleEnv makes examples/wabridge.yaml loadable here: its certificate paths under
// /etc/wabridge/tls are redirected with environment overrides and its password variable is set.
func exampleEnv(t *testing.T) {
	cert, key := configtest.WriteCert(t, t.TempDir(), "sip.example.com")
	t.Setenv("WABRIDGE_SIP__WHATSAPP_LISTEN__CERT_FILE", cert)
	t.Setenv("WABRIDGE_SIP__WHATSAPP_LISTEN__KEY_FILE", key)
	t.Setenv("WABRIDGE_SIP_PASSWORD_15551230001", "meta-sip-password")
	t.Setenv("WABRIDGE_GRAPH_TOKEN", "graph-token")
	t.Setenv("WABRIDGE_WEBHOOK_VERIFY_TOKEN", "verify-token")
	t.Setenv("WABRIDGE_APP_SECRET", "app-secret")
}

func TestCheckConfigExample(t *testing.T) {
	exampleEnv(t)
	r := runCLI(t, nil, "check-config", "--config", examplePath)
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, "config OK: 2 numbers\n", r.stdout)
	assert.Empty(t, r.stderr)
}

func TestCheckConfigBroken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broken.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
media: {public_ip: 203.0.113.10, rtp_port_min: 20001}
sip:
  whatsapp_listen: {tls: ""}
pbx: {address: pbx, transport: udp}
numbers:
  - number: "+12"
    mode: sip
    sip: {hostname: sip.example.com, password: do-not-print-me, password_env: X, srtp: sdes}
  - number: "+15551230002"
    mode: api
    phone_number_id: "1"
    pbx_rout: {extension: "2000"}
`), 0o600))

	r := runCLI(t, nil, "check-config", "--config", path)
	assert.Equal(t, exitFailure, r.code)
	assert.Empty(t, r.stdout)
	for _, want := range []string{
		path + ": 9 problems:",
		"  numbers[1].pbx_rout: unknown key (did you mean numbers[1].pbx_route?)",
		"  media.rtp_port_min: must be even and < rtp_port_max",
		"  sip.whatsapp_listen.tls: required when a number has mode sip",
		`  pbx.address: "pbx" is not host:port`,
		`  numbers[0].number: "+12" is not E.164`,
		"  numbers[0].sip.password: set exactly one of password, password_file, password_env",
	} {
		assert.Contains(t, r.stderr, want)
	}
	assert.NotContains(t, r.stderr, "do-not-print-me")
}

func TestCheckConfigMissingFile(t *testing.T) {
	r := runCLI(t, nil, "check-config", "--config", "/nonexistent/wabridge.yaml")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "wabridge: /nonexistent/wabridge.yaml: read config: open /nonexistent/wabridge.yaml: no such file or directory")
}

func TestRunLoadsConfigAndServes(t *testing.T) {
	exampleEnv(t)
	t.Setenv("WABRIDGE_LOG__LEVEL", "debug")
	for _, args := range [][]string{
		{"run", "--config", examplePath},
		{"--config", examplePath}, // run is the default command
		{"-config=" + examplePath},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var got *config.Config
			var gotLog *logrus.Logger
			serve := func(ctx context.Context, cfg *config.Config, _ func() (*config.Config, error), log *logrus.Logger) error {
				got, gotLog = cfg, log
				require.NoError(t, ctx.Err(), "context is live while serving")
				return nil
			}
			r := runCLI(t, serve, args...)
			require.Equal(t, exitOK, r.code, r.stderr)
			require.NotNil(t, got)
			assert.Len(t, got.Numbers, 2)
			assert.Equal(t, logrus.DebugLevel, gotLog.GetLevel())

			// stdout is a buffer, not a terminal, so format auto logs JSON.
			first, _, _ := strings.Cut(r.stdout, "\n")
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(first), &rec), "log line %q", first)
			assert.Equal(t, "wabridge starting", rec["msg"])
			assert.EqualValues(t, 2, rec["numbers"])
			assert.NotContains(t, r.stdout, "meta-sip-password")
		})
	}
}

func TestRunReportsServeError(t *testing.T) {
	exampleEnv(t)
	r := runCLI(t, func(context.Context, *config.Config, func() (*config.Config, error), *logrus.Logger) error {
		return errors.New("listen tcp 0.0.0.0:5061: address already in use")
	}, "run", "--config", examplePath)
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stdout, "address already in use")
}

func TestRunBadConfig(t *testing.T) {
	r := runCLI(t, nil, "run", "--config", "/nonexistent/wabridge.yaml")
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "no such file or directory")
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		r := runCLI(t, nil, arg)
		assert.Equal(t, exitOK, r.code)
		for _, cmd := range []string{"run", "check-config", "version", "demo", "selftest"} {
			assert.Contains(t, r.stdout, "\n  "+cmd+" ", "usage lists %s", cmd)
		}
		assert.Contains(t, r.stdout, "WABRIDGE_<SECTION>__<KEY>")
	}

	r := runCLI(t, nil, "help", "check-config")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "Usage: wabridge check-config [--config FILE]")
	assert.Contains(t, r.stdout, "-config FILE")

	r = runCLI(t, nil, "run", "--help")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "Usage: wabridge run [--config FILE]")
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, `unknown command "bogus"`},
		{[]string{"check-config", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"check-config", "extra.yaml"}, `unexpected argument "extra.yaml"`},
		{[]string{"demo", "--frames"}, "flag needs an argument: -frames"},
		{[]string{"selftest"}, "give --to EXTENSION"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, nil, tt.args...)
			assert.Equal(t, exitUsage, r.code)
			assert.Contains(t, r.stderr, tt.want)
		})
	}
}

func TestVersion(t *testing.T) {
	r := runCLI(t, nil, "version")
	assert.Equal(t, exitOK, r.code)
	assert.True(t, strings.HasPrefix(r.stdout, "wabridge "), r.stdout)
	assert.Contains(t, r.stdout, runtime.Version())
}

func TestNewLoggerFormats(t *testing.T) {
	tests := []struct {
		format config.LogFormat
		json   bool
	}{
		{config.LogFormatJSON, true},
		{config.LogFormatText, false},
		{config.LogFormatAuto, true}, // a buffer is not a terminal
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			var out bytes.Buffer
			log, err := newLogger(config.Log{Level: "info", Format: tt.format}, &out)
			require.NoError(t, err)
			log.Info("hello")
			assert.Equal(t, tt.json, json.Valid(bytes.TrimSpace(out.Bytes())), out.String())
		})
	}
	_, err := newLogger(config.Log{Level: "loud", Format: config.LogFormatJSON}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "log.level")
}

// TestDemoSubprocess runs `wabridge demo --json` as a separate process, the way a newcomer runs
// it from the README, and checks the report says audio flowed both ways.
func TestDemoSubprocess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "wabridge")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--json", "--frames", "60")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "demo failed: %s\n%s", stderr.String(), stdout.String())
	type stream struct {
		FramesSent    int `json:"frames_sent"`
		FramesMatched int `json:"frames_matched"`
	}
	var rep struct {
		OK    bool `json:"ok"`
		Calls []struct {
			Name       string `json:"name"`
			ToPBX      stream `json:"to_pbx"`
			ToWhatsApp stream `json:"to_whatsapp"`
		} `json:"calls"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.True(t, rep.OK)
	require.Len(t, rep.Calls, 2)
	for _, c := range rep.Calls {
		assert.Equal(t, 60, c.ToPBX.FramesMatched, c.Name)
		assert.Equal(t, 60, c.ToWhatsApp.FramesMatched, c.Name)
	}
}
