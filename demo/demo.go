// Package demo runs wabridge end to end on loopback with nothing real around it: the WhatsApp
// side is the wasim emulator (Meta's SIP/TLS edge and a WhatsApp user's SRTP media), the PBX is
// pbxsim (an answering, echoing SIP UA). It places a user-initiated and a business-initiated call
// through the bridge, plays a known signal and DTMF, and reports what came out. `wabridge demo`
// prints that report; the same code is the basis of `wabridge selftest`.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/pbxsim"
	wsip "github.com/wabridge/wabridge/sip"
	"github.com/wabridge/wabridge/wasim"
)

// The demo's fixed identities. The hostname never resolves: the emulator connects to wabridge's
// loopback address and verifies the certificate against this name, as Meta would.
const (
	Business    = "+15550001111"
	User        = "+15557654321"
	SIPHostname = "sip.demo.wabridge.test"
	opusPT      = 111 // Meta's Opus payload type
	metaDTMFPT  = 126 // Meta's telephone-event payload type
	pbxDTMFPT   = 101
	ptime       = 20 * time.Millisecond
)

// Options tune a demo run.
type Options struct {
	// DTLS uses Meta's default media profile (ICE + DTLS-SRTP, WebRTC) instead of SDES-SRTP.
	DTLS bool
	// API runs the number in API mode (provider HTTP call actions and webhooks, always WebRTC
	// media) against Provider's emulator instead of Meta's SIP edge.
	API      bool
	Provider string        // meta (default), positus, vectalk, conceptomovil, 360dialog
	Frames   int           // audio frames sent each way per call (default 150: 3 s)
	Digits   string        // DTMF digits sent each way (default "159#")
	Timeout  time.Duration // the whole run (default 60 s)
	Log      *logrus.Entry // wabridge's and the simulators' logs; discarded when nil
	LogLevel logrus.Level
}

func (o *Options) defaults() {
	if o.Frames <= 0 {
		o.Frames = 150
	}
	if o.Digits == "" {
		o.Digits = "159#"
	}
	if o.Provider == "" {
		o.Provider = "meta"
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		o.Log = logrus.NewEntry(l)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Run starts wabridge with an embedded config between the two simulators, places both calls and
// returns the report. The error is for failures to start anything at all; a call that fails is
// described in the report (Report.OK false).
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "wabridge-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	password, err := randomSecret()
	if err != nil {
		return nil, err
	}

	pbx, err := pbxsim.New(pbxsim.Config{ListenUDP: "127.0.0.1:0", Log: o.Log.WithField("component", "pbx-sim"),
		Answer: func(pbxsim.Incoming) pbxsim.Answer {
			return pbxsim.Answer{Code: 200, RingFor: 300 * time.Millisecond, Echo: true}
		}})
	if err != nil {
		return nil, fmt.Errorf("demo: PBX simulator: %w", err)
	}
	if err := pbx.Start(ctx); err != nil {
		return nil, fmt.Errorf("demo: PBX simulator: %w", err)
	}
	defer pbx.Close()
	if o.API {
		return runAPI(ctx, o, pbx)
	}

	srtp, edgeSRTP, mode := "sdes", wasim.SRTPSDES, "sip+sdes"
	if o.DTLS {
		srtp, edgeSRTP, mode = "dtls", wasim.SRTPDTLS, "sip+dtls"
	}
	edge, err := wasim.NewEdge(wasim.EdgeConfig{
		Numbers: map[string]wasim.Number{Business: {Password: password, Hostname: SIPHostname, SRTP: edgeSRTP}},
		Log:     o.Log.WithField("component", "whatsapp-sim"),
	})
	if err != nil {
		return nil, fmt.Errorf("demo: WhatsApp emulator: %w", err)
	}
	if err := edge.Listen(ctx, "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("demo: WhatsApp emulator: %w", err)
	}
	defer edge.Close()

	cfg, certPEM, err := demoConfig(dir, password, srtp, edge, pbx.Addr())
	if err != nil {
		return nil, err
	}
	srv, err := bridge.NewServer(cfg, o.Log.WithField("component", "wabridge"))
	if err != nil {
		return nil, fmt.Errorf("demo: wabridge: %w", err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx) }()
	defer func() {
		stopSrv()
		<-served
	}()

	r := &Report{Mode: mode, Provider: "meta"}
	r.Calls = append(r.Calls, userInitiated(ctx, o, edge, pbx, srv, certPEM))
	r.Calls = append(r.Calls, businessInitiated(ctx, o, edge, pbx, srv))
	r.OK = true
	for _, c := range r.Calls {
		r.OK = r.OK && c.OK
	}
	return r, nil
}

// demoConfig writes a certificate for the demo hostname and parses the embedded config.
func demoConfig(dir, password, srtp string, edge *wasim.Edge, pbx netip.AddrPort) (*config.Config, []byte, error) {
	certPEM, keyPEM, err := wsip.GenerateSelfSigned(SIPHostname, "127.0.0.1")
	if err != nil {
		return nil, nil, fmt.Errorf("demo: certificate: %w", err)
	}
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "edge-ca.pem")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, caFile: edge.CAPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, nil, fmt.Errorf("demo: %w", err)
		}
	}
	yaml := fmt.Sprintf(embeddedConfig, certFile, keyFile, caFile, pbx.String(), Business, SIPHostname, password, srtp, edge.Addr().String())
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, nil, fmt.Errorf("demo: embedded config: %w", err)
	}
	return cfg, certPEM, nil
}

// embeddedConfig is the demo's wabridge config: everything on loopback with OS-chosen ports.
const embeddedConfig = `
log: {level: info}
sip:
  hostname: 127.0.0.1
  pbx_listen: {udp: "127.0.0.1:0", tcp: ""}
  whatsapp_listen: {tls: "127.0.0.1:0", cert_file: %q, key_file: %q}
  whatsapp_ca_file: %q
media:
  bind_ip: 127.0.0.1
  public_ip: 127.0.0.1
  inactivity_timeout: 10s
pbx:
  address: %q
numbers:
  - number: %q
    phone_number_id: "100000000000001"
    sip:
      hostname: %s
      password: %q
      srtp: %s
      edge: {host: wa.meta.vc, address: %q}
`

func randomSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("demo: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
