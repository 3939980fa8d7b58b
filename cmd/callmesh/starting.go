package main

import (
	"net/http"
	"sync/atomic"
)

// startingHandler is what a router's or gateway's listener serves from the
// moment it is open: 503 "starting" on every path (so /healthz answers, and
// a load balancer or orchestrator sees a process that is alive but not
// ready) until ready hands it the component's handler, which serves from
// then on. A component waits for NATS and JetStream as long as it takes
// (kvutil.Retry), and this is how that wait is seen from outside.
type startingHandler struct {
	h atomic.Pointer[http.Handler]
}

// ready makes h serve every request from now on.
func (s *startingHandler) ready(h http.Handler) { s.h.Store(&h) }

func (s *startingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "starting", http.StatusServiceUnavailable)
}
