package bsp

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Webhook defaults.
const (
	// DefaultWebhookMaxBody: Meta batches up to 1000 updates in one POST (§3.1), and a connect
	// with an SDP is about 2 KB, so 1 MiB holds a full batch of call events; anything larger is
	// not a calling webhook.
	DefaultWebhookMaxBody = 1 << 20
	// DefaultWebhookQueue is how many deliveries may wait for the event callback. When it is
	// full we answer 503 and the provider retries later (§3.1), which is better than holding the
	// provider's connection open past its ~20 s timeout.
	DefaultWebhookQueue = 1024
	// DefaultDedupeSize and DefaultDedupeTTL bound the memory of delivery keys. Meta retries
	// immediately and then with back-off; a repeat older than an hour cannot matter to a call
	// (a user-initiated call must be accepted within 30–60 s, §2.2), and the Sequencer catches
	// stale connects beyond that.
	DefaultDedupeSize = 100000
	DefaultDedupeTTL  = time.Hour
)

// NumberLookup reports whether a business number is configured for this handler's provider.
// phoneNumberID or displayNumber (digits) may be "".
type NumberLookup func(phoneNumberID, displayNumber string) bool

// WebhookConfig configures a WebhookHandler; one handler serves one provider's webhook URL.
type WebhookConfig struct {
	Provider string // Event.Provider and the default signature header
	// AppSecret is the HMAC key of the provider's signature (Meta's app secret, 360dialog's
	// platform secret). When set, unsigned POSTs get 401 and wrongly signed ones 403, before any
	// JSON is read. When empty, signatures are not checked (a warning is logged at start).
	AppSecret string
	// SignatureHeader overrides SignatureHeaderFor(Provider).
	SignatureHeader string
	// VerifyToken answers Meta's GET subscription check (hub.verify_token); empty refuses it.
	VerifyToken string
	// URLToken, when set, must be the "token" query parameter of every request: a shared secret
	// in the webhook URL for providers that do not sign (Positus).
	URLToken string
	// Known routes events: those for numbers it does not know are dropped and logged. Required.
	Known NumberLookup
	// Number and PhoneNumberID bind this URL to one business number, for envelopes that do not
	// name it (Positus' bare {"calls":[…]}; its webhook URL is set per number). Without a binding
	// such events are routed by whichever of from/to Known recognizes.
	Number        string
	PhoneNumberID string
	// OnEvent receives the events, one at a time, in arrival order, on the handler's worker
	// goroutine. It must not block for long: post to the call's own event loop and return.
	OnEvent func(Event)

	MaxBodyBytes int64         // default DefaultWebhookMaxBody
	QueueSize    int           // deliveries; default DefaultWebhookQueue
	DedupeSize   int           // default DefaultDedupeSize
	DedupeTTL    time.Duration // default DefaultDedupeTTL
	Log          *logrus.Entry
}

// WebhookStats counts what the handler did, for metrics and tests.
type WebhookStats struct {
	Deliveries   uint64 // POSTs accepted with 200
	Events       uint64 // events handed to OnEvent's queue
	Duplicates   uint64 // events dropped as repeats
	Unrouted     uint64 // events for numbers Known did not recognize
	Unauthorized uint64 // missing signature or URL token (401)
	Forbidden    uint64 // wrong signature or URL token (403)
	TooLarge     uint64 // bodies over MaxBodyBytes (413)
	Malformed    uint64 // bodies that are not a webhook envelope (400)
	QueueFull    uint64 // deliveries refused with 503
}

// WebhookHandler receives provider webhooks: Meta's GET verification, and POSTs that are size
// limited, authenticated on the raw body, parsed, routed, de-duplicated, answered 200 at once
// and handed to OnEvent asynchronously (whatsapp-calling.md §3.2: answer quickly, process later).
type WebhookHandler struct {
	cfg       WebhookConfig
	sigHeader string
	log       *logrus.Entry

	mu     sync.Mutex // guards seen, closed and sends on queue
	seen   *seenSet
	closed bool
	queue  chan []Event
	done   chan struct{}

	deliveries, events, duplicates, unrouted     atomic.Uint64
	unauthorized, forbidden, tooLarge, malformed atomic.Uint64
	queueFull                                    atomic.Uint64
}

// NewWebhookHandler starts the handler's worker; Close stops it.
func NewWebhookHandler(cfg WebhookConfig) (*WebhookHandler, error) {
	if cfg.Known == nil {
		return nil, errors.New("bsp: webhook: Known is required (events must be routed to a configured number)")
	}
	if cfg.OnEvent == nil {
		return nil, errors.New("bsp: webhook: OnEvent is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultWebhookMaxBody
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultWebhookQueue
	}
	if cfg.DedupeSize <= 0 {
		cfg.DedupeSize = DefaultDedupeSize
	}
	if cfg.DedupeTTL <= 0 {
		cfg.DedupeTTL = DefaultDedupeTTL
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	h := &WebhookHandler{
		cfg:       cfg,
		sigHeader: cfg.SignatureHeader,
		log:       cfg.Log.WithFields(logrus.Fields{"provider": cfg.Provider, "component": "webhook"}),
		seen:      newSeenSet(cfg.DedupeSize, cfg.DedupeTTL),
		queue:     make(chan []Event, cfg.QueueSize),
		done:      make(chan struct{}),
	}
	if h.sigHeader == "" {
		h.sigHeader = SignatureHeaderFor(cfg.Provider)
	}
	if cfg.AppSecret == "" && cfg.URLToken == "" {
		h.log.Warn("webhook requests are not authenticated: set an app secret (or, for providers that do not sign, a URL token)")
	} else if cfg.AppSecret != "" && h.sigHeader == "" {
		return nil, fmt.Errorf("bsp: webhook: %s does not sign webhooks; use a URL token instead of an app secret", cfg.Provider)
	}
	go h.work()
	return h, nil
}

// Close stops accepting deliveries (503 from then on), lets the worker hand over what is queued,
// and waits for it.
func (h *WebhookHandler) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.queue)
	}
	h.mu.Unlock()
	<-h.done
}

// Stats returns the counters.
func (h *WebhookHandler) Stats() WebhookStats {
	return WebhookStats{
		Deliveries: h.deliveries.Load(), Events: h.events.Load(), Duplicates: h.duplicates.Load(),
		Unrouted: h.unrouted.Load(), Unauthorized: h.unauthorized.Load(), Forbidden: h.forbidden.Load(),
		TooLarge: h.tooLarge.Load(), Malformed: h.malformed.Load(), QueueFull: h.queueFull.Load(),
	}
}

func (h *WebhookHandler) work() {
	defer close(h.done)
	for batch := range h.queue {
		for _, ev := range batch {
			h.deliver(ev)
		}
	}
}

// deliver calls OnEvent, containing a panic to the one event: the worker serves every call.
func (h *WebhookHandler) deliver(ev Event) {
	defer func() {
		if r := recover(); r != nil {
			h.log.WithFields(logrus.Fields{"call_id": ev.CallID, "kind": ev.Kind, "panic": r}).Error("webhook event callback panicked")
		}
	}()
	h.cfg.OnEvent(ev)
}

func (h *WebhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !h.checkURLToken(w, r) {
		return
	}
	switch r.Method {
	case http.MethodGet:
		h.verify(w, r)
	case http.MethodPost:
		h.receive(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *WebhookHandler) checkURLToken(w http.ResponseWriter, r *http.Request) bool {
	if h.cfg.URLToken == "" {
		return true
	}
	got := r.URL.Query().Get("token")
	if got == "" {
		h.unauthorized.Add(1)
		h.log.WithField("remote", r.RemoteAddr).Warn("webhook refused: URL token missing")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.URLToken)) != 1 {
		h.forbidden.Add(1)
		h.log.WithField("remote", r.RemoteAddr).Warn("webhook refused: wrong URL token")
		http.Error(w, "forbidden", http.StatusForbidden)
		return false
	}
	return true
}

// verify answers Meta's subscription check (§3.2): hub.mode=subscribe and our verify token ⇒
// 200 with hub.challenge echoed raw; anything else ⇒ 403.
func (h *WebhookHandler) verify(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if h.cfg.VerifyToken == "" || q.Get("hub.mode") != "subscribe" ||
		subtle.ConstantTimeCompare([]byte(q.Get("hub.verify_token")), []byte(h.cfg.VerifyToken)) != 1 {
		h.forbidden.Add(1)
		h.log.WithField("remote", r.RemoteAddr).Warn("webhook verification refused")
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	h.log.Info("webhook subscription verified")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, q.Get("hub.challenge"))
}

func (h *WebhookHandler) receive(w http.ResponseWriter, r *http.Request) {
	log := h.log.WithField("remote", r.RemoteAddr)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.tooLarge.Add(1)
			log.WithField("limit", h.cfg.MaxBodyBytes).Warn("webhook refused: body too large")
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		h.malformed.Add(1)
		log.WithError(err).Warn("webhook refused: reading body failed")
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	// Authenticate the raw bytes before any JSON decoding (§3.2): nothing from an unauthenticated
	// body reaches the parser.
	if h.cfg.AppSecret != "" {
		if err := verifySignature(h.cfg.AppSecret, r.Header.Get(h.sigHeader), body); err != nil {
			if errors.Is(err, errSignatureMissing) {
				h.unauthorized.Add(1)
				log.WithField("header", h.sigHeader).Warn("webhook refused: unsigned")
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.forbidden.Add(1)
			log.WithField("header", h.sigHeader).Warn("webhook refused: bad signature")
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
	}
	events, err := ParseWebhook(body)
	if err != nil {
		h.malformed.Add(1)
		// The body itself is not logged: it holds users' numbers and SDPs.
		log.WithError(err).WithField("bytes", len(body)).Warn("webhook refused: not a webhook envelope")
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	routed := events[:0]
	for _, ev := range events {
		ev.Provider = h.cfg.Provider
		if !h.route(&ev) {
			h.unrouted.Add(1)
			log.WithFields(logrus.Fields{"phone_number_id": ev.PhoneNumberID, "number": ev.DisplayNumber,
				"call_id": ev.CallID, "kind": ev.Kind}).Warn("webhook event for an unknown number dropped")
			continue
		}
		routed = append(routed, ev)
	}
	if code := h.enqueue(log, routed); code != http.StatusOK {
		http.Error(w, http.StatusText(code), code)
		return
	}
	h.deliveries.Add(1)
	w.WriteHeader(http.StatusOK)
}

// enqueue de-duplicates events and queues the rest. Keys are recorded only once the events are
// queued, so a delivery refused with 503 is processed when the provider retries it.
func (h *WebhookHandler) enqueue(log *logrus.Entry, events []Event) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return http.StatusServiceUnavailable
	}
	now := time.Now()
	fresh := make([]Event, 0, len(events))
	keys := make(map[string]bool, len(events))
	for _, ev := range events {
		k := ev.dedupeKey()
		if keys[k] || h.seen.contains(k, now) {
			h.duplicates.Add(1)
			log.WithFields(logrus.Fields{"call_id": ev.CallID, "kind": ev.Kind, "status": ev.Status}).Debug("duplicate webhook event dropped")
			continue
		}
		keys[k] = true
		fresh = append(fresh, ev)
	}
	if len(fresh) == 0 {
		return http.StatusOK
	}
	select {
	case h.queue <- fresh:
	default:
		h.queueFull.Add(1)
		log.WithField("queued", len(h.queue)).Warn("webhook refused: event queue full; the provider will retry")
		return http.StatusServiceUnavailable
	}
	for k := range keys {
		h.seen.add(k, now)
	}
	h.events.Add(uint64(len(fresh)))
	for _, ev := range fresh {
		log.WithFields(logrus.Fields{"call_id": ev.CallID, "kind": ev.Kind, "status": ev.Status, "number": ev.DisplayNumber}).Debug("webhook event queued")
	}
	return http.StatusOK
}

// route fills in the business number of events whose envelope does not name it, and reports
// whether the number is ours.
func (h *WebhookHandler) route(ev *Event) bool {
	if ev.PhoneNumberID == "" && ev.DisplayNumber == "" {
		switch {
		case h.cfg.Number != "" || h.cfg.PhoneNumberID != "":
			ev.DisplayNumber, ev.PhoneNumberID = normalizeNumber(h.cfg.Number), h.cfg.PhoneNumberID
		case ev.Kind == EventStatus:
			// A status names only the user; without a binding it cannot be routed.
			return false
		case ev.To != "" && h.cfg.Known("", ev.To):
			ev.DisplayNumber = ev.To
		case ev.From != "" && h.cfg.Known("", ev.From):
			ev.DisplayNumber = ev.From
		default:
			return false
		}
		if ev.Kind == EventStatus {
			ev.From = ev.DisplayNumber
		}
		if ev.Direction == "" {
			ev.Direction = inferDirection(ev.DisplayNumber, ev.From, ev.To)
		}
		if ev.Kind == EventConnect && ev.SDPType == "" {
			ev.SDPType = defaultSDPType(ev.Direction)
		}
	}
	return h.cfg.Known(ev.PhoneNumberID, ev.DisplayNumber)
}

// Provider is the provider this handler receives webhooks for.
func (h *WebhookHandler) Provider() string { return h.cfg.Provider }
