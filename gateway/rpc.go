package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/messages"
)

// request asks the router queue group and waits for the reply, retrying
// when no router answers in time, when none is subscribed, or when one
// reports an internal error. Every router operation is idempotent for the
// same sender and call id, so a retry never makes a second call.
func (s *Server) request(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	start := time.Now()
	defer func() { s.metrics.routerLatency.WithLabelValues(req.Op).Observe(time.Since(start).Seconds()) }()
	data := mustJSON(req)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RouterTimeout)
	defer cancel()
	backoff := 10 * time.Millisecond
	for {
		reply, err := s.requestOnce(ctx, data)
		if err == nil && reply.Code != messages.CodeInternal {
			return reply, nil
		}
		if err != nil && !retryable(err) {
			return reply, err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				return reply, nil // the router's internal error stands
			}
			return reply, fmt.Errorf("gateway: router request %s: %w", req.Op, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (s *Server) requestOnce(ctx context.Context, data []byte) (messages.Reply, error) {
	var reply messages.Reply
	actx, cancel := context.WithTimeout(ctx, s.cfg.RouterAttempt)
	defer cancel()
	msg, err := s.nc.RequestWithContext(actx, s.names.RouterSubject(), data)
	if err != nil {
		return reply, err
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return reply, fmt.Errorf("gateway: decode router reply: %w", err)
	}
	return reply, nil
}

func retryable(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
}
