package bspsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wabridge/wabridge/bsp"
)

// simAppID is the app id the emulator binds SIP servers to (Meta binds each server to the app
// whose token posted it, §1.2).
const simAppID = "1234567890"

// defaultSIPPassword is returned with include_sip_credentials when Config.SIPPassword is empty.
const defaultSIPPassword = "bspsim-sip-password"

// resetSettings starts from the calling object of Meta's documented GET answer, with SIP
// disabled: the sample's number is in SIP mode, where Graph call actions fail with 131055, and an
// API-mode emulator starts in API mode (the servers stay, as Meta keeps them when SIP is off).
func (s *Server) resetSettings() error {
	v, err := s.golden.value("meta/settings-response.json")
	if err != nil {
		return err
	}
	c, ok := lookup(v, "calling").(map[string]any)
	if !ok {
		return fmt.Errorf("bspsim: meta/settings-response.json has no calling object")
	}
	if sip, ok := c["sip"].(map[string]any); ok {
		sip["status"] = "DISABLED"
	}
	s.settings = c
	return nil
}

// SettingsJSON returns the stored calling object, Meta's spelling.
func (s *Server) SettingsJSON() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(s.settings)
	return b
}

// SetSettingsJSON replaces the stored calling object (tests put a number in SIP mode, disable
// calling, or seed holidays with it).
func (s *Server) SetSettingsJSON(calling []byte) error {
	v, err := decodeStrict(calling)
	if err != nil {
		return err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("bspsim: the calling object must be a JSON object")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settings = m
	return nil
}

func deepCopy(v any) any {
	b, _ := json.Marshal(v)
	out, _ := decodeStrict(b)
	return out
}

// getSettings renders the stored settings the way the provider answers.
func (s *Server) getSettings(withCredentials bool) (any, *graphError) {
	s.mu.Lock()
	c := deepCopy(s.settings).(map[string]any)
	s.mu.Unlock()
	pw := s.cfg.SIPPassword
	if pw == "" {
		pw = defaultSIPPassword
	}
	pwKey := "sip_user_password"
	if s.cfg.Provider == bsp.ProviderVectalk {
		pwKey = "password" // Vectalk's documented spelling (§6b)
	}
	if servers, ok := lookup(c, "sip.servers").([]any); ok {
		for _, e := range servers {
			if m, ok := e.(map[string]any); ok && withCredentials {
				m[pwKey] = pw
			}
		}
	}
	switch s.cfg.Provider {
	case bsp.ProviderConceptoMovil:
		return c, nil // Guess: the flattened object, like its POST body
	case bsp.ProviderVectalk:
		vectalkView(c)
	}
	return map[string]any{"calling": c}, nil
}

// vectalkView rewrites a calling object the way Vectalk's GET documents it (§6b): lower-case
// enabled/disabled, call_hours.timezone, the IP addresses used for calls.
func vectalkView(c map[string]any) {
	lower := func(m map[string]any, k string) {
		if v, ok := m[k].(string); ok {
			m[k] = strings.ToLower(v)
		}
	}
	lower(c, "status")
	lower(c, "callback_permission_status")
	if m, ok := c["sip"].(map[string]any); ok {
		lower(m, "status")
	}
	if m, ok := c["call_hours"].(map[string]any); ok {
		lower(m, "status")
		if tz, ok := m["timezone_id"]; ok {
			m["timezone"] = tz
			delete(m, "timezone_id")
		}
		m["day_of_week_start"] = "MONDAY"
	}
	c["ip_addresses"] = map[string]any{"default": []any{"157.240.0.1"}}
	c["video"] = map[string]any{"status": "disabled"}
	delete(c, "restrictions")
}

// postSettings applies an update with Meta's semantics: fields present replace the stored ones,
// call_hours is replaced wholesale (omitting holiday_schedule deletes it, §1.2), sip.servers
// replaces this app's servers ([] deletes), sip.status DISABLED keeps them.
func (s *Server) postSettings(ep *endpoint, body any) (any, *graphError) {
	calling, _ := body.(map[string]any)
	if ep.shape.root == "" {
		calling, _ = lookup(body, "calling").(map[string]any)
	}
	if calling == nil {
		return nil, invalid("calling must be an object")
	}
	lenient := s.cfg.Provider == bsp.ProviderVectalk // its GET shows lower case; accept either
	if e := validateCalling(calling, lenient); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := deepCopy(s.settings).(map[string]any)
	for k, v := range calling {
		if k != "sip" {
			next[k] = upperEnums(k, v)
			continue
		}
		cur, _ := next["sip"].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
		}
		in := v.(map[string]any)
		if st, ok := in["status"].(string); ok {
			cur["status"] = strings.ToUpper(st)
		}
		if servers, ok := in["servers"].([]any); ok {
			out := make([]any, 0, len(servers))
			for _, e := range servers {
				m := e.(map[string]any)
				m["app_id"] = simAppID
				out = append(out, m)
			}
			cur["servers"] = out
		}
		next["sip"] = cur
	}
	if strings.EqualFold(str(next, "sip.status"), "ENABLED") {
		if servers, _ := lookup(next, "sip.servers").([]any); len(servers) == 0 {
			return nil, invalid("At least one SIP server is required while SIP is enabled")
		}
	}
	s.settings = next
	resp, err := s.golden.value(ep.response)
	if err != nil {
		return nil, &graphError{status: http.StatusInternalServerError, code: 1, message: err.Error()}
	}
	return resp, nil
}

// upperEnums stores enum values the way Meta returns them.
func upperEnums(key string, v any) any {
	switch key {
	case "status", "call_icon_visibility", "callback_permission_status", "srtp_key_exchange_protocol":
		if s, ok := v.(string); ok {
			return strings.ToUpper(s)
		}
	case "call_hours":
		if m, ok := v.(map[string]any); ok {
			if s, ok := m["status"].(string); ok {
				m["status"] = strings.ToUpper(s)
			}
		}
	}
	return v
}

// validateCalling checks an update the way §1.2–1.3 describe Meta's validation.
func validateCalling(c map[string]any, lenient bool) *graphError {
	enum := func(path string, v any, allowed ...string) *graphError {
		s, _ := v.(string)
		for _, a := range allowed {
			if s == a || (lenient && strings.EqualFold(s, a)) {
				return nil
			}
		}
		return invalid("Invalid %s %q; expected one of %s", path, s, strings.Join(allowed, ", "))
	}
	checks := []struct {
		key     string
		allowed []string
	}{
		{"status", []string{"ENABLED", "DISABLED"}},
		{"call_icon_visibility", []string{"DEFAULT", "DISABLE_ALL"}},
		{"callback_permission_status", []string{"ENABLED", "DISABLED"}},
		{"srtp_key_exchange_protocol", []string{"DTLS", "SDES"}},
	}
	for _, ck := range checks {
		if v, ok := c[ck.key]; ok {
			if e := enum(ck.key, v, ck.allowed...); e != nil {
				return e
			}
		}
	}
	if ch, ok := c["call_hours"].(map[string]any); ok {
		if e := validateCallHours(ch, enum); e != nil {
			return e
		}
	}
	if sip, ok := c["sip"].(map[string]any); ok {
		if v, ok := sip["status"]; ok {
			if e := enum("sip.status", v, "ENABLED", "DISABLED"); e != nil {
				return e
			}
		}
		servers, _ := sip["servers"].([]any)
		for _, e := range servers {
			m := e.(map[string]any)
			if h, _ := m["hostname"].(string); h == "" {
				return invalid("sip.servers[].hostname is required")
			}
			if p, ok := m["port"].(json.Number); ok {
				if n, err := p.Int64(); err != nil || n < 1 || n > 65535 {
					return invalid("sip.servers[].port %s is not a port", p)
				}
			}
			params, _ := m["request_uri_user_params"].(map[string]any)
			for k, v := range params {
				if len(k) > 128 || len(v.(string)) > 128 {
					return invalid("request_uri_user_params keys and values are limited to 128 characters")
				}
			}
		}
	}
	if codecs, ok := lookup(c, "audio.additional_codecs").([]any); ok {
		for _, v := range codecs {
			if e := enum("audio.additional_codecs[]", v, "PCMA", "PCMU"); e != nil {
				return e
			}
		}
	}
	if countries, ok := lookup(c, "call_icons.restrict_to_user_countries").([]any); ok {
		for _, v := range countries {
			if s, _ := v.(string); len(s) != 2 || strings.ToUpper(s) != s {
				return invalid("restrict_to_user_countries takes ISO 3166 alpha-2 codes, not %q", s)
			}
		}
	}
	return nil
}

// validateCallHours: status, timezone_id and a non-empty weekly schedule are required; times
// are HHMM, open before close, at most two windows a day without overlap; at most 20 holidays
// with YYYY-MM-DD dates (§1.2). Meta also refuses holidays in the past; the emulator does not,
// so the documented sample (2026-01-01) stays usable whatever the date.
func validateCallHours(ch map[string]any, enum func(string, any, ...string) *graphError) *graphError {
	st, ok := ch["status"]
	if !ok {
		return invalid("call_hours.status is required")
	}
	if e := enum("call_hours.status", st, "ENABLED", "DISABLED"); e != nil {
		return e
	}
	// FBE timezone ids are IANA-like ("America/Manaus"); the format is checked rather than
	// looked up, so the emulator needs no tzdata.
	if tz, _ := ch["timezone_id"].(string); tz == "" {
		return invalid("call_hours.timezone_id is required")
	} else if tz != "UTC" && (!strings.Contains(tz, "/") || strings.ContainsAny(tz, " \t")) {
		return invalid("Invalid timezone %q", tz)
	}
	weekly, _ := ch["weekly_operating_hours"].([]any)
	if len(weekly) == 0 {
		return invalid("call_hours.weekly_operating_hours must not be empty")
	}
	type window struct{ open, close int }
	byDay := map[string][]window{}
	for _, e := range weekly {
		m := e.(map[string]any)
		day, _ := m["day_of_week"].(string)
		if e := enum("day_of_week", day, "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"); e != nil {
			return e
		}
		o, okO := hhmm(m["open_time"])
		c, okC := hhmm(m["close_time"])
		if !okO || !okC {
			return invalid("open_time and close_time must be HHMM")
		}
		if o >= c {
			return invalid("open_time must be before close_time on %s", day)
		}
		for _, w := range byDay[day] {
			if o < w.close && w.open < c {
				return invalid("overlapping schedule on %s", day)
			}
		}
		byDay[day] = append(byDay[day], window{o, c})
		if len(byDay[day]) > 2 {
			return invalid("more than 2 entries for %s", day)
		}
	}
	holidays, _ := ch["holiday_schedule"].([]any)
	if len(holidays) > 20 {
		return invalid("holiday_schedule has more than 20 entries")
	}
	for _, e := range holidays {
		m := e.(map[string]any)
		d, _ := m["date"].(string)
		if _, err := time.Parse("2006-01-02", d); err != nil {
			return invalid("Invalid holiday_schedule date %q; use YYYY-MM-DD", d)
		}
		st, okS := hhmm(m["start_time"])
		en, okE := hhmm(m["end_time"])
		if !okS || !okE || st >= en {
			return invalid("holiday_schedule start_time/end_time must be HHMM with start before end")
		}
	}
	return nil
}

// hhmm parses Meta's "HHMM" time as minutes.
func hhmm(v any) (int, bool) {
	s, _ := v.(string)
	if len(s) != 4 || !allDigits(s) {
		return 0, false
	}
	h, m := int(s[0]-'0')*10+int(s[1]-'0'), int(s[2]-'0')*10+int(s[3]-'0')
	if h > 23 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}
