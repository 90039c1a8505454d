package bsp_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/bsp/bspsim"
)

// settingsProviders have a settings API.
var settingsProviders = []string{bsp.ProviderMeta, bsp.Provider360dialog, bsp.ProviderVectalk, bsp.ProviderConceptoMovil}

// documentedCallHours is §1.1's call_hours.
func documentedCallHours() *bsp.CallHours {
	return &bsp.CallHours{
		Status: "ENABLED", TimezoneID: "America/Manaus",
		WeeklyOperatingHours: []bsp.OperatingHours{
			{DayOfWeek: "MONDAY", OpenTime: "0400", CloseTime: "1020"},
			{DayOfWeek: "TUESDAY", OpenTime: "0108", CloseTime: "1020"},
		},
		HolidaySchedule: []bsp.Holiday{{Date: "2026-01-01", StartTime: "0000", EndTime: "2359"}},
	}
}

// documentedSettings is §1.1's full request body.
func documentedSettings() *bsp.Settings {
	return &bsp.Settings{
		Status: "ENABLED", CallIconVisibility: "DEFAULT",
		CallIcons:                &bsp.CallIcons{RestrictToUserCountries: []string{"US", "BR"}},
		CallHours:                documentedCallHours(),
		CallbackPermissionStatus: "ENABLED",
		SRTPKeyExchangeProtocol:  "DTLS",
		SIP: &bsp.SIPSettings{Status: "ENABLED", Servers: []bsp.SIPServer{{
			Hostname: "sip.example.com", Port: 5061,
			RequestURIUserParams: map[string]string{"tgrp": "wacall", "trunk-context": "byoc.example.com"},
		}}},
		Audio: &bsp.AudioSettings{AdditionalCodecs: []string{"PCMA", "PCMU"}},
	}
}

// TestSetSettingsGolden: the full documented update goes out exactly as §1.1 writes it (without
// the "calling" wrapper for Concepto Móvil, whose own sample is checked too).
func TestSetSettingsGolden(t *testing.T) {
	t.Parallel()
	for _, provider := range settingsProviders {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider)
			p := newProvider(t, sim, provider)
			require.NoError(t, p.SetSettings(testCtx(t), documentedSettings()))
			reqs := sim.RequestsFor(bspsim.OpSettingsPost)
			require.Len(t, reqs, 1)
			require.Empty(t, reqs[0].Err)
			want := goldenWith(t, "meta/settings-request.json", nil)
			if provider == bsp.ProviderConceptoMovil {
				b, _ := json.Marshal(golden(t, "meta/settings-request.json")["calling"])
				want = string(b)
			}
			assert.JSONEq(t, want, string(reqs[0].Body))
		})
	}
	t.Run("conceptomovil sample", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderConceptoMovil)
		p := newProvider(t, sim, bsp.ProviderConceptoMovil)
		require.NoError(t, p.SetSettings(testCtx(t), &bsp.Settings{
			Status: "ENABLED", CallIconVisibility: "DEFAULT", CallHours: documentedCallHours(), CallbackPermissionStatus: "ENABLED",
		}))
		reqs := sim.RequestsFor(bspsim.OpSettingsPost)
		require.Len(t, reqs, 1)
		assert.JSONEq(t, goldenWith(t, "conceptomovil/call-settings-request.json", nil), string(reqs[0].Body))
	})
}

// TestGetSettings reads each provider's answer, including Vectalk's spelling (lower-case enums,
// "timezone", "password") and SIP credentials.
func TestGetSettings(t *testing.T) {
	t.Parallel()
	for _, provider := range settingsProviders {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider, func(c *bspsim.Config) { c.SIPPassword = "s3cr3t-sip" })
			p := newProvider(t, sim, provider)
			s, err := p.GetSettings(testCtx(t), false)
			require.NoError(t, err)
			assert.Equal(t, "ENABLED", s.Status)
			assert.Equal(t, "ENABLED", s.CallbackPermissionStatus)
			assert.Equal(t, documentedCallHours(), s.CallHours)
			require.NotNil(t, s.SIP)
			assert.Equal(t, "DISABLED", s.SIP.Status)
			require.Len(t, s.SIP.Servers, 1)
			assert.Equal(t, "sip.example.com", s.SIP.Servers[0].Hostname)
			assert.Empty(t, s.SIP.Servers[0].Password)
			assert.Equal(t, []string{"PCMA", "PCMU"}, s.Audio.AdditionalCodecs)
			if provider == bsp.ProviderVectalk {
				assert.Equal(t, []string{"157.240.0.1"}, s.IPAddresses)
			}

			s, err = p.GetSettings(testCtx(t), true)
			require.NoError(t, err)
			assert.Equal(t, "s3cr3t-sip", string(s.SIP.Servers[0].Password))
			// Printing never shows it.
			assert.NotContains(t, fmt.Sprintf("%v %+v %#v", s, *s.SIP, s.SIP.Servers[0]), "s3cr3t-sip")
			b, err := json.Marshal(s)
			require.NoError(t, err)
			assert.NotContains(t, string(b), "s3cr3t-sip")
			assert.Equal(t, "true", sim.RequestsFor(bspsim.OpSettingsGet)[1].Query.Get("include_sip_credentials"))
		})
	}
}

// TestParseDocumentedSettingsAnswers parses the documented GET answers themselves.
func TestParseDocumentedSettingsAnswers(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"meta/settings-response.json", "vectalk/settings-response.guess.json", "conceptomovil/call-settings-response.guess.json"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			raw := goldenWith(t, name, nil)
			var probe map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(raw), &probe))
			body := []byte(raw)
			if c, ok := probe["calling"]; ok {
				body = c
			}
			var s bsp.Settings
			require.NoError(t, json.Unmarshal(body, &s))
			assert.NotEmpty(t, s.Status)
			require.NotNil(t, s.CallHours)
			assert.NotEmpty(t, s.CallHours.TimezoneID)
			assert.NotNil(t, s.CallHours.HolidaySchedule)
		})
	}
	var env struct{ Calling bsp.Settings }
	require.NoError(t, json.Unmarshal([]byte(goldenWith(t, "meta/settings-response.json", nil)), &env))
	s := env.Calling
	require.Len(t, s.Restrictions, 1)
	assert.Equal(t, time.Unix(1754072386, 0).UTC(), s.Restrictions[0].Expiration)
	assert.Equal(t, "<APP_ID_THAT_CONFIGURED_THIS_SIP_SERVER>", s.SIP.Servers[0].AppID)
}

// TestHolidayScheduleRule: Meta deletes holidays an update leaves out. The emulator does too; the
// client refuses such an update, and SetCallHours keeps them.
func TestHolidayScheduleRule(t *testing.T) {
	t.Parallel()

	t.Run("emulator deletes omitted holidays", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderMeta)
		status, body := rawRequest(t, "POST", sim.URL()+"/v23.0/436666719526789/settings", "Bearer "+testToken,
			`{"calling":{"call_hours":{"status":"ENABLED","timezone_id":"America/Manaus","weekly_operating_hours":[{"day_of_week":"MONDAY","open_time":"0900","close_time":"1700"}]}}}`)
		require.Equal(t, 200, status, body)
		var c map[string]any
		require.NoError(t, json.Unmarshal(sim.SettingsJSON(), &c))
		assert.NotContains(t, c["call_hours"], "holiday_schedule")
	})

	for _, provider := range settingsProviders {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, provider)
			p := newProvider(t, sim, provider)

			ch := documentedCallHours()
			ch.HolidaySchedule = nil
			require.ErrorIs(t, p.SetSettings(testCtx(t), &bsp.Settings{CallHours: ch}), bsp.ErrHolidayScheduleOmitted)
			assert.Empty(t, sim.RequestsFor(bspsim.OpSettingsPost), "nothing is sent")

			require.NoError(t, bsp.SetCallHours(testCtx(t), p, func(ch *bsp.CallHours) error {
				ch.WeeklyOperatingHours = append(ch.WeeklyOperatingHours, bsp.OperatingHours{DayOfWeek: "FRIDAY", OpenTime: "0900", CloseTime: "1700"})
				return nil
			}))
			posts := sim.RequestsFor(bspsim.OpSettingsPost)
			require.Len(t, posts, 1)
			assert.Contains(t, string(posts[0].Body), `"holiday_schedule":[{"date":"2026-01-01","start_time":"0000","end_time":"2359"}]`)
			assert.Contains(t, string(posts[0].Body), `"timezone_id":"America/Manaus"`)

			got, err := p.GetSettings(testCtx(t), false)
			require.NoError(t, err)
			assert.Len(t, got.CallHours.WeeklyOperatingHours, 3)
			assert.Equal(t, documentedCallHours().HolidaySchedule, got.CallHours.HolidaySchedule, "holidays survive")

			// Clearing on purpose is an explicit empty schedule.
			require.NoError(t, bsp.SetCallHours(testCtx(t), p, func(ch *bsp.CallHours) error {
				ch.HolidaySchedule = []bsp.Holiday{}
				return nil
			}))
			got, err = p.GetSettings(testCtx(t), false)
			require.NoError(t, err)
			assert.Empty(t, got.CallHours.HolidaySchedule)
		})
	}
}

// TestSettingsValidation: the emulator refuses what Meta documents as invalid, and the client
// surfaces Graph's error.
func TestSettingsValidation(t *testing.T) {
	t.Parallel()
	cases := map[string]func(*bsp.CallHours){
		"three windows a day": func(ch *bsp.CallHours) {
			ch.WeeklyOperatingHours = append(ch.WeeklyOperatingHours,
				bsp.OperatingHours{DayOfWeek: "MONDAY", OpenTime: "1100", CloseTime: "1200"},
				bsp.OperatingHours{DayOfWeek: "MONDAY", OpenTime: "1300", CloseTime: "1400"})
		},
		"overlap": func(ch *bsp.CallHours) {
			ch.WeeklyOperatingHours = append(ch.WeeklyOperatingHours, ch.WeeklyOperatingHours[0])
		},
		"empty week":        func(ch *bsp.CallHours) { ch.WeeklyOperatingHours = nil },
		"bad time":          func(ch *bsp.CallHours) { ch.WeeklyOperatingHours[0].OpenTime = "9:00" },
		"bad date":          func(ch *bsp.CallHours) { ch.HolidaySchedule[0].Date = "01/01/2026" },
		"no timezone":       func(ch *bsp.CallHours) { ch.TimezoneID = "" },
		"close before open": func(ch *bsp.CallHours) { ch.WeeklyOperatingHours[0].CloseTime = "0300" },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := newSim(t, bsp.ProviderMeta)
			p := newProvider(t, sim, bsp.ProviderMeta)
			ch := documentedCallHours()
			edit(ch)
			err := p.SetSettings(testCtx(t), &bsp.Settings{CallHours: ch})
			var ae *bsp.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, 100, ae.Code)
			assert.Len(t, sim.RequestsFor(bspsim.OpSettingsPost), 1, "a validation error is not retried")
		})
	}
	t.Run("SIP enabled without servers", func(t *testing.T) {
		t.Parallel()
		sim := newSim(t, bsp.ProviderMeta)
		p := newProvider(t, sim, bsp.ProviderMeta)
		err := p.SetSettings(testCtx(t), &bsp.Settings{SIP: &bsp.SIPSettings{Status: "ENABLED", Servers: []bsp.SIPServer{}}})
		var ae *bsp.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, 100, ae.Code)
	})
}

// TestSIPModeRefusesCalls: once SIP is enabled through settings, Graph call actions fail with
// 131055, which is a misconfiguration (503) for the PBX.
func TestSIPModeRefusesCalls(t *testing.T) {
	t.Parallel()
	sim := newSim(t, bsp.ProviderMeta)
	p := newProvider(t, sim, bsp.ProviderMeta)
	require.NoError(t, p.SetSettings(testCtx(t), &bsp.Settings{SIP: &bsp.SIPSettings{Status: "ENABLED"}}))
	_, err := p.Connect(testCtx(t), bsp.CallRequest{To: "14085551234", SDPOffer: testSDP})
	var ae *bsp.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 131055, ae.Code)
	assert.Equal(t, 503, bsp.ToSIP(err).Code)
	assert.Contains(t, bsp.ToSIP(err).Warning, "131055")
}

// TestSettingsUnsupported: Positus has no settings API.
func TestSettingsUnsupported(t *testing.T) {
	t.Parallel()
	sim := newSim(t, bsp.ProviderPositus)
	p := newProvider(t, sim, bsp.ProviderPositus)
	_, err := p.GetSettings(testCtx(t), true)
	require.ErrorIs(t, err, bsp.ErrUnsupported)
	require.ErrorIs(t, p.SetSettings(testCtx(t), documentedSettings()), bsp.ErrUnsupported)
	require.ErrorIs(t, bsp.SetCallHours(testCtx(t), p, func(*bsp.CallHours) error { return nil }), bsp.ErrUnsupported)
	assert.Empty(t, sim.Requests())
}
