package bsp_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
)

// providerFiles names each provider's golden request bodies per action and how the SDP is
// carried in them. "" means the provider has no such action.
type providerFiles struct {
	connect, preAccept, accept, reject, terminate string
	sdpPaths                                      []string // where our SDP goes in connect/accept bodies
	acceptSDPPaths                                []string
	connectEdits                                  map[string]any // values we send that differ from the sample
}

func filesFor(provider string) providerFiles {
	meta := providerFiles{
		connect: "meta/calls-connect-request.json", preAccept: "meta/calls-pre_accept-request.json",
		accept: "meta/calls-accept-request.json", reject: "meta/calls-reject-request.json",
		terminate: "meta/calls-terminate-request.json",
		sdpPaths:  []string{"session.sdp"}, acceptSDPPaths: []string{"session.sdp"},
	}
	switch provider {
	case bsp.ProviderPositus:
		return providerFiles{
			connect: "positus/calls-make-body.json", accept: "positus/calls-accept-body.json",
			reject: "positus/calls-reject-body.json", terminate: "positus/calls-hang-up-body.json",
			sdpPaths: []string{"session.sdp", "connection.webrtc.sdp"}, acceptSDPPaths: []string{"sdp"},
			// Positus' sample says "answer" for make: a copy error (whatsapp-calling.md §6a).
			connectEdits: map[string]any{"session.sdp_type": "offer"},
		}
	case bsp.ProviderVectalk:
		return providerFiles{
			connect: "vectalk/calls-connect-request.guess.json", preAccept: "vectalk/calls-pre-accept-request.guess.json",
			accept: "vectalk/calls-accept-request.guess.json", reject: "vectalk/calls-reject-request.guess.json",
			terminate: "vectalk/calls-terminate-request.json",
			sdpPaths:  []string{"session.sdp"}, acceptSDPPaths: []string{"session.sdp"},
		}
	case bsp.ProviderConceptoMovil:
		return providerFiles{
			connect: "conceptomovil/call-connect-request.json", preAccept: "conceptomovil/call-pre_accept-request.guess.json",
			accept: "conceptomovil/call-accept-request.guess.json", reject: "conceptomovil/call-reject-request.guess.json",
			terminate: "conceptomovil/call-terminate-request.guess.json",
			sdpPaths:  []string{"sdp"}, acceptSDPPaths: []string{"sdp"},
		}
	}
	return meta
}

func sdpEdits(paths []string, sdp string, extra map[string]any) map[string]any {
	m := map[string]any{}
	for _, p := range paths {
		m[p] = sdp
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// TestAdapterActions drives every call action of every adapter against its strict emulator and
// compares the body the emulator received with the golden body from the provider's docs (with
// our SDP in place of the sample's placeholder).
func TestAdapterActions(t *testing.T) {
	t.Parallel()
	for _, provider := range bsp.Providers() {
		f := filesFor(provider)
		t.Run(provider, func(t *testing.T) {
			t.Parallel()

			t.Run("connect", func(t *testing.T) {
				t.Parallel()
				sim := newSim(t, provider)
				p := newProvider(t, sim, provider)
				g := golden(t, f.connect)
				// The SDP goes in with bare LF line ends: the adapter must send CRLF.
				lf := "v=0\no=- 4611731400430051336 2 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\nc=IN IP4 0.0.0.0\na=rtpmap:111 opus/48000/2"
				id, err := p.Connect(testCtx(t), bsp.CallRequest{To: "+" + str(g, "to"), SDPOffer: lf, BizOpaque: str(g, "biz_opaque_callback_data")})
				require.NoError(t, err)
				reqs := sim.RequestsFor(bspsim.OpConnect)
				require.Len(t, reqs, 1)
				require.Empty(t, reqs[0].Err)
				assert.JSONEq(t, goldenWith(t, f.connect, sdpEdits(f.sdpPaths, testSDP, f.connectEdits)), string(reqs[0].Body))
				calls := sim.Calls()
				require.Len(t, calls, 1)
				if provider == bsp.ProviderPositus {
					assert.Empty(t, id, "Positus' make answer has no call id; it comes with the connect webhook")
				} else {
					assert.Equal(t, calls[0].ID, id)
				}
				assert.Equal(t, testSDP, calls[0].Offer)
			})

			t.Run("pre_accept", func(t *testing.T) {
				t.Parallel()
				sim := newSim(t, provider)
				p := newProvider(t, sim, provider)
				if f.preAccept == "" {
					require.ErrorIs(t, p.PreAccept(testCtx(t), bsp.CallRef{ID: "wacid.X"}, answerSDP), bsp.ErrUnsupported)
					assert.Empty(t, sim.Requests())
					return
				}
				g := golden(t, f.preAccept)
				ref := bsp.CallRef{ID: str(g, "call_id"), User: str(g, "to")}
				sim.AddCall(bspsim.Call{ID: ref.ID, Direction: bsp.DirectionUserInitiated, User: ref.User})
				require.NoError(t, p.PreAccept(testCtx(t), ref, answerSDP))
				reqs := sim.RequestsFor(bspsim.OpPreAccept)
				require.Len(t, reqs, 1)
				assert.JSONEq(t, goldenWith(t, f.preAccept, sdpEdits(f.acceptSDPPaths, answerSDP, nil)), string(reqs[0].Body))
				// accept after pre_accept with the same SDP is what Meta requires.
				require.NoError(t, p.Accept(testCtx(t), ref, answerSDP, ""))
				c, _ := sim.Call(ref.ID)
				assert.True(t, c.PreAccepted && c.Accepted)
			})

			t.Run("accept", func(t *testing.T) {
				t.Parallel()
				sim := newSim(t, provider)
				p := newProvider(t, sim, provider)
				g := golden(t, f.accept)
				ref := bsp.CallRef{ID: str(g, "call_id"), User: str(g, "to")}
				sim.AddCall(bspsim.Call{ID: ref.ID, Direction: bsp.DirectionUserInitiated, User: ref.User})
				require.NoError(t, p.Accept(testCtx(t), ref, answerSDP, str(g, "biz_opaque_callback_data")))
				reqs := sim.RequestsFor(bspsim.OpAccept)
				require.Len(t, reqs, 1)
				assert.JSONEq(t, goldenWith(t, f.accept, sdpEdits(f.acceptSDPPaths, answerSDP, nil)), string(reqs[0].Body))
			})

			for _, tc := range []struct {
				op, file string
				run      func(bsp.Provider, bsp.CallRef) error
			}{
				{bspsim.OpReject, f.reject, func(p bsp.Provider, r bsp.CallRef) error { return p.Reject(testCtx(t), r) }},
				{bspsim.OpTerminate, f.terminate, func(p bsp.Provider, r bsp.CallRef) error { return p.Terminate(testCtx(t), r) }},
			} {
				t.Run(tc.op, func(t *testing.T) {
					t.Parallel()
					sim := newSim(t, provider)
					p := newProvider(t, sim, provider)
					g := golden(t, tc.file)
					ref := bsp.CallRef{ID: str(g, "call_id"), User: str(g, "to")}
					if ref.User == "" {
						ref.User = "5511987654321"
					}
					sim.AddCall(bspsim.Call{ID: ref.ID, Direction: bsp.DirectionUserInitiated, User: ref.User})
					require.NoError(t, tc.run(p, ref))
					reqs := sim.RequestsFor(tc.op)
					require.Len(t, reqs, 1)
					assert.JSONEq(t, goldenWith(t, tc.file, nil), string(reqs[0].Body))
					c, _ := sim.Call(ref.ID)
					assert.True(t, c.Terminated)
				})
			}
		})
	}
}

// TestAdapterAuth checks each provider's credential header and that a refused token maps to a
// service failure, not to the caller's fault.
func TestAdapterAuth(t *testing.T) {
	t.Parallel()
	for _, provider := range bsp.Providers() {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider)
			p := newProvider(t, sim, provider, func(c *bsp.Config) { c.Token = bsp.StaticToken("wrong") })
			err := p.Terminate(testCtx(t), bsp.CallRef{ID: "wacid.X", User: "5511987654321"})
			var ae *bsp.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, 401, ae.HTTPStatus)
			assert.Equal(t, 190, ae.Code)
			assert.Equal(t, 503, bsp.ToSIP(err).Code)
			assert.NotContains(t, err.Error(), testToken)

			reqs := sim.Requests()
			require.NotEmpty(t, reqs)
			hdr := "Authorization"
			if provider == bsp.Provider360dialog {
				hdr = "D360-API-KEY"
				assert.Empty(t, reqs[0].Header.Get("Authorization"))
			}
			assert.Equal(t, "[redacted]", reqs[0].Header.Get(hdr), "the credential travels in %s", hdr)
		})
	}
}

// TestEmulatorRefusesMalformedRequests checks the emulators' strictness itself: a body that
// deviates from the golden shape is refused with Graph's 400/100 envelope.
func TestEmulatorRefusesMalformedRequests(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, path, body, want string
	}{
		{"unknown key", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"terminate","extra":1}`, "unknown parameter extra"},
		{"missing key", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","action":"terminate"}`, "required parameter call_id is missing"},
		{"wrong type", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","call_id":7,"action":"terminate"}`, "call_id must be a string"},
		{"unknown action", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"hold"}`, "Unsupported POST request"},
		{"wrong path", "/v23.0/999/calls", `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"terminate"}`, "Unsupported POST request"},
		{"escaped SDP", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","to":"14085551234","action":"connect","session":{"sdp_type":"offer","sdp":"v=0\\r\\no=- 1 1 IN IP4 0.0.0.0\\r\\n"}}`, "SDP validation failed"},
		{"offer labelled answer", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","to":"14085551234","action":"connect","session":{"sdp_type":"answer","sdp":"v=0\r\n"}}`, "session.sdp_type must be"},
		{"trailing data", "/v23.0/436666719526789/calls", `{"messaging_product":"whatsapp","call_id":"wacid.A","action":"terminate"} {}`, "trailing data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, bsp.ProviderMeta)
			status, body := rawRequest(t, "POST", sim.URL()+tc.path, "Bearer "+testToken, tc.body)
			assert.Equal(t, 400, status)
			assert.Contains(t, body, `"code":100`)
			assert.Contains(t, body, tc.want)
		})
	}
}
