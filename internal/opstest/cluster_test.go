package opstest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/config/configtest"
	"github.com/wabridge/wabridge/internal/peertest"
	"github.com/wabridge/wabridge/wasim"
)

// The business number, WhatsApp user and SIP settings of every Kamailio test.
const (
	business    = "+15550002222"
	waUser      = "+15557654321"
	sipPassword = "opstest-sip-secret"
	sipHostname = "sip.business.test"
	opusPT      = 111
	ptime       = 20 * time.Millisecond
	// clusterAttempts bounds the retries when the port picked for Kamailio is taken before it
	// binds it (the instances must know that port first: it is their pbx.address).
	clusterAttempts = 5
	stopTimeout     = 15 * time.Second
)

// cluster is several wabridge instances behind one Kamailio, with one Meta-like edge (Meta is
// one service whichever instance calls it), all on loopback.
type cluster struct {
	t         *testing.T
	edge      *wasim.Edge
	roots     *x509.CertPool // trusts the instances' certificate
	instances []*instance
	kam       *kamailio
}

type clusterOptions struct {
	instances int
	onInvite  func(wasim.InviteInfo) wasim.Answer
	// before are dispatcher destinations listed ahead of the instances (stubs).
	before []netip.AddrPort
	// pbx is where the instances' user-initiated calls end up (through Kamailio); nothing
	// answers there by default.
	pbx netip.AddrPort
}

// instance is one in-process wabridge.
type instance struct {
	srv    *bridge.Server
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

func newCluster(t *testing.T, o clusterOptions) *cluster {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := configtest.WriteCert(t, dir, sipHostname, "127.0.0.1")
	pem, err := os.ReadFile(certFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))

	edgeLogs := &logBuffer{}
	edge, err := wasim.NewEdge(wasim.EdgeConfig{
		Numbers:  map[string]wasim.Number{business: {Password: sipPassword, Hostname: sipHostname}},
		OnInvite: o.onInvite,
		Log:      logrus.NewEntry(newLogger(edgeLogs)).WithField("test", t.Name()),
	})
	require.NoError(t, err)
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	require.NoError(t, edge.Listen(edgeCtx, "127.0.0.1:0"))
	t.Cleanup(func() {
		stopEdge()
		_ = edge.Close()
		if t.Failed() {
			t.Logf("WhatsApp emulator logs:\n%s", tailString(edgeLogs.String(), 40))
		}
	})
	caFile := filepath.Join(dir, "edge-ca.pem")
	require.NoError(t, os.WriteFile(caFile, edge.CAPEM(), 0o600))
	if !o.pbx.IsValid() {
		o.pbx = netip.MustParseAddrPort("127.0.0.1:9") // discard
	}

	c := &cluster{t: t, edge: edge, roots: roots}
	for attempt := 1; ; attempt++ {
		kamPort := peertest.FreeUDPPort(t)
		c.instances = nil
		for i := range o.instances {
			c.instances = append(c.instances, startInstance(t, fmt.Sprintf("%s/instance-%d", t.Name(), i),
				instanceConfig(certFile, keyFile, caFile, fmt.Sprintf("127.0.0.1:%d", kamPort), edge.Addr())))
		}
		dests := append([]netip.AddrPort(nil), o.before...)
		for _, in := range c.instances {
			dests = append(dests, in.srv.Addrs().PBXUDP)
		}
		kam, err := startKamailio(t, kamailioOptions{port: kamPort, instances: dests, pbx: o.pbx})
		if err == nil {
			c.kam = kam
			return c
		}
		require.ErrorIs(t, err, errKamailioBind)
		require.Less(t, attempt, clusterAttempts, "kamailio could not bind a free port %d times", attempt)
		t.Logf("port %d was taken before kamailio bound it (attempt %d); retrying", kamPort, attempt)
		for _, in := range c.instances {
			in.stop(t)
		}
	}
}

// instanceConfig is one instance's YAML: PBX side on UDP (the dispatcher's transport), the
// WhatsApp side toward the edge, pbx.address at Kamailio.
func instanceConfig(certFile, keyFile, caFile, pbxAddr string, edge netip.AddrPort) string {
	return fmt.Sprintf(`
log: {level: debug}
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
    phone_number_id: "1000002"
    sip:
      hostname: %s
      password: %q
      srtp: sdes
      edge: {host: wa.meta.vc, address: %q}
`, certFile, keyFile, caFile, pbxAddr, business, sipHostname, sipPassword, edge)
}

func startInstance(t *testing.T, name, yaml string) *instance {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	require.NoError(t, err)
	logs := &logBuffer{}
	srv, err := bridge.NewServer(cfg, logrus.NewEntry(newLogger(logs)).WithField("instance", name))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{srv: srv, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		in.stop(t)
		require.NotContains(t, logs.String(), sipPassword, "%s: the SIP password leaked into the logs", name)
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, tailString(logs.String(), 40))
		}
	})
	return in
}

// stop ends the instance; safe to call twice.
func (in *instance) stop(t testing.TB) {
	in.cancel()
	select {
	case err, ok := <-in.done:
		if ok {
			require.NoError(t, err)
			close(in.done)
		}
	case <-time.After(stopTimeout):
		t.Errorf("wabridge did not stop within %s", stopTimeout)
	}
}

// waitIdle waits until no instance has a call left.
func (c *cluster) waitIdle() {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for _, in := range c.instances {
			if in.srv.ActiveCalls() != 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "calls still active")
}

// instanceAddrs are the instances' PBX-side addresses as Kamailio names them (host:port).
func (c *cluster) instanceAddrs() []string {
	var out []string
	for _, in := range c.instances {
		out = append(out, in.srv.Addrs().PBXUDP.String())
	}
	return out
}

func newLogger(w *logBuffer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(w)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	return log
}

// logBuffer collects one component's logs; written from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// refusingInstance stands in for a wabridge instance that refuses calls before dialing
// WhatsApp (draining, or at its call limit): 503 with Retry-After to INVITE, 200 to OPTIONS.
type refusingInstance struct {
	addr             netip.AddrPort
	invites, options atomic.Int32
}

func startRefusingInstance(t testing.TB) *refusingInstance {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("opstest-refusing-instance"))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	r := &refusingInstance{}
	srv.OnInvite(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		r.invites.Add(1)
		res := sipmsg.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sipmsg.NewHeader("Retry-After", "5"))
		_ = tx.Respond(res)
	})
	srv.OnOptions(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		r.options.Add(1)
		_ = tx.Respond(sipmsg.NewResponseFromRequest(req, 200, "OK", nil))
	})
	srv.OnAck(func(*sipmsg.Request, sipmsg.ServerTransaction) {})
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	r.addr = netip.MustParseAddrPort(conn.LocalAddr().String())
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.ServeUDP(conn); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("refusing instance: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = ua.Close()
		_ = conn.Close()
		<-served
	})
	return r
}

// startHungInstance binds a UDP port that never answers: an instance whose process is wedged.
func startHungInstance(t testing.TB) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return netip.MustParseAddrPort(conn.LocalAddr().String())
}
