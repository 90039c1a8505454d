package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/demo"
)

// cmdSelftest exercises the admin's own PBX through wabridge with a simulated WhatsApp side.
func (c *cli) cmdSelftest(ctx context.Context, fs *flag.FlagSet, args []string) int {
	path := fs.String("config", defaultConfigPath, "the wabridge config whose PBX trunk to test (`FILE`)")
	to := fs.String("to", "", "PBX `extension` the simulated WhatsApp user calls (an echo test gives the full report)")
	wait := fs.Duration("wait-inbound", 0, "also wait this long for the PBX to call a WhatsApp number through wabridge")
	pbxListen := fs.String("pbx-listen", "", "listen for the PBX here instead of sip.pbx_listen.udp (`host:port`)")
	srtp := fs.String("srtp", "sdes", "simulated WhatsApp media profile: sdes or dtls")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	verbose := fs.Bool("v", false, "show wabridge's and the simulator's logs on stderr")
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	if *to == "" && *wait <= 0 {
		fmt.Fprintln(c.stderr, "wabridge selftest: give --to EXTENSION, --wait-inbound DURATION, or both")
		return exitUsage
	}
	if *srtp != "sdes" && *srtp != "dtls" {
		fmt.Fprintf(c.stderr, "wabridge selftest: --srtp %q: use sdes or dtls\n", *srtp)
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		c.printConfigError(*path, err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logrus.New()
	log.SetOutput(discardWriter{})
	if *verbose {
		log.SetOutput(c.stderr)
		log.SetLevel(logrus.DebugLevel)
	}
	entry := logrus.NewEntry(log)
	if c.sipLogging != nil {
		c.sipLogging(entry, false)
	}

	rep, err := demo.SelfTest(ctx, cfg, demo.SelfTestOptions{To: *to, WaitInbound: *wait, PBXListen: *pbxListen,
		DTLS: *srtp == "dtls", Log: entry})
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge selftest: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		_ = rep.WriteText(c.stdout)
	}
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}
