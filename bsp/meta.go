package bsp

import (
	"net/url"
)

// newMeta is Graph itself: POST /<VERSION>/<PHONE_NUMBER_ID>/calls and GET/POST .../settings
// with a bearer token (whatsapp-calling.md §1, §2), GET .../call_permissions?user_wa_id= (§2.3).
func newMeta(c *client, cfg Config) Provider {
	prefix := "/" + url.PathEscape(cfg.APIVersion) + "/" + url.PathEscape(cfg.PhoneNumberID)
	return &graph{
		c:            c,
		callsPath:    prefix + "/calls",
		settingsPath: prefix + "/settings",
		permission: func(user string) (string, url.Values) {
			return prefix + "/call_permissions", url.Values{"user_wa_id": {user}}
		},
	}
}

// new360dialog is 360dialog's Graph proxy at waba-v2.360dialog.io (whatsapp-calling.md §6d and
// 360dialog's Messaging API reference, "Calling"): the API key, sent as D360-API-KEY, is bound
// to one number, so no phone number id appears in the paths. Bodies and answers are Graph's (its
// OpenAPI CallActionRequest has exactly Graph's keys).
//
//   - POST /calling/calls — documented.
//   - GET /calling/permissions/{wa_id} — documented.
//   - GET /calling/settings — documented ("including SIP credentials"). Guess: it honours
//     Graph's include_sip_credentials=true, which we send when asked, like Graph.
//   - POST /calling/settings — the reference's path is cut off after "/c"; Guess: the same path
//     as the GET, with Graph's {"calling":{...}} body.
func new360dialog(c *client) Provider {
	return &graph{
		c:            c,
		callsPath:    "/calling/calls",
		settingsPath: "/calling/settings",
		permission: func(user string) (string, url.Values) {
			return "/calling/permissions/" + url.PathEscape(user), nil
		},
	}
}
