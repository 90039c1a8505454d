// Package metrics holds wabridge's Prometheus metrics on a private registry (so tests and
// several bridges in one process do not collide). Per-packet counts are not incremented per
// packet: the relay keeps atomic counters and the bridge adds a call's totals when it ends, so
// the media hot path pays nothing for observability.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "wabridge"

// Metrics is every metric wabridge exports.
type Metrics struct {
	Registry *prometheus.Registry

	// Calls
	ActiveCalls  *prometheus.GaugeVec     // direction, mode
	CallsTotal   *prometheus.CounterVec   // direction, mode, provider, outcome
	SetupSeconds *prometheus.HistogramVec // direction, mode
	Rejected     *prometheus.CounterVec   // reason: admission refusals before a call exists

	// Media, added per call when it ends
	Packets          *prometheus.CounterVec // leg, direction (in|out)
	Bytes            *prometheus.CounterVec // leg, direction
	SRTPAuthFailures *prometheus.CounterVec // leg
	Dropped          *prometheus.CounterVec // leg, reason

	// Signalling around calls
	ProviderRequests *prometheus.HistogramVec // provider, action, result
}

// New registers every metric (plus Go runtime and process collectors) on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{Registry: r}
	m.ActiveCalls = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "active_calls",
		Help: "Calls in progress."}, []string{"direction", "mode"})
	m.CallsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "calls_total",
		Help: "Finished calls by outcome: answered, or the SIP code / provider error that ended them before answer."},
		[]string{"direction", "mode", "provider", "outcome"})
	m.SetupSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "call_setup_seconds",
		Help:    "From the first INVITE to both legs answered.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60}}, []string{"direction", "mode"})
	m.Rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "calls_refused_total",
		Help: "INVITEs refused before a call was created (unknown number, auth, SDP, limits, draining)."}, []string{"reason"})
	m.Packets = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "media_packets_total",
		Help: "RTP packets relayed, counted when each call ends."}, []string{"leg", "direction"})
	m.Bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "media_bytes_total",
		Help: "RTP payload bytes relayed, counted when each call ends."}, []string{"leg", "direction"})
	m.SRTPAuthFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "srtp_auth_failures_total",
		Help: "SRTP/SRTCP packets that failed authentication (wrong key or forged source)."}, []string{"leg"})
	m.Dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "media_dropped_packets_total",
		Help: "Packets dropped by the relay, by reason."}, []string{"leg", "reason"})
	m.ProviderRequests = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "provider_request_seconds",
		Help: "BSP / Graph API call actions by result.", Buckets: prometheus.DefBuckets}, []string{"provider", "action", "result"})
	// Export zeros for the label values we know, so dashboards and alerts see a series from
	// the start instead of "no data" until the first event.
	for _, dir := range []string{"user-initiated", "business-initiated"} {
		for _, mode := range []string{"sip", "api"} {
			m.ActiveCalls.WithLabelValues(dir, mode)
		}
	}
	for _, reason := range []string{"unknown_number", "auth", "sdp", "draining", "call_limit", "config", "bad_request_uri"} {
		m.Rejected.WithLabelValues(reason)
	}
	r.MustRegister(m.ActiveCalls, m.CallsTotal, m.SetupSeconds, m.Rejected, m.Packets, m.Bytes, m.SRTPAuthFailures,
		m.Dropped, m.ProviderRequests)
	return m
}

// WebhookDeliveriesDesc describes wabridge_webhook_deliveries_total, which the webhook receivers
// export through a collector (they count with atomics of their own).
func WebhookDeliveriesDesc() *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_webhook_deliveries_total",
		"Webhook deliveries and events by result (accepted, duplicate, unauthorized, forbidden, too_large, malformed, unrouted, queue_full).",
		[]string{"provider", "result"}, nil)
}

// RegistrationUpDesc describes wabridge_registration_up, exported by the bridge's collector
// from its REGISTER bindings' states.
func RegistrationUpDesc() *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_registration_up", "1 when a configured REGISTER binding is in place.",
		[]string{"name"}, nil)
}

// Register adds a collector (e.g. the webhook receivers') to the registry.
func (m *Metrics) Register(c prometheus.Collector) error { return m.Registry.Register(c) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// ObserveSetup records how long a call took to be answered.
func (m *Metrics) ObserveSetup(direction, mode string, d time.Duration) {
	m.SetupSeconds.WithLabelValues(direction, mode).Observe(d.Seconds())
}
