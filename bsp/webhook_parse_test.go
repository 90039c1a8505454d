package bsp_test

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
)

func ts(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/golden/" + name)
	require.NoError(t, err)
	return b
}

// TestParseGoldenWebhooks parses every documented webhook into its normalized events.
func TestParseGoldenWebhooks(t *testing.T) {
	t.Parallel()
	meta := bsp.Event{WABAID: "366634483210360", PhoneNumberID: "436666719526789", DisplayNumber: "13175551399"}
	with := func(e bsp.Event, f func(*bsp.Event)) bsp.Event { f(&e); return e }
	cases := []struct {
		file string
		want []bsp.Event
	}{
		{"meta/webhook-connect-uic.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.CallID, e.Kind, e.Direction = "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh", bsp.EventConnect, bsp.DirectionUserInitiated
			e.From, e.To, e.ContactName = "16315553602", "13175551399", "Pablo"
			e.SDPType, e.SDP, e.Timestamp = "offer", "v=0\r\n...\r\n", ts(1671644824)
			e.CTAPayload, e.DeeplinkPayload = "<payload from call button>", "<biz_payload from wa.me/call link>"
		})}},
		{"meta/webhook-connect-bic.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.CallID, e.Kind, e.Direction = "wacid.HBgLMTIxODU1NTI4MjgVAgARGCAyODRQIAFRoA", bsp.EventConnect, bsp.DirectionBusinessInitiated
			e.From, e.To, e.BizOpaque = "13175551399", "12185552828", "TRx334DUDFTI4Mj"
			// session wins over the legacy copy.
			e.SDPType, e.SDP, e.Timestamp = "answer", "v=0\r\n...\r\n", ts(1749196895)
		})}},
		{"meta/webhook-status.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.CallID, e.Kind, e.Direction, e.Status = "wacid.HBgLMTIxODU1NTI4MjgVAgARGCAyODRQIAFRoA", bsp.EventStatus, bsp.DirectionBusinessInitiated, bsp.StatusRinging
			e.From, e.To, e.BizOpaque, e.Timestamp = "13175551399", "12185552828", "random_string", ts(1671644824)
		})}},
		{"meta/webhook-terminate.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.CallID, e.Kind, e.Direction, e.Status = "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh", bsp.EventTerminate, bsp.DirectionUserInitiated, bsp.StatusCompleted
			e.From, e.To, e.BizOpaque, e.Timestamp = "16315553602", "13175551399", "random_string", ts(1671644944)
			e.CTAPayload, e.DeeplinkPayload = "<payload from call button>", "<biz_payload from wa.me/call link>"
			e.StartTime, e.EndTime, e.Duration = ts(1671644824), ts(1671644944), 120*time.Second
		})}},
		{"meta/webhook-terminate-failed.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.CallID, e.Kind, e.Direction, e.Status = "wacid.ABGGFjFVU2AfAgo6V-Hc5eCgK5Gh", bsp.EventTerminate, bsp.DirectionUserInitiated, bsp.StatusFailed
			e.From, e.To, e.Timestamp = "16315553602", "13175551399", ts(1671644944)
			e.Errors = []bsp.APIError{{Code: 138021, Message: "Media receive timeout", Details: "No media received from the business",
				Href: "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}}
		})}},
		{"meta/webhook-permission-reply.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.Kind, e.From, e.To, e.Timestamp = bsp.EventPermissionReply, "16315553602", "13175551399", ts(1768550000)
			e.PermissionReply = &bsp.PermissionReply{MessageID: "wamid.HBgLMTYzMTU1NTM2MDIVAgASGCA", ContextID: "wamid.HBgLMTYzMTU1NTM2MDIVAgARGCB",
				Response: "accept", Expiration: ts(1768550400), Source: "user_action"}
		})}},
		{"meta/webhook-connect-legacy.json", []bsp.Event{with(meta, func(e *bsp.Event) {
			e.CallID, e.Kind, e.Direction = "wacid.LEGACYFjFVU2AfAgo6V-Hc5eCgK5Gh", bsp.EventConnect, bsp.DirectionUserInitiated
			e.From, e.To, e.Timestamp = "16315553602", "13175551399", ts(1671644824)
			e.SDPType, e.SDP = "offer", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"
		})}},
		{"positus/webhooks/connect-webhook.json", []bsp.Event{{
			CallID: "wacid.HBgMNTU0Mzk5MDU2MDQxFQIAEhggNTg0NjkxRTJGNjREQzNFRkJGQ0ZDMzRCMUQ0RTM5REQcGAw1NTExMzEzNjE3NDEVAgAA",
			Kind:   bsp.EventConnect, From: "554399951234", To: "551122361741",
			// The sample's label is kept: the payload, not our guess, says what the SDP is.
			SDPType: "answer", SDP: "<<RFC 4566 SDP>>\r\n",
		}}},
		{"positus/webhooks/terminate-webhook.json", []bsp.Event{{
			CallID: "wacid.HBgMNTU0Mzk5MDU2MDQxFQIAEhggNTg0NjkxRTJGNjREQzNFRkJGQ0ZDMzRCMUQ0RTM5REQcGAw1NTExMzEzNjE3NDEVAgAA",
			Kind:   bsp.EventTerminate, Direction: bsp.DirectionUserInitiated, From: "554399951234", To: "551122361741",
			Status: bsp.StatusCompleted, Timestamp: ts(1747411095), StartTime: ts(1747411036), EndTime: ts(1747411095), Duration: 59 * time.Second,
		}}},
		{"positus/webhooks/status-webhook.guess.json", []bsp.Event{{
			CallID: "wacid.HBgMNTU0Mzk5MDU2MDQxFQIAEhggNTg0NjkxRTJGNjREQzNFRkJGQ0ZDMzRCMUQ0RTM5REQcGAw1NTExMzEzNjE3NDEVAgAA",
			Kind:   bsp.EventStatus, Direction: bsp.DirectionBusinessInitiated, To: "554399951234", Status: bsp.StatusRinging, Timestamp: ts(1747411036),
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			got, err := bsp.ParseWebhook(readGolden(t, tc.file))
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestParseQuirks covers spellings seen in the wild.
func TestParseQuirks(t *testing.T) {
	t.Parallel()
	wrap := func(value string) []byte {
		return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"calls","value":{"metadata":{"display_phone_number":"+1 317 555 1399","phone_number_id":436666719526789},` + value + `}}]}]}`)
	}
	cases := []struct {
		name  string
		body  []byte
		check func(*testing.T, []bsp.Event)
	}{
		{"double-escaped SDP", wrap(`"calls":[{"id":"wacid.A","from":"1","to":"13175551399","event":"connect","session":{"sdp_type":"OFFER","sdp":"v=0\\r\\no=- 1 1 IN IP4 0.0.0.0\\r\\n"}}]`),
			func(t *testing.T, evs []bsp.Event) {
				require.Len(t, evs, 1)
				assert.Equal(t, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", evs[0].SDP)
				assert.Equal(t, "offer", evs[0].SDPType)
				assert.Equal(t, "436666719526789", evs[0].PhoneNumberID, "a numeric id is read as text")
				assert.Equal(t, "13175551399", evs[0].DisplayNumber)
				assert.Equal(t, bsp.DirectionUserInitiated, evs[0].Direction, "inferred: to is the business")
			}},
		{"LF-only SDP", wrap(`"calls":[{"id":"wacid.A","event":"connect","session":{"sdp":"v=0\no=- 1 1 IN IP4 0.0.0.0"}}]`),
			func(t *testing.T, evs []bsp.Event) { assert.Equal(t, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", evs[0].SDP) }},
		{"legacy plain SDP", wrap(`"calls":[{"id":"wacid.A","event":"connect","direction":"BUSINESS_INITIATED","connection":{"webrtc":{"sdp":"v=0\r\ns=-"}}}]`),
			func(t *testing.T, evs []bsp.Event) {
				assert.Equal(t, "v=0\r\ns=-\r\n", evs[0].SDP)
				assert.Equal(t, "answer", evs[0].SDPType)
			}},
		{"mixed-case status and numeric times", wrap(`"calls":[{"id":"wacid.A","event":"Terminate","status":"Completed","timestamp":1671644944,"duration":"60"}]`),
			func(t *testing.T, evs []bsp.Event) {
				assert.Equal(t, bsp.EventTerminate, evs[0].Kind)
				assert.Equal(t, bsp.StatusCompleted, evs[0].Status)
				assert.Equal(t, ts(1671644944), evs[0].Timestamp)
				assert.Equal(t, time.Minute, evs[0].Duration)
			}},
		{"status enum sample without errors", wrap(`"calls":[{"id":"wacid.A","event":"terminate","status":["Failed","Completed"]}]`),
			func(t *testing.T, evs []bsp.Event) { assert.Equal(t, bsp.StatusFailed, evs[0].Status, "first listed") }},
		{"lower-case status", wrap(`"statuses":[{"id":"wacid.A","type":"call","status":"accepted","recipient_id":"12185552828"}]`),
			func(t *testing.T, evs []bsp.Event) { assert.Equal(t, bsp.StatusAccepted, evs[0].Status) }},
		{"message statuses ignored", wrap(`"statuses":[{"id":"wamid.A","type":"message","status":"delivered"}]`),
			func(t *testing.T, evs []bsp.Event) { assert.Empty(t, evs) }},
		{"unknown call events ignored", wrap(`"calls":[{"id":"wacid.A","event":"call_created"},{"event":"connect"}]`),
			func(t *testing.T, evs []bsp.Event) { assert.Empty(t, evs, "unknown event and missing id") }},
		{"other fields ignored", []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update","value":{"calls":[{"id":"wacid.A","event":"connect"}]}},{"field":"messages","value":{"messages":[{"type":"text","text":{"body":"hi"}}]}}]}]}`),
			func(t *testing.T, evs []bsp.Event) { assert.Empty(t, evs) }},
		{"batch", wrap(`"calls":[{"id":"wacid.A","event":"connect"},{"id":"wacid.B","event":"terminate"}],"statuses":[{"id":"wacid.C","status":"RINGING"}]`),
			func(t *testing.T, evs []bsp.Event) {
				require.Len(t, evs, 3)
				assert.Equal(t, []string{"wacid.A", "wacid.B", "wacid.C"}, []string{evs[0].CallID, evs[1].CallID, evs[2].CallID})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			evs, err := bsp.ParseWebhook(tc.body)
			require.NoError(t, err)
			tc.check(t, evs)
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"not JSON":        `{"entry":`,
		"array":           `[{"calls":[]}]`,
		"no envelope":     `{"hello":"world"}`,
		"calls not array": `{"calls":{"id":"wacid.A"}}`,
		"entry null":      `{"object":"whatsapp_business_account","entry":null}`,
		"wrong type":      `{"entry":[{"changes":[{"field":"calls","value":{"calls":[{"id":{"x":1},"event":"connect"}]}}]}]}`,
		"empty":           ``,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := bsp.ParseWebhook([]byte(body))
			require.Error(t, err)
		})
	}
	_, err := bsp.ParseMetaWebhook([]byte(`{"calls":[]}`))
	require.ErrorIs(t, err, bsp.ErrNotWebhook)
	_, err = bsp.ParsePositusWebhook(readGolden(t, "meta/webhook-status.json"))
	require.ErrorIs(t, err, bsp.ErrNotWebhook)
}
