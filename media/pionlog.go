package media

import (
	"sync/atomic"

	"github.com/pion/logging"
	"github.com/sirupsen/logrus"
)

// pionLoggerFactory sends pion/ice's and pion/dtls's logs to the call's logrus entry, with a
// "pion" field naming the pion scope, instead of pion's default stderr logger.
//
// Levels are lowered: pion's Debug becomes Trace, its Info and Warn Debug, its Error Info. pion
// warns about things that are routine for a gateway (a check while no pair exists yet, a read on
// a socket closed at hang-up, a send to a candidate we cannot route to, a mux on 0.0.0.0), and the
// leg logs the outcomes that matter (connected, failed, closed by the peer) itself. An operator
// who wants pion's view sets the level to Debug or Trace.
//
// mute silences it for good: the leg mutes it when it closes, because some pion goroutines
// outlive the agent (AddRemoteCandidate's, which then only reports that the agent is closed) and
// must not log about a call that has ended.
type pionLoggerFactory struct {
	log  *logrus.Entry
	mute *atomic.Bool
}

func newPionLoggerFactory(log *logrus.Entry) pionLoggerFactory {
	return pionLoggerFactory{log: log, mute: new(atomic.Bool)}
}

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{e: f.log.WithField("pion", scope), mute: f.mute}
}

type pionLogger struct {
	e    *logrus.Entry
	mute *atomic.Bool
}

func (l pionLogger) logf(level logrus.Level, format string, args ...any) {
	if !l.mute.Load() {
		l.e.Logf(level, format, args...)
	}
}

func (l pionLogger) log(level logrus.Level, msg string) {
	if !l.mute.Load() {
		l.e.Log(level, msg)
	}
}

func (l pionLogger) Trace(msg string)                  { l.log(logrus.TraceLevel, msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.logf(logrus.TraceLevel, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.log(logrus.TraceLevel, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(logrus.TraceLevel, format, args...) }
func (l pionLogger) Info(msg string)                   { l.log(logrus.DebugLevel, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(logrus.DebugLevel, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.log(logrus.DebugLevel, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(logrus.DebugLevel, format, args...) }
func (l pionLogger) Error(msg string)                  { l.log(logrus.InfoLevel, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(logrus.InfoLevel, format, args...) }
