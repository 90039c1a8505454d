package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/pbxsim"
	"github.com/wabridge/wabridge/wasim"
)

// apiConfig is the demo's config for API mode: one number at the provider emulator.
const apiConfig = `
log: {level: info}
sip:
  hostname: 127.0.0.1
  pbx_listen: {udp: "127.0.0.1:0", tcp: ""}
  whatsapp_listen: {tls: ""}
media: {bind_ip: 127.0.0.1, inactivity_timeout: 10s}
pbx: {address: %q}
http: {listen: "127.0.0.1:0"}
webhook: {app_secret: %q, verify_token: %q}
numbers:
  - number: %q
    phone_number_id: "100000000000001"
    mode: api
    api: {provider: %s, base_url: %q, token: %q, waba_id: "200000000000002"}
`

// runAPI is the demo in API mode: the provider's emulator (HTTP call actions and signed
// webhooks) and a WebRTC user peer configured like Meta on the WhatsApp side.
func runAPI(ctx context.Context, o Options, pbx *pbxsim.PBX) (*Report, error) {
	token, err := randomSecret()
	if err != nil {
		return nil, err
	}
	secret, err := randomSecret()
	if err != nil {
		return nil, err
	}
	digits := strings.TrimPrefix(Business, "+")
	sim, err := bspsim.New(bspsim.Config{Provider: o.Provider, Token: token, AppSecret: secret,
		PhoneNumberID: "100000000000001", DisplayNumber: digits, WABAID: "200000000000002",
		Log: o.Log.WithField("component", "bsp-sim")})
	if err != nil {
		return nil, fmt.Errorf("demo: %s emulator: %w", o.Provider, err)
	}
	defer sim.Close()
	cfg, err := config.Parse([]byte(fmt.Sprintf(apiConfig, pbx.Addr().String(), secret, secret, Business, o.Provider, sim.URL(), token)))
	if err != nil {
		return nil, fmt.Errorf("demo: embedded config: %w", err)
	}
	srv, err := bridge.NewServer(cfg, o.Log.WithField("component", "wabridge"))
	if err != nil {
		return nil, fmt.Errorf("demo: wabridge: %w", err)
	}
	srvCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(srvCtx) }()
	defer func() {
		stop()
		<-served
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: webhook listener: %w", err)
	}
	hs := &http.Server{Handler: srv.WebhookHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(l) }()
	defer hs.Close()
	// Positus does not sign its webhooks: the verify token rides in the URL instead.
	sim.SetWebhookURL("http://" + l.Addr().String() + "/webhook/" + o.Provider + "?token=" + secret)

	r := &Report{Mode: "api+dtls", Provider: o.Provider}
	r.Calls = append(r.Calls, apiUserInitiated(ctx, o, sim, pbx))
	r.Calls = append(r.Calls, apiBusinessInitiated(ctx, o, sim, pbx, srv))
	r.OK = true
	for _, c := range r.Calls {
		r.OK = r.OK && c.OK
	}
	return r, nil
}

func apiUserInitiated(ctx context.Context, o Options, sim *bspsim.Server, pbx *pbxsim.PBX) (c CallReport) {
	c.Name = "user-initiated"
	defer c.finish()
	peer, err := wasim.NewWebRTCPeer(wasim.WebRTCPeerConfig{Log: o.Log.WithField("component", "whatsapp-user")})
	if err != nil {
		c.problem("WhatsApp user peer: %v", err)
		return c
	}
	defer peer.Close()
	offer, err := peer.Offer(ctx)
	if err != nil {
		c.problem("WhatsApp offer: %v", err)
		return c
	}
	start := time.Now()
	id, err := sim.SendConnect(ctx, bspsim.CallWebhook{User: strings.TrimPrefix(User, "+"), SDP: string(offer)})
	if err != nil {
		c.problem("connect webhook: %v", err)
		return c
	}
	acc, err := sim.WaitRequest(ctx, bspsim.OpAccept, 1)
	if err != nil {
		c.problem("wabridge never accepted the call: %v", err)
		return c
	}
	c.SetupMs = ms(time.Since(start))
	if err := peer.Accept([]byte(actionSDP(acc.Body))); err != nil {
		c.problem("applying wabridge's answer: %v", err)
		return c
	}
	var pcall *pbxsim.Call
	select {
	case pcall = <-pbx.Calls():
	case <-ctx.Done():
		c.problem("the PBX never saw the call")
		return c
	}
	playFromWhatsApp(ctx, o, &c, peer, pcall)
	if err := sim.SendTerminate(ctx, bspsim.CallWebhook{CallID: id}); err != nil {
		c.problem("terminate webhook: %v", err)
	}
	c.EndedBy = "WhatsApp user hung up (terminate webhook)"
	select {
	case <-pcall.Done():
		c.EndedBy += "; PBX leg ended (" + pcall.EndedBy() + ")"
	case <-time.After(5 * time.Second):
		c.problem("the PBX leg did not end after the terminate webhook")
	}
	return c
}

func apiBusinessInitiated(ctx context.Context, o Options, sim *bspsim.Server, pbx *pbxsim.PBX, srv *bridge.Server) (c CallReport) {
	c.Name = "business-initiated"
	defer c.finish()
	peer, err := wasim.NewWebRTCPeer(wasim.WebRTCPeerConfig{Log: o.Log.WithField("component", "whatsapp-user")})
	if err != nil {
		c.problem("WhatsApp user peer: %v", err)
		return c
	}
	defer peer.Close()
	type dialed struct {
		call *pbxsim.Call
		err  error
	}
	dialCh := make(chan dialed, 1)
	start := time.Now()
	go func() {
		pc, err := pbx.Dial(ctx, pbxsim.DialOptions{Target: srv.Addrs().PBXUDP, User: User, From: "1000",
			Headers: map[string]string{"X-WA-Business-Number": Business}})
		dialCh <- dialed{pc, err}
	}()
	conn, err := sim.WaitRequest(ctx, bspsim.OpConnect, 1)
	if err != nil {
		c.problem("wabridge never sent connect: %v", err)
		return c
	}
	answer, err := peer.Answer(ctx, []byte(actionSDP(conn.Body)), wasim.SetupActive)
	if err != nil {
		c.problem("WhatsApp answer: %v", err)
		return c
	}
	var id string
	for _, call := range sim.Calls() {
		if call.Direction == bsp.DirectionBusinessInitiated && !call.Terminated {
			id = call.ID
		}
	}
	if id == "" {
		c.problem("the provider emulator has no business-initiated call")
		return c
	}
	w := bspsim.CallWebhook{CallID: id, Direction: bsp.DirectionBusinessInitiated, User: strings.TrimPrefix(User, "+")}
	ans := w
	ans.SDP, ans.SDPType = string(answer), "answer"
	if _, err := sim.SendConnect(ctx, ans); err != nil {
		c.problem("connect webhook: %v", err)
		return c
	}
	for _, st := range []string{bsp.StatusRinging, bsp.StatusAccepted} {
		s := w
		s.Status = st
		if err := sim.SendStatus(ctx, s); err != nil {
			c.problem("%s webhook: %v", st, err)
		}
	}
	d := <-dialCh
	if d.err != nil {
		c.problem("PBX call to the WhatsApp user failed: %v", d.err)
		return c
	}
	c.SetupMs = ms(time.Since(start))
	pcall := d.call
	playFromPBX(ctx, o, &c, peer, pcall)
	if err := pcall.Hangup(ctx); err != nil {
		c.problem("hanging up from the PBX: %v", err)
	}
	c.EndedBy = "PBX hung up"
	if _, err := sim.WaitRequest(ctx, bspsim.OpTerminate, 1); err != nil {
		c.problem("wabridge did not send terminate after the PBX hung up: %v", err)
	} else {
		c.EndedBy += "; terminate sent to the provider"
	}
	return c
}

// actionSDP pulls the SDP out of a call action's body, whatever the provider's shape
// (session.sdp for Graph-style bodies, a top-level sdp for the flattened ones).
func actionSDP(body []byte) string {
	var b struct {
		SDP     string `json:"sdp"`
		Session struct {
			SDP string `json:"sdp"`
		} `json:"session"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return ""
	}
	if b.Session.SDP != "" {
		return b.Session.SDP
	}
	return b.SDP
}
