package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
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

// whileStarting returns ctx for a component's start (router.Start,
// gateway.New), cancelled also if nc is closed for good before started is
// called. nats.go keeps reconnecting forever, except to a server that
// refused its credentials twice: then it closes the connection, and a
// component waiting for JetStream would wait on it forever. After started,
// the returned context ends with ctx only.
func whileStarting(ctx context.Context, nc *nats.Conn) (_ context.Context, started func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	closed := nc.StatusChanged(nats.CLOSED)
	stop := make(chan struct{})
	go func() {
		defer nc.RemoveStatusListener(closed)
		if !nc.IsClosed() { // closed before the listener was there
			select {
			case <-closed:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
		cancel(fmt.Errorf("nats connection closed: %w", nc.LastError()))
	}()
	return ctx, sync.OnceFunc(func() { close(stop) })
}
