package bspsim

import (
	"io/fs"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wabridge/wabridge/bsp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEmbeddedGoldenMatchesTestdata: the emulator embeds a copy of bsp/testdata/golden (embed
// cannot reach outside the package); the two must not drift.
func TestEmbeddedGoldenMatchesTestdata(t *testing.T) {
	t.Parallel()
	src := os.DirFS("../testdata/golden")
	emb, err := fs.Sub(embedded, "golden")
	require.NoError(t, err)
	names := map[string]bool{}
	for _, fsys := range []fs.FS{src, emb} {
		require.NoError(t, fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				names[p] = true
			}
			return err
		}))
	}
	require.NotEmpty(t, names)
	for name := range names {
		a, errA := fs.ReadFile(src, name)
		b, errB := fs.ReadFile(emb, name)
		require.NoError(t, errA, "%s is only in the embedded copy", name)
		require.NoError(t, errB, "%s is missing from bsp/bspsim/golden: copy bsp/testdata/golden there", name)
		assert.Equal(t, string(a), string(b), "%s differs between bsp/testdata/golden and bsp/bspsim/golden", name)
	}
}

// TestGoldenRequestsPassTheirOwnShapes: each documented request body is accepted by the shape
// built from it, and Concepto Móvil's documented settings sample fits Meta's calling object.
func TestGoldenRequestsPassTheirOwnShapes(t *testing.T) {
	t.Parallel()
	g := &goldenSet{fsys: os.DirFS("../testdata/golden")}
	eps := []*endpoint{graphCall(OpConnect), graphCall(OpPreAccept), graphCall(OpAccept), graphCall(OpReject), graphCall(OpTerminate)}
	for _, ep := range eps {
		b, err := g.bytes(ep.shape.file)
		require.NoError(t, err)
		_, err = ep.shape.check(g, b)
		assert.NoError(t, err, ep.shape.file)
	}
	concepto := graphSettingsPost("meta/settings-request.json", "calling", nil, "")
	b, err := g.bytes("conceptomovil/call-settings-request.json")
	require.NoError(t, err)
	_, err = concepto.shape.check(g, b)
	assert.NoError(t, err)
	vectalk := graphSettingsPost("vectalk/settings-request.guess.json", "", []string{"calling"}, "")
	b, err = g.bytes("meta/settings-request.json")
	require.NoError(t, err)
	_, err = vectalk.shape.check(g, b)
	assert.NoError(t, err, "Meta's full update fits the guessed Vectalk shape (request_uri_user_params keys are free)")
}

func TestShapeCheck(t *testing.T) {
	t.Parallel()
	g := &goldenSet{fsys: os.DirFS("../testdata/golden")}
	s := shape{file: "meta/settings-request.json", required: []string{"calling"},
		freeform: []string{"calling.sip.servers[].request_uri_user_params"}}
	for body, want := range map[string]string{
		`{"calling":{"status":"ENABLED"}}`: "",
		`{"calling":{"sip":{"servers":[{"hostname":"h","request_uri_user_params":{"any-key":"v"}}]}}}`: "",
		`{"calling":{"sip":{"servers":[{"hostname":"h","request_uri_user_params":{"k":1}}]}}}`:         "must be a string",
		`{"calling":{"sip":{"servers":[{"hostname":"h","port":"5061"}]}}}`:                             "must be a number",
		`{"calling":{"call_hours":{"holiday_schedule":[{"date":"2026-01-01","open_time":"0000"}]}}}`:   "unknown parameter calling.call_hours.holiday_schedule[].open_time",
		`{}`:                           "required parameter calling is missing",
		`{"calling":null}`:             "must be a object",
		`{"calling":{}} trailing`:      "not valid JSON",
		`{"calling":{"voicemail":{}}}`: "unknown parameter calling.voicemail",
	} {
		_, err := s.check(g, []byte(body))
		if want == "" {
			assert.NoError(t, err, body)
		} else {
			require.Error(t, err, body)
			assert.Contains(t, err.Error(), want, body)
		}
	}
}

// TestWebhookHeaders: signed where the provider signs, in its header.
func TestWebhookHeaders(t *testing.T) {
	t.Parallel()
	body := []byte(`{"x":1}`)
	for provider, header := range map[string]string{
		bsp.ProviderMeta: bsp.SignatureHeaderMeta, bsp.Provider360dialog: bsp.SignatureHeader360dialog,
		bsp.ProviderVectalk: bsp.SignatureHeaderMeta, bsp.ProviderConceptoMovil: bsp.SignatureHeaderMeta, bsp.ProviderPositus: "",
	} {
		s, err := New(Config{Provider: provider, Token: "t", AppSecret: "secret"})
		require.NoError(t, err)
		h := s.WebhookHeaders(body)
		s.Close()
		if header == "" {
			assert.Empty(t, h.Get(bsp.SignatureHeaderMeta), provider)
			continue
		}
		assert.NotEmpty(t, h.Get(header), provider)
	}
}
