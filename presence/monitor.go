package presence

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/callmesh/callmesh/internal/kvwatch"
	"github.com/callmesh/callmesh/messages"
)

// EvictFunc ends a connection held by a dead gateway. It must be idempotent:
// several monitors (one per router) may evict the same connection.
type EvictFunc func(ctx context.Context, user, conn, gateway string)

// Monitor watches the presence bucket and evicts the connections of a
// gateway whose heartbeat key has been gone for the resume grace period (so
// that clients may resume elsewhere first).
type Monitor struct {
	reg    *Registry
	grace  time.Duration
	resync time.Duration
	evict  EvictFunc
	log    *slog.Logger

	mu        sync.Mutex
	alive     map[string]bool              // gateway → key present; guarded by mu
	beats     map[string]uint64            // gateway → revision of its key last seen; guarded by mu
	deadSince map[string]time.Time         // gateway → when first seen without key; guarded by mu
	conns     map[string]map[string]string // user → conn → gateway; guarded by mu
	evicting  map[string]bool              // conn → eviction started; guarded by mu
}

// NewMonitor returns a monitor; Run starts it.
func NewMonitor(reg *Registry, grace, resync time.Duration, evict EvictFunc, log *slog.Logger) *Monitor {
	return &Monitor{
		reg: reg, grace: grace, resync: resync, evict: evict, log: log,
		alive: map[string]bool{}, beats: map[string]uint64{}, deadSince: map[string]time.Time{},
		conns: map[string]map[string]string{}, evicting: map[string]bool{},
	}
}

// Run watches and evicts until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	go kvwatch.Run(ctx, m.reg.kv, ">", m.resync, m, m.log)
	tick := m.grace / 4
	if tick > time.Second || tick <= 0 {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.checkBeats(ctx)
			for _, v := range m.due(now) {
				m.evict(ctx, v.user, v.conn, v.gateway)
			}
		}
	}
}

// checkBeats reads the heartbeat key of every gateway alive so far, and
// starts the grace of those whose key has expired: an expiry leaves no
// marker in the bucket (Open), so no watcher sees it.
func (m *Monitor) checkBeats(ctx context.Context) {
	m.mu.Lock()
	beats := make(map[string]uint64, len(m.alive))
	for gw := range m.alive {
		beats[gw] = m.beats[gw]
	}
	m.mu.Unlock()
	for gw, rev := range beats {
		if expired, err := m.reg.heartbeatExpired(ctx, gw); !expired || err != nil {
			continue // alive, or unknown: the next tick reads again
		}
		m.mu.Lock()
		if m.alive[gw] && m.beats[gw] == rev { // no refresh seen meanwhile
			delete(m.alive, gw)
			delete(m.beats, gw)
			m.markDead(gw)
		}
		m.mu.Unlock()
	}
}

type victim struct{ user, conn, gateway string }

// due returns the connections whose gateway has been dead for the grace.
func (m *Monitor) due(now time.Time) []victim {
	m.mu.Lock()
	defer m.mu.Unlock()
	// A gateway named by a connection but never seen alive is dead too.
	for _, conns := range m.conns {
		for _, gw := range conns {
			if !m.alive[gw] {
				if _, ok := m.deadSince[gw]; !ok {
					m.deadSince[gw] = now
				}
			}
		}
	}
	if len(m.deadSince) == 0 {
		return nil
	}
	var out []victim
	held := map[string]bool{}
	for user, conns := range m.conns {
		for conn, gw := range conns {
			since, dead := m.deadSince[gw]
			if !dead {
				continue
			}
			held[gw] = true
			if now.Sub(since) >= m.grace && !m.evicting[conn] {
				m.evicting[conn] = true
				out = append(out, victim{user, conn, gw})
			}
		}
	}
	for gw := range m.deadSince {
		if !held[gw] {
			delete(m.deadSince, gw)
		}
	}
	return out
}

// Sync implements kvwatch.Handler.
func (m *Monitor) Sync(entries map[string]kvwatch.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	alive := map[string]bool{}
	m.conns = map[string]map[string]string{}
	for _, e := range entries {
		m.apply(e, alive)
	}
	for gw := range m.alive {
		if !alive[gw] {
			delete(m.beats, gw)
			m.markDead(gw)
		}
	}
	m.alive = alive
	m.evicting = map[string]bool{} // retry anything a lost watch event hid
}

// Update implements kvwatch.Handler.
func (m *Monitor) Update(e kvwatch.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apply(e, m.alive)
}

// apply records one entry; guarded by mu.
func (m *Monitor) apply(e kvwatch.Entry, alive map[string]bool) {
	switch {
	case strings.HasPrefix(e.Key, "gw."):
		gw := strings.TrimPrefix(e.Key, "gw.")
		if e.Deleted {
			delete(alive, gw)
			delete(m.beats, gw)
			m.markDead(gw)
			return
		}
		alive[gw] = true
		m.beats[gw] = e.Revision
		delete(m.deadSince, gw)
	case strings.HasPrefix(e.Key, "user."):
		user, err := messages.DecodeUserID(strings.TrimPrefix(e.Key, "user."))
		if err != nil {
			return
		}
		for conn := range m.conns[user] {
			delete(m.evicting, conn)
		}
		delete(m.conns, user)
		if e.Deleted {
			return
		}
		var rec userRecord
		if json.Unmarshal(e.Value, &rec) != nil || len(rec.Conns) == 0 {
			return
		}
		conns := make(map[string]string, len(rec.Conns))
		for conn, c := range rec.Conns {
			conns[conn] = c.Gateway
		}
		m.conns[user] = conns
	}
}

// markDead starts gw's grace unless it already runs; guarded by mu.
func (m *Monitor) markDead(gw string) {
	if _, ok := m.deadSince[gw]; !ok {
		m.deadSince[gw] = time.Now()
	}
}
