package sip

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	sipmsg "github.com/emiago/sipgo/sip"
)

// Meta's custom headers (whatsapp-calling.md §5.2). SIP header names are case-insensitive
// (RFC 3261 §7.3.1) and sipgo's GetHeader lower-cases both sides, so the spelling here is
// only what we write.
const (
	HeaderWACID           = "x-wa-meta-wacid"
	HeaderCallDuration    = "x-wa-meta-call-duration"
	HeaderCTAPayload      = "x-wa-meta-cta-payload"
	HeaderDeeplinkPayload = "x-wa-meta-deeplink-payload"
	// HeaderExternalDomain marks requests from Meta's edge. It is spoofable by anyone who
	// reaches our TLS port, so it is never a substitute for digest + source ACL
	// (whatsapp-calling.md §5.1).
	HeaderExternalDomain = "X-FB-External-Domain"

	// metaHeaderPrefix covers the documented headers above and the newer, partly
	// undocumented ones (x-wa-meta-user-id, -username, -phone-number-id, -country-code).
	metaHeaderPrefix = "x-wa-meta-"

	// callIDPrefix: Meta's Call-ID for a user-initiated call is "outgoing:" + WACID.
	callIDPrefix = "outgoing:"
)

// WhatsAppInfo is what Meta tells us about a call in its SIP headers. It is parsed from the
// user-initiated INVITE and, for Duration, from Meta's BYE (whatsapp-calling.md §5.2).
type WhatsAppInfo struct {
	// WACID is the WhatsApp call id ("wacid.…"), from x-wa-meta-wacid or the Call-ID.
	WACID string
	// CallerNumber is the WhatsApp user's number in E.164 with '+' (From user), or "" when
	// the From user is not a valid E.164 number.
	CallerNumber string
	// BusinessNumber is our business number in E.164 with '+' (Request-URI user with Meta's
	// user-params removed), or "" when it is not a valid E.164 number.
	BusinessNumber string
	// UserParams are the Request-URI user-params Meta appends from the number's
	// request_uri_user_params setting, e.g. tgrp and trunk-context (RFC 3966 §5.1.5 style).
	UserParams map[string]string
	// CTAPayload and DeeplinkPayload carry the business payload of a call button or a
	// wa.me/call deep link.
	CTAPayload      string
	DeeplinkPayload string
	// Duration is x-wa-meta-call-duration (seconds, as sent) on Meta's BYE.
	Duration string
	// Headers holds every x-wa-meta-* header by lower-case name, including the newer ones
	// we do not model (user-id, username, phone-number-id, country-code).
	Headers map[string]string
}

// ParseWhatsAppInvite extracts Meta's call information from an INVITE (or a BYE, for
// Duration). It never fails: missing or malformed fields are left empty, and the caller
// decides what is mandatory.
func ParseWhatsAppInvite(req *sipmsg.Request) WhatsAppInfo {
	var info WhatsAppInfo
	if req == nil {
		return info
	}

	for _, h := range req.Headers() {
		name := strings.ToLower(h.Name())
		if !strings.HasPrefix(name, metaHeaderPrefix) {
			continue
		}
		if info.Headers == nil {
			info.Headers = make(map[string]string)
		}
		if _, seen := info.Headers[name]; !seen { // first occurrence wins
			info.Headers[name] = strings.TrimSpace(h.Value())
		}
	}
	info.WACID = info.Headers[HeaderWACID]
	info.CTAPayload = info.Headers[HeaderCTAPayload]
	info.DeeplinkPayload = info.Headers[HeaderDeeplinkPayload]
	info.Duration = info.Headers[HeaderCallDuration]

	if info.WACID == "" {
		if cid := req.CallID(); cid != nil {
			if rest, ok := strings.CutPrefix(cid.Value(), callIDPrefix); ok {
				info.WACID = rest
			}
		}
	}

	if from := req.From(); from != nil {
		user, _ := splitUserParams(uriUser(&from.Address))
		info.CallerNumber, _ = NormalizeNumber(user)
	}

	user, params := splitUserParams(uriUser(&req.Recipient))
	info.BusinessNumber, _ = NormalizeNumber(user)
	info.UserParams = params
	return info
}

// uriUser returns the user part of a SIP URI as sent. sipgo's URI parser treats the first
// ':' before '@' as the user/password separator (parse_uri.go uriStateUser), so a user-param
// value containing ':' would land in Password; we glue it back, since Meta never sends
// passwords in URIs.
func uriUser(u *sipmsg.Uri) string {
	user := u.User
	if u.Password != "" {
		user += ":" + u.Password
	}
	return user
}

// splitUserParams splits "+12145551869;tgrp=wacall;trunk-context=byoc.example.com" into the
// number and its user-params. sipgo v1.7.2 keeps user-params inside Uri.User (it only splits
// at '@'), so Request-URIs like
// sip:+1234567890;tgrp=wacall;trunk-context=byoc.example.com@sip.example.com parse with that
// whole string as the user; this undoes it. Escaped characters (%2B) are decoded.
func splitUserParams(user string) (string, map[string]string) {
	number, rest, found := strings.Cut(user, ";")
	number = unescape(number)
	if !found {
		return number, nil
	}
	params := make(map[string]string)
	for _, p := range strings.Split(rest, ";") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		params[strings.ToLower(unescape(k))] = unescape(v)
	}
	return number, params
}

func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// ErrUnsafeHeaderValue is returned by SafeHeaderValue.
var ErrUnsafeHeaderValue = errors.New("sip: header value contains control characters or invalid UTF-8")

// SafeHeaderValue checks a value that came from outside (config, a Graph/BSP payload, the
// other leg) before it is put into a SIP header. sipgo writes header values verbatim and has
// no validator (its README mentions sip.ValidateRequest, which v1.7.2 does not contain;
// go-libs.md §1.1), so a CR or LF would let the value inject headers or a body (CRLF
// injection). RFC 3261 §25.1 allows no control characters in header values other than
// HTAB inside LWS; we reject every other C0 control, DEL and invalid UTF-8. The value is
// returned with surrounding whitespace trimmed.
func SafeHeaderValue(v string) (string, error) {
	if !utf8.ValidString(v) {
		return "", ErrUnsafeHeaderValue
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return "", fmt.Errorf("%w: byte 0x%02x at %d", ErrUnsafeHeaderValue, c, i)
		}
	}
	return strings.TrimSpace(v), nil
}

// Warning returns the text of the first Warning header of res, e.g. "No Approved Call
// Permission Found" from `Warning: 399 wa.meta.vc "No Approved Call Permission Found"`.
// Meta puts the reason for every error response there (whatsapp-calling.md §5.3). The
// format is warn-code SP warn-agent SP warn-text (RFC 3261 §20.43). When the header does
// not follow it, the raw value is returned; with no Warning header, "".
func Warning(res *sipmsg.Response) string {
	if res == nil {
		return ""
	}
	h := res.GetHeader("Warning")
	if h == nil {
		return ""
	}
	raw := strings.TrimSpace(h.Value())
	code, rest, ok := strings.Cut(raw, " ")
	if !ok || len(code) != 3 {
		return raw
	}
	_, text, ok := strings.Cut(strings.TrimLeft(rest, " "), " ") // skip warn-agent
	if !ok {
		return raw
	}
	text = strings.TrimLeft(text, " ")
	if !strings.HasPrefix(text, `"`) {
		return raw
	}
	if s, ok := unquote(text); ok {
		return s
	}
	return raw
}

// unquote reads one SIP quoted-string (RFC 3261 §25.1: '\' escapes one character) from
// the start of s; anything after the closing quote (another comma-separated warning) is
// ignored.
func unquote(s string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", false
}

// ErrInvalidNumber is returned by NormalizeNumber.
var ErrInvalidNumber = errors.New("sip: not an E.164 number")

// NormalizeNumber turns a phone number into E.164 with a leading '+' ("+12145551869").
// Visual separators (space, '-', '.', '(', ')') are dropped and the '+' is optional, but the
// number must already include its country code: E.164 numbers are at most 15 digits and
// never start with 0 (ITU-T E.164 §6); we also require at least 7 digits, which rules out
// short codes that WhatsApp cannot call. "00" international prefixes are rejected rather
// than guessed.
func NormalizeNumber(s string) (string, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	var b strings.Builder
	b.Grow(len(s) + 1)
	b.WriteByte('+')
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if digits == 0 && c == '0' {
				return "", fmt.Errorf("%w: %q starts with 0 (country code missing?)", ErrInvalidNumber, s)
			}
			b.WriteByte(c)
			digits++
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return "", fmt.Errorf("%w: %q has %q", ErrInvalidNumber, s, c)
		}
	}
	if digits < 7 || digits > 15 {
		return "", fmt.Errorf("%w: %q has %d digits, want 7-15", ErrInvalidNumber, s, digits)
	}
	return b.String(), nil
}

// DigestUsername is the digest username Meta uses and expects for a business number: the
// E.164 digits without '+' (whatsapp-calling.md §0 items 13-14), while SIP URIs keep the '+'.
// Invalid input falls back to its digits, so a misconfigured number still yields a
// predictable username rather than "".
func DigestUsername(number string) string {
	if n, err := NormalizeNumber(number); err == nil {
		return n[1:]
	}
	var b strings.Builder
	for i := 0; i < len(number); i++ {
		if c := number[i]; c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
