package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const loopbackConfig = `
log: {level: %s}
sip:
  hostname: 127.0.0.1
  pbx_listen: {udp: "127.0.0.1:0", tcp: ""}
  whatsapp_listen: {tls: "127.0.0.1:0", cert_file: %q, key_file: %q}
media: {bind_ip: 127.0.0.1}
pbx: {address: "127.0.0.1:9"}
limits: {drain_timeout: 5s}
http: {listen: "127.0.0.1:0"}
numbers:
  - number: "+15550001111"
    sip: {hostname: sip.test, password: serve-test-secret, srtp: sdes}
`

// TestServeLifecycle runs the real serve: health endpoints come up, SIGHUP reloads a good config
// (log level) and refuses a bad one while the old keeps serving, SIGTERM drains and returns.
// Not parallel: it signals its own process.
func TestServeLifecycle(t *testing.T) {
	dir := t.TempDir()
	cert, key := configtest.WriteCert(t, dir, "sip.test", "127.0.0.1")
	path := filepath.Join(dir, "wabridge.yaml")
	write := func(level string) {
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(loopbackConfig, level, cert, key)), 0o600))
	}
	write("info")
	cfg, err := config.Load(path)
	require.NoError(t, err)

	logs := &syncBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, func() (*config.Config, error) { return config.Load(path) }, log) }()

	var base string
	require.Eventually(t, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "health and metrics listening" {
				base = "http://" + rec["addr"].(string)
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	get := func(p string) (int, string) {
		res, err := http.Get(base + p)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, _ := get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	code, body := get("/readyz")
	assert.Equal(t, http.StatusOK, code, body)
	code, body = get("/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "wabridge_calls_refused_total")

	write("debug")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "log level changed") }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, logrus.DebugLevel, log.GetLevel())

	require.NoError(t, os.WriteFile(path, []byte("numbers: [{number: \"+12\"}]\n"), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "reload refused") }, 5*time.Second, 20*time.Millisecond)
	code, _ = get("/readyz")
	assert.Equal(t, http.StatusOK, code, "a bad reload keeps the old config serving")

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("serve did not return after SIGTERM")
	}
	assert.Contains(t, logs.String(), "drained")
	assert.NotContains(t, logs.String(), "serve-test-secret")
}
