package bsp_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
)

func TestCallPermission(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{bsp.ProviderMeta, bsp.Provider360dialog, bsp.ProviderPositus} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider)
			p := newProvider(t, sim, provider)
			perm, err := p.CallPermission(testCtx(t), "+1 631 555 3602")
			require.NoError(t, err)
			assert.Equal(t, bsp.PermissionTemporary, perm.Status)
			assert.False(t, perm.Expiration.IsZero())
			require.Len(t, perm.Actions, 2)
			assert.Equal(t, "send_call_permission_request", perm.Actions[0].Name)
			assert.Equal(t, "P7D", perm.Actions[0].Limits[1].TimePeriod)
			req := sim.RequestsFor(bspsim.OpCallPermission)[0]
			if provider == bsp.Provider360dialog {
				assert.Equal(t, "/calling/permissions/16315553602", req.Path)
			} else {
				assert.Equal(t, "16315553602", req.Query.Get("user_wa_id"))
			}
			if provider == bsp.ProviderPositus {
				// Served verbatim with its // comments.
				assert.Contains(t, string(mustBody(t, sim)), "//")
				assert.True(t, perm.CanStartCall())
				assert.Equal(t, time.Unix(1748553340, 0).UTC(), perm.Expiration)
			} else {
				assert.False(t, perm.CanStartCall(), "the sample's start_call is not performable")
				assert.Equal(t, time.Unix(1745622600, 0).UTC(), perm.Actions[1].Limits[0].LimitExpiration)
			}

			sim.SetPermission("16315553602", bsp.PermissionNone)
			perm, err = p.CallPermission(testCtx(t), "16315553602")
			require.NoError(t, err)
			assert.Equal(t, bsp.PermissionNone, perm.Status)
			assert.False(t, perm.CanStartCall())
		})
	}
	for _, provider := range []string{bsp.ProviderVectalk, bsp.ProviderConceptoMovil} {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider)
			p := newProvider(t, sim, provider)
			_, err := p.CallPermission(testCtx(t), "16315553602")
			require.ErrorIs(t, err, bsp.ErrUnsupported)
		})
	}
}

// mustBody re-fetches the Positus permission answer raw.
func mustBody(t *testing.T, sim *bspsim.Server) []byte {
	t.Helper()
	_, body := rawRequest(t, "GET", sim.URL()+"/v2/whatsapp/numbers/436666719526789/calls/call-permissions?user_wa_id=5543999011234", "Bearer "+testToken, "")
	return []byte(body)
}

// TestConnectWithoutPermission: 138006 reaches the PBX as Meta's own SIP answer.
func TestConnectWithoutPermission(t *testing.T) {
	t.Parallel()
	for _, provider := range bsp.Providers() {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider)
			p := newProvider(t, sim, provider)
			sim.SetPermission("5511987654321", bsp.PermissionNone)
			_, err := p.Connect(testCtx(t), bsp.CallRequest{To: "5511987654321", SDPOffer: testSDP})
			st := bsp.ToSIP(err)
			assert.Equal(t, 403, st.Code)
			assert.Equal(t, "No Approved Call Permission Found", st.Reason)
			assert.Contains(t, st.Warning, "138006")
			assert.Len(t, sim.RequestsFor(bspsim.OpConnect), 1)
		})
	}
}
