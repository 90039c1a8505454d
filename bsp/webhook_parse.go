package bsp

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrNotWebhook means a body is JSON but none of the envelopes we know.
var ErrNotWebhook = errors.New("bsp: not a known webhook envelope")

// Meta's envelope, entry[].changes[].value (whatsapp-calling.md §3.1).
type metaEnvelope struct {
	Object string `json:"object"`
	Entry  []struct {
		ID      flexString `json:"id"`
		Changes []struct {
			Field string    `json:"field"`
			Value metaValue `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

// metaValue is one change's value. The same struct reads Positus' bare envelope, which is a
// value without metadata (§6a).
type metaValue struct {
	Metadata struct {
		DisplayPhoneNumber flexString `json:"display_phone_number"`
		PhoneNumberID      flexString `json:"phone_number_id"`
	} `json:"metadata"`
	Contacts []struct {
		Profile struct {
			Name string `json:"name"`
		} `json:"profile"`
		WaID flexString `json:"wa_id"`
	} `json:"contacts"`
	Calls    []wireCall    `json:"calls"`
	Statuses []wireStatus  `json:"statuses"`
	Errors   []graphError  `json:"errors"`
	Messages []wireMessage `json:"messages"`
}

type wireCall struct {
	ID        flexString `json:"id"`
	From      flexString `json:"from"`
	To        flexString `json:"to"`
	Event     string     `json:"event"`
	Timestamp unixTime   `json:"timestamp"`
	Direction string     `json:"direction"`
	Session   *struct {
		SDPType string `json:"sdp_type"`
		SDP     string `json:"sdp"`
	} `json:"session"`
	// Legacy: a JSON string holding {"sdp","type"}, or a plain SDP (§2.1 notes).
	Connection *struct {
		WebRTC *struct {
			SDP string `json:"sdp"`
		} `json:"webrtc"`
	} `json:"connection"`
	BizOpaque       string       `json:"biz_opaque_callback_data"`
	CTAPayload      string       `json:"cta_payload"`
	DeeplinkPayload string       `json:"deeplink_payload"`
	Status          stringList   `json:"status"`
	StartTime       unixTime     `json:"start_time"`
	EndTime         unixTime     `json:"end_time"`
	Duration        flexInt      `json:"duration"`
	Errors          []graphError `json:"errors"`
}

type wireStatus struct {
	ID          flexString   `json:"id"`
	Timestamp   unixTime     `json:"timestamp"`
	Type        string       `json:"type"`
	Status      stringList   `json:"status"`
	RecipientID flexString   `json:"recipient_id"`
	BizOpaque   string       `json:"biz_opaque_callback_data"`
	Errors      []graphError `json:"errors"`
}

type wireMessage struct {
	From      flexString `json:"from"`
	ID        string     `json:"id"`
	Timestamp unixTime   `json:"timestamp"`
	Context   *struct {
		ID string `json:"id"`
	} `json:"context"`
	Interactive *struct {
		Type                string `json:"type"`
		CallPermissionReply *struct {
			Response            string   `json:"response"`
			IsPermanent         bool     `json:"is_permanent"`
			ExpirationTimestamp unixTime `json:"expiration_timestamp"`
			ResponseSource      string   `json:"response_source"`
		} `json:"call_permission_reply"`
	} `json:"interactive"`
}

// ParseWebhook parses a webhook body in either envelope: Meta's entry/changes (Meta, 360dialog,
// and what we assume for Vectalk and Concepto Móvil, whose call webhooks are undocumented) or
// Positus' bare {"calls":[…]} / {"statuses":[…]}. Events of no interest (message statuses,
// other fields, unknown call events) are left out. Provider is not set; the handler does.
func ParseWebhook(body []byte) ([]Event, error) {
	var probe struct {
		Entry json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, fmt.Errorf("bsp: webhook: %w", err)
	}
	if probe.Entry != nil {
		return ParseMetaWebhook(body)
	}
	return ParsePositusWebhook(body)
}

// ParseMetaWebhook parses Meta's envelope (§3.1): every entry and change independently, the
// "calls" field (calls[], statuses[], errors[]) and, on the "messages" field, call-permission
// replies only.
func ParseMetaWebhook(body []byte) ([]Event, error) {
	var env metaEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("bsp: meta webhook: %w", err)
	}
	if env.Entry == nil {
		return nil, fmt.Errorf("bsp: meta webhook: no entry[]: %w", ErrNotWebhook)
	}
	var out []Event
	for _, e := range env.Entry {
		for _, ch := range e.Changes {
			switch ch.Field {
			case "calls", "":
				// "" is lenient: a gateway that flattens changes might drop the field name.
				evs := ch.Value.callEvents()
				for i := range evs {
					evs[i].WABAID = string(e.ID)
				}
				out = append(out, evs...)
			case "messages":
				evs := ch.Value.permissionEvents()
				for i := range evs {
					evs[i].WABAID = string(e.ID)
				}
				out = append(out, evs...)
			}
		}
	}
	return out, nil
}

// ParsePositusWebhook parses Positus' bare envelope, {"calls":[…]} (documented) or
// {"statuses":[…]} (Guess: Positus documents no status webhook; Meta's statuses[] is assumed).
// The business number is not in the body; the handler routes by from/to or by its binding.
func ParsePositusWebhook(body []byte) ([]Event, error) {
	var v metaValue
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("bsp: positus webhook: %w", err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(body, &keys); err != nil {
		return nil, fmt.Errorf("bsp: positus webhook: %w", err)
	}
	if _, ok := keys["calls"]; !ok {
		if _, ok := keys["statuses"]; !ok {
			return nil, fmt.Errorf("bsp: positus webhook: no calls[] or statuses[]: %w", ErrNotWebhook)
		}
	}
	return v.callEvents(), nil
}

// callEvents converts a value's calls[] and statuses[].
func (v *metaValue) callEvents() []Event {
	display := string(v.Metadata.DisplayPhoneNumber)
	base := Event{PhoneNumberID: string(v.Metadata.PhoneNumberID), DisplayNumber: normalizeNumber(display)}
	valueErrs := apiErrors(v.Errors)
	names := map[string]string{}
	for _, c := range v.Contacts {
		names[normalizeNumber(string(c.WaID))] = c.Profile.Name
	}
	var out []Event
	for _, c := range v.Calls {
		ev := base
		ev.CallID = strings.TrimSpace(string(c.ID))
		ev.Kind = EventKind(strings.ToLower(strings.TrimSpace(c.Event)))
		if ev.CallID == "" || (ev.Kind != EventConnect && ev.Kind != EventTerminate) {
			continue
		}
		ev.From, ev.To = normalizeNumber(string(c.From)), normalizeNumber(string(c.To))
		ev.Direction = strings.ToUpper(strings.TrimSpace(c.Direction))
		if ev.Direction == "" && ev.DisplayNumber != "" {
			ev.Direction = inferDirection(ev.DisplayNumber, ev.From, ev.To)
		}
		ev.Timestamp = c.Timestamp.Time()
		ev.StartTime, ev.EndTime = c.StartTime.Time(), c.EndTime.Time()
		ev.Duration = time.Duration(c.Duration) * time.Second
		ev.BizOpaque, ev.CTAPayload, ev.DeeplinkPayload = c.BizOpaque, c.CTAPayload, c.DeeplinkPayload
		ev.Errors = append(apiErrors(c.Errors), valueErrs...)
		ev.ContactName = names[ev.User()]
		if ev.Kind == EventConnect {
			ev.SDPType, ev.SDP = c.sdp(ev.Direction)
		}
		if ev.Kind == EventTerminate {
			ev.Status = pickStatus(c.Status, len(ev.Errors) > 0)
		}
		out = append(out, ev)
	}
	for _, s := range v.Statuses {
		// statuses[] also carries message delivery statuses on the messages field; only
		// type "call" (or untyped, in bare envelopes) are call progress.
		if t := strings.ToLower(s.Type); t != "" && t != "call" {
			continue
		}
		ev := base
		ev.Kind = EventStatus
		ev.CallID = strings.TrimSpace(string(s.ID))
		if ev.CallID == "" {
			continue
		}
		// Status webhooks exist for business-initiated calls only (§3.5).
		ev.Direction = DirectionBusinessInitiated
		ev.From, ev.To = ev.DisplayNumber, normalizeNumber(string(s.RecipientID))
		ev.Timestamp = s.Timestamp.Time()
		ev.BizOpaque = s.BizOpaque
		ev.Errors = append(apiErrors(s.Errors), valueErrs...)
		ev.Status = pickStatus(s.Status, len(ev.Errors) > 0)
		ev.ContactName = names[ev.To]
		out = append(out, ev)
	}
	return out
}

// permissionEvents converts call_permission_reply messages; other messages are not ours.
func (v *metaValue) permissionEvents() []Event {
	var out []Event
	for _, m := range v.Messages {
		if m.Interactive == nil || m.Interactive.CallPermissionReply == nil ||
			!strings.EqualFold(m.Interactive.Type, string(EventPermissionReply)) {
			continue
		}
		r := m.Interactive.CallPermissionReply
		pr := &PermissionReply{
			MessageID: m.ID, Response: strings.ToLower(r.Response), IsPermanent: r.IsPermanent,
			Expiration: r.ExpirationTimestamp.Time(), Source: strings.ToLower(r.ResponseSource),
		}
		if m.Context != nil {
			pr.ContextID = m.Context.ID
		}
		ev := Event{
			PhoneNumberID: string(v.Metadata.PhoneNumberID), DisplayNumber: normalizeNumber(string(v.Metadata.DisplayPhoneNumber)),
			Kind: EventPermissionReply, From: normalizeNumber(string(m.From)), Timestamp: m.Timestamp.Time(), PermissionReply: pr,
		}
		ev.To = ev.DisplayNumber
		if strings.HasPrefix(pr.ContextID, "wacid.") {
			ev.CallID = pr.ContextID
		}
		out = append(out, ev)
	}
	return out
}

// sdp picks the call's SDP: session first (Meta's current shape); the legacy
// connection.webrtc.sdp only when session has none. The type comes from the payload — Positus'
// sample labels a user-initiated offer "answer", so when the payload says something we trust it
// over our own inference (Guess: Positus forwards the right label in practice) — and is inferred
// from the direction only when absent.
func (c *wireCall) sdp(direction string) (typ, sdp string) {
	if c.Session != nil {
		typ, sdp = strings.ToLower(strings.TrimSpace(c.Session.SDPType)), c.Session.SDP
	}
	if strings.TrimSpace(sdp) == "" && c.Connection != nil && c.Connection.WebRTC != nil {
		var ltyp string
		sdp, ltyp = legacySDP(c.Connection.WebRTC.SDP)
		if typ == "" {
			typ = ltyp
		}
	}
	if typ == "" {
		typ = defaultSDPType(direction)
	}
	return typ, NormalizeSDP(sdp)
}

// defaultSDPType: a user-initiated connect carries the user's offer, a business-initiated one
// WhatsApp's answer to ours (§3.3, §3.4).
func defaultSDPType(direction string) string {
	switch direction {
	case DirectionUserInitiated:
		return "offer"
	case DirectionBusinessInitiated:
		return "answer"
	}
	return ""
}

// inferDirection: a business-initiated call is from the business number.
func inferDirection(business, from, to string) string {
	switch business {
	case from:
		return DirectionBusinessInitiated
	case to:
		return DirectionUserInitiated
	}
	return ""
}

// pickStatus reads a status field. Comparison is case-insensitive ("Completed"); Meta's sample
// writes the terminate status as the enum ["Failed","Completed"] (§3.6), so for a list we take
// FAILED when errors came with the event and it is listed, else the first known value.
func pickStatus(l stringList, hasErrors bool) string {
	var known []string
	for _, s := range l {
		s = strings.ToUpper(strings.TrimSpace(s))
		switch s {
		case StatusRinging, StatusAccepted, StatusRejected, StatusCompleted, StatusFailed:
			known = append(known, s)
		}
	}
	if len(known) == 0 {
		if len(l) > 0 {
			return strings.ToUpper(strings.TrimSpace(l[0]))
		}
		return ""
	}
	if len(known) > 1 && hasErrors && slices.Contains(known, StatusFailed) {
		return StatusFailed
	}
	return known[0]
}

func apiErrors(gs []graphError) []APIError {
	if len(gs) == 0 {
		return nil
	}
	out := make([]APIError, 0, len(gs))
	for i := range gs {
		out = append(out, *gs[i].apiError("", 0))
	}
	return out
}
