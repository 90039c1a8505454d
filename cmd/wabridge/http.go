package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bridge"
)

// startHTTP serves /healthz (the process is alive), /readyz (send it calls: 200, 429 at the call
// limit, 503 draining or a required registration down) and /metrics.
func startHTTP(addr, webhookPath string, srv *bridge.Server, log *logrus.Logger) (*http.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !srv.Alive() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		code, reason := srv.Readiness()
		w.WriteHeader(code)
		fmt.Fprintln(w, reason)
	})
	mux.Handle("GET /metrics", srv.Metrics().Handler())
	if h := srv.WebhookHandler(); h != nil {
		// API mode: providers POST call webhooks here (Meta also GETs it to verify the URL).
		base := strings.TrimSuffix(webhookPath, "/")
		mux.Handle(base, h)
		mux.Handle(base+"/", h)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && err != http.ErrServerClosed {
			log.WithError(err).Error("health/metrics listener stopped")
		}
	}()
	log.WithField("addr", l.Addr().String()).Info("health and metrics listening")
	return hs, nil
}

// cmdHealthcheck is for container HEALTHCHECKs on images without curl: exit 0 when the URL
// answers 200.
func (c *cli) cmdHealthcheck(ctx context.Context, fs *flag.FlagSet, args []string) int {
	url := fs.String("url", "http://127.0.0.1:8080/healthz", "health `URL` to query")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if code, done := c.parseFlags(fs, args); done {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge healthcheck: %v\n", err)
		return exitUsage
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge healthcheck: %v\n", err)
		return exitFailure
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(c.stderr, "wabridge healthcheck: %s answered %s\n", *url, res.Status)
		return exitFailure
	}
	return exitOK
}
