package bsp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Settings is a number's calling settings, Meta's "calling" object (whatsapp-calling.md §1). In
// an update only the fields that are set are sent; nil slices are left out and empty non-nil
// slices are sent as [] (which deletes, e.g. sip.servers: [] or holiday_schedule: []).
type Settings struct {
	Status                   string     // ENABLED | DISABLED
	CallIconVisibility       string     // DEFAULT | DISABLE_ALL
	CallIcons                *CallIcons // nil: unchanged
	CallHours                *CallHours // nil: unchanged; otherwise replaces Meta's call_hours wholesale
	CallbackPermissionStatus string     // ENABLED | DISABLED
	SRTPKeyExchangeProtocol  string     // DTLS | SDES; GET returns it only when it was set explicitly
	SIP                      *SIPSettings
	Audio                    *AudioSettings

	// Read-only, filled by GetSettings and never sent.
	Restrictions []Restriction
	IPAddresses  []string // Vectalk's ip_addresses.default (§1.4: undocumented by Meta)
}

// CallIcons restricts the call icon to users registered in some countries.
type CallIcons struct {
	RestrictToUserCountries []string // ISO codes; empty non-nil = no restriction
}

// CallHours is call_hours. Meta replaces the whole object on every update and deletes a
// holiday_schedule the update leaves out (§1.2), hence the nil/empty distinction below.
type CallHours struct {
	Status               string // ENABLED | DISABLED (open 24×7)
	TimezoneID           string // e.g. America/Manaus; GET may spell it "timezone" (Vectalk)
	WeeklyOperatingHours []OperatingHours
	// HolidaySchedule nil means "not present": GetSettings saw none, and SetSettings refuses to
	// send call_hours without it (ErrHolidayScheduleOmitted). An empty, non-nil slice clears it.
	HolidaySchedule []Holiday
}

// OperatingHours is one opening window; times are "HHMM" in the call hours' timezone.
type OperatingHours struct {
	DayOfWeek string // MONDAY … SUNDAY
	OpenTime  string
	CloseTime string
}

// Holiday closes calling on Date (YYYY-MM-DD) from StartTime to EndTime ("HHMM"). Meta's table
// calls the times open/close and its samples start/end; both are read, start/end are sent.
type Holiday struct {
	Date      string
	StartTime string
	EndTime   string
}

// SIPSettings is the number's SIP signalling configuration.
type SIPSettings struct {
	Status string // ENABLED | DISABLED; ENABLED makes the number SIP-only (§0 fact 1)
	// Servers nil: unchanged; empty non-nil: deletes this app's server (§1.2).
	Servers []SIPServer
}

// SIPServer is Meta's sip.servers[] entry.
type SIPServer struct {
	Hostname             string
	Port                 int               // 0: Meta's default 5061
	RequestURIUserParams map[string]string // appended as ;k=v to the user part of Meta's INVITEs
	// Read-only.
	AppID    string // the app that configured this server
	Password Secret // Meta's SIP password; only with include_sip_credentials=true
}

// AudioSettings is calling.audio.
type AudioSettings struct {
	AdditionalCodecs []string // PCMA, PCMU; empty non-nil removes them (Opus always stays)
}

// Restriction is a calling restriction Meta placed on the number (§1.4).
type Restriction struct {
	Type       string // RESTRICTED_BUSINESS_INITIATED_CALLING | RESTRICTED_USER_INITIATED_CALLING
	Reason     string
	Expiration time.Time
}

// Secret is a credential read from a provider. It prints and encodes as "[redacted]" so that
// logging or printing Settings never leaks Meta's SIP password; use string(s) for the value.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Format implements fmt.Formatter so every verb, %#v included, is redacted.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	fmt.Fprint(f, s.String())
}

// MarshalText redacts for encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText keeps the value (MarshalText would otherwise make decoding asymmetric).
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// --- wire shapes -----------------------------------------------------------------------------

// wireCalling is the calling object as sent. Pointers to slices keep nil (omitted) apart from
// empty (sent as []).
type wireCalling struct {
	Status                   string         `json:"status,omitempty"`
	CallIconVisibility       string         `json:"call_icon_visibility,omitempty"`
	CallIcons                *wireCallIcons `json:"call_icons,omitempty"`
	CallHours                *wireCallHours `json:"call_hours,omitempty"`
	CallbackPermissionStatus string         `json:"callback_permission_status,omitempty"`
	SRTPKeyExchangeProtocol  string         `json:"srtp_key_exchange_protocol,omitempty"`
	SIP                      *wireSIP       `json:"sip,omitempty"`
	Audio                    *wireAudio     `json:"audio,omitempty"`
	// Read-only fields, written only when printing (MarshalJSON), never in an update.
	Restrictions *wireRestrictions `json:"restrictions,omitempty"`
	IPAddresses  *wireIPAddresses  `json:"ip_addresses,omitempty"`
}

type wireCallIcons struct {
	RestrictToUserCountries *[]string `json:"restrict_to_user_countries,omitempty"`
}

type wireCallHours struct {
	Status               string         `json:"status,omitempty"`
	TimezoneID           string         `json:"timezone_id,omitempty"`
	WeeklyOperatingHours []wireHours    `json:"weekly_operating_hours"`
	HolidaySchedule      *[]wireHoliday `json:"holiday_schedule,omitempty"`
	// Timezone is Vectalk's and 1msg's spelling of timezone_id in GET answers (§1.4); read only.
	// Their day_of_week_start has no Meta counterpart and is ignored.
	Timezone string `json:"timezone,omitempty"`
}

type wireHours struct {
	DayOfWeek string `json:"day_of_week"`
	OpenTime  string `json:"open_time"`
	CloseTime string `json:"close_time"`
}

type wireHoliday struct {
	Date      string `json:"date"`
	StartTime string `json:"start_time,omitempty"`
	EndTime   string `json:"end_time,omitempty"`
	OpenTime  string `json:"open_time,omitempty"`  // read spelling only (Meta's table)
	CloseTime string `json:"close_time,omitempty"` // read spelling only
}

type wireSIP struct {
	Status  string           `json:"status,omitempty"`
	Servers *[]wireSIPServer `json:"servers,omitempty"`
}

type wireSIPServer struct {
	AppID                flexString        `json:"app_id,omitempty"`
	Hostname             string            `json:"hostname"`
	Port                 flexInt           `json:"port,omitempty"`
	RequestURIUserParams map[string]string `json:"request_uri_user_params,omitempty"`
	// Meta documents sip_user_password; 1msg's SDK and Vectalk say password (§1.4). Both read.
	SIPUserPassword Secret `json:"sip_user_password,omitempty"`
	Password        Secret `json:"password,omitempty"`
}

type wireAudio struct {
	AdditionalCodecs *[]string `json:"additional_codecs,omitempty"`
	Status           string    `json:"status,omitempty"` // Vectalk GET only; ignored
}

type wireRestrictions struct {
	RestrictionsList []wireRestriction `json:"restrictions_list"`
}

type wireRestriction struct {
	Type       string   `json:"type"`
	Reason     string   `json:"reason,omitempty"`
	Expiration unixTime `json:"expiration,omitempty"`
}

type wireIPAddresses struct {
	Default []string `json:"default"`
}

func ptrSlice[T any](s []T) *[]T {
	if s == nil {
		return nil
	}
	return &s
}

// toWire converts s. forUpdate leaves out the read-only fields a provider would reject.
func (s *Settings) toWire(forUpdate bool) wireCalling {
	w := wireCalling{
		Status:                   s.Status,
		CallIconVisibility:       s.CallIconVisibility,
		CallbackPermissionStatus: s.CallbackPermissionStatus,
		SRTPKeyExchangeProtocol:  s.SRTPKeyExchangeProtocol,
	}
	if s.CallIcons != nil {
		w.CallIcons = &wireCallIcons{RestrictToUserCountries: ptrSlice(s.CallIcons.RestrictToUserCountries)}
	}
	if ch := s.CallHours; ch != nil {
		wh := &wireCallHours{Status: ch.Status, TimezoneID: ch.TimezoneID, WeeklyOperatingHours: []wireHours{}}
		for _, h := range ch.WeeklyOperatingHours {
			wh.WeeklyOperatingHours = append(wh.WeeklyOperatingHours, wireHours(h))
		}
		if ch.HolidaySchedule != nil {
			hs := make([]wireHoliday, 0, len(ch.HolidaySchedule))
			for _, h := range ch.HolidaySchedule {
				hs = append(hs, wireHoliday{Date: h.Date, StartTime: h.StartTime, EndTime: h.EndTime})
			}
			wh.HolidaySchedule = &hs
		}
		w.CallHours = wh
	}
	if s.SIP != nil {
		ws := &wireSIP{Status: s.SIP.Status}
		if s.SIP.Servers != nil {
			srv := make([]wireSIPServer, 0, len(s.SIP.Servers))
			for _, v := range s.SIP.Servers {
				e := wireSIPServer{Hostname: v.Hostname, Port: flexInt(v.Port), RequestURIUserParams: v.RequestURIUserParams}
				if !forUpdate {
					e.AppID, e.SIPUserPassword = flexString(v.AppID), v.Password
				}
				srv = append(srv, e)
			}
			ws.Servers = &srv
		}
		w.SIP = ws
	}
	if s.Audio != nil {
		w.Audio = &wireAudio{AdditionalCodecs: ptrSlice(s.Audio.AdditionalCodecs)}
	}
	if !forUpdate {
		if s.Restrictions != nil {
			wr := &wireRestrictions{RestrictionsList: []wireRestriction{}}
			for _, r := range s.Restrictions {
				wr.RestrictionsList = append(wr.RestrictionsList, wireRestriction{Type: r.Type, Reason: r.Reason, Expiration: unixTime(r.Expiration)})
			}
			w.Restrictions = wr
		}
		if s.IPAddresses != nil {
			w.IPAddresses = &wireIPAddresses{Default: s.IPAddresses}
		}
	}
	return w
}

// MarshalJSON writes Meta's calling object, read-only fields included and the SIP password
// redacted; `wabridge settings get` prints this.
func (s Settings) MarshalJSON() ([]byte, error) { return json.Marshal(s.toWire(false)) }

// MarshalJSON writes unixTime as seconds (printing only).
func (t unixTime) MarshalJSON() ([]byte, error) {
	if time.Time(t).IsZero() {
		return []byte("0"), nil
	}
	return []byte(fmt.Sprint(time.Time(t).Unix())), nil
}

// UnmarshalJSON reads a calling object in any spelling seen: Meta's, Vectalk's lower-case
// enums with NOT_SET, "timezone" for "timezone_id", "password" for "sip_user_password",
// open/close holiday times, string ports.
func (s *Settings) UnmarshalJSON(b []byte) error {
	var w wireCalling
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Settings{
		Status:                   normEnum(w.Status),
		CallIconVisibility:       normEnum(w.CallIconVisibility),
		CallbackPermissionStatus: normEnum(w.CallbackPermissionStatus),
		SRTPKeyExchangeProtocol:  normEnum(w.SRTPKeyExchangeProtocol),
	}
	if w.CallIcons != nil {
		s.CallIcons = &CallIcons{}
		if w.CallIcons.RestrictToUserCountries != nil {
			s.CallIcons.RestrictToUserCountries = *w.CallIcons.RestrictToUserCountries
		}
	}
	if wh := w.CallHours; wh != nil {
		ch := &CallHours{Status: normEnum(wh.Status), TimezoneID: wh.TimezoneID}
		if ch.TimezoneID == "" {
			ch.TimezoneID = wh.Timezone
		}
		for _, h := range wh.WeeklyOperatingHours {
			ch.WeeklyOperatingHours = append(ch.WeeklyOperatingHours, OperatingHours{DayOfWeek: strings.ToUpper(h.DayOfWeek), OpenTime: h.OpenTime, CloseTime: h.CloseTime})
		}
		if wh.HolidaySchedule != nil {
			ch.HolidaySchedule = []Holiday{}
			for _, h := range *wh.HolidaySchedule {
				hd := Holiday{Date: h.Date, StartTime: h.StartTime, EndTime: h.EndTime}
				if hd.StartTime == "" {
					hd.StartTime = h.OpenTime
				}
				if hd.EndTime == "" {
					hd.EndTime = h.CloseTime
				}
				ch.HolidaySchedule = append(ch.HolidaySchedule, hd)
			}
		}
		s.CallHours = ch
	}
	if w.SIP != nil {
		s.SIP = &SIPSettings{Status: normEnum(w.SIP.Status)}
		if w.SIP.Servers != nil {
			s.SIP.Servers = []SIPServer{}
			for _, v := range *w.SIP.Servers {
				pw := v.SIPUserPassword
				if pw == "" {
					pw = v.Password
				}
				s.SIP.Servers = append(s.SIP.Servers, SIPServer{
					Hostname: v.Hostname, Port: int(v.Port), RequestURIUserParams: v.RequestURIUserParams,
					AppID: string(v.AppID), Password: pw,
				})
			}
		}
	}
	if w.Audio != nil {
		s.Audio = &AudioSettings{}
		if w.Audio.AdditionalCodecs != nil {
			s.Audio.AdditionalCodecs = *w.Audio.AdditionalCodecs
		}
	}
	if w.Restrictions != nil {
		s.Restrictions = []Restriction{}
		for _, r := range w.Restrictions.RestrictionsList {
			s.Restrictions = append(s.Restrictions, Restriction{Type: r.Type, Reason: r.Reason, Expiration: r.Expiration.Time()})
		}
	}
	if w.IPAddresses != nil {
		s.IPAddresses = w.IPAddresses.Default
	}
	return nil
}

// normEnum writes enums the way Meta does: upper case, with Vectalk's NOT_SET meaning unset.
func normEnum(v string) string {
	v = strings.ToUpper(strings.TrimSpace(v))
	if v == "NOT_SET" {
		return ""
	}
	return v
}

// updateBody validates s for an update and returns its wire calling object.
func updateBody(s *Settings) (wireCalling, error) {
	if s == nil {
		return wireCalling{}, fmt.Errorf("bsp: no settings to send")
	}
	if s.CallHours != nil && s.CallHours.HolidaySchedule == nil {
		return wireCalling{}, ErrHolidayScheduleOmitted
	}
	return s.toWire(true), nil
}

// parseSettings reads a settings answer: {"calling":{...}} (Meta, 360dialog, Vectalk) or the
// calling object itself (Concepto Móvil's flattened shape). Either is accepted from any provider.
func parseSettings(provider string, body []byte) (*Settings, error) {
	var env struct {
		Calling json.RawMessage `json:"calling"`
		// 360dialog documents the answer as "phone number settings including calling"; some
		// gateways wrap Graph's answer in "data".
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("bsp: %s settings_get: unreadable answer: %w", provider, err)
	}
	raw := body
	switch {
	case len(bytes.TrimSpace(env.Calling)) > 0:
		raw = env.Calling
	case len(bytes.TrimSpace(env.Data)) > 0:
		return parseSettings(provider, env.Data)
	}
	var s Settings
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("bsp: %s settings_get: unreadable calling object: %w", provider, err)
	}
	return &s, nil
}

// Clone returns a deep copy of ch.
func (ch *CallHours) Clone() *CallHours {
	if ch == nil {
		return nil
	}
	c := *ch
	c.WeeklyOperatingHours = slices.Clone(ch.WeeklyOperatingHours)
	if ch.HolidaySchedule != nil {
		c.HolidaySchedule = append([]Holiday{}, ch.HolidaySchedule...)
	}
	return &c
}

// SetCallHours changes call_hours without ever deleting holidays by omission (Meta replaces
// call_hours wholesale, §1.2 and §7): it reads the current settings, lets edit change a copy of
// the current call_hours (holidays included), and sends the whole object back. A holiday schedule
// edit leaves nil is sent as [] — there were none, or edit removed them on purpose.
//
// The read and the write are two requests; a change made by someone else in between is
// overwritten, as with any read-modify-write over an API without versions.
func SetCallHours(ctx context.Context, p Provider, edit func(*CallHours) error) error {
	cur, err := p.GetSettings(ctx, false)
	if err != nil {
		return fmt.Errorf("reading current call hours: %w", err)
	}
	ch := &CallHours{}
	if cur.CallHours != nil {
		ch = cur.CallHours.Clone()
	}
	if err := edit(ch); err != nil {
		return err
	}
	if ch.HolidaySchedule == nil {
		ch.HolidaySchedule = []Holiday{}
	}
	return p.SetSettings(ctx, &Settings{CallHours: ch})
}
