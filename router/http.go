package router

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the router's HTTP handler: GET /healthz, and GET /metrics
// when Config.Metrics is also a prometheus.Gatherer (a *prometheus.Registry
// is). The caller owns the listener.
func (r *Router) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", r.serveHealth)
	if g, ok := r.cfg.Metrics.(prometheus.Gatherer); ok {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

// serveHealth answers 200 "ok" while the router is started, not shutting
// down and connected to NATS; 503 otherwise.
func (r *Router) serveHealth(w http.ResponseWriter, _ *http.Request) {
	if !r.healthy() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// healthy reports whether the router takes requests: Start has finished,
// Shutdown has not begun, and its NATS connection is up.
func (r *Router) healthy() bool {
	return r.started.Load() && !r.stopping.Load() && r.nc.IsConnected()
}
