package relaylog

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	applySeconds  prometheus.Histogram
	batchCommands prometheus.Histogram
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
	}
	if reg != nil {
		reg.MustRegister(m.applySeconds, m.batchCommands)
	}
	return m
}
