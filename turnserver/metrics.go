package turnserver

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus metrics.
type metrics struct {
	allocations   prometheus.Gauge
	allocated     prometheus.Counter
	refused       *prometheus.CounterVec // allocations refused, by reason
	authFailures  *prometheus.CounterVec // by method
	peersRefused  prometheus.Counter
	relayedBytes  *prometheus.CounterVec // by direction
	relayedPacket *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		allocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callmesh_turn_allocations", Help: "Live TURN allocations.",
		}),
		allocated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_turn_allocations_total", Help: "TURN allocations made.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_turn_allocations_refused_total", Help: "TURN allocations refused, by reason (quota).",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_turn_auth_failures_total", Help: "TURN requests whose credentials were refused, by method.",
		}, []string{"method"}),
		peersRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_turn_peers_refused_total", Help: "CreatePermission and ChannelBind refused for a peer address outside the allowed ones.",
		}),
		relayedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_turn_relayed_bytes_total", Help: "Bytes relayed between clients and peers, by direction (to_peer, from_peer).",
		}, []string{"direction"}),
		relayedPacket: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_turn_relayed_packets_total", Help: "Packets relayed between clients and peers, by direction.",
		}, []string{"direction"}),
	}
	if reg != nil {
		reg.MustRegister(m.allocations, m.allocated, m.refused, m.authFailures, m.peersRefused, m.relayedBytes, m.relayedPacket)
	}
	return m
}
