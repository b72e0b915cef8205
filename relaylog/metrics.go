package relaylog

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	applySeconds  prometheus.Histogram
	batchCommands prometheus.Histogram
	expirySkipped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgenode_raft_apply_seconds",
			Help:    "Time from raft.Apply of a batch entry to its commit and application.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchCommands: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edgenode_raft_batch_commands",
			Help:    "Commands carried by one raft log entry.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		expirySkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgenode_expiry_skipped_total",
			Help: "Expiry runs (one a minute) this node skipped because its clock is too far from the other nodes'.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.applySeconds, m.batchCommands, m.expirySkipped)
	}
	return m
}

var stateDesc = prometheus.NewDesc("edgenode_state_entries",
	"Entries of the replicated state held by this node's replicas, by table: queues (users with undelivered events), senders and idempotency_records (remembered sends), devices (users with push devices), last_connected, read_marks.",
	[]string{"kind"}, nil)

// stateCollector reports Log.StateSizes at each scrape.
type stateCollector struct{ l *Log }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- stateDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	z := c.l.StateSizes()
	for _, kv := range []struct {
		kind string
		n    int
	}{{"queues", z.Queues}, {"senders", z.Senders}, {"idempotency_records", z.IdempotencyRecords}, {"devices", z.Devices}, {"last_connected", z.LastConnected}, {"read_marks", z.ReadMarks}, {"contacts", z.Contacts}, {"linked_devices", z.Linked}, {"revoked_devices", z.Revoked}} {
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, float64(kv.n), kv.kind)
	}
}
