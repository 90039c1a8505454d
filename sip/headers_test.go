package sip

import (
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metaInvite is Meta's sample user-initiated INVITE (whatsapp-calling.md §5.2) with
// requestURI and extra headers substituted.
func metaInvite(requestURI string, extra ...string) string {
	lines := []string{
		"INVITE " + requestURI + " SIP/2.0",
		"Via: SIP/2.0/TLS [2803:6080::1]:57363;rport;branch=z9hG4bKabc;alias",
		"Record-Route: <sip:wa.meta.vc;transport=tls;lr>",
		"Record-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>",
		"Max-Forwards: 69",
		`From: "12195550714" <sip:+12195550714@wa.meta.vc>;tag=8a0f7e65-1`,
		"To: <sip:+12145551869@meta-voip.example.com>",
		"Contact: <sip:+12195550714@wa.meta.vc;transport=tls;ob>;isfocus",
		"Call-ID: outgoing:wacid.HBgLMTIxOTU1NTA3MTQVAgASGCA4QkY1",
		"CSeq: 31159 INVITE",
		"X-FB-External-Domain: wa.meta.vc",
		"Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS",
		"User-Agent: Facebook SipGateway",
	}
	return sipText("", append(lines, extra...)...)
}

// TestSipgoKeepsUserParamsInUser documents the sipgo v1.7.2 parsing that
// ParseWhatsAppInvite has to undo: user-params stay in Uri.User.
func TestSipgoKeepsUserParamsInUser(t *testing.T) {
	t.Parallel()
	var u sipmsg.Uri
	require.NoError(t, sipmsg.ParseUri("sip:+1234567890;tgrp=wacall;trunk-context=byoc.example.com@sip.example.com;transport=tls", &u))
	assert.Equal(t, "+1234567890;tgrp=wacall;trunk-context=byoc.example.com", u.User)
	assert.Equal(t, "sip.example.com", u.Host)
	assert.Equal(t, "tls", u.UriParams.GetOr("transport", ""))
}

func TestParseWhatsAppInvite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		text string
		want WhatsAppInfo
	}{
		{
			name: "meta sample with wacid and cta payload",
			text: metaInvite("sip:+12145551869@meta-voip.example.com;transport=tls",
				"x-wa-meta-wacid: wacid.HBgLMTIxOTU1NTA3MTQVAgASGCA4QkY1",
				"x-wa-meta-cta-payload: order-42"),
			want: WhatsAppInfo{
				WACID:          "wacid.HBgLMTIxOTU1NTA3MTQVAgASGCA4QkY1",
				CallerNumber:   "+12195550714",
				BusinessNumber: "+12145551869",
				CTAPayload:     "order-42",
				Headers: map[string]string{
					"x-wa-meta-wacid":       "wacid.HBgLMTIxOTU1NTA3MTQVAgASGCA4QkY1",
					"x-wa-meta-cta-payload": "order-42",
				},
			},
		},
		{
			name: "request-uri user-params are stripped and kept",
			text: metaInvite("sip:+1234567890;tgrp=wacall;trunk-context=byoc.example.com@sip.example.com;transport=tls"),
			want: WhatsAppInfo{
				WACID:          "wacid.HBgLMTIxOTU1NTA3MTQVAgASGCA4QkY1",
				CallerNumber:   "+12195550714",
				BusinessNumber: "+1234567890",
				UserParams:     map[string]string{"tgrp": "wacall", "trunk-context": "byoc.example.com"},
			},
		},
		{
			name: "header names are case-insensitive; newer headers are kept",
			text: metaInvite("sip:%2B12145551869@meta-voip.example.com",
				"X-WA-Meta-WACID: wacid.ABC",
				"X-Wa-Meta-Deeplink-Payload: promo",
				"x-wa-meta-phone-number-id: 1234"),
			want: WhatsAppInfo{
				WACID:           "wacid.ABC",
				CallerNumber:    "+12195550714",
				BusinessNumber:  "+12145551869",
				DeeplinkPayload: "promo",
				Headers: map[string]string{
					"x-wa-meta-wacid":            "wacid.ABC",
					"x-wa-meta-deeplink-payload": "promo",
					"x-wa-meta-phone-number-id":  "1234",
				},
			},
		},
		{
			name: "bye with duration",
			text: sipText("",
				"BYE sip:+12145551869@meta-voip.example.com;transport=tls SIP/2.0",
				"Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKbye",
				"From: <sip:+12195550714@wa.meta.vc>;tag=a",
				"To: <sip:+12145551869@meta-voip.example.com>;tag=b",
				"Call-ID: outgoing:wacid.XYZ",
				"CSeq: 31160 BYE",
				"x-wa-meta-wacid: wacid.XYZ",
				"x-wa-meta-call-duration: 42"),
			want: WhatsAppInfo{
				WACID:          "wacid.XYZ",
				CallerNumber:   "+12195550714",
				BusinessNumber: "+12145551869",
				Duration:       "42",
				Headers:        map[string]string{"x-wa-meta-wacid": "wacid.XYZ", "x-wa-meta-call-duration": "42"},
			},
		},
		{
			name: "invalid numbers are left empty",
			text: sipText("",
				"INVITE sip:support@example.com SIP/2.0",
				"Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKx",
				"From: <sip:anonymous@wa.meta.vc>;tag=a",
				"To: <sip:support@example.com>",
				"Call-ID: not-meta",
				"CSeq: 1 INVITE"),
			want: WhatsAppInfo{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ParseWhatsAppInvite(parseRequest(t, tc.text))
			assert.Equal(t, tc.want, got)
		})
	}
	assert.Equal(t, WhatsAppInfo{}, ParseWhatsAppInvite(nil))
}

func TestSafeHeaderValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "order-42", want: "order-42"},
		{in: "  padded\tvalue ", want: "padded\tvalue"},
		{in: "olá ☎", want: "olá ☎"},
		{in: "x\r\nBYE sip:evil SIP/2.0", wantErr: true},
		{in: "x\nInjected: 1", wantErr: true},
		{in: "x\rInjected: 1", wantErr: true},
		{in: "nul\x00byte", wantErr: true},
		{in: "del\x7f", wantErr: true},
		{in: "bad utf8 \xff", wantErr: true},
	}
	for _, tc := range tests {
		got, err := SafeHeaderValue(tc.in)
		if tc.wantErr {
			assert.ErrorIs(t, err, ErrUnsafeHeaderValue, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, got)
	}
}

func TestWarning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		warning []string
		want    string
	}{
		{name: "meta permission", warning: []string{`399 wa.meta.vc "No Approved Call Permission Found"`}, want: "No Approved Call Permission Found"},
		{name: "escaped quote", warning: []string{`399 wa.meta.vc "say \"hi\""`}, want: `say "hi"`},
		{name: "first of two", warning: []string{`399 wa.meta.vc "first"`, `399 other "second"`}, want: "first"},
		{name: "comma list", warning: []string{`399 wa.meta.vc "first", 399 x "second"`}, want: "first"},
		{name: "not rfc format", warning: []string{"something odd"}, want: "something odd"},
		{name: "none", want: ""},
	}
	for _, tc := range tests {
		res := sipmsg.NewResponse(403, "Forbidden")
		for _, w := range tc.warning {
			res.AppendHeader(sipmsg.NewHeader("Warning", w))
		}
		assert.Equal(t, tc.want, Warning(res), tc.name)
	}
	assert.Equal(t, "", Warning(nil))
}

func TestNormalizeNumber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"+12145551869", "+12145551869"},
		{"12145551869", "+12145551869"},
		{"+55 (11) 98765-4321", "+5511987654321"},
		{" +44.20.7946.0018 ", "+442079460018"},
		{"+1234567", "+1234567"},                 // 7 digits
		{"+123456789012345", "+123456789012345"}, // 15 digits
		{"+123456", ""},                          // too short
		{"+1234567890123456", ""},                // too long
		{"0044 20 7946 0018", ""},                // international prefix, not E.164
		{"+1 214 555 1869 ext 2", ""},
		{"++12145551869", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := NormalizeNumber(tc.in)
		if tc.want == "" {
			assert.ErrorIs(t, err, ErrInvalidNumber, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestDigestUsername(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"+12145551869":      "12145551869",
		"12145551869":       "12145551869",
		"+55 11 98765-4321": "5511987654321",
		"+0 12":             "012", // invalid: digits kept
	} {
		assert.Equal(t, want, DigestUsername(in), in)
	}
}
