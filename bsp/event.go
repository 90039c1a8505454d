package bsp

import (
	"strconv"
	"strings"
	"time"
)

// EventKind is what a webhook event reports.
type EventKind string

const (
	// EventConnect carries the user's SDP offer (user-initiated) or WhatsApp's SDP answer
	// (business-initiated).
	EventConnect EventKind = "connect"
	// EventTerminate ends a call, in either direction, whoever hung up (§3.6).
	EventTerminate EventKind = "terminate"
	// EventStatus is a business-initiated call's progress: RINGING, ACCEPTED, REJECTED (§3.5).
	EventStatus EventKind = "status"
	// EventPermissionReply is a user's answer to a call-permission request, delivered on the
	// messages field (§2.3).
	EventPermissionReply EventKind = "call_permission_reply"
)

// Call directions, as Graph writes them.
const (
	DirectionUserInitiated     = "USER_INITIATED"
	DirectionBusinessInitiated = "BUSINESS_INITIATED"
)

// Statuses, upper case whatever the provider wrote.
const (
	StatusRinging   = "RINGING"   // EventStatus
	StatusAccepted  = "ACCEPTED"  // EventStatus
	StatusRejected  = "REJECTED"  // EventStatus; a terminate follows
	StatusCompleted = "COMPLETED" // EventTerminate, also for calls never answered
	StatusFailed    = "FAILED"    // EventTerminate, with Errors
)

// Event is one call event from any provider's webhook, normalized. Numbers are digits without
// '+'. Providers deliver events at least once and in no particular order (§3.1): the handler
// drops exact repeats, and Sequencer helps with the rest.
type Event struct {
	Provider      string
	WABAID        string // entry[].id in Meta's envelope
	PhoneNumberID string // metadata.phone_number_id; "" in envelopes without metadata (Positus)
	DisplayNumber string // the business number the event is for
	CallID        string // the wacid
	Kind          EventKind
	Direction     string // DirectionUserInitiated | DirectionBusinessInitiated; inferred when absent
	From          string // user-initiated: the user; business-initiated: the business
	To            string
	ContactName   string // the user's profile name, when the webhook has contacts[]
	SDPType       string // "offer" | "answer" (connect)
	SDP           string // with real CRLF line ends (NormalizeSDP)
	Status        string // Status* (status and terminate)
	Timestamp     time.Time
	StartTime     time.Time // terminate of an answered call
	EndTime       time.Time
	Duration      time.Duration
	BizOpaque     string // biz_opaque_callback_data
	CTAPayload    string
	// DeeplinkPayload is the biz_payload of the wa.me/call link the user tapped.
	DeeplinkPayload string
	Errors          []APIError // value.errors[] and per-event errors (terminate with FAILED)
	PermissionReply *PermissionReply
}

// PermissionReply is a user's answer to a call-permission request (§2.3).
type PermissionReply struct {
	MessageID   string    // wamid of the reply
	ContextID   string    // wamid of the request, or the wacid when the prompt followed a call; "" for auto-revokes
	Response    string    // "accept" | "reject"
	IsPermanent bool      //
	Expiration  time.Time // of a temporary permission
	Source      string    // "user_action" | "automatic"
}

// User is the WhatsApp user's number: the caller of a user-initiated call, the callee of a
// business-initiated one.
func (e Event) User() string {
	switch e.Direction {
	case DirectionUserInitiated:
		return e.From
	case DirectionBusinessInitiated:
		return e.To
	}
	if e.From == e.DisplayNumber {
		return e.To
	}
	return e.From
}

// dedupeKey identifies a delivery of this event: a provider retrying a webhook sends the same
// key again, while a distinct event of the same call (another status, the terminate) differs in
// kind, status or timestamp.
func (e Event) dedupeKey() string {
	if e.Kind == EventPermissionReply && e.PermissionReply != nil {
		return strings.Join([]string{e.Provider, string(e.Kind), e.PermissionReply.MessageID, e.PermissionReply.Response}, "|")
	}
	ts := ""
	if !e.Timestamp.IsZero() {
		ts = strconv.FormatInt(e.Timestamp.Unix(), 10)
	}
	return strings.Join([]string{e.Provider, string(e.Kind), e.CallID, e.Status, ts, e.SDPType}, "|")
}
