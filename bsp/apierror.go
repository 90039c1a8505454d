package bsp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// APIError is a failure reported by a provider: an HTTP error answer to a call action, or an
// entry of a webhook's errors[] array. Code is Meta's error code (138006, 131055, ...) when the
// provider passed Graph's envelope through, 0 otherwise. Pass it to ToSIP for its SIP meaning.
type APIError struct {
	Provider   string
	HTTPStatus int    // 0 for webhook errors
	Code       int    // Graph's error code
	Subcode    int    // Graph's error_subcode
	Type       string // Graph's type, e.g. "OAuthException"
	Message    string // human-readable text from the provider
	Details    string // error_data.details, or error_data itself when it is not an object
	TraceID    string // fbtrace_id, for Meta support tickets
	Href       string // documentation link (webhook errors)
}

// Error reads like "HTTP 401, error 138006: No approved call permission (details)
// [fbtrace_id …]". The provider and action are added by the wrapping error of the call that
// failed.
func (e *APIError) Error() string {
	var parts []string
	if e.HTTPStatus != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", e.HTTPStatus))
	}
	if e.Code != 0 {
		parts = append(parts, fmt.Sprintf("error %d", e.Code))
	}
	var b strings.Builder
	b.WriteString(strings.Join(parts, ", "))
	if e.Message != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
	}
	if e.Details != "" && e.Details != e.Message {
		b.WriteString(" (")
		b.WriteString(e.Details)
		b.WriteString(")")
	}
	if e.TraceID != "" {
		b.WriteString(" [fbtrace_id ")
		b.WriteString(e.TraceID)
		b.WriteString("]")
	}
	if b.Len() == 0 {
		return "provider error"
	}
	return b.String()
}

// graphError is Graph's error object, {"message","type","code","error_subcode","error_data",
// "fbtrace_id"} (whatsapp-calling.md §2.6). error_data is usually {"details": "..."} but 138012
// puts other fields there, so it is kept raw.
type graphError struct {
	Message   string          `json:"message"`
	Type      string          `json:"type"`
	Code      flexInt         `json:"code"`
	Subcode   flexInt         `json:"error_subcode"`
	ErrorData json.RawMessage `json:"error_data"`
	TraceID   string          `json:"fbtrace_id"`
	Href      string          `json:"href"`
	Title     string          `json:"error_user_title"`
	UserMsg   string          `json:"error_user_msg"`
}

func (g *graphError) apiError(provider string, status int) *APIError {
	msg := g.Message
	if msg == "" {
		msg = g.UserMsg
	}
	if msg == "" {
		msg = g.Title
	}
	return &APIError{
		Provider:   provider,
		HTTPStatus: status,
		Code:       int(g.Code),
		Subcode:    int(g.Subcode),
		Type:       g.Type,
		Message:    msg,
		Details:    errorDetails(g.ErrorData),
		TraceID:    g.TraceID,
		Href:       g.Href,
	}
}

// errorDetails reads error_data: {"details": "..."} in Meta's samples; anything else is kept as
// compact JSON text so nothing the provider said is lost.
func errorDetails(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	var obj struct {
		Details string `json:"details"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Details != "" {
		return obj.Details
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return ""
}

// maxErrorText bounds how much of an unparseable error body is kept in an APIError, so a
// provider's HTML error page does not end up in a SIP Warning header or a log line whole.
const maxErrorText = 256

// parseErrorBody turns a non-2xx answer into an *APIError. Accepted spellings, in order:
// Graph's {"error":{...}} (Meta, 360dialog's and the BSPs' pass-through); 360dialog's own
// {"error":"text"} (its OpenAPI utils.ErrorResp); {"errors":[{...}]} and {"message":"text"},
// which BSP gateways commonly use. Anything else keeps the start of the body as the message.
func parseErrorBody(provider string, status int, body []byte) *APIError {
	var env struct {
		Error   json.RawMessage `json:"error"`
		Errors  []graphError    `json:"errors"`
		Message string          `json:"message"`
		Code    flexInt         `json:"code"`
	}
	if err := json.Unmarshal(body, &env); err == nil {
		if len(env.Error) > 0 {
			var g graphError
			if json.Unmarshal(env.Error, &g) == nil && (g.Message != "" || g.Code != 0 || g.UserMsg != "") {
				return g.apiError(provider, status)
			}
			var s string
			if json.Unmarshal(env.Error, &s) == nil && s != "" {
				return &APIError{Provider: provider, HTTPStatus: status, Message: s}
			}
		}
		if len(env.Errors) > 0 {
			return env.Errors[0].apiError(provider, status)
		}
		if env.Message != "" || env.Code != 0 {
			return &APIError{Provider: provider, HTTPStatus: status, Code: int(env.Code), Message: env.Message}
		}
	}
	return &APIError{Provider: provider, HTTPStatus: status, Message: bodyText(status, body)}
}

// bodyText is a short, printable rendering of an unparseable body.
func bodyText(status int, body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return http.StatusText(status)
	}
	if len(s) > maxErrorText {
		s = s[:maxErrorText]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, s)
}
