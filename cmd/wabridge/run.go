package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/config"
	wsip "github.com/wabridge/wabridge/sip"
)

// cmdRun loads the config, sets up logging and runs the bridge until SIGINT or SIGTERM.
func (c *cli) cmdRun(ctx context.Context, fs *flag.FlagSet, args []string) int {
	path := fs.String("config", defaultConfigPath, "read the config from `FILE` (YAML)")
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		c.printConfigError(*path, err)
		return exitFailure
	}
	log, err := newLogger(cfg.Log, c.stdout)
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge: %v\n", err)
		return exitFailure
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts a graceful shutdown, restore the default handling so a
	// second Ctrl-C kills a shutdown that hangs (e.g. on a PBX that never answers our BYE).
	go func() {
		<-ctx.Done()
		stop()
	}()

	ver, rev := buildVersion()
	log.WithFields(logrus.Fields{"version": ver, "commit": rev, "config": *path, "numbers": len(cfg.Numbers)}).
		Info("wabridge starting")
	if err := c.serve(ctx, cfg, log); err != nil {
		log.WithError(err).Error("wabridge stopped with an error")
		return exitFailure
	}
	log.Info("wabridge stopped")
	return exitOK
}

// serve runs the bridge until ctx is cancelled.
func serve(ctx context.Context, cfg *config.Config, log *logrus.Logger) error {
	// sipgo logs through slog; route it into our logger so there is one log stream.
	sipmsg.SetDefaultLogger(wsip.NewSlogLogger(logrus.NewEntry(log).WithField("component", "sipgo")))
	if cfg.Log.SIPTrace {
		// Every SIP message on both legs, credentials redacted. Phone numbers are in there, so off by default.
		sipmsg.SIPDebugTracer(wsip.NewSIPTracer(logrus.NewEntry(log).WithField("component", "sip-trace")))
	}
	srv, err := bridge.NewServer(cfg, logrus.NewEntry(log))
	if err != nil {
		return fmt.Errorf("starting the bridge: %w", err)
	}
	return srv.Serve(ctx)
}

// newLogger builds the logger described by the log section, writing to out.
func newLogger(lc config.Log, out io.Writer) (*logrus.Logger, error) {
	level, err := logrus.ParseLevel(lc.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	log := logrus.New()
	log.SetOutput(out)
	log.SetLevel(level)
	format := lc.Format
	if format == config.LogFormatAuto {
		// journald, docker and log shippers want one parseable record per line; people at a
		// terminal want to read.
		format = config.LogFormatJSON
		if isTerminal(out) {
			format = config.LogFormatText
		}
	}
	switch format {
	case config.LogFormatJSON:
		// Millisecond timestamps: call setup steps are often only a few ms apart.
		log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000Z07:00"})
	case config.LogFormatText:
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	default:
		return nil, fmt.Errorf("log.format: unknown format %q", lc.Format)
	}
	return log, nil
}

// isTerminal reports whether w is a character device. golang.org/x/term is not a dependency and
// this is all "auto" needs; /dev/null also counts, which only means discarded logs are text.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
