package sip

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestLogger(level logrus.Level) (*logrus.Entry, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetOutput(io.Discard)
	l.SetLevel(level)
	return logrus.NewEntry(l).WithField("component", "sipgo"), hook
}

type secretValuer struct{}

func (secretValuer) LogValue() slog.Value { return slog.StringValue("resolved") }

func TestSlogLogger(t *testing.T) {
	t.Parallel()
	const sipDump = "INVITE sip:+1@x SIP/2.0\r\nProxy-Authorization: Digest username=\"1\", response=\"abc\"\r\nauthorization : Digest x\r\nCall-ID: y\r\n"
	tests := []struct {
		name      string
		log       func(l *slog.Logger)
		wantLevel logrus.Level
		wantMsg   string
		want      logrus.Fields // subset of fields expected
		absent    []string
	}{
		{
			name:      "info with attrs",
			log:       func(l *slog.Logger) { l.Info("hello", "caller", "Client", "n", 3) },
			wantLevel: logrus.InfoLevel, wantMsg: "hello",
			want: logrus.Fields{"component": "sipgo", "caller": "Client", "n": int64(3)},
		},
		{
			name:      "debug",
			log:       func(l *slog.Logger) { l.Debug("dbg") },
			wantLevel: logrus.DebugLevel, wantMsg: "dbg",
		},
		{
			name:      "below debug is trace",
			log:       func(l *slog.Logger) { l.Log(context.Background(), slog.LevelDebug-4, "trc") },
			wantLevel: logrus.TraceLevel, wantMsg: "trc",
		},
		{
			name:      "warn",
			log:       func(l *slog.Logger) { l.Warn("TCP ref went negative", "ref", -1) },
			wantLevel: logrus.WarnLevel, wantMsg: "TCP ref went negative",
			want: logrus.Fields{"ref": int64(-1)},
		},
		{
			name:      "error with error value",
			log:       func(l *slog.Logger) { l.Error("Read error", "error", errors.New("boom")) },
			wantLevel: logrus.ErrorLevel, wantMsg: "Read error",
			want: logrus.Fields{"error": errors.New("boom")},
		},
		{
			name: "with attrs and groups",
			log: func(l *slog.Logger) {
				l.With("caller", "TransportLayer").WithGroup("conn").With("laddr", "1").WithGroup("x").
					Info("m", "raddr", "2", slog.Group("g", "k", "v"), slog.Group("", "inlined", true))
			},
			wantLevel: logrus.InfoLevel, wantMsg: "m",
			want: logrus.Fields{"caller": "TransportLayer", "conn.laddr": "1", "conn.x.raddr": "2", "conn.x.g.k": "v", "conn.x.inlined": true},
		},
		{
			name: "secrets are redacted",
			log: func(l *slog.Logger) {
				l.With("password", "hunter2").Info("auth",
					"Proxy-Authorization", "Digest response=abc",
					"access_token", "EAAB",
					slog.Group("credentials", "user", "1", "pw", "x"),
					"api-key", "k", "AppSecret", "s", "user", "12145551869")
			},
			wantLevel: logrus.InfoLevel, wantMsg: "auth",
			want: logrus.Fields{
				"password": redacted, "Proxy-Authorization": redacted, "access_token": redacted,
				"credentials.user": redacted, "credentials.pw": redacted, "api-key": redacted,
				"AppSecret": redacted, "user": "12145551869",
			},
		},
		{
			name:      "SIP dumps lose their credentials",
			log:       func(l *slog.Logger) { l.Error("failed to parse", "data", sipDump) },
			wantLevel: logrus.ErrorLevel, wantMsg: "failed to parse",
			want: logrus.Fields{"data": "INVITE sip:+1@x SIP/2.0\r\nProxy-Authorization: [REDACTED]\r\nauthorization : [REDACTED]\r\nCall-ID: y\r\n"},
		},
		{
			name:      "LogValuer is resolved; empty attrs dropped",
			log:       func(l *slog.Logger) { l.Info("v", "val", secretValuer{}, slog.Attr{}) },
			wantLevel: logrus.InfoLevel, wantMsg: "v",
			want:   logrus.Fields{"val": "resolved"},
			absent: []string{""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			entry, hook := newTestLogger(logrus.TraceLevel)
			tc.log(NewSlogLogger(entry))
			require.Len(t, hook.AllEntries(), 1)
			e := hook.LastEntry()
			assert.Equal(t, tc.wantLevel, e.Level)
			assert.Equal(t, tc.wantMsg, e.Message)
			assert.WithinDuration(t, time.Now(), e.Time, time.Minute)
			for k, v := range tc.want {
				assert.Equal(t, v, e.Data[k], "field %q", k)
			}
			for _, k := range tc.absent {
				assert.NotContains(t, e.Data, k)
			}
			for _, v := range e.Data {
				if s, ok := v.(string); ok {
					assert.NotContains(t, s, "hunter2")
					assert.NotContains(t, s, "response=")
				}
			}
		})
	}
}

func TestSlogLoggerEnabled(t *testing.T) {
	t.Parallel()
	entry, hook := newTestLogger(logrus.WarnLevel)
	l := NewSlogLogger(entry)
	assert.False(t, l.Enabled(context.Background(), slog.LevelInfo))
	assert.True(t, l.Enabled(context.Background(), slog.LevelWarn))
	l.Info("dropped")
	l.Debug("dropped")
	l.Warn("kept")
	require.Len(t, hook.AllEntries(), 1)
	assert.Equal(t, "kept", hook.LastEntry().Message)
}

func TestSIPTracer(t *testing.T) {
	t.Parallel()
	entry, hook := newTestLogger(logrus.DebugLevel)
	tr := NewSIPTracer(entry)
	tr.SIPTraceRead("TLS", "127.0.0.1:5061", "157.240.0.1:40000", []byte("INVITE sip:x SIP/2.0\r\nProxy-Authorization: Digest response=\"abc\"\r\n\r\n"))
	tr.SIPTraceWrite("TLS", "127.0.0.1:5061", "157.240.0.1:40000", []byte("SIP/2.0 200 OK\r\n\r\n"))
	entries := hook.AllEntries()
	require.Len(t, entries, 2)
	assert.Equal(t, "read", entries[0].Data["dir"])
	assert.Contains(t, entries[0].Message, "Proxy-Authorization: [REDACTED]")
	assert.NotContains(t, entries[0].Message, "abc")
	assert.Equal(t, "write", entries[1].Data["dir"])

	// log.sip_trace is an explicit request: the messages show at the default info level too.
	quiet, qhook := newTestLogger(logrus.InfoLevel)
	NewSIPTracer(quiet).SIPTraceRead("UDP", "a", "b", []byte("x"))
	assert.Len(t, qhook.AllEntries(), 1)
}
