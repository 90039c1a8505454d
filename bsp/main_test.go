package bsp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
)

// TestMain fails the package if a test leaves a goroutine behind: timeouts, retries, emulator
// delays and the webhook worker must all clean up.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testToken   = "test-token-not-a-secret"
	testTimeout = 10 * time.Second
	// testSDP is a minimal offer/answer with real CRLF line ends, as Meta requires.
	testSDP   = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
	answerSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=setup:active\r\n"
)

// testLog is quiet unless BSP_DEBUG is set.
func testLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.ErrorLevel)
	if os.Getenv("BSP_DEBUG") != "" {
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newSim starts an emulator for provider on loopback, on the golden files in testdata (not its
// embedded copy), so these tests pin the files taken from the shared doc.
func newSim(t *testing.T, provider string, mods ...func(*bspsim.Config)) *bspsim.Server {
	t.Helper()
	cfg := bspsim.Config{Provider: provider, Token: testToken, Golden: os.DirFS("testdata/golden"), Log: testLog()}
	if provider == bsp.ProviderConceptoMovil {
		// Concepto Móvil's documented sample uses these numbers.
		cfg.DisplayNumber = "5215500000001"
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := bspsim.New(cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// newProvider builds the adapter for sim with fast retries.
func newProvider(t *testing.T, sim *bspsim.Server, provider string, mods ...func(*bsp.Config)) bsp.Provider {
	t.Helper()
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections)
	cfg := bsp.Config{
		Provider:      provider,
		BaseURL:       sim.URL(),
		PhoneNumberID: "436666719526789",
		DisplayNumber: "13175551399",
		WABAID:        "366634483210360",
		Token:         bsp.StaticToken(testToken),
		Timeout:       2 * time.Second,
		Retry:         bsp.RetryPolicy{Attempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
		HTTPClient:    hc,
		Log:           testLog(),
	}
	if provider == bsp.ProviderConceptoMovil {
		cfg.DisplayNumber = "+52 1 55 0000 0001"
	}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := bsp.New(cfg)
	require.NoError(t, err)
	return p
}

// golden reads a golden file as a generic JSON value (// comments stripped).
func golden(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/golden/" + name)
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.Index(l, "  //"); i >= 0 {
			l = l[:i]
		}
		lines = append(lines, l)
	}
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.Join(lines, "\n")), &v), name)
	return v
}

// goldenWith returns a golden body with dotted paths replaced (nil deletes), as JSON.
func goldenWith(t *testing.T, name string, edits map[string]any) string {
	t.Helper()
	v := golden(t, name)
	for path, val := range edits {
		parts := strings.Split(path, ".")
		m := v
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			require.True(t, ok, "%s: %s is not an object", name, path)
			m = next
		}
		if val == nil {
			delete(m, parts[len(parts)-1])
		} else {
			m[parts[len(parts)-1]] = val
		}
	}
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// str reads a string field of a golden value.
func str(v map[string]any, key string) string {
	s, _ := v[key].(string)
	return s
}
