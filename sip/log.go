package sip

import (
	"context"
	"log/slog"
	"regexp"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
)

// NewSlogLogger returns a *slog.Logger that writes to entry, for sipgo, which logs through
// log/slog while wabridge uses logrus (go-libs.md §1 and §8.4; samber/slog-logrus is not
// available from our module proxy). Install it before creating any sipgo object, because
// sipgo copies the default logger when it builds its client, transport and transaction
// layers:
//
//	sipmsg.SetDefaultLogger(wsip.NewSlogLogger(log.WithField("component", "sipgo")))
//	ua, err := sipgo.NewUA(...)
//
// (or pass it to sipgo.WithClientLogger / WithServerLogger / sipmsg.WithTransportLayerLogger).
//
// Levels: slog Debug→logrus Debug (below Debug→Trace), Info→Info, Warn→Warn, Error→Error.
// sipgo is chatty at Debug (a line per connection reference change), so give it an entry
// of a logger set to Info unless you are debugging SIP.
//
// Attributes become logrus fields; WithGroup("g") prefixes keys as "g.key". Attributes
// whose key looks secret (password, secret, token, authorization, credential, cookie,
// api key) are redacted, and so are Authorization/Proxy-Authorization lines inside string
// values (sipgo logs raw messages when it fails to parse them): a digest response is an
// offline-guessable function of the SIP password.
func NewSlogLogger(entry *logrus.Entry) *slog.Logger {
	return slog.New(&logrusHandler{entry: entry})
}

// redacted replaces secret values in logs.
const redacted = "[REDACTED]"

type logrusHandler struct {
	entry  *logrus.Entry
	fields logrus.Fields // attributes from WithAttrs, already prefixed and redacted
	prefix string        // "g1.g2." from WithGroup
}

func (h *logrusHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.entry.Logger.IsLevelEnabled(logrusLevel(l))
}

func (h *logrusHandler) Handle(_ context.Context, r slog.Record) error {
	f := make(logrus.Fields, len(h.fields)+r.NumAttrs())
	for k, v := range h.fields {
		f[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(f, h.prefix, a, false)
		return true
	})
	e := h.entry.WithFields(f)
	if !r.Time.IsZero() {
		e = e.WithTime(r.Time)
	}
	e.Log(logrusLevel(r.Level), redactSIPText(r.Message))
	return nil
}

func (h *logrusHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	f := make(logrus.Fields, len(h.fields)+len(attrs))
	for k, v := range h.fields {
		f[k] = v
	}
	for _, a := range attrs {
		addAttr(f, h.prefix, a, false)
	}
	return &logrusHandler{entry: h.entry, fields: f, prefix: h.prefix}
}

func (h *logrusHandler) WithGroup(name string) slog.Handler {
	if name == "" { // slog.Handler contract: an empty group name is ignored
		return h
	}
	return &logrusHandler{entry: h.entry, fields: h.fields, prefix: h.prefix + name + "."}
}

// addAttr flattens a into f under prefix, following the slog.Handler rules: empty
// attributes are dropped, groups with an empty key are inlined, LogValuers are resolved.
func addAttr(f logrus.Fields, prefix string, a slog.Attr, secret bool) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	secret = secret || isSecretKey(a.Key)
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = prefix + a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			addAttr(f, p, ga, secret)
		}
		return
	}
	key := prefix + a.Key
	switch {
	case secret:
		f[key] = redacted
	case a.Value.Kind() == slog.KindString:
		f[key] = redactSIPText(a.Value.String())
	default:
		f[key] = a.Value.Any()
	}
}

// isSecretKey reports whether an attribute key names something that must not be logged.
func isSecretKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "passwd", "secret", "token", "authorization", "credential",
		"cookie", "apikey", "api_key", "api-key"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// authLinePattern matches Authorization and Proxy-Authorization header lines in SIP text.
const authLinePattern = `(?im)^((?:proxy-)?authorization[ \t]*:)[^\r\n]*`

// redactSIPText blanks digest credentials in a SIP message dump. The pattern is compiled only
// for the rare text that contains credentials (a package-level regexp would be a global).
func redactSIPText(s string) string {
	if !strings.Contains(strings.ToLower(s), "authorization") {
		return s
	}
	return regexp.MustCompile(authLinePattern).ReplaceAllString(s, "$1 "+redacted)
}

func logrusLevel(l slog.Level) logrus.Level {
	switch {
	case l < slog.LevelDebug:
		return logrus.TraceLevel
	case l < slog.LevelInfo:
		return logrus.DebugLevel
	case l < slog.LevelWarn:
		return logrus.InfoLevel
	case l < slog.LevelError:
		return logrus.WarnLevel
	default:
		return logrus.ErrorLevel
	}
}

// NewSIPTracer returns a sipgo SIPTracer that logs every SIP message read or written at
// Debug level, with credentials redacted. In v1.7.2, sipmsg.SIPDebug = true writes raw
// messages to stderr (not to slog, whatever go-libs.md §1 says) unless a tracer is
// installed:
//
//	sipmsg.SIPDebugTracer(wsip.NewSIPTracer(log.WithField("component", "sip-trace")))
//	sipmsg.SIPDebug = true
func NewSIPTracer(entry *logrus.Entry) sipmsg.SIPTracer {
	return sipTracer{entry: entry}
}

type sipTracer struct{ entry *logrus.Entry }

func (t sipTracer) SIPTraceRead(transport, laddr, raddr string, msg []byte) {
	t.trace("read", transport, laddr, raddr, msg)
}

func (t sipTracer) SIPTraceWrite(transport, laddr, raddr string, msg []byte) {
	t.trace("write", transport, laddr, raddr, msg)
}

func (t sipTracer) trace(dir, transport, laddr, raddr string, msg []byte) {
	// log.sip_trace is an explicit request to see the messages, so they log at info.
	t.entry.WithFields(logrus.Fields{
		"dir": dir, "transport": transport, "laddr": laddr, "raddr": raddr,
	}).Info(redactSIPText(string(msg)))
}
