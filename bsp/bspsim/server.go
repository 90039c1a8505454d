package bspsim

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bsp"
)

//go:embed golden
var embedded embed.FS

// Operations, the same names for every provider.
const (
	OpConnect        = "connect"
	OpPreAccept      = "pre_accept"
	OpAccept         = "accept"
	OpReject         = "reject"
	OpTerminate      = "terminate"
	OpSettingsGet    = "settings_get"
	OpSettingsPost   = "settings_post"
	OpCallPermission = "call_permission"
)

// Config describes one emulated business number at one provider.
type Config struct {
	Provider      string // bsp.ProviderMeta, ...
	Token         string // the credential the adapter must send; required
	APIVersion    string // Graph version in Meta's paths; default bsp.DefaultGraphVersion
	PhoneNumberID string // Meta's phone_number_id, Positus' NUMBER_ID; default "436666719526789"
	DisplayNumber string // business number, digits; default "13175551399"
	WABAID        string // webhook entry id and Concepto Móvil's settings path; default "366634483210360"
	ConceptoMovil bsp.ConceptoMovilPaths
	// AppSecret signs webhooks where the provider signs (Meta, 360dialog; Vectalk and Concepto
	// Móvil Meta-style by assumption). Positus' webhooks are unsigned whatever this says.
	AppSecret  string
	WebhookURL string // where Send* posts
	// SIPPassword is what GET settings returns with include_sip_credentials=true.
	SIPPassword string
	// Golden overrides the embedded golden files (tests pass bsp/testdata/golden).
	Golden fs.FS
	// OnRequest, when set, sees every request after it was answered (on the handler goroutine;
	// must not block).
	OnRequest func(Request)
	Log       *logrus.Entry
}

// Request is one request the server received.
type Request struct {
	Op     string // Op*; "" when the path was not recognized
	Method string
	Path   string
	Query  url.Values
	Header http.Header // credentials redacted
	Body   []byte
	Status int    // what the server answered (0 when the connection was dropped)
	Err    string // why it was refused; "" when accepted
	At     time.Time
}

// Server is one provider emulator on loopback.
type Server struct {
	cfg    Config
	golden *goldenSet
	srv    *httptest.Server
	log    *logrus.Entry
	wh     *http.Client

	closing chan struct{}

	mu          sync.Mutex
	requests    []Request
	waiters     []chan struct{}
	faults      []*activeFault
	calls       map[string]*Call
	settings    map[string]any // the calling object
	permissions map[string]string
	nextID      int
}

// New starts an emulator; Close stops it.
func New(cfg Config) (*Server, error) {
	if !slices.Contains(bsp.Providers(), cfg.Provider) {
		return nil, fmt.Errorf("bspsim: unknown provider %q", cfg.Provider)
	}
	if cfg.Token == "" {
		return nil, errors.New("bspsim: a token is required (the emulator checks it)")
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = bsp.DefaultGraphVersion
	}
	if cfg.PhoneNumberID == "" {
		cfg.PhoneNumberID = "436666719526789"
	}
	if cfg.DisplayNumber == "" {
		cfg.DisplayNumber = "13175551399"
	}
	if cfg.WABAID == "" {
		cfg.WABAID = "366634483210360"
	}
	if cfg.ConceptoMovil.Calls == "" {
		cfg.ConceptoMovil.Calls = bsp.DefaultConceptoMovilCallsPath
	}
	if cfg.ConceptoMovil.Settings == "" {
		cfg.ConceptoMovil.Settings = bsp.DefaultConceptoMovilSettingsPrefix
	}
	if cfg.Golden == nil {
		sub, err := fs.Sub(embedded, "golden")
		if err != nil {
			return nil, err
		}
		cfg.Golden = sub
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	s := &Server{
		cfg:         cfg,
		golden:      &goldenSet{fsys: cfg.Golden},
		log:         cfg.Log.WithFields(logrus.Fields{"provider": cfg.Provider, "component": "bspsim"}),
		wh:          &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: 20 * time.Second},
		closing:     make(chan struct{}),
		calls:       map[string]*Call{},
		permissions: map[string]string{},
	}
	if err := s.resetSettings(); err != nil {
		return nil, err
	}
	s.srv = httptest.NewServer(s)
	return s, nil
}

// URL is the base URL to configure the adapter with (bsp.Config.BaseURL).
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server, aborting injected delays, and waits for its handlers.
func (s *Server) Close() {
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	s.srv.Close()
	s.wh.CloseIdleConnections()
}

// Requests returns every request so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// RequestsFor returns the requests for one operation.
func (s *Server) RequestsFor(op string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

// WaitRequest returns the n-th request (1-based, accepted or not) for op, waiting for it.
func (s *Server) WaitRequest(ctx context.Context, op string, n int) (Request, error) {
	for {
		s.mu.Lock()
		seen := 0
		for _, r := range s.requests {
			if r.Op == op {
				seen++
				if seen == n {
					s.mu.Unlock()
					return r, nil
				}
			}
		}
		ch := make(chan struct{})
		s.waiters = append(s.waiters, ch)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Request{}, fmt.Errorf("bspsim: waiting for %s #%d: %w", op, n, ctx.Err())
		}
	}
}

// record stores a finished request and wakes waiters.
func (s *Server) record(r Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r)
	waiters := s.waiters
	s.waiters = nil
	s.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
	fields := logrus.Fields{"op": r.Op, "method": r.Method, "path": r.Path, "status": r.Status}
	if r.Err != "" {
		s.log.WithFields(fields).WithField("error", r.Err).Info("request refused")
	} else {
		s.log.WithFields(fields).Debug("request")
	}
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(r)
	}
}

// graphError is a Graph error answer.
type graphError struct {
	status  int
	code    int
	message string
}

func (e *graphError) Error() string { return fmt.Sprintf("%d %s", e.code, e.message) }

// invalid is Graph's answer to a malformed request: 400, code 100 (whatsapp-calling.md §2.6).
func invalid(format string, args ...any) *graphError {
	return &graphError{status: http.StatusBadRequest, code: 100, message: fmt.Sprintf(format, args...)}
}

// graphStatus is the HTTP status Graph answers a code with (§2.6's table).
func graphStatus(code int) int {
	switch code {
	case 138000, 138006, 190:
		return http.StatusUnauthorized
	case 138002, 138005, 613:
		return http.StatusTooManyRequests
	case 138004, 138007, 1, 2:
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

func writeGraphError(w http.ResponseWriter, e *graphError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message":    e.message,
		"type":       "OAuthException",
		"code":       e.code,
		"error_data": map[string]any{"details": e.message},
		"fbtrace_id": "bspsim",
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if b, ok := v.([]byte); ok {
		_, _ = w.Write(b)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// maxRequestBody bounds what the emulator reads.
const maxRequestBody = 1 << 20

// ServeHTTP authenticates, routes, applies faults, validates and answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	rec := Request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.Query(), Header: redact(r.Header), Body: body, At: time.Now()}
	rw := &statusWriter{ResponseWriter: w}
	// Recorded when the handler returns, which is before the server flushes a small answer, so a
	// client that got its answer finds its request in Requests. A dropped connection is recorded
	// before the drop for the same reason.
	recorded := false
	commit := func() {
		if !recorded {
			recorded = true
			rec.Status = rw.status
			s.record(rec)
		}
	}
	defer commit()
	if e := s.checkAuth(r); e != nil {
		rec.Err = e.message
		writeGraphError(rw, e)
		return
	}
	ep, e := s.route(r, body)
	if ep != nil {
		rec.Op = ep.op
	}
	if e != nil {
		rec.Err = e.message
		writeGraphError(rw, e)
		return
	}
	parsed, e := s.validate(r, ep, body)
	if e != nil {
		rec.Err = e.message
		writeGraphError(rw, e)
		return
	}
	if f := s.takeFault(ep.op); f != nil {
		if done := s.applyFault(rw, r, f, &rec, commit); done {
			return
		}
	}
	resp, e := s.handle(ep, r, parsed)
	if e != nil {
		rec.Err = e.message
		writeGraphError(rw, e)
		return
	}
	writeJSON(rw, resp)
}

// checkAuth: Graph, Positus, Vectalk and Concepto Móvil take a bearer token, 360dialog its
// D360-API-KEY header. Graph answers a bad token with 401, code 190.
func (s *Server) checkAuth(r *http.Request) *graphError {
	var got string
	if s.cfg.Provider == bsp.Provider360dialog {
		got = r.Header.Get("D360-API-KEY")
		if r.Header.Get("Authorization") != "" {
			return &graphError{status: http.StatusUnauthorized, code: 190, message: "360dialog takes the API key in D360-API-KEY, not Authorization"}
		}
	} else {
		v := r.Header.Get("Authorization")
		tok, ok := cutPrefixFold(v, "Bearer ")
		if !ok && v != "" {
			return &graphError{status: http.StatusUnauthorized, code: 190, message: "Authorization must be a Bearer token"}
		}
		got = tok
	}
	switch {
	case got == "":
		return &graphError{status: http.StatusUnauthorized, code: 190, message: "An access token is required to request this resource."}
	case got != s.cfg.Token:
		return &graphError{status: http.StatusUnauthorized, code: 190, message: "Invalid OAuth access token - Cannot parse access token"}
	}
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && bytes.EqualFold([]byte(s[:len(prefix)]), []byte(prefix)) {
		return s[len(prefix):], true
	}
	return "", false
}

// validate checks the content type, the query and the body's shape.
func (s *Server) validate(r *http.Request, ep *endpoint, body []byte) (any, *graphError) {
	for k := range r.URL.Query() {
		if !slices.Contains(ep.query, k) {
			return nil, invalid("unknown query parameter %s", k)
		}
	}
	for _, k := range ep.requiredQuery {
		if r.URL.Query().Get(k) == "" {
			return nil, invalid("required query parameter %s is missing", k)
		}
	}
	if ep.shape == nil {
		if len(bytes.TrimSpace(body)) > 0 {
			return nil, invalid("%s takes no body", ep.op)
		}
		return nil, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		return nil, invalid("Content-Type must be application/json, not %q", r.Header.Get("Content-Type"))
	}
	v, err := ep.shape.check(s.golden, body)
	if err != nil {
		return nil, invalid("%s: %v", ep.op, err)
	}
	return v, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (a fault may drop it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func redact(h http.Header) http.Header {
	out := h.Clone()
	for _, k := range []string{"Authorization", "D360-Api-Key"} {
		if out.Get(k) != "" {
			out.Set(k, "[redacted]")
		}
	}
	return out
}
