package bridge

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/metrics"
	wsip "github.com/wabridge/wabridge/sip"
)

// Option configures NewServer.
type Option func(*Server)

// WithMetrics makes the server count into m (metrics.New() otherwise).
func WithMetrics(m *metrics.Metrics) Option { return func(s *Server) { s.metrics = m } }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Alive reports whether the server is still serving SIP (for /healthz and the watchdog).
func (s *Server) Alive() bool { return s.ctx.Err() == nil }

// ConfigDrainTimeout is the drain timeout of the config in force.
func (s *Server) ConfigDrainTimeout() time.Duration {
	return time.Duration(s.config().Limits.DrainTimeout)
}

// Readiness says whether the server should be sent new calls, in the terms of a load balancer's
// health check: HTTP status and a reason.
func (s *Server) Readiness() (int, string) {
	s.mu.Lock()
	draining, active := s.draining, s.active
	s.mu.Unlock()
	cfg := s.config()
	switch {
	case draining:
		return http.StatusServiceUnavailable, "draining"
	case cfg.Limits.MaxCalls > 0 && active >= cfg.Limits.MaxCalls:
		// 429 rather than 503: alive and healthy, just full (a balancer should try a sibling).
		return http.StatusTooManyRequests, fmt.Sprintf("at the call limit (%d)", cfg.Limits.MaxCalls)
	}
	for name, st := range s.RegistrationStates() {
		if st != wsip.RegRegistered {
			return http.StatusServiceUnavailable, "registration " + name + " is " + st.String()
		}
	}
	return http.StatusOK, "ready"
}

// Drain stops taking new calls (they get 503) and waits for the active ones to end. When ctx
// ends first (the drain timeout), the remaining calls are hung up cleanly on both legs.
func (s *Server) Drain(ctx context.Context) {
	s.mu.Lock()
	s.draining = true
	active := s.active
	s.mu.Unlock()
	s.log.WithField("active_calls", active).Info("draining: refusing new calls, waiting for active ones")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for s.ActiveCalls() > 0 {
		select {
		case <-ctx.Done():
			s.log.WithField("active_calls", s.ActiveCalls()).Warn("drain timeout: hanging up the remaining calls")
			s.hangupAll("drain timeout")
			return
		case <-tick.C:
		}
	}
	s.log.Info("drained: no active calls")
}

func (s *Server) hangupAll(reason string) {
	s.mu.Lock()
	seen := map[*Call]bool{}
	var calls []*Call
	for _, c := range s.calls {
		if !seen[c] {
			seen[c] = true
			calls = append(calls, c)
		}
	}
	s.mu.Unlock()
	for _, c := range calls {
		c.hangup(reason)
	}
}

// Reload replaces the numbers, credentials, PBX route and limits. Active calls keep the config
// they started with. Settings that need new sockets (listeners, media ports and address, TLS
// certificate paths) cannot change without a restart: a reload that changes them is refused
// whole, so the running config stays consistent.
func (s *Server) Reload(next *config.Config) error {
	cur := s.config()
	for _, f := range []struct {
		key      string
		old, new any
	}{
		{"sip.pbx_listen", cur.SIP.PBXListen, next.SIP.PBXListen},
		{"sip.whatsapp_listen", cur.SIP.WhatsAppListen, next.SIP.WhatsAppListen},
		{"sip.hostname", cur.SIP.Hostname, next.SIP.Hostname},
		{"sip.whatsapp_ca_file", cur.SIP.WhatsAppCAFile, next.SIP.WhatsAppCAFile},
		{"media", cur.Media, next.Media},
		{"pbx.transport", cur.PBX.Transport, next.PBX.Transport},
		{"pbx.register", cur.PBX.Register, next.PBX.Register},
		{"http", cur.HTTP, next.HTTP},
	} {
		if !reflect.DeepEqual(f.old, f.new) {
			return fmt.Errorf("reload: %s changed; it needs a restart", f.key)
		}
	}
	for i := range next.Numbers {
		n := &next.Numbers[i]
		old, ok := cur.Number(n.Number)
		if n.SIP.Register || (ok && old.SIP.Register) {
			if !ok || !reflect.DeepEqual(old.SIP, n.SIP) {
				return fmt.Errorf("reload: numbers[%d] (%s) registers with its edge; changing it needs a restart", i, n.Number)
			}
		}
	}
	s.cfg.Store(next)
	s.log.WithFields(logrus.Fields{"numbers": len(next.Numbers), "max_calls": next.Limits.MaxCalls}).Info("config reloaded")
	return nil
}
