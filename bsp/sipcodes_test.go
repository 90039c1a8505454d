package bsp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wabridge/wabridge/bsp"
)

// TestToSIP pins the one mapping table from provider failures to SIP.
func TestToSIP(t *testing.T) {
	t.Parallel()
	api := func(status, code int) error {
		return fmt.Errorf("bsp: meta connect: %w", &bsp.APIError{Provider: bsp.ProviderMeta, HTTPStatus: status, Code: code, Message: "m"})
	}
	cases := []struct {
		name   string
		err    error
		code   int
		reason string
	}{
		{"nil", nil, 200, "OK"},
		{"138006 no permission", api(401, 138006), 403, "No Approved Call Permission Found"},
		{"138001 uncallable", api(400, 138001), 404, "Not Found"},
		{"138002 concurrency", api(429, 138002), 503, "Service Unavailable"},
		{"138003 duplicate call", api(400, 138003), 486, "Busy Here"},
		{"138005 rate", api(429, 138005), 503, "Service Unavailable"},
		{"138007 sdp timeout", api(500, 138007), 408, "Request Timeout"},
		{"138000 calling disabled", api(401, 138000), 403, "Forbidden"},
		{"138012 daily limit", api(400, 138012), 403, "Forbidden"},
		{"138013 country", api(400, 138013), 403, "Forbidden"},
		{"131055 SIP mode", api(400, 131055), 503, "Service Unavailable"},
		{"100 invalid parameter", api(400, 100), 488, "Not Acceptable Here"},
		{"190 bad token", api(401, 190), 503, "Service Unavailable"},
		{"138021 media timeout", api(0, 138021), 408, "Request Timeout"},
		{"unknown code, 500", api(500, 0), 503, "Service Unavailable"},
		{"unknown code, 502", api(502, 99999), 503, "Service Unavailable"},
		{"unknown code, 404", api(404, 0), 503, "Service Unavailable"},
		{"unknown code, 400", api(400, 0), 500, "Server Internal Error"},
		{"unknown code, 408", api(408, 0), 408, "Request Timeout"},
		{"unknown webhook error", api(0, 99999), 503, "Service Unavailable"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), 408, "Request Timeout"},
		{"net timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, 408, "Request Timeout"},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), 487, "Request Terminated"},
		{"unsupported", bsp.ErrUnsupported, 501, "Not Implemented"},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, 503, "Service Unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := bsp.ToSIP(tc.err)
			assert.Equal(t, tc.code, got.Code)
			assert.Equal(t, tc.reason, got.Reason)
		})
	}
	w := bsp.ToSIP(&bsp.APIError{Provider: bsp.ProviderPositus, HTTPStatus: 401, Code: 138006, Message: "No approved call permission"}).Warning
	assert.Equal(t, "WhatsApp via positus error 138006: No approved call permission", w)
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestErrorEnvelopes: every error spelling a provider may use becomes an APIError.
func TestErrorEnvelopes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		status     int
		want       bsp.APIError
	}{
		{"graph", goldenBody(t, "meta/error-response.json"), 401, bsp.APIError{Provider: "meta", HTTPStatus: 401, Code: 138006, Type: "OAuthException",
			Message: "No approved call permission found", Details: "No approved call permission found for the recipient", TraceID: "A1b2C3d4E5f6"}},
		{"graph with string code and object error_data", `{"error":{"message":"Limit","code":"138012","error_subcode":2494055,"error_data":{"next_allowed":"1745622600"}}}`, 400,
			bsp.APIError{Provider: "meta", HTTPStatus: 400, Code: 138012, Subcode: 2494055, Message: "Limit", Details: `{"next_allowed":"1745622600"}`}},
		{"360dialog string error", `{"error":"invalid api key"}`, 401, bsp.APIError{Provider: "meta", HTTPStatus: 401, Message: "invalid api key"}},
		{"errors array", `{"errors":[{"code":131055,"message":"SIP enabled"}]}`, 400, bsp.APIError{Provider: "meta", HTTPStatus: 400, Code: 131055, Message: "SIP enabled"}},
		{"message", `{"message":"number not found","code":404}`, 404, bsp.APIError{Provider: "meta", HTTPStatus: 404, Code: 404, Message: "number not found"}},
		{"html", "<html>\n<body>Bad Gateway</body></html>", 502, bsp.APIError{Provider: "meta", HTTPStatus: 502, Message: "<html> <body>Bad Gateway</body></html>"}},
		{"empty", "", 503, bsp.APIError{Provider: "meta", HTTPStatus: 503, Message: "Service Unavailable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := bsp.ParseErrorBody(bsp.ProviderMeta, tc.status, []byte(tc.body))
			assert.Equal(t, tc.want, *got)
		})
	}
}

func goldenBody(t *testing.T, name string) string { return goldenWith(t, name, nil) }
