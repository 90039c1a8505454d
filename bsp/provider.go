package bsp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Provider names, as written in the config and in every log line's "provider" field.
const (
	ProviderMeta          = "meta"
	ProviderPositus       = "positus"
	ProviderVectalk       = "vectalk"
	ProviderConceptoMovil = "conceptomovil"
	Provider360dialog     = "360dialog"
)

// Providers lists every provider New accepts, for config validation and help texts.
func Providers() []string {
	return []string{ProviderMeta, ProviderPositus, ProviderVectalk, ProviderConceptoMovil, Provider360dialog}
}

// Sentinel errors.
var (
	// ErrUnsupported is returned for an action the provider has no API for (Positus has no
	// pre_accept and no settings API; Vectalk and Concepto Móvil document no call-permission
	// read). The bridge skips optional steps on it (pre_accept) and reports it for the others.
	ErrUnsupported = errors.New("bsp: not supported by this provider")
	// ErrHolidayScheduleOmitted refuses a settings update whose call_hours has no
	// holiday_schedule: Meta replaces call_hours wholesale and deletes the holidays the update
	// leaves out (whatsapp-calling.md §1.2, §7). Use SetCallHours, which merges with the current
	// settings, or set HolidaySchedule to an empty, non-nil slice to clear them on purpose.
	ErrHolidayScheduleOmitted = errors.New("bsp: call_hours without holiday_schedule would delete the holidays; use SetCallHours or an explicit empty schedule")
)

// CallRequest starts a business-initiated call.
type CallRequest struct {
	To        string // the WhatsApp user's number, digits (a leading '+' is stripped)
	SDPOffer  string // our SDP offer, with real CRLF line ends
	BizOpaque string // biz_opaque_callback_data, ≤ 512 characters, echoed in webhooks; optional
}

// CallRef names an existing call.
type CallRef struct {
	ID string // the wacid from the connect webhook or from Connect
	// User is the WhatsApp user's number (digits). Only Concepto Móvil needs it (its flattened
	// body has from/to on every action); the others ignore it.
	User string
}

// Provider is one business number's call-action and settings API at one provider. Every method
// is safe for concurrent use. Errors are wrapped *APIError values when the provider answered, and
// wrap context.DeadlineExceeded on timeouts; pass any of them to ToSIP.
type Provider interface {
	// Name is the provider name (ProviderMeta, ...).
	Name() string
	// Connect starts a business-initiated call and returns its call id. It is never retried: a
	// duplicate connect would ring the user twice. The id is "" (and err nil) when the provider
	// does not return one (Positus answers {"success":true}): the call is then known by the
	// connect webhook, matched on the user's number — unambiguous because WhatsApp allows one
	// call per business–user pair (error 138003, whatsapp-calling.md §2.4).
	Connect(ctx context.Context, req CallRequest) (callID string, err error)
	// PreAccept sends our SDP answer for a user-initiated call before the PBX answers, so
	// ICE/DTLS can complete while the PBX rings. ErrUnsupported where the provider has no such
	// action (Positus).
	PreAccept(ctx context.Context, call CallRef, sdpAnswer string) error
	// Accept answers a user-initiated call; sdpAnswer must equal the pre_accept one. Send media
	// only after it returned nil (whatsapp-calling.md §2.2).
	Accept(ctx context.Context, call CallRef, sdpAnswer, bizOpaque string) error
	// Reject declines a user-initiated call that was not accepted.
	Reject(ctx context.Context, call CallRef) error
	// Terminate ends a call in either direction. Always send it when we hang up: it affects
	// billing (whatsapp-calling.md §0 fact 10).
	Terminate(ctx context.Context, call CallRef) error
	// GetSettings reads the number's calling settings; with includeSIPCredentials the SIP
	// servers carry Meta's per-number SIP password.
	GetSettings(ctx context.Context, includeSIPCredentials bool) (*Settings, error)
	// SetSettings sends the fields of s that are set. A CallHours without HolidaySchedule is
	// refused with ErrHolidayScheduleOmitted; see SetCallHours.
	SetSettings(ctx context.Context, s *Settings) error
	// CallPermission reads whether the business may call userWAID (needed for business-initiated
	// calls, error 138006 otherwise).
	CallPermission(ctx context.Context, userWAID string) (*Permission, error)
}

// TokenSource returns the credential to send with each request. It is called per request so a
// token rotated in its file or environment variable takes effect without a restart.
type TokenSource func() (string, error)

// StaticToken is a TokenSource for a fixed token.
func StaticToken(token string) TokenSource {
	return func() (string, error) { return token, nil }
}

// Config is one business number at one provider. Only Provider, Token and the ids the chosen
// provider needs are required; everything else has a default documented on the field.
type Config struct {
	Provider string // one of Providers()
	// BaseURL is the scheme, host and optional path prefix the documented paths are appended to.
	// Default: the provider's production host (DefaultBaseURL). Tests point it at bspsim.
	BaseURL string
	// APIVersion is Graph's version segment (Meta only). Default DefaultGraphVersion.
	APIVersion string
	// PhoneNumberID is the provider's id for the number: Graph's phone_number_id for Meta, the
	// {NUMBER_ID} of Positus' paths. Unused by Vectalk and 360dialog, whose token is bound to
	// one number, and by Concepto Móvil, which addresses numbers by WABA id and number.
	PhoneNumberID string
	// DisplayNumber is the business number in digits (a '+' is stripped). Concepto Móvil puts it
	// in "from" and in its settings path.
	DisplayNumber string
	// WABAID is the WhatsApp Business Account id (Concepto Móvil's settings path).
	WABAID string
	// Token is the bearer token (Meta, Positus, Vectalk, Concepto Móvil) or the D360-API-KEY.
	// It is never logged.
	Token TokenSource
	// ConceptoMovil holds the paths Concepto Móvil documents inconsistently; zero = defaults.
	ConceptoMovil ConceptoMovilPaths

	// Timeout bounds each attempt of each request. Default: DefaultTimeout(Provider).
	Timeout time.Duration
	// Retry bounds retries of the actions that allow them (retryMode in client.go). Zero fields
	// take the DefaultRetry* constants.
	Retry RetryPolicy
	// HTTPClient sends the requests. Default: a client with its own transport, so that
	// CloseIdleConnections on one provider does not affect others. Its Timeout should be 0:
	// Timeout above bounds attempts through the request context.
	HTTPClient *http.Client
	Log        *logrus.Entry
}

// DefaultGraphVersion is the Graph API version used when Config.APIVersion is empty. Guess: Meta's
// calling pages show versions from v14.0 to v25.0 in samples, the FAQ names v17.0 as the minimum,
// and v23.0 is among the versions third-party calling code uses (whatsapp-calling.md §1). Graph
// versions are retired about two years after release, so it is configurable per number.
const DefaultGraphVersion = "v23.0"

// DefaultBaseURL returns a provider's production base URL.
func DefaultBaseURL(provider string) string {
	switch provider {
	case ProviderMeta:
		return "https://graph.facebook.com"
	case ProviderPositus:
		return "https://api.positus.global"
	case ProviderVectalk:
		return "https://apis.vectalk.com.br"
	case ProviderConceptoMovil:
		// From public client code (whatsapp-calling.md §6c); Concepto's own page shows "{url}".
		return "https://whatsapp.broadcastermobile.com"
	case Provider360dialog:
		return "https://waba-v2.360dialog.io"
	}
	return ""
}

// DefaultTimeout is the per-attempt timeout of a provider's requests. Graph answers call actions
// in well under a second; 5 s leaves room for a slow moment without eating much of the 30–60 s a
// user-initiated call can wait for accept (whatsapp-calling.md §2.2). BSPs add their own hop and
// queue in front of Graph, so they get 10 s. A connect that times out is not retried, so this is
// also how long a PBX waits before hearing 408 in the worst case.
func DefaultTimeout(provider string) time.Duration {
	if provider == ProviderMeta {
		return 5 * time.Second
	}
	return 10 * time.Second
}

// New builds the Provider for cfg.
func New(cfg Config) (Provider, error) {
	if cfg.Token == nil {
		return nil, fmt.Errorf("bsp: %s: a token is required", cfg.Provider)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL(cfg.Provider)
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("bsp: %s: base URL %q must be an absolute http(s) URL", cfg.Provider, cfg.BaseURL)
	}
	cfg.DisplayNumber = normalizeNumber(cfg.DisplayNumber)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout(cfg.Provider)
	}
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	c := &client{
		provider: cfg.Provider,
		base:     base,
		http:     cfg.HTTPClient,
		timeout:  cfg.Timeout,
		retry:    cfg.Retry,
		log:      cfg.Log.WithField("provider", cfg.Provider),
	}
	switch cfg.Provider {
	case ProviderMeta:
		if cfg.PhoneNumberID == "" {
			return nil, errors.New("bsp: meta: phone_number_id is required")
		}
		if cfg.APIVersion == "" {
			cfg.APIVersion = DefaultGraphVersion
		}
		c.auth = bearer(cfg.Token)
		c.log = c.log.WithField("number", cfg.PhoneNumberID)
		return newMeta(c, cfg), nil
	case Provider360dialog:
		c.auth = headerAuth("D360-API-KEY", cfg.Token)
		return new360dialog(c), nil
	case ProviderPositus:
		if cfg.PhoneNumberID == "" {
			return nil, errors.New("bsp: positus: the number id of Positus' paths (phone_number_id) is required")
		}
		c.auth = bearer(cfg.Token)
		c.log = c.log.WithField("number", cfg.PhoneNumberID)
		return newPositus(c, cfg), nil
	case ProviderVectalk:
		c.auth = bearer(cfg.Token)
		return newVectalk(c), nil
	case ProviderConceptoMovil:
		if cfg.DisplayNumber == "" {
			return nil, errors.New("bsp: conceptomovil: the business number is required (it is the \"from\" of every call action)")
		}
		c.auth = bearer(cfg.Token)
		c.log = c.log.WithField("number", cfg.DisplayNumber)
		return newConceptoMovil(c, cfg), nil
	}
	return nil, fmt.Errorf("bsp: unknown provider %q; use one of %s", cfg.Provider, strings.Join(Providers(), ", "))
}

// normalizeNumber writes a phone number the way Graph and every BSP do: digits without '+'
// (wabridge's config and SIP URIs carry E.164 with '+'). Separators are dropped; anything else is
// kept, so a business-scoped user id such as "US.13491208655302741918" (Meta's BSUID) survives.
func normalizeNumber(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '+', ' ', '-', '(', ')', '\t':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}
