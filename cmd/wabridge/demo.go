package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/demo"
)

// cmdDemo runs wabridge on an embedded config between the WhatsApp emulator and a simulated PBX
// and prints what came out. Exit 0 only when audio flowed both ways on every call.
func (c *cli) cmdDemo(ctx context.Context, fs *flag.FlagSet, args []string) int {
	asJSON := fs.Bool("json", false, "print the report as JSON")
	verbose := fs.Bool("v", false, "show wabridge's and the simulators' logs on stderr")
	frames := fs.Int("frames", 150, "audio frames (20 ms each) sent each way per call")
	digits := fs.String("dtmf", "159#", "DTMF digits sent each way per call")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	srtp := fs.String("srtp", "sdes", "WhatsApp media profile in SIP mode: sdes (SDES-SRTP) or dtls (ICE + DTLS-SRTP, Meta's default)")
	mode := fs.String("mode", "sip", "WhatsApp signalling: sip (Meta's SIP edge) or api (a provider's HTTP API and webhooks)")
	provider := fs.String("provider", "meta", "API mode: meta, positus, vectalk, conceptomovil or 360dialog")
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *srtp != "sdes" && *srtp != "dtls" {
		fmt.Fprintf(c.stderr, "wabridge demo: --srtp %q: use sdes or dtls\n", *srtp)
		return exitUsage
	}
	if *mode != "sip" && *mode != "api" {
		fmt.Fprintf(c.stderr, "wabridge demo: --mode %q: use sip or api\n", *mode)
		return exitUsage
	}
	opts := demo.Options{Frames: *frames, Digits: *digits, Timeout: *timeout, DTLS: *srtp == "dtls",
		API: *mode == "api", Provider: *provider}
	log := logrus.New()
	log.SetOutput(discardWriter{})
	if *verbose {
		log.SetOutput(c.stderr)
		log.SetLevel(logrus.DebugLevel)
	}
	opts.Log = logrus.NewEntry(log)
	// sipgo logs through slog; keep it in the same stream (and silent unless -v).
	if c.sipLogging != nil {
		c.sipLogging(opts.Log, false)
	}

	if !*asJSON {
		side := "Meta's SIP/TLS edge, " + map[bool]string{false: "SDES-SRTP", true: "ICE + DTLS-SRTP"}[opts.DTLS]
		if opts.API {
			side = opts.Provider + "'s call API and webhooks, ICE + DTLS-SRTP"
		}
		fmt.Fprintf(c.stdout, "Starting wabridge, a WhatsApp emulator (%s) and a simulated PBX on loopback...\n", side)
	}
	rep, err := demo.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge demo: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(c.stderr, "wabridge demo: %v\n", err)
			return exitFailure
		}
	} else if err := rep.WriteText(c.stdout); err != nil {
		return exitFailure
	}
	if !rep.OK {
		return exitFailure
	}
	return exitOK
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
