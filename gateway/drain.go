package gateway

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// Shutdown drains the gateway for a rolling upgrade. It stops accepting
// connections (/ws and /healthz answer 503), sends every client goaway with
// a spread-out reconnect delay, and waits up to DrainTimeout (or ctx) while
// the clients resume on other gateways: each resume takes its session over,
// with what was held for it, and closes the old socket with 4001. Sockets
// still open then are closed with 1012; sessions not resumed anywhere are
// ended by the routers' monitors once the gateway's heartbeat is gone and
// the grace has passed. Calls in progress go on throughout.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return errors.New("gateway: already shut down")
	}
	s.draining = true
	conns := s.sockets()
	s.mu.Unlock()
	s.log.Info("gateway draining", "connections", len(conns), "timeout", s.cfg.DrainTimeout)

	spread := s.cfg.DrainTimeout / 2
	for _, c := range conns {
		delay := time.Duration(0)
		if spread > 0 {
			delay = rand.N(spread)
		}
		c.send1(&messages.Envelope{Type: messages.TypeGoaway, Data: mustJSON(messages.Goaway{ReconnectMS: delay.Milliseconds()})})
	}
	s.awaitMoved(ctx)

	s.mu.Lock()
	left := s.sockets()
	s.mu.Unlock()
	var closing sync.WaitGroup
	for _, c := range left {
		closing.Go(func() { c.closeWith(messages.CloseRestart, "server restarting; resume elsewhere") })
	}
	closing.Wait()
	s.cancel()
	_ = s.handover.Unsubscribe()
	_ = s.inbound.Unsubscribe()
	err := s.hb.Retire(ctx)
	s.mu.Lock()
	for subject, u := range s.users {
		_ = u.sub.Unsubscribe()
		delete(s.users, subject)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.tasks.wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.log.Info("gateway stopped", "connections", len(conns), "not moved", len(left))
	return err
}

// awaitMoved waits until no session is held here, DrainTimeout passes or
// ctx is done.
func (s *Server) awaitMoved(ctx context.Context) {
	deadline := time.NewTimer(s.cfg.DrainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// sockets lists the connections held here. Guarded by mu.
func (s *Server) sockets() []*conn {
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}
