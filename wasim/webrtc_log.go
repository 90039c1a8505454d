package wasim

import (
	"fmt"
	"strings"

	"github.com/pion/logging"
	"github.com/sirupsen/logrus"
)

// pionUnhandledSSRC starts the error pion/webrtc v4.2.25 logs when authenticated RTP arrives
// with an SSRC it cannot map to a track (constants.go incomingUnhandledRTPSsrc). With one
// media section whose SSRC the business declared, that can only be a second SSRC: a rule
// Meta's relay breaks on (whatsapp-calling.md §4.2), and pion reports it nowhere else.
const pionUnhandledSSRC = "Incoming unhandled RTP ssrc("

// pionLogs routes a WebRTCPeer's pion logs to its logrus entry (leg=whatsapp-sim), with the
// pion scope as a field.
type pionLogs struct{ peer *WebRTCPeer }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{peer: f.peer, scope: scope}
}

type pionLogger struct {
	peer  *WebRTCPeer
	scope string
}

// log writes to the peer's current logger. pion's Info is chatty state tracing and goes to
// Debug; after Close, pion's warnings and errors are teardown noise and go to Debug too.
func (l *pionLogger) log(level logrus.Level, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	select {
	case <-l.peer.closed:
		if level < logrus.DebugLevel {
			level = logrus.DebugLevel
		}
	default:
		if level <= logrus.ErrorLevel && strings.HasPrefix(msg, pionUnhandledSSRC) {
			l.peer.violate("the business sends RTP with a second SSRC; Meta supports exactly one SSRC per call (whatsapp-calling.md §4.2): " + msg)
		}
	}
	l.peer.logger().WithField("component", "pion/"+l.scope).Log(level, msg)
}

func (l *pionLogger) Trace(msg string)                  { l.log(logrus.TraceLevel, "%s", msg) }
func (l *pionLogger) Tracef(format string, args ...any) { l.log(logrus.TraceLevel, format, args...) }
func (l *pionLogger) Debug(msg string)                  { l.log(logrus.DebugLevel, "%s", msg) }
func (l *pionLogger) Debugf(format string, args ...any) { l.log(logrus.DebugLevel, format, args...) }
func (l *pionLogger) Info(msg string)                   { l.log(logrus.DebugLevel, "%s", msg) }
func (l *pionLogger) Infof(format string, args ...any)  { l.log(logrus.DebugLevel, format, args...) }
func (l *pionLogger) Warn(msg string)                   { l.log(logrus.WarnLevel, "%s", msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { l.log(logrus.WarnLevel, format, args...) }
func (l *pionLogger) Error(msg string)                  { l.log(logrus.ErrorLevel, "%s", msg) }
func (l *pionLogger) Errorf(format string, args ...any) { l.log(logrus.ErrorLevel, format, args...) }
