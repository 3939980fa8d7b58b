package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
)

// Heartbeat keeps a gateway's key alive. The key carries a per-key TTL; it is
// refreshed by publishing to the key's subject with a fresh message TTL and
// an expected last sequence, because KV Put and Update silently drop a key's
// TTL.
type Heartbeat struct {
	reg      *Registry
	gateway  string
	interval time.Duration
	ttl      time.Duration
	log      *slog.Logger
	seq      uint64 // owned by Run after Start
}

// StartHeartbeat creates the gateway's key (TTL rounded up to whole seconds,
// as JetStream requires) and returns the heartbeat to Run.
func (r *Registry) StartHeartbeat(ctx context.Context, gateway string, interval, ttl time.Duration, log *slog.Logger) (*Heartbeat, error) {
	h := &Heartbeat{reg: r, gateway: gateway, interval: interval, ttl: ttl.Round(time.Second), log: log}
	if h.ttl < time.Second {
		h.ttl = time.Second
	}
	if err := h.create(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Heartbeat) create(ctx context.Context) error {
	key := messages.GatewayKey(h.gateway)
	rev, err := h.reg.kv.Create(ctx, key, []byte(h.gateway), jetstream.KeyTTL(h.ttl))
	if kvutil.IsConflict(err) { // a retry of a create whose answer was lost
		if e, gerr := h.reg.kv.Get(ctx, key); gerr == nil && string(e.Value()) == h.gateway {
			rev, err = e.Revision(), nil
		}
	}
	if err != nil {
		return fmt.Errorf("presence: create heartbeat: %w", err)
	}
	h.seq = rev
	return nil
}

// Run refreshes the key every interval until ctx is done. lost is called
// when the key had expired (the gateway was presumed dead and its
// connections may have been evicted) and has been created again.
func (h *Heartbeat) Run(ctx context.Context, lost func()) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	subject := kvutil.Subject(h.reg.kv, messages.GatewayKey(h.gateway))
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ack, err := h.reg.js.Publish(ctx, subject, []byte(h.gateway),
			jetstream.WithMsgTTL(h.ttl), jetstream.WithExpectLastSequencePerSubject(h.seq))
		if err == nil {
			h.seq = ack.Sequence
			continue
		}
		if !kvutil.IsConflict(err) {
			h.log.Warn("heartbeat failed", "err", err)
			continue
		}
		// The key expired: we were presumed dead. Come back.
		if err := h.create(ctx); err != nil {
			h.log.Warn("heartbeat re-create failed", "err", err)
			continue
		}
		h.log.Warn("heartbeat key had expired; re-registered")
		if lost != nil {
			lost()
		}
	}
}

// Retire deletes the gateway's key, so monitors start the resume grace of its
// connections at once instead of waiting for the TTL.
func (h *Heartbeat) Retire(ctx context.Context) error {
	if err := h.reg.kv.Delete(ctx, messages.GatewayKey(h.gateway)); err != nil {
		return fmt.Errorf("presence: retire heartbeat: %w", err)
	}
	return nil
}

// heartbeatExpired reports whether gateway's heartbeat key is gone, asking
// the stream's leader, not any replica as a KV Get (direct get) would: a
// replica that lags would call a live gateway dead.
func (r *Registry) heartbeatExpired(ctx context.Context, gateway string) (bool, error) {
	_, err := kvutil.LeaderGet(ctx, r.js.Conn(), r.kv, messages.GatewayKey(gateway))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true, nil
	}
	return false, err
}
