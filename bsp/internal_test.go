package bsp

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizeSDP(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                           "",
		"v=0\r\ns=-\r\n":             "v=0\r\ns=-\r\n",
		"v=0\ns=-":                   "v=0\r\ns=-\r\n",
		`v=0\r\ns=-\r\n`:             "v=0\r\ns=-\r\n",
		`v=0\ns=-`:                   "v=0\r\ns=-\r\n",
		"  v=0\r\ns=-\r\n\r\n":       "v=0\r\ns=-\r\n",
		"v=0\r\na=x:back\\slash\r\n": "v=0\r\na=x:back\\slash\r\n",
	} {
		assert.Equal(t, want, NormalizeSDP(in), "%q", in)
	}
}

func TestLegacySDP(t *testing.T) {
	t.Parallel()
	sdp, typ := legacySDP(`{"sdp":"v=0\r\n","type":"Offer"}`)
	assert.Equal(t, "v=0\r\n", sdp)
	assert.Equal(t, "offer", typ)
	sdp, typ = legacySDP("v=0\r\n")
	assert.Equal(t, "v=0\r\n", sdp)
	assert.Empty(t, typ)
	sdp, _ = legacySDP(`{not json`)
	assert.Equal(t, `{not json`, sdp)
}

func TestSeenSet(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	var evicted []string
	s := newSeenSet(2, time.Minute)
	s.onEvict = func(k string) { evicted = append(evicted, k) }
	s.add("a", now)
	s.add("b", now)
	assert.True(t, s.contains("a", now))
	s.add("c", now) // evicts the oldest
	assert.False(t, s.contains("a", now))
	assert.True(t, s.contains("b", now) && s.contains("c", now))
	assert.False(t, s.contains("b", now.Add(2*time.Minute)), "expired")
	assert.Equal(t, []string{"a", "b", "c"}, evicted)
	assert.Zero(t, s.len())
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{Attempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt := 1; attempt <= 10; attempt++ {
		d := backoff(p, attempt, 0)
		assert.GreaterOrEqual(t, d, min(p.InitialBackoff<<(attempt-1), p.MaxBackoff)/2)
		assert.LessOrEqual(t, d, p.MaxBackoff)
	}
	assert.Equal(t, time.Second, backoff(p, 1, 30*time.Second), "Retry-After is capped")
	assert.Equal(t, 3*time.Second, parseRetryAfter("3"))
	assert.Zero(t, parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"))
}

func TestStripJSONComments(t *testing.T) {
	t.Parallel()
	in := []byte("{\n \"a\": \"x // not a comment\", // comment\n \"b\": 1 // another\n}")
	assert.JSONEq(t, `{"a":"x // not a comment","b":1}`, string(StripJSONComments(in)))
}

func TestCheckSuccess(t *testing.T) {
	t.Parallel()
	require.NoError(t, checkSuccess("meta", "accept", []byte(`{"messaging_product":"whatsapp","success":true}`)))
	require.NoError(t, checkSuccess("meta", "accept", nil))
	var ae *APIError
	require.ErrorAs(t, checkSuccess("meta", "accept", []byte(`{"success":false}`)), &ae)
	require.Error(t, checkSuccess("meta", "accept", []byte(`<html>`)))
}

// TestDebugLogRedactsCredentials: the debug log shows request headers, never the token.
func TestDebugLogRedactsCredentials(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.TraceLevel)
	for _, provider := range []string{ProviderMeta, Provider360dialog} {
		tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		})
		p, err := New(Config{Provider: provider, PhoneNumberID: "1", Token: StaticToken("super-secret-token"),
			BaseURL: "http://127.0.0.1:1", HTTPClient: &http.Client{Transport: tr}, Log: logrus.NewEntry(l)})
		require.NoError(t, err)
		require.NoError(t, p.Terminate(context.Background(), CallRef{ID: "wacid.A"}))
	}
	assert.NotContains(t, buf.String(), "super-secret-token")
	assert.Contains(t, buf.String(), "[redacted]")
	assert.Contains(t, buf.String(), "provider request")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tok := StaticToken("t")
	for name, cfg := range map[string]Config{
		"no token":            {Provider: ProviderMeta, PhoneNumberID: "1"},
		"unknown provider":    {Provider: "twilio", Token: tok},
		"meta without id":     {Provider: ProviderMeta, Token: tok},
		"positus without id":  {Provider: ProviderPositus, Token: tok},
		"concepto w/o number": {Provider: ProviderConceptoMovil, Token: tok},
		"relative base URL":   {Provider: ProviderVectalk, Token: tok, BaseURL: "apis.vectalk.com.br"},
		"non-http base URL":   {Provider: ProviderVectalk, Token: tok, BaseURL: "ftp://x"},
	} {
		_, err := New(cfg)
		assert.Error(t, err, name)
	}
	p, err := New(Config{Provider: Provider360dialog, Token: tok})
	require.NoError(t, err)
	assert.Equal(t, Provider360dialog, p.Name())
}

// TestPathEscaping: ids with reserved characters reach the provider escaped once.
func TestPathEscaping(t *testing.T) {
	t.Parallel()
	var got string
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.URL.String()
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	p, err := New(Config{Provider: ProviderPositus, PhoneNumberID: "a b/c%", Token: StaticToken("t"),
		BaseURL: "http://h/prefix/", HTTPClient: &http.Client{Transport: tr}, Log: logrus.NewEntry(logrus.New())})
	require.NoError(t, err)
	require.NoError(t, p.Terminate(context.Background(), CallRef{ID: "wacid.A"}))
	assert.Equal(t, "http://h/prefix/v2/whatsapp/numbers/a%20b%2Fc%25/calls/hang-up", got)
}
