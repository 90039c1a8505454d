package peertest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BaresipOptions configures one baresip (1.0) user agent on 127.0.0.1 (or BindIP).
type BaresipOptions struct {
	// BindIP is the address baresip uses for everything: sip_listen, net_interface (RTP and the
	// SDP's c=) and ctrl_tcp_listen. Zero: 127.0.0.1. Another address must be an IPv4 address
	// (baresip runs with -4) of this network namespace's own. baresip's ICE (medianat=ice) ignores loopback and link-local addresses, so
	// ICE needs one: a test address on a dummy interface in a network namespace the test made.
	BindIP   netip.Addr
	SIPPort  int  // sip_listen port for UDP and TCP (TLS is on SIPPort+1); 0 picks a free one
	CtrlPort int  // ctrl_tcp port; 0 picks a free one
	TLS      bool // listen for SIP over TLS too (needs CertPEM and KeyPEM)
	// CertPEM and KeyPEM are baresip's TLS identity (sip_certificate, one PEM file holding
	// both); CAPEM is what it trusts when it connects (sip_cafile), by default CertPEM, which
	// suits a SelfSignedCert shared by both ends.
	CertPEM, KeyPEM, CAPEM []byte
	// Account is the one line of baresip's accounts file, e.g.
	//   <sip:+15550001111@127.0.0.1;transport=tls>;regint=0;mediaenc=srtp-mand;
	//   audio_codecs=opus/48000/2;answermode=auto
	// (regint=0: no REGISTER). Default: <sip:peertest@BindIP>;regint=0;answermode=auto.
	Account string
	// AudioSource is what baresip sends: "ausine,FREQ" (a sine; ausine only runs at 48 kHz
	// stereo, which is why ausrc is fixed at that) or "aufile,/path.wav" (48 kHz stereo 16-bit,
	// see WriteToneWAV; the call is hung up when the file ends). Default "ausine,440".
	AudioSource string
	// RecordDir receives baresip's recordings (sndfile module): dump-TIME-dec.wav is what it
	// received and dump-TIME-enc.wav what it sent. Default: a directory in t.TempDir().
	RecordDir string
	// Timeout makes baresip quit by itself (-t) should the test binary die before its cleanup
	// kills it. Default 60 s.
	Timeout time.Duration
	// RTCPMux offers and accepts RTP/RTCP multiplexing (rtcp_mux yes, RFC 5761), which
	// WebRTC-style peers require (dtls_srtp with ICE). Default off. baresip reads the first of
	// repeated config lines, so ExtraConfig cannot turn it on.
	RTCPMux     bool
	ExtraConfig []string // more config lines, e.g. "module ice.so"
}

// Baresip is a running baresip, remote-controlled through its ctrl_tcp module.
type Baresip struct {
	*process
	ctrl *baresipCtrl

	Options  BaresipOptions // as started, with defaults and picked ports
	SIPAddr  netip.AddrPort // UDP and TCP
	TLSAddr  netip.AddrPort // SIP over TLS (SIPPort+1); zero without TLS
	CtrlAddr netip.AddrPort
}

const baresipStartAttempts = 3

// StartBaresip writes a config directory (config, accounts, TLS files) in t.TempDir() and starts
// `baresip -f DIR` headless (stdin from /dev/null, no audio devices: aubridge,nil plays into
// nothing), then connects to its ctrl_tcp port. The process is stopped at the end of the test;
// on failure its log is added to the test output. baresip is skipped when missing, except in CI.
func StartBaresip(t testing.TB, opts BaresipOptions) *Baresip {
	t.Helper()
	bin := RequireTool(t, "baresip", "baresip-core")
	if opts.TLS && (len(opts.CertPEM) == 0 || len(opts.KeyPEM) == 0) {
		t.Fatal("peertest: BaresipOptions.TLS needs CertPEM and KeyPEM (see SelfSignedCert)")
	}
	opts.BindIP = bindIPOr(opts.BindIP)
	if opts.Account == "" {
		opts.Account = "<sip:peertest@" + opts.BindIP.String() + ">;regint=0;answermode=auto"
	}
	if opts.AudioSource == "" {
		opts.AudioSource = "ausine,440"
	}
	if opts.RecordDir == "" {
		opts.RecordDir = filepath.Join(t.TempDir(), "rec")
	}
	if err := os.MkdirAll(opts.RecordDir, 0o755); err != nil {
		t.Fatalf("peertest: %v", err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}

	pickSIP, pickCtrl := opts.SIPPort == 0, opts.CtrlPort == 0
	for attempt := 1; ; attempt++ {
		o := opts
		if pickSIP {
			o.SIPPort = freeSIPPort(t, o.BindIP, o.TLS)
		}
		if pickCtrl {
			o.CtrlPort = freeTCPPortOn(t, o.BindIP)
		}
		b, err := startBaresip(t, bin, o)
		if err != nil {
			t.Fatalf("peertest: %v", err)
		}
		t.Cleanup(func() {
			b.Stop()
			if t.Failed() {
				t.Logf("peertest: %s", b.Logs())
			}
		})
		err = b.connect()
		if err == nil {
			return b
		}
		if attempt == baresipStartAttempts || !(pickSIP || pickCtrl) || !b.exited() {
			t.Fatalf("peertest: baresip did not come up: %v\n%s", err, b.Logs())
		}
		t.Logf("peertest: baresip exited at start-up (attempt %d), retrying with new ports: %s", attempt, b.status())
	}
}

// freeSIPPort picks a port free for SIP over UDP and TCP, and for TLS on the next port.
func freeSIPPort(t testing.TB, ip netip.Addr, tls bool) int {
	t.Helper()
	for range portAttempts {
		p := freeTCPPortOn(t, ip)
		if p >= 65535 {
			continue
		}
		var closers []func() error
		ok := func() bool {
			u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
			if err != nil {
				return false
			}
			closers = append(closers, u.Close)
			tcpPorts := []int{p}
			if tls {
				tcpPorts = append(tcpPorts, p+1)
			}
			for _, port := range tcpPorts {
				l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
				if err != nil {
					return false
				}
				closers = append(closers, l.Close)
			}
			return true
		}()
		for _, c := range closers {
			c()
		}
		if ok {
			return p
		}
	}
	t.Fatal("peertest: no free SIP port for baresip")
	return 0
}

func startBaresip(t testing.TB, bin string, o BaresipOptions) (*Baresip, error) {
	dir := newLogDir(t, "baresip-*")
	rtpBase := freeUDPPortRangeOn(t, o.BindIP, 20)
	ip := o.BindIP.String()
	rtcpMux := "no"
	if o.RTCPMux {
		rtcpMux = "yes"
	}
	cfg := []string{
		"# written by wabridge's internal/peertest for one test",
		"poll_method epoll",
		"sip_listen " + netip.AddrPortFrom(o.BindIP, uint16(o.SIPPort)).String(),
		"net_interface " + ip, // `-n lo` fails in 1.0: it wants an address
		"call_local_timeout 60",
		"call_max_calls 4",
		// No sound card: play into aubridge's "nil" device; send ausine or aufile.
		"audio_player aubridge,nil",
		"audio_alert aubridge,nil",
		"audio_source " + o.AudioSource,
		"ausrc_srate 48000", // ausine only supports 48 kHz stereo
		"ausrc_channels 2",
		"auplay_srate 48000",
		"auplay_channels 2",
		"audio_buffer 20-160",
		fmt.Sprintf("rtp_ports %d-%d", rtpBase, rtpBase+19),
		"rtcp_mux " + rtcpMux,
		"jitter_buffer_delay 5-10",
		"rtp_stats yes",
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module opus.so",
		"module aubridge.so",
		"module ausine.so",
		"module aufile.so",
		"module sndfile.so", // records what is sent and received to snd_path
		"module srtp.so",
		"module dtls_srtp.so",
		"module_tmp uuid.so",
		"module_tmp account.so",
		"module_app menu.so", // the dial/hangup/accept commands ctrl_tcp runs
		"module_app ctrl_tcp.so",
		"ctrl_tcp_listen " + netip.AddrPortFrom(o.BindIP, uint16(o.CtrlPort)).String(),
		"snd_path " + o.RecordDir,
	}
	if o.TLS {
		bundle := append(append(append([]byte{}, o.CertPEM...), '\n'), o.KeyPEM...)
		ca := o.CAPEM
		if len(ca) == 0 {
			ca = o.CertPEM
		}
		if err := os.WriteFile(filepath.Join(dir, "sip.pem"), bundle, 0o600); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o644); err != nil {
			return nil, err
		}
		cfg = append(cfg,
			"sip_certificate "+filepath.Join(dir, "sip.pem"),
			"sip_cafile "+filepath.Join(dir, "ca.pem"))
	}
	cfg = append(cfg, o.ExtraConfig...)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(strings.Join(cfg, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(o.Account+"\n"), 0o644); err != nil {
		return nil, err
	}
	// Empty contacts so baresip does not create a default one with example entries.
	if err := os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o644); err != nil {
		return nil, err
	}
	args := []string{"-f", dir, "-4", "-v", "-s", "-t", strconv.Itoa(int(o.Timeout.Seconds() + 0.5))}
	proc, err := startProcess("baresip", bin, dir, args)
	if err != nil {
		return nil, err
	}
	b := &Baresip{
		process:  proc,
		Options:  o,
		SIPAddr:  netip.AddrPortFrom(o.BindIP, uint16(o.SIPPort)),
		CtrlAddr: netip.AddrPortFrom(o.BindIP, uint16(o.CtrlPort)),
	}
	if o.TLS {
		b.TLSAddr = netip.AddrPortFrom(o.BindIP, uint16(o.SIPPort+1))
	}
	return b, nil
}

// baresipReadyTimeout bounds baresip's start-up (loading modules, binding sockets).
const baresipReadyTimeout = 10 * time.Second

// connect waits for ctrl_tcp to accept a connection: the last module baresip loads, so SIP is
// listening by then.
func (b *Baresip) connect() error {
	deadline := time.Now().Add(baresipReadyTimeout)
	for {
		if b.exited() {
			return fmt.Errorf("baresip exited (%s)", b.status())
		}
		if ownsPort(b.Pid(), "tcp", b.Options.CtrlPort) {
			c, err := dialBaresipCtrl(b.CtrlAddr.String())
			if err == nil {
				b.ctrl = c
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ctrl_tcp on %s not up after %s", b.CtrlAddr, baresipReadyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command runs a ctrl_tcp command (any menu command: "dial", "hangup", "accept", "quit", …)
// and returns its response data.
func (b *Baresip) Command(ctx context.Context, cmd, params string) (string, error) {
	return b.ctrl.command(ctx, cmd, params)
}

// ctrlTimeout bounds one command; baresip answers at once.
const ctrlTimeout = 5 * time.Second

// Dial calls uri, e.g. "sip:bob@127.0.0.1:5063;transport=tls".
func (b *Baresip) Dial(uri string) error {
	ctx, cancel := context.WithTimeout(context.Background(), ctrlTimeout)
	defer cancel()
	_, err := b.Command(ctx, "dial", uri)
	return err
}

// Hangup ends the current call.
func (b *Baresip) Hangup() error {
	ctx, cancel := context.WithTimeout(context.Background(), ctrlTimeout)
	defer cancel()
	_, err := b.Command(ctx, "hangup", "")
	return err
}

// Events delivers baresip's events in order, without loss; it is closed when the control
// connection ends. WaitEvent reads from the same channel.
func (b *Baresip) Events() <-chan BaresipEvent { return b.ctrl.events }

// History returns every event received so far, whether or not it was read from Events.
func (b *Baresip) History() []BaresipEvent { return b.ctrl.historyCopy() }

// WaitEvent reads Events until one of the given types arrives and returns it; the events
// before it are consumed.
func (b *Baresip) WaitEvent(ctx context.Context, types ...string) (BaresipEvent, error) {
	for {
		select {
		case ev, ok := <-b.ctrl.events:
			if !ok {
				return BaresipEvent{}, fmt.Errorf("baresip control connection closed while waiting for %v (%s)", types, b.status())
			}
			if slices.Contains(types, ev.Type) {
				return ev, nil
			}
		case <-ctx.Done():
			return BaresipEvent{}, fmt.Errorf("waiting for baresip event %v: %w", types, ctx.Err())
		}
	}
}

// Recordings returns the paths of the recordings of received audio (dump-*-dec.wav), oldest
// first. They are complete once the call is closed (CALL_CLOSED) or baresip stopped.
func (b *Baresip) Recordings() []string {
	files, _ := filepath.Glob(filepath.Join(b.Options.RecordDir, "dump-*-dec.wav"))
	slices.Sort(files) // the name holds the start time
	return files
}

// Stop ends baresip: SIGTERM first so it hangs up and finishes its recordings, SIGKILL after
// 3 s. Safe to call more than once.
func (b *Baresip) Stop() {
	if b.ctrl != nil {
		b.ctrl.close()
	}
	b.terminate(3 * time.Second)
}

// Dir is baresip's config directory, which also holds stdout.log and stderr.log.
func (b *Baresip) Dir() string { return b.dir }

// Logs returns the command line, how baresip ended, the events it reported and the tail of
// its log (verbose, with the SIP trace).
func (b *Baresip) Logs() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s\n(%s; config and logs in %s)\n", b.commandLine(), b.status(), b.dir)
	if b.ctrl != nil {
		s.WriteString("--- events ---\n")
		for _, ev := range b.History() {
			s.WriteString(ev.Raw + "\n")
		}
	}
	for _, f := range []string{"stderr.log", "stdout.log"} {
		if tail := strings.TrimSpace(b.logTail(f, 12<<10)); tail != "" {
			fmt.Fprintf(&s, "--- %s ---\n%s\n", f, tail)
		}
	}
	return s.String()
}
