package bridge_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
	"github.com/wabridge/wabridge/wasim"
)

// The numbers and names every end-to-end test uses. The hostname is what the business number is
// configured with at "Meta" (the emulator): our certificate must carry it and our From must use it.
const (
	business    = "+15550001111"
	waUser      = "+15557654321"
	sipPassword = "s3cret-sip-pw"
	sipHostname = "sip.business.test"
	opusPT      = 111
	metaDTMFPT  = 126
	ptime       = 20 * time.Millisecond
)

// harness is one wabridge with a Meta-like edge in front of it, both on loopback.
type harness struct {
	t      testing.TB
	edge   *wasim.Edge
	srv    *bridge.Server
	cfg    *config.Config
	roots  *x509.CertPool // trusts wabridge's certificate, for the edge's TLS client
	cert   []byte         // wabridge's certificate (PEM), for peers that take a CA file
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

type harnessOptions struct {
	pbxAddr          string // the PBX trunk wabridge sends user-initiated calls to
	onInvite         func(wasim.InviteInfo) wasim.Answer
	additionalCodecs []string
	inactivity       time.Duration
	digest           string
	pbxExtra         string // more YAML lines under pbx:, indented by two spaces
	numberExtra      string // more YAML lines under the number, indented by four spaces
	passwordFromAPI  bool   // sip.password_from_api instead of an inline password
	maxCalls         int
	pbxTLS           bool // also listen for the PBX on TLS (bindIP:0)
	dtls             bool // the number uses ICE + DTLS-SRTP (Meta's default) instead of SDES
	iceTimeout       time.Duration
	// bindIP is the address wabridge listens on and binds media to, and what it advertises;
	// default 127.0.0.1. The Meta-like edge stays on 127.0.0.1.
	bindIP string
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	dir := t.TempDir()
	ip := o.bindIP
	if ip == "" {
		ip = "127.0.0.1"
	}
	certFile, keyFile := configtest.WriteCert(t, dir, sipHostname, ip)
	pem, err := os.ReadFile(certFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))

	log := logrus.New()
	logs := &logBuffer{}
	log.SetOutput(logs)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})

	edgeSRTP, srtp := wasim.SRTPSDES, "sdes"
	if o.dtls {
		edgeSRTP, srtp = wasim.SRTPDTLS, "dtls"
	}
	iceTimeout := o.iceTimeout
	if iceTimeout == 0 {
		iceTimeout = 10 * time.Second
	}
	edge, err := wasim.NewEdge(wasim.EdgeConfig{
		Numbers:         map[string]wasim.Number{business: {Password: sipPassword, Hostname: sipHostname, SRTP: edgeSRTP}},
		OnInvite:        o.onInvite,
		DigestAlgorithm: o.digest,
		Log:             logrus.NewEntry(log),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, edge.Listen(ctx, "127.0.0.1:0"))
	caFile := filepath.Join(dir, "edge-ca.pem")
	require.NoError(t, os.WriteFile(caFile, edge.CAPEM(), 0o600))

	if o.pbxAddr == "" {
		o.pbxAddr = "127.0.0.1:9" // discard: tests that never call the PBX
	}
	inactivity := o.inactivity
	if inactivity == 0 {
		inactivity = 10 * time.Second
	}
	anyPort := net.JoinHostPort(ip, "0")
	pbxTLS := ""
	if o.pbxTLS {
		pbxTLS = anyPort
	}
	yaml := fmt.Sprintf(`
log: {level: debug}
sip:
  hostname: %s
  pbx_listen: {udp: %q, tcp: "", tls: %q}
  whatsapp_listen: {tls: %q, cert_file: %q, key_file: %q}
  whatsapp_ca_file: %q
media:
  bind_ip: %s
  public_ip: %s
  inactivity_timeout: %s
  ice_timeout: %s
pbx:
  address: %q
%s
limits: {max_calls: %d}
numbers:
  - number: %q
    phone_number_id: "1000001"
    sip:
      hostname: %s
      password: %q
      srtp: %s
      edge: {host: wa.meta.vc, address: %q}
      additional_codecs: [%s]
%s`, ip, anyPort, pbxTLS, anyPort, certFile, keyFile, caFile, ip, ip, inactivity, iceTimeout, o.pbxAddr, o.pbxExtra, o.maxCalls, business, sipHostname, sipPassword, srtp, edge.Addr().String(),
		strings.Join(o.additionalCodecs, ","), o.numberExtra)
	if o.passwordFromAPI {
		yaml = strings.Replace(yaml, fmt.Sprintf("      password: %q\n", sipPassword), "      password_from_api: true\n", 1)
	}
	cfg, err := config.Parse([]byte(yaml))
	require.NoError(t, err)

	srv, err := bridge.NewServer(cfg, logrus.NewEntry(log).WithField("test", t.Name()))
	require.NoError(t, err)
	h := &harness{t: t, edge: edge, srv: srv, cfg: cfg, roots: roots, cert: pem, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- srv.Serve(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		require.NoError(h.t, err)
	case <-time.After(15 * time.Second):
		h.t.Error("wabridge did not stop within 15 s")
	}
	_ = h.edge.Close()
	// Secrets never reach the logs, whatever happened in the test.
	require.NotContains(h.t, h.logs.String(), sipPassword, "SIP password leaked into the logs")
	if h.t.Failed() {
		h.t.Logf("wabridge logs:\n%s", tail(h.logs.String(), 60))
	}
}

// dial places a user-initiated call from the edge to wabridge.
func (h *harness) dial(ctx context.Context, o wasim.DialOptions) (*wasim.Call, error) {
	o.Target = h.srv.Addrs().WhatsAppTLS
	o.ServerName = sipHostname
	o.RootCAs = h.roots
	if o.Business == "" {
		o.Business = business
	}
	if o.User == "" {
		o.User = waUser
	}
	return h.edge.Dial(ctx, o)
}

// waitIdle waits until wabridge has no call left: every leg ended and every port released.
func (h *harness) waitIdle() {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.srv.ActiveCalls() == 0 }, 10*time.Second, 20*time.Millisecond,
		"calls still active")
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
