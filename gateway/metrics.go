package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/messages"
)

type metrics struct {
	connections prometheus.Gauge
	received    *prometheus.CounterVec // type
	// receivedBy is received's counter of each client type, looked up
	// once: a message counts without a label lookup.
	receivedBy map[string]prometheus.Counter
	refused    *prometheus.CounterVec // code
	closed     *prometheus.CounterVec // close code
	relayed    prometheus.Counter
	// acksWaiting counts the acks of relayed signals waiting for a NATS
	// flush; ackFlushes counts those flushes by result (ackflush.go), and
	// ackFlushed and ackFlushFailed are its two series, looked up once.
	acksWaiting    prometheus.Gauge
	ackFlushes     *prometheus.CounterVec // result: ok, failed
	ackFlushed     prometheus.Counter
	ackFlushFailed prometheus.Counter
	routerLatency  *prometheus.HistogramVec // op
	dropped        prometheus.Counter
	resumed        prometheus.Counter
	// refusedHandover counts frames another gateway handed over that
	// failed validation (resume.go).
	refusedHandover prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callmesh_gateway_connections", Help: "Open client connections.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_gateway_messages_received_total", Help: "Client messages accepted by the decoder, by type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_gateway_errors_sent_total", Help: "Error replies sent to clients, by code.",
		}, []string{"code"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_gateway_closes_total", Help: "Connections closed by the gateway, by close code.",
		}, []string{"code"}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_gateway_signals_relayed_total", Help: "Signal messages published to the other party.",
		}),
		acksWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callmesh_gateway_signal_acks_waiting", Help: "Acks of relayed signals waiting until the NATS server has the signal.",
		}),
		ackFlushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_gateway_ack_flushes_total", Help: "NATS flushes that acks of relayed signals waited for (one covers every signal published before it), by result.",
		}, []string{"result"}),
		routerLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "callmesh_gateway_router_request_seconds", Help: "Round trip of requests to the routers, retries included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"op"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_gateway_nats_dropped_total", Help: "Deliveries NATS dropped because the gateway fell behind (slow consumer).",
		}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_gateway_sessions_resumed_total", Help: "Sessions resumed on this gateway (from this or another one).",
		}),
		refusedHandover: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_gateway_handover_frames_refused_total", Help: "Frames another gateway handed over with a session that were not valid server frames (dropped).",
		}),
	}
	m.ackFlushed, m.ackFlushFailed = m.ackFlushes.WithLabelValues("ok"), m.ackFlushes.WithLabelValues("failed")
	m.receivedBy = map[string]prometheus.Counter{}
	for _, typ := range messages.ClientTypes() {
		m.receivedBy[typ] = m.received.WithLabelValues(typ)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.received, m.refused, m.closed, m.relayed, m.acksWaiting, m.ackFlushes, m.routerLatency, m.dropped, m.resumed, m.refusedHandover)
	}
	return m
}
