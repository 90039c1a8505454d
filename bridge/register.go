package bridge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/config"
	"github.com/wabridge/wabridge/metrics"
	wsip "github.com/wabridge/wabridge/sip"
)

// registrations keeps the REGISTER bindings the config asks for: toward BSP SIP edges that need
// one (numbers[].sip.register; never Meta's edge, which answers 403) and toward the PBX.
type registrations struct {
	mu   sync.Mutex
	regs map[string]*wsip.Registration // by a name for logs and health: "pbx" or the number
	wg   sync.WaitGroup
}

// startRegistrations runs every configured registration until ctx ends. Shutdown waits for
// them so un-REGISTER goes out before the transports close.
func (s *Server) startRegistrations(ctx context.Context) error {
	cfg := s.config()
	for i := range cfg.Numbers {
		n := &cfg.Numbers[i]
		if n.Mode != config.ModeSIP || !n.SIP.Register {
			continue
		}
		pw, err := s.sipPassword(n)
		if err != nil {
			return fmt.Errorf("numbers[%d] register: %w", i, err)
		}
		host, port, err := splitHostPort(n.EdgeAddress())
		if err != nil {
			return fmt.Errorf("numbers[%d].sip.edge.address: %w", i, err)
		}
		registrar := sipmsg.Uri{Scheme: "sip", Host: host, Port: port, UriParams: sipmsg.NewParams()}
		registrar.UriParams.Add("transport", "tls")
		aor := sipmsg.Uri{Scheme: "sip", User: n.Number, Host: n.SIP.Edge.Host}
		contact := s.wa.contact
		contact.Address.User = n.Number
		reg, err := wsip.NewRegistration(s.wa.cli, wsip.RegistrationConfig{Registrar: registrar, AOR: aor,
			Contact: contact, Username: n.DigestUsername(), Password: pw,
			Log: s.log.WithFields(logrus.Fields{"number": n.Number, "leg": "whatsapp"})})
		if err != nil {
			return fmt.Errorf("numbers[%d] register: %w", i, err)
		}
		s.regs.run(ctx, n.Number, reg)
	}
	if r := cfg.PBX.Register; r.Enabled {
		pw, err := r.Password()
		if err != nil {
			return fmt.Errorf("pbx.register: %w", err)
		}
		host, port, err := splitHostPort(r.Registrar)
		if err != nil {
			return fmt.Errorf("pbx.register.registrar: %w", err)
		}
		registrar := sipmsg.Uri{Scheme: "sip", Host: host, Port: port}
		if t := cfg.PBX.Transport; t != "" && t != config.TransportUDP {
			registrar.UriParams = sipmsg.NewParams()
			registrar.UriParams.Add("transport", strings.ToLower(string(t)))
		}
		contact := s.pbx.contact
		contact.Address.User = r.Username
		reg, err := wsip.NewRegistration(s.pbx.cli, wsip.RegistrationConfig{Registrar: registrar,
			AOR: sipmsg.Uri{Scheme: "sip", User: r.Username, Host: host}, Contact: contact,
			Username: r.Username, Password: pw, Expires: time.Duration(r.Expires),
			Log: s.log.WithField("leg", "pbx")})
		if err != nil {
			return fmt.Errorf("pbx.register: %w", err)
		}
		s.regs.run(ctx, "pbx", reg)
	}
	return nil
}

func (r *registrations) run(ctx context.Context, name string, reg *wsip.Registration) {
	r.mu.Lock()
	r.regs[name] = reg
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = reg.Run(ctx)
	}()
}

// registrationCollector exports wabridge_registration_up{name} at scrape time.
type registrationCollector struct{ s *Server }

func (registrationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- metrics.RegistrationUpDesc() }

func (r registrationCollector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range r.s.RegistrationStates() {
		up := 0.0
		if st == wsip.RegRegistered {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(metrics.RegistrationUpDesc(), prometheus.GaugeValue, up, name)
	}
}

// RegistrationStates reports each configured registration, for health checks and metrics.
func (s *Server) RegistrationStates() map[string]wsip.RegState {
	out := map[string]wsip.RegState{}
	if s.regs == nil {
		return out
	}
	s.regs.mu.Lock()
	defer s.regs.mu.Unlock()
	for name, reg := range s.regs.regs {
		out[name] = reg.State()
	}
	return out
}
