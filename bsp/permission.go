package bsp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Permission statuses (whatsapp-calling.md §2.3).
const (
	PermissionNone      = "no_permission"
	PermissionTemporary = "temporary"
	PermissionPermanent = "permanent"
)

// Permission is the answer to a call-permission read: whether the business may call a user.
type Permission struct {
	Status     string    // PermissionNone | PermissionTemporary | PermissionPermanent
	Expiration time.Time // zero when permanent or none
	Actions    []PermissionAction
}

// PermissionAction says whether an action (start_call, send_call_permission_request) can be
// performed now, and the limits that apply.
type PermissionAction struct {
	Name       string
	CanPerform bool
	Limits     []PermissionLimit
}

// PermissionLimit is one rate limit of an action.
type PermissionLimit struct {
	TimePeriod      string // ISO 8601 duration: PT24H, P7D
	MaxAllowed      int
	CurrentUsage    int
	LimitExpiration time.Time // when a reached limit lifts
}

// CanStartCall reports whether a business-initiated call to the user may be placed now: a
// permission exists and, when the provider says so, start_call is currently allowed.
func (p *Permission) CanStartCall() bool {
	if p == nil || (p.Status != PermissionTemporary && p.Status != PermissionPermanent) {
		return false
	}
	for _, a := range p.Actions {
		if a.Name == "start_call" {
			return a.CanPerform
		}
	}
	return true
}

type wirePermission struct {
	Permission struct {
		Status flexString `json:"status"`
		// The reference table calls it expiration, the sample expiration_time (§2.3).
		ExpirationTime unixTime `json:"expiration_time"`
		Expiration     unixTime `json:"expiration"`
	} `json:"permission"`
	Actions []struct {
		ActionName       string `json:"action_name"`
		CanPerformAction bool   `json:"can_perform_action"`
		Limits           []struct {
			TimePeriod          string   `json:"time_period"`
			MaxAllowed          flexInt  `json:"max_allowed"`
			CurrentUsage        flexInt  `json:"current_usage"`
			LimitExpirationTime unixTime `json:"limit_expiration_time"`
		} `json:"limits"`
	} `json:"actions"`
}

// parsePermission reads Graph's call_permissions answer, or Positus' wrapper of it,
// {"number":{...},"calling":{<Graph's answer>}} (§6a). Positus' published sample has // comments;
// a body that is not JSON is retried with them stripped.
func parsePermission(provider string, body []byte) (*Permission, error) {
	if !json.Valid(body) {
		body = StripJSONComments(body)
	}
	var env struct {
		Calling json.RawMessage `json:"calling"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("bsp: %s call_permission: unreadable answer: %w", provider, err)
	}
	if len(bytes.TrimSpace(env.Calling)) > 0 {
		body = env.Calling
	}
	var w wirePermission
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("bsp: %s call_permission: unreadable answer: %w", provider, err)
	}
	p := &Permission{Status: strings.ToLower(string(w.Permission.Status)), Expiration: w.Permission.ExpirationTime.Time()}
	if p.Expiration.IsZero() {
		p.Expiration = w.Permission.Expiration.Time()
	}
	for _, a := range w.Actions {
		pa := PermissionAction{Name: a.ActionName, CanPerform: a.CanPerformAction}
		for _, l := range a.Limits {
			pa.Limits = append(pa.Limits, PermissionLimit{TimePeriod: l.TimePeriod, MaxAllowed: int(l.MaxAllowed),
				CurrentUsage: int(l.CurrentUsage), LimitExpiration: l.LimitExpirationTime.Time()})
		}
		p.Actions = append(p.Actions, pa)
	}
	return p, nil
}

// StripJSONComments removes // line comments outside strings: Positus publishes its sample
// answers with them (whatsapp-calling.md §6a), and both the client and bspsim read those.
func StripJSONComments(b []byte) []byte {
	out := make([]byte, 0, len(b))
	inString, escaped := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		if c == '/' && i+1 < len(b) && b[i+1] == '/' {
			for i < len(b) && b[i] != '\n' {
				i++
			}
			if i < len(b) {
				out = append(out, '\n')
			}
			continue
		}
		if c == '"' {
			inString = true
		}
		out = append(out, c)
	}
	return out
}
