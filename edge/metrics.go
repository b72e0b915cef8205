package edge

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requestSeconds *prometheus.HistogramVec
	requestErrors  *prometheus.CounterVec
	sends          *prometheus.CounterVec
	deliveries     *prometheus.CounterVec
	deliverySecs   prometheus.Histogram
	sockets        prometheus.Gauge
	socketOpens    prometheus.Counter
	socketCloses   *prometheus.CounterVec
	socketWrite    prometheus.Histogram
	socketLife     prometheus.Histogram
}

type routeMetrics struct {
	seconds prometheus.Observer
	errors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edgenode_http_request_seconds", Help: "REST call latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 15),
		}, []string{"route"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_http_errors_total", Help: "REST calls answered with an error, by route.",
		}, []string{"route"}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_sends_total", Help: "POST /v1/messages outcomes: created, duplicate, or an API error code.",
		}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_deliveries_total", Help: "Events handed to clients, by path (socket or sync), and sent copies a socket passed over as its own device's (own_copy).",
		}, []string{"path"}),
		deliverySecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "edgenode_delivery_seconds", Help: "From commit of an event to its write on the recipient's socket.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		sockets:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "edgenode_sockets", Help: "Open client WebSockets."}),
		socketOpens: prometheus.NewCounter(prometheus.CounterOpts{Name: "edgenode_socket_opens_total", Help: "Client WebSockets opened."}),
		socketCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgenode_socket_closes_total", Help: "Client WebSockets closed, by reason.",
		}, []string{"reason"}),
		socketWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "edgenode_socket_write_seconds", Help: "Time to hand one batch of frames to a client socket's kernel buffer; long when the client reads slowly.",
			Buckets: prometheus.ExponentialBuckets(0.00001, 4, 12),
		}),
		socketLife: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "edgenode_socket_duration_seconds", Help: "How long client WebSockets stayed open, observed when they close.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
	}
	reg.MustRegister(m.requestSeconds, m.requestErrors, m.sends, m.deliveries, m.deliverySecs, m.sockets, m.socketOpens, m.socketCloses, m.socketWrite, m.socketLife)
	return m
}

func (m *metrics) route(name string) routeMetrics {
	return routeMetrics{seconds: m.requestSeconds.WithLabelValues(name), errors: m.requestErrors.WithLabelValues(name)}
}

// registerState publishes the sizes of the edge's own tables as
// edgenode_edge_state_entries{kind}.
func (m *metrics) registerState(reg prometheus.Registerer, kinds map[string]func() int) {
	for kind, size := range kinds {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edgenode_edge_state_entries", Help: "Entries of the edge's own tables, by kind: rate_buckets (rate-limit buckets of recently active users), presence_pairs (cached answers to whether two users share a conversation).",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(size()) }))
	}
}
