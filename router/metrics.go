package router

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec   // op, code ("ok" on success)
	latency  *prometheus.HistogramVec // op
	ended    *prometheus.CounterVec   // reason
	retries  prometheus.Counter
	repeats  prometheus.Counter
	retried  *prometheus.CounterVec // type: deliveries tried again
	givenUp  *prometheus.CounterVec // type: deliveries that ran out of time
	dropped  prometheus.CounterFunc // requests NATS dropped: the work queue was full
}

// newMetrics makes the router's metrics; dropped counts the requests NATS
// has dropped.
func newMetrics(reg prometheus.Registerer, dropped func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_router_requests_total", Help: "Gateway requests handled, by operation and result code.",
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "callmesh_router_request_seconds", Help: "Time to handle a gateway request.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_router_calls_ended_total", Help: "Calls ended, by reason.",
		}, []string{"reason"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_router_cas_retries_total", Help: "Compare-and-set conflicts that forced a re-read.",
		}),
		repeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callmesh_router_repeats_total", Help: "Events the stored call already reflected, whose effects were published again.",
		}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_router_deliveries_retried_total", Help: "Deliveries tried again for lack of a gateway's receipt, by message type.",
		}, []string{"type"}),
		givenUp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_router_deliveries_given_up_total", Help: "Deliveries still without a receipt when their time ran out, by message type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "callmesh_router_requests_dropped_total", Help: "Gateway requests NATS dropped because the router's work queue was full (slow consumer); each costs a gateway a retry.",
		}, dropped),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.ended, m.retries, m.repeats, m.retried, m.givenUp, m.dropped)
	}
	return m
}
