package sip

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/sirupsen/logrus"
)

// Registration defaults.
const (
	// DefaultRegisterExpires is the binding lifetime we ask for: RFC 3261 §10.2.1.1 suggests
	// 3600 s when the UA has no preference.
	DefaultRegisterExpires = time.Hour
	// DefaultRegisterRetryMin and DefaultRegisterRetryMax bound the backoff after a failed
	// REGISTER. Starting at a few seconds rides out a PBX restart; the 5-minute cap keeps a
	// wrong password from hammering the registrar (and tripping fail2ban-style blocks).
	DefaultRegisterRetryMin = 2 * time.Second
	DefaultRegisterRetryMax = 5 * time.Minute
	// registerRefreshFraction: refresh when 80 % of the granted lifetime has passed, which
	// leaves a retry or two before the binding expires.
	registerRefreshFraction = 0.8
	// unregisterTimeout bounds the Expires: 0 REGISTER sent at shutdown.
	unregisterTimeout = 5 * time.Second
)

// RegState is the state of a Registration, for health checks and metrics.
type RegState int32

const (
	// RegUnregistered: not started, or unregistered at shutdown.
	RegUnregistered RegState = iota
	// RegRegistered: the registrar accepted the binding and it has not expired.
	RegRegistered
	// RegFailed: the last attempt failed; Run retries with backoff.
	RegFailed
)

func (s RegState) String() string {
	switch s {
	case RegUnregistered:
		return "unregistered"
	case RegRegistered:
		return "registered"
	case RegFailed:
		return "failed"
	}
	return fmt.Sprintf("RegState(%d)", int32(s))
}

// RegistrationConfig describes one binding. REGISTER is for PBX trunks only: Meta's edge
// answers REGISTER with 403 (whatsapp-calling.md §0 item 18, §5.4), so NewRegistration
// refuses a registrar under meta.vc.
type RegistrationConfig struct {
	// Registrar is the Request-URI, e.g. sip:pbx.example.com;transport=tcp. Its transport
	// parameter selects the transport.
	Registrar sipmsg.Uri
	// AOR is the address-of-record put in From and To, e.g. sip:wabridge@pbx.example.com.
	AOR sipmsg.Uri
	// Contact is where the PBX should send calls for AOR.
	Contact sipmsg.ContactHeader
	// Username and Password answer 401/407 challenges. Password is never logged.
	Username string
	Password string
	// Expires is the lifetime requested; DefaultRegisterExpires when 0.
	Expires time.Duration
	// RetryMin and RetryMax bound the backoff after failures (defaults above).
	RetryMin time.Duration
	RetryMax time.Duration
	// Log receives state changes; logrus' standard logger when nil.
	Log *logrus.Entry
}

// StatusError is a final non-2xx response, with Meta's Warning text when present.
type StatusError struct {
	StatusCode int
	Reason     string
	Warning    string
}

func (e *StatusError) Error() string {
	if e.Warning != "" {
		return fmt.Sprintf("%d %s (%s)", e.StatusCode, e.Reason, e.Warning)
	}
	return fmt.Sprintf("%d %s", e.StatusCode, e.Reason)
}

func statusError(res *sipmsg.Response) *StatusError {
	return &StatusError{StatusCode: res.StatusCode, Reason: res.Reason, Warning: Warning(res)}
}

// Registration keeps one REGISTER binding alive (RFC 3261 §10.2): it registers, answers
// digest challenges, refreshes at 80 % of the granted lifetime, retries failures with
// jittered exponential backoff, and unregisters (Expires: 0) when Run's context ends.
type Registration struct {
	client *sipgo.Client
	cfg    RegistrationConfig
	log    *logrus.Entry

	state atomic.Int32

	// mu guards the request sequence; Run is the only writer, but it is cheap insurance
	// against a second Run.
	mu      sync.Mutex
	callID  string
	fromTag string
	cseq    uint32
	expires time.Duration // requested; raised by 423 Min-Expires
}

// NewRegistration checks cfg and prepares a Registration; call Run to start it.
func NewRegistration(client *sipgo.Client, cfg RegistrationConfig) (*Registration, error) {
	if client == nil {
		return nil, errors.New("sip: registration needs a client")
	}
	if cfg.Registrar.Host == "" {
		return nil, errors.New("sip: registration needs a registrar URI")
	}
	if cfg.AOR.Host == "" {
		return nil, errors.New("sip: registration needs an address-of-record URI")
	}
	if h := strings.ToLower(cfg.Registrar.Host); h == "meta.vc" || strings.HasSuffix(h, ".meta.vc") {
		return nil, fmt.Errorf("sip: refusing to REGISTER with %s: Meta answers REGISTER with 403", cfg.Registrar.Host)
	}
	if cfg.Expires < 0 {
		return nil, errors.New("sip: negative registration expiry")
	}
	if cfg.Expires == 0 {
		cfg.Expires = DefaultRegisterExpires
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRegisterRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRegisterRetryMax, cfg.RetryMin)
	}
	log := cfg.Log
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	r := &Registration{
		client:  client,
		cfg:     cfg,
		log:     log.WithFields(logrus.Fields{"registrar": cfg.Registrar.String(), "aor": cfg.AOR.String()}),
		callID:  crand.Text(),
		fromTag: sipmsg.GenerateTagN(16),
		cseq:    rand.Uint32N(1 << 15), // RFC 3261 §8.1.1.5: less than 2**31; sipgo uses 0-32767 too
		expires: cfg.Expires,
	}
	return r, nil
}

// State returns the current state.
func (r *Registration) State() RegState { return RegState(r.state.Load()) }

func (r *Registration) setState(s RegState) { r.state.Store(int32(s)) }

// Run keeps the binding until ctx ends, then unregisters if a binding may exist, and
// returns. It returns nil after a clean shutdown, or the unregister error. Close the sipgo
// user agent only after Run has returned.
func (r *Registration) Run(ctx context.Context) error {
	bound := false // the registrar may hold a binding of ours
	backoff := r.cfg.RetryMin
	for {
		granted, err := r.register(ctx, r.requested())
		if ctx.Err() != nil {
			break
		}
		var wait time.Duration
		if err != nil {
			wait = jitter(backoff)
			backoff = min(2*backoff, r.cfg.RetryMax)
			entry := r.log.WithError(err).WithField("retry_in", wait.Round(time.Millisecond))
			if r.State() != RegFailed { // log a failure streak once at Warn
				entry.Warn("SIP registration failed")
			} else {
				entry.Debug("SIP registration failed again")
			}
			r.setState(RegFailed)
		} else {
			bound = true
			if r.State() != RegRegistered {
				r.log.WithField("expires", granted).Info("SIP registration active")
			}
			r.setState(RegRegistered)
			backoff = r.cfg.RetryMin
			wait = time.Duration(float64(granted) * registerRefreshFraction)
		}
		if !sleep(ctx, wait) {
			break
		}
	}

	if !bound {
		r.setState(RegUnregistered)
		return nil
	}
	// The parent context is done; unregister with a fresh, bounded one.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unregisterTimeout)
	defer cancel()
	_, err := r.register(uctx, 0)
	r.setState(RegUnregistered)
	if err != nil {
		r.log.WithError(err).Warn("SIP unregistration failed")
		return fmt.Errorf("sip: unregister: %w", err)
	}
	r.log.Info("SIP registration removed")
	return nil
}

// sleep waits for d and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *Registration) requested() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expires
}

// jitter spreads retries over [d/2, d) so that many bridges restarted together do not
// register in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half)
}

// register sends one REGISTER (plus its authenticated retry, and one 423 retry) asking
// for expires, and returns the lifetime the registrar granted.
func (r *Registration) register(ctx context.Context, expires time.Duration) (time.Duration, error) {
	for attempt := 0; ; attempt++ {
		req := r.newRequest(expires)
		res, err := r.client.Do(ctx, req)
		if err != nil {
			return 0, err
		}
		if res.StatusCode == sipmsg.StatusUnauthorized || res.StatusCode == sipmsg.StatusProxyAuthRequired {
			if r.cfg.Password == "" {
				return 0, fmt.Errorf("challenged but no password configured: %w", statusError(res))
			}
			SelectChallenge(res)
			res, err = r.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{
				Username: r.cfg.Username,
				Password: r.cfg.Password,
			})
			r.syncCSeq(req) // DoDigestAuth incremented the CSeq of req
			if err != nil {
				return 0, err
			}
			if res.StatusCode == sipmsg.StatusUnauthorized || res.StatusCode == sipmsg.StatusProxyAuthRequired {
				return 0, fmt.Errorf("credentials rejected: %w", statusError(res))
			}
		}
		// RFC 3261 §10.2.8: 423 Interval Too Brief carries the Min-Expires we must use.
		if res.StatusCode == sipmsg.StatusIntervalToBrief && expires > 0 && attempt == 0 {
			if minExp, ok := headerSeconds(res, "Min-Expires"); ok && minExp > expires {
				r.mu.Lock()
				r.expires = minExp
				r.mu.Unlock()
				expires = minExp
				continue
			}
		}
		if !res.IsSuccess() {
			return 0, statusError(res)
		}
		if expires == 0 {
			return 0, nil
		}
		granted := r.grantedExpiry(res, expires)
		if granted <= 0 {
			return 0, errors.New("registrar granted no lifetime")
		}
		return granted, nil
	}
}

func (r *Registration) newRequest(expires time.Duration) *sipmsg.Request {
	r.mu.Lock()
	r.cseq++ // RFC 3261 §10.2: same Call-ID, CSeq increases by one per REGISTER
	cseq := r.cseq
	r.mu.Unlock()

	req := sipmsg.NewRequest(sipmsg.REGISTER, r.cfg.Registrar)
	from := &sipmsg.FromHeader{Address: *r.cfg.AOR.Clone(), Params: sipmsg.NewParams()}
	from.Params.Add("tag", r.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: *r.cfg.AOR.Clone()})
	callID := sipmsg.CallIDHeader(r.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: cseq, MethodName: sipmsg.REGISTER})
	req.AppendHeader(r.cfg.Contact.Clone())
	exp := sipmsg.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(&exp)
	req.SetBody(nil)
	return req
}

func (r *Registration) syncCSeq(req *sipmsg.Request) {
	if c := req.CSeq(); c != nil {
		r.mu.Lock()
		if c.SeqNo > r.cseq {
			r.cseq = c.SeqNo
		}
		r.mu.Unlock()
	}
}

// grantedExpiry reads the lifetime of our binding from a 2xx (RFC 3261 §10.2.4): the
// expires parameter of our Contact, else the Expires header, else what we asked for.
func (r *Registration) grantedExpiry(res *sipmsg.Response, requested time.Duration) time.Duration {
	var contacts []*sipmsg.ContactHeader
	for _, h := range res.GetHeaders("Contact") {
		if c, ok := h.(*sipmsg.ContactHeader); ok {
			contacts = append(contacts, c)
		}
	}
	ours := r.cfg.Contact.Address
	for _, c := range contacts {
		// A registrar behind NAT handling may rewrite our host; if it returns a single
		// binding, it is ours.
		same := c.Address.User == ours.User && strings.EqualFold(c.Address.Host, ours.Host) && c.Address.Port == ours.Port
		if !same && len(contacts) != 1 {
			continue
		}
		if v, ok := c.Params.Get("expires"); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	if d, ok := headerSeconds(res, "Expires"); ok {
		return d
	}
	return requested
}

func headerSeconds(m sipmsg.Message, name string) (time.Duration, bool) {
	hs := m.GetHeaders(name)
	if len(hs) == 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(hs[0].Value()), 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}
