package gateway

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/callmesh/callmesh/messages"
)

// Connect and resume attempts (requests to /ws) are limited per source
// address before the token is verified, which costs a signature check, and
// per user after (PROTOCOL.md §1). Each limit is a token bucket per key,
// kept in a map of bounded size.

// maxLimiterKeys bounds the keys of one keyedLimiter: some 100 bytes each.
const maxLimiterKeys = 1 << 16

// sweepEvery is how often a keyedLimiter at most looks for the buckets it
// can forget.
const sweepEvery = time.Second

// keyedLimiter is a token bucket per key. A nil keyedLimiter allows
// everything. Safe for concurrent use.
type keyedLimiter struct {
	limit rate.Limit
	burst int
	max   int // keys kept at most

	mu    sync.Mutex
	keys  map[string]*rate.Limiter // guarded by mu
	swept time.Time                // the last sweep; guarded by mu
}

// newKeyedLimiter returns buckets of perSecond and burst, or nil (no limit)
// when perSecond is 0.
func newKeyedLimiter(perSecond float64, burst int) *keyedLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &keyedLimiter{limit: rate.Limit(perSecond), burst: burst, max: maxLimiterKeys, keys: map[string]*rate.Limiter{}}
}

// allow takes a token from key's bucket at now. When there is none, it
// says how long until there is one.
func (l *keyedLimiter) allow(key string, now time.Time) (ok bool, retry time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bucket(key, now)
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration((1 - lim.TokensAt(now)) / float64(l.limit) * float64(time.Second))
}

// empty takes every token from key's bucket at now.
func (l *keyedLimiter) empty(key string, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.bucket(key, now)
	if n := int(lim.TokensAt(now)); n > 0 {
		lim.AllowN(now, n)
	}
}

// bucket is key's bucket, made full if there is none. Guarded by mu.
func (l *keyedLimiter) bucket(key string, now time.Time) *rate.Limiter {
	lim := l.keys[key]
	if lim == nil {
		l.makeRoom(now)
		lim = rate.NewLimiter(l.limit, l.burst)
		l.keys[key] = lim
	}
	return lim
}

// makeRoom makes room for one more key. At most once per sweepEvery it
// forgets the buckets that are full again: a full bucket is the same as
// none. If the map is still full, it forgets a bucket at random, whose key
// starts afresh: at worst that lets a client in too soon, never keeps one
// out. Guarded by mu.
func (l *keyedLimiter) makeRoom(now time.Time) {
	if now.Sub(l.swept) >= sweepEvery {
		l.swept = now
		for k, lim := range l.keys {
			if lim.TokensAt(now) >= float64(l.burst) {
				delete(l.keys, k)
			}
		}
	}
	for k := range l.keys {
		if len(l.keys) < l.max {
			break
		}
		delete(l.keys, k)
	}
}

// sourceKey is the key of a client's address for the connect limit: the
// TCP peer's IPv4 address, or its IPv6 /64 (one host's share of a network:
// anyone with one has 2^64 addresses). A reverse proxy's clients all have
// the proxy's address; X-Forwarded-For is not trusted.
func sourceKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	addr := ap.Addr().Unmap()
	if addr.Is6() {
		if p, err := addr.WithZone("").Prefix(64); err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// floodGuard holds the gateway's connect limits and counts what the flood
// limits refuse.
type floodGuard struct {
	addr, user *keyedLimiter
	// framesRefused counts frames refused undecoded, by the bucket that
	// refused them; connectsRefused, requests to /ws refused before the
	// upgrade, by reason.
	framesRefused   *prometheus.CounterVec
	connectsRefused *prometheus.CounterVec
}

// Reasons of connectsRefused.
const (
	refusedDraining     = "draining"
	refusedOrigin       = "origin"
	refusedAddrRate     = "addr_rate"
	refusedFull         = "full"
	refusedUnauthorized = "unauthorized"
	refusedUserRate     = "user_rate"
)

// Buckets of framesRefused.
const (
	limitMessages = "messages"
	limitBytes    = "bytes"
)

func newFloodGuard(cfg Config) *floodGuard {
	g := &floodGuard{
		addr: newKeyedLimiter(cfg.AddrConnectRate, cfg.AddrConnectBurst),
		user: newKeyedLimiter(cfg.UserConnectRate, cfg.UserConnectBurst),
		framesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_gateway_frames_refused_total",
			Help: "Client frames refused by a rate limit before they were decoded, by limit (messages, bytes).",
		}, []string{"limit"}),
		connectsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_gateway_connects_refused_total",
			Help: "Requests to /ws refused before the upgrade, by reason (draining, origin, addr_rate, full, unauthorized, user_rate).",
		}, []string{"reason"}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(g.framesRefused, g.connectsRefused)
	}
	return g
}

// refuseConnect answers a request to /ws before the upgrade with status
// and a JSON error body, and counts it under reason.
func (s *Server) refuseConnect(w http.ResponseWriter, reason string, status int, code, message string) {
	s.guard.connectsRefused.WithLabelValues(reason).Inc()
	writeJSONError(w, status, code, message)
}

// tooManyConnects answers 429 with Retry-After: retry in whole seconds, at
// least 1.
func (s *Server) tooManyConnects(w http.ResponseWriter, reason string, retry time.Duration, message string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	s.refuseConnect(w, reason, http.StatusTooManyRequests, messages.CodeRateLimited, message)
}
