package meshtest

import "github.com/prometheus/client_golang/prometheus"

// counterSum sums the counter name gathered from g over the series whose
// labels include labels (name, value pairs). A counter never incremented
// sums to 0, and so does a nil g.
func counterSum(g prometheus.Gatherer, name string, labels ...string) float64 {
	if g == nil {
		return 0
	}
	families, _ := g.Gather() // a registry's Gather fails only on inconsistent metrics, which MustRegister refused
	total := 0.0
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
	series:
		for _, metric := range fam.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range metric.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue series
				}
			}
			total += metric.GetCounter().GetValue()
		}
	}
	return total
}

// Counter sums the gateway's counter name over the series whose labels
// include labels (name, value pairs).
func (g *Gateway) Counter(name string, labels ...string) float64 {
	return counterSum(g.metrics, name, labels...)
}

// RouterRequests is how many requests of op all routers have handled.
func (m *Mesh) RouterRequests(op string) int {
	return int(counterSum(m.metrics, "callmesh_router_requests_total", "op", op))
}

// routerDropped is how many requests NATS dropped because a router's queue
// was full, by the routers' metric.
func (m *Mesh) routerDropped() int {
	return int(counterSum(m.metrics, "callmesh_router_requests_dropped_total"))
}
