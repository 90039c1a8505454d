package bsp

import (
	"encoding/json"
	"strings"
)

// NormalizeSDP returns sdp with real CRLF line ends, which is what Meta requires in
// session.sdp and what SDP parsers expect (RFC 8866 §5). Webhooks and BSP copies are seen with
// the line ends double-escaped (a literal backslash-r-backslash-n, pion's "EOF" pitfall in
// whatsapp-calling.md §7) or as bare LF; both are repaired. Outgoing SDPs go through it too, so a
// pre_accept and its accept carry byte-identical SDPs as Meta requires.
func NormalizeSDP(sdp string) string {
	s := sdp
	if !strings.Contains(s, "\n") && strings.Contains(s, `\n`) {
		s = strings.ReplaceAll(s, `\r\n`, "\n")
		s = strings.ReplaceAll(s, `\n`, "\n")
	}
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, "\r\n") + "\r\n"
}

// legacySDP reads the legacy connection.webrtc.sdp field: a JSON string that holds
// {"sdp":"...","type":"offer"} (Meta's old shape, whatsapp-calling.md §2.1), or a plain SDP (Positus'
// copy). typ is "" when the field does not say.
func legacySDP(v string) (sdp, typ string) {
	t := strings.TrimSpace(v)
	if strings.HasPrefix(t, "{") {
		var inner struct {
			SDP  string `json:"sdp"`
			Type string `json:"type"`
		}
		if json.Unmarshal([]byte(t), &inner) == nil && inner.SDP != "" {
			return inner.SDP, strings.ToLower(inner.Type)
		}
	}
	return v, ""
}
