package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/config"
	wsip "github.com/wabridge/wabridge/sip"
)

// cmdRun loads the config, sets up logging and runs the bridge. SIGTERM drains (new calls get
// 503, active ones may finish for limits.drain_timeout), SIGINT stops at once, SIGHUP reloads.
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

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	// After the first Ctrl-C, restore the default handling so a second one kills a shutdown
	// that hangs (e.g. on a PBX that never answers our BYE).
	go func() {
		<-ctx.Done()
		stop()
	}()

	ver, rev := buildVersion()
	log.WithFields(logrus.Fields{"version": ver, "commit": rev, "config": *path, "numbers": len(cfg.Numbers)}).
		Info("wabridge starting")
	if c.sipLogging != nil {
		c.sipLogging(logrus.NewEntry(log), cfg.Log.SIPTrace)
	}
	reload := func() (*config.Config, error) { return config.Load(*path) }
	if err := c.serve(ctx, cfg, reload, log); err != nil {
		log.WithError(err).Error("wabridge stopped with an error")
		return exitFailure
	}
	log.Info("wabridge stopped")
	return exitOK
}

// serve runs the bridge until ctx is cancelled (immediate stop) or SIGTERM has drained it.
func serve(ctx context.Context, cfg *config.Config, reload func() (*config.Config, error), log *logrus.Logger) error {
	srv, err := bridge.NewServer(cfg, logrus.NewEntry(log))
	if err != nil {
		return fmt.Errorf("starting the bridge: %w", err)
	}

	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()

	// Catch SIGTERM/SIGHUP before announcing readiness, so an early signal is never fatal.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	var httpSrv *http.Server
	if cfg.HTTP.Listen != "" {
		if httpSrv, err = startHTTP(cfg.HTTP.Listen, cfg.Webhook.Path, srv, log); err != nil {
			stopServe()
			<-served
			return err
		}
		defer httpSrv.Close()
	}
	notify(log, daemon.SdNotifyReady)
	stopWatchdog := startWatchdog(serveCtx, srv, log)
	defer stopWatchdog()
	for {
		select {
		case err := <-served:
			return err
		case <-ctx.Done():
			log.Info("interrupted: stopping now")
			notify(log, daemon.SdNotifyStopping)
			stopServe()
			return <-served
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reloadConfig(srv, reload, log)
				continue
			}
			notify(log, daemon.SdNotifyStopping)
			drainCtx, cancel := context.WithTimeout(ctx, time.Duration(srv.ConfigDrainTimeout()))
			srv.Drain(drainCtx)
			cancel()
			stopServe()
			return <-served
		}
	}
}

// reloadConfig applies a new config file; a bad one is logged and the running config kept.
func reloadConfig(srv *bridge.Server, reload func() (*config.Config, error), log *logrus.Logger) {
	notify(log, daemon.SdNotifyReloading)
	defer notify(log, daemon.SdNotifyReady)
	next, err := reload()
	if err != nil {
		log.WithError(err).Error("reload refused: the config has errors; keeping the running config")
		return
	}
	if err := srv.Reload(next); err != nil {
		log.WithError(err).Error("reload refused; keeping the running config")
		return
	}
	if lvl, err := logrus.ParseLevel(next.Log.Level); err == nil && lvl != log.GetLevel() {
		log.SetLevel(lvl)
		log.WithField("level", lvl.String()).Info("log level changed")
	}
}

// notify tells systemd about state changes when run as a Type=notify service (a no-op elsewhere).
func notify(log *logrus.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.WithError(err).Warn("sd_notify failed")
	}
}

// startWatchdog pings systemd's watchdog at half its interval, but only while the bridge's
// own health check passes, so a wedged process gets restarted.
func startWatchdog(ctx context.Context, srv *bridge.Server, log *logrus.Logger) func() {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if srv.Alive() {
					notify(log, daemon.SdNotifyWatchdog)
				}
			}
		}
	}()
	return cancel
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

// setSIPLogging routes sipgo's slog output into logrus so there is one log stream, and with
// trace logs every SIP message on both legs (credentials redacted; phone numbers are in there,
// so it is off by default).
func setSIPLogging(log *logrus.Entry, trace bool) {
	sipmsg.SetDefaultLogger(wsip.NewSlogLogger(log.WithField("component", "sipgo")))
	if trace {
		sipmsg.SIPDebug = true // sipgo only calls the tracer with this set
		sipmsg.SIPDebugTracer(wsip.NewSIPTracer(log.WithField("component", "sip-trace")))
	}
}
