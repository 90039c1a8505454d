// Package bsp is wabridge's API-mode provider layer: one [Provider] interface over the HTTP call
// actions and calling-settings APIs of Meta's Graph API and of the BSPs that proxy it (Positus,
// Vectalk, Concepto Móvil, 360dialog), and one [WebhookHandler] that turns every provider's
// webhook envelope into normalized [Event] values.
//
// The bridge drives calls through the interface and never sees a provider's wire format:
//
//   - user-initiated: a connect [Event] with the user's SDP offer → [Provider.PreAccept] with our
//     answer as early as possible (it cuts clipping, whatsapp-calling.md §2.2) → [Provider.Accept]
//     with the same answer when the PBX answers → media only after Accept returned;
//   - business-initiated: [Provider.Connect] with our offer → a connect [Event] with the answer →
//     status events RINGING / ACCEPTED / REJECTED → terminate.
//
// Failures carry their SIP meaning: [ToSIP] maps any error returned here (a provider's [APIError],
// a timeout, a cancelled context, [ErrUnsupported]) to the status and reason the PBX should hear,
// from one table (sipcodes.go).
//
// Every shape sent or parsed is pinned by golden files in testdata/golden, taken from
// whatsapp-calling.md; where a provider's documentation is silent the adapter follows Meta's shape
// and says so in a comment marked "Guess:" (listed in docs/bsp.md). The bspsim sub-package holds
// strict emulators of each provider built on the same golden files.
package bsp
