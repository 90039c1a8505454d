package demo

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/config"
	wsip "github.com/wabridge/wabridge/sip"
	"github.com/wabridge/wabridge/wasim"
)

// SelfTestOptions aim the self-test at a real PBX.
type SelfTestOptions struct {
	// To is the PBX extension a simulated WhatsApp user calls (an echo-test extension gives the
	// full report: Asterisk's Echo(), FreeSWITCH's echo). Empty: skip that direction.
	To string
	// WaitInbound, when positive, also waits this long for the PBX to call a WhatsApp user
	// through the bridge (dial any WhatsApp number from a phone on the PBX); the simulated user
	// answers and echoes.
	WaitInbound time.Duration
	// PBXListen overrides sip.pbx_listen.udp (e.g. when the production daemon holds 5060).
	PBXListen string
	DTLS      bool
	Frames    int
	Digits    string
	Log       *logrus.Entry
}

// SelfTest runs the bridge on the real config's PBX trunk with the simulated WhatsApp side in
// place of Meta, places the calls asked for and explains what went wrong in PBX terms.
func SelfTest(ctx context.Context, real *config.Config, o SelfTestOptions) (*Report, error) {
	d := Options{Frames: o.Frames, Digits: o.Digits, Log: o.Log}
	d.defaults()
	var num *config.Number
	for i := range real.Numbers {
		if real.Numbers[i].Mode == config.ModeSIP {
			num = &real.Numbers[i]
			break
		}
	}
	if num == nil {
		return nil, errors.New("selftest: the config has no number in SIP mode")
	}

	dir, err := os.MkdirTemp("", "wabridge-selftest-")
	if err != nil {
		return nil, fmt.Errorf("selftest: %w", err)
	}
	defer os.RemoveAll(dir)
	password, err := randomSecret()
	if err != nil {
		return nil, err
	}
	edgeSRTP, srtp, mode := wasim.SRTPSDES, config.KeyExchangeSDES, "sip+sdes"
	if o.DTLS {
		edgeSRTP, srtp, mode = wasim.SRTPDTLS, config.KeyExchangeDTLS, "sip+dtls"
	}
	edge, err := wasim.NewEdge(wasim.EdgeConfig{
		Numbers: map[string]wasim.Number{num.Number: {Password: password, Hostname: SIPHostname, SRTP: edgeSRTP}},
		Log:     d.Log.WithField("component", "whatsapp-sim"),
	})
	if err != nil {
		return nil, fmt.Errorf("selftest: WhatsApp emulator: %w", err)
	}
	if err := edge.Listen(ctx, "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("selftest: WhatsApp emulator: %w", err)
	}
	defer edge.Close()

	certPEM, keyPEM, err := wsip.GenerateSelfSigned(SIPHostname, "127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("selftest: certificate: %w", err)
	}
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "edge-ca.pem")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, caFile: edge.CAPEM()} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("selftest: %w", err)
		}
	}

	// The real PBX trunk and media settings; the WhatsApp side swapped for the emulator.
	cfg := *real
	cfg.SIP.WhatsAppListen = config.WhatsAppListen{TLS: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile}
	cfg.SIP.WhatsAppCAFile = caFile
	if o.PBXListen != "" {
		cfg.SIP.PBXListen.UDP = o.PBXListen
	}
	sim := *num
	sim.SIP.Hostname, sim.SIP.PasswordInline, sim.SIP.PasswordFile, sim.SIP.PasswordEnv = SIPHostname, config.Secret(password), "", ""
	sim.SIP.SRTP, sim.SIP.Register = srtp, false
	sim.SIP.Edge = config.Edge{Host: config.DefaultEdgeHost, Address: edge.Addr().String()}
	if o.To != "" {
		sim.PBXRoute.Extension = o.To
	}
	cfg.Numbers = []config.Number{sim}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("selftest: %w", err)
	}
	srv, err := bridge.NewServer(&cfg, d.Log.WithField("component", "wabridge"))
	if err != nil {
		return nil, fmt.Errorf("selftest: wabridge: %w", err)
	}
	srvCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx) }()
	defer func() {
		stop()
		<-served
	}()

	r := &Report{Mode: mode, Provider: "meta", PBX: cfg.PBX.Address}
	if o.To != "" {
		r.Calls = append(r.Calls, selfTestToPBX(ctx, d, edge, srv, certPEM, num.Number))
	}
	if o.WaitInbound > 0 {
		r.Calls = append(r.Calls, selfTestFromPBX(ctx, d, edge, o.WaitInbound))
	}
	r.OK = len(r.Calls) > 0
	for _, c := range r.Calls {
		r.OK = r.OK && c.OK
	}
	return r, nil
}

// selfTestToPBX is a WhatsApp user calling the PBX extension through the bridge.
func selfTestToPBX(ctx context.Context, o Options, edge *wasim.Edge, srv *bridge.Server, certPEM []byte, business string) (c CallReport) {
	c.Name = "WhatsApp → PBX"
	defer c.finish()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	call, err := edge.Dial(dctx, wasim.DialOptions{Target: srv.Addrs().WhatsAppTLS, ServerName: SIPHostname,
		RootCAs: roots, Business: business, User: User})
	if err != nil {
		c.problem("%s", diagnoseSetup(err))
		c.ToPBX.FramesSent, c.ToWhatsApp.FramesSent = o.Frames, o.Frames
		return c
	}
	c.SetupMs = ms(time.Since(start))
	frames := signal(o.Frames, 1)
	if err := call.Media.Send(ctx, frames, opusPT, ptime); err != nil {
		c.problem("sending audio from WhatsApp: %v", err)
	}
	for _, dg := range o.Digits {
		_ = call.Media.SendDTMF(ctx, dg, metaDTMFPT, 100*time.Millisecond)
	}
	waitUntil(ctx, 3*time.Second, func() bool {
		return matched(frames, waPayloads(call.Media.Received())) == len(frames) && call.Media.ReceivedDTMF() == o.Digits
	})
	c.ToWhatsApp = mediaStream(call.Media, frames, o.Digits)
	// What reached the PBX is only visible through what it sent back.
	c.ToPBX = Stream{FramesSent: len(frames), FramesMatched: c.ToWhatsApp.FramesMatched}
	switch fromPBX := nonSilence(call); {
	case fromPBX == 0:
		c.problem("no RTP at all from the PBX: check that it answers with media (Asterisk: direct_media=no), that the RTP range is open between the PBX and %s, and NAT settings", srv.Addrs().PBXUDP.Addr())
	case c.ToWhatsApp.FramesMatched == 0:
		c.problem("one-way audio: the PBX sends audio but not our signal back — is %q an echo-test extension? If it is, the PBX does not receive our RTP (firewall/NAT toward wabridge's RTP ports)", "--to")
	}
	if c.ToWhatsApp.FramesMatched > 0 && !strings.Contains(c.ToWhatsApp.DTMFReceived, o.Digits) {
		c.problem("DTMF not received back: the PBX must accept RFC 4733 telephone-event (Asterisk dtmf_mode=rfc4733)")
	}
	_ = call.Hangup(ctx)
	c.EndedBy = "WhatsApp user hung up"
	return c
}

// selfTestFromPBX waits for the PBX to call a WhatsApp user through the bridge.
func selfTestFromPBX(ctx context.Context, o Options, edge *wasim.Edge, wait time.Duration) (c CallReport) {
	c.Name = "PBX → WhatsApp"
	defer c.finish()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	call, err := edge.NextCall(wctx)
	if err != nil {
		c.problem("no call from the PBX within %s: route a WhatsApp number (+E.164 or digits) to the wabridge trunk", wait)
		return c
	}
	<-call.Answered()
	call.Media.Echo(true)
	select {
	case <-call.Done():
	case <-wctx.Done():
		_ = call.Hangup(ctx)
	}
	pkts := call.Media.Received()
	c.ToWhatsApp = Stream{Packets: uint64(len(pkts))}
	c.ToPBX = c.ToWhatsApp
	if len(pkts) == 0 {
		c.problem("the PBX's call connected but no RTP reached WhatsApp")
	} else {
		// A person is talking: we cannot know the frames, only that audio flowed and was echoed.
		c.ToWhatsApp.FramesSent, c.ToWhatsApp.FramesMatched = 1, 1
		c.ToPBX.FramesSent, c.ToPBX.FramesMatched = 1, 1
	}
	c.EndedBy = call.EndedBy()
	return c
}

// diagnoseSetup explains a failed call setup in terms a PBX admin can act on.
func diagnoseSetup(err error) string {
	var ce *wasim.CallError
	if !errors.As(err, &ce) {
		return fmt.Sprintf("call setup failed: %v", err)
	}
	switch {
	case ce.Code == 488 && strings.Contains(ce.Warning, "no common codec"):
		return "the PBX answered without Opus (" + ce.Warning + "): allow opus on the trunk, or enable PCMA/PCMU at Meta (audio.additional_codecs) and in numbers[].sip.additional_codecs"
	case ce.Code == 488:
		return "488 Not Acceptable Here: " + ce.Warning
	case ce.Code == 404 || ce.Code == 484:
		return fmt.Sprintf("the PBX does not know the extension (%d %s): check numbers[].pbx_route.extension and the trunk's dialplan context", ce.Code, ce.Reason)
	case ce.Code == 403 || ce.Code == 401 || ce.Code == 407:
		return fmt.Sprintf("the PBX refused the trunk (%d %s): allow wabridge's address (identify/ACL) or set pbx.register", ce.Code, ce.Reason)
	case ce.Code == 408 || ce.Code == 503:
		return fmt.Sprintf("the PBX did not answer (%d %s %s): check pbx.address, transport and firewall", ce.Code, ce.Reason, ce.Warning)
	default:
		return fmt.Sprintf("the PBX rejected the call: %d %s %s", ce.Code, ce.Reason, ce.Warning)
	}
}

// nonSilence counts received packets that did not come from wabridge's own silence fill, i.e.
// that the PBX sent (one snapshot, so the count cannot race the fill).
func nonSilence(call *wasim.Call) int {
	n := 0
	for _, p := range call.Media.Received() {
		if !(len(p.Payload) == 3 && p.Payload[0] == 0xf8) {
			n++
		}
	}
	return n
}
