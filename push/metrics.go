package push

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of one provider request (label outcome of
// edgenode_push_requests_total).
const (
	OutcomeSent         = "sent"         // the provider accepted it
	OutcomeRetried      = "retried"      // a temporary failure; another attempt follows
	OutcomeUnregistered = "unregistered" // the token is dead and was removed
	OutcomeFailed       = "failed"       // rejected, or temporary failures outlasted the retries
)

// Decisions of one check of a user (label decision of
// edgenode_push_checks_total).
const (
	DecisionAlerted   = "alerted"    // alerts went out
	DecisionNothing   = "nothing"    // no message newer than the push mark: acknowledged or alerted before
	DecisionDeferred  = "deferred"   // online, ack timeout not reached: checked again then
	DecisionNoDevices = "no_devices" // nobody to alert
	DecisionNotLeader = "not_leader" // another node leads the user's shard now
	DecisionFailed    = "failed"     // every device failed
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	checks   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_push_requests_total",
			Help: "Requests to push providers, by provider (apns, fcm) and outcome (sent, retried, unregistered, failed).",
		}, []string{"provider", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgenode_push_request_seconds",
			Help:    "Duration of one request to a push provider, token requests included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"provider"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_push_checks_total",
			Help: "Checks of a user after its debounce, by decision (alerted, nothing, deferred, no_devices, not_leader, failed).",
		}, []string{"decision"}),
	}
	for _, p := range []string{ProviderAPNS, ProviderFCM} {
		for _, o := range []string{OutcomeSent, OutcomeRetried, OutcomeUnregistered, OutcomeFailed} {
			m.requests.WithLabelValues(p, o)
		}
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.checks)
	}
	return m
}
