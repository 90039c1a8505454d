package wasim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// MetaDomain is Meta's SIP domain (whatsapp-calling.md §0 item 12).
const MetaDomain = "wa.meta.vc"

// Header names and values Meta uses (whatsapp-calling.md §5.2). SIP header names compare
// case-insensitively; the spelling here is what the edge writes.
const (
	headerWACID           = "x-wa-meta-wacid"
	headerCallDuration    = "x-wa-meta-call-duration"
	headerCTAPayload      = "x-wa-meta-cta-payload"
	headerDeeplinkPayload = "x-wa-meta-deeplink-payload"
	headerExternalDomain  = "X-FB-External-Domain"

	// allowMethods is the Allow list in Meta's requests and responses (§5.1).
	allowMethods = "INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS"
	// userAgent is what Meta's SIP gateway calls itself (§5.2).
	userAgent = "Facebook SipGateway"
	// callIDPrefix: the Call-ID of a user-initiated call is "outgoing:" + WACID (§5.2).
	callIDPrefix = "outgoing:"
)

// Reasons for EndedBy.
const (
	EndedRemoteBye  = "remote-bye"  // wabridge sent BYE
	EndedLocalBye   = "local-bye"   // the edge sent BYE (Hangup, Close, or after a fatal violation)
	EndedCancel     = "cancel"      // CANCEL before the final response, in either direction
	EndedRejected   = "rejected"    // a non-2xx final response, in either direction
	EndedAckTimeout = "ack-timeout" // the edge answered a business-initiated call and no ACK came
	EndedFailed     = "failed"      // transport error or timeout before a final response
)

// ErrViolation is wrapped by Dial's error when the call was set up but broke one of Meta's
// rules badly enough that the real call would die (e.g. the 200 OK lost the Record-Route
// set). The Call is returned alongside, with the details in Violations.
var ErrViolation = errors.New("wasim: WhatsApp strictness violation")

// CallError is a final non-2xx SIP response that ended a call attempt. Use errors.As.
type CallError struct {
	Code    int
	Reason  string
	Warning string // text of the Warning header, if any
}

func (e *CallError) Error() string {
	if e.Warning != "" {
		return fmt.Sprintf("wasim: call failed: %d %s (%s)", e.Code, e.Reason, e.Warning)
	}
	return fmt.Sprintf("wasim: call failed: %d %s", e.Code, e.Reason)
}

// warningHeader is Meta's way of explaining an error: Warning: 399 wa.meta.vc "<text>"
// (whatsapp-calling.md §5.3, RFC 3261 §20.43).
func warningHeader(text string) sip.Header {
	text = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", " ", "\n", " ").Replace(text)
	return sip.NewHeader("Warning", `399 `+MetaDomain+` "`+text+`"`)
}

// warningText extracts the quoted text of the first Warning header.
func warningText(m sip.Message) string {
	hs := m.GetHeaders("Warning")
	if len(hs) == 0 {
		return ""
	}
	v := hs[0].Value()
	start := strings.IndexByte(v, '"')
	if start < 0 {
		return v
	}
	var b strings.Builder
	for i := start + 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if i+1 < len(v) {
				i++
				b.WriteByte(v[i])
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

// headerValues returns the values of all headers called name, in order.
func headerValues(m sip.Message, name string) []string {
	hs := m.GetHeaders(name)
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, h.Value())
	}
	return out
}

// hasToken reports whether a comma-separated header (Require, Supported) lists token.
func hasToken(m sip.Message, name, token string) bool {
	for _, v := range headerValues(m, name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// isE164 reports whether s is "+" followed by 7 to 15 digits, not starting with 0: the way
// Meta writes numbers in SIP URIs.
func isE164(s string) bool {
	digits, ok := strings.CutPrefix(s, "+")
	if !ok || len(digits) < 7 || len(digits) > 15 || digits[0] == '0' {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// isIPHost reports whether a URI host is an IP literal ("1.2.3.4", "[::1]").
func isIPHost(host string) bool {
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil
}

// hostMatches implements Meta's From-host rule: the host must be the configured SIP server
// hostname or a parent domain of it (configured bar.foo.com accepts foo.com;
// whatsapp-calling.md §5.3).
func hostMatches(fromHost, configured string) bool {
	f := strings.TrimSuffix(strings.ToLower(fromHost), ".")
	c := strings.TrimSuffix(strings.ToLower(configured), ".")
	return f != "" && (f == c || strings.HasSuffix(c, "."+f))
}

// safeHeaderValue rejects values that would inject headers (CR, LF, other controls); sipgo
// writes header values verbatim (go-libs.md §1.1).
func safeHeaderValue(name, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return fmt.Errorf("wasim: %s contains control character 0x%02x", name, c)
		}
	}
	return nil
}

// newWACID returns a WhatsApp call id. Real ones are "wacid." followed by base64 of an
// opaque structure (whatsapp-calling.md §5.2); URL-safe base64 keeps it a valid Call-ID word.
func newWACID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "wacid." + base64.RawURLEncoding.EncodeToString(b[:])
}

// newTag returns a From/To tag shaped like Meta's ("8a0f7e65-…", a UUID).
func newTag() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// randUint32 returns a random non-zero value for SSRCs, sequence and CSeq bases.
func randUint32() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]); v != 0 {
			return v
		}
	}
}
