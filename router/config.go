package router

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/internal/fielderr"
	"github.com/callmesh/callmesh/messages"
)

// Config configures a router. DefaultConfig documents the defaults.
type Config struct {
	// Prefix names subjects and buckets (messages.NewNames).
	Prefix string
	// RingTimeout ends an unanswered call with no_answer.
	RingTimeout time.Duration
	// ResumeGrace is how long a dead gateway's connections may resume
	// elsewhere before their calls end with disconnected.
	ResumeGrace time.Duration
	// PresenceTTL is how long a silent gateway still counts as alive. With
	// ResumeGrace it bounds how long a delivery to a connection presence
	// lists is tried again.
	PresenceTTL time.Duration
	// EndedRetention keeps ended calls so a retried request gets the same
	// answer; whole seconds.
	EndedRetention time.Duration
	// Resync restarts the KV watchers (a full replay) this often, repairing
	// any missed watch event.
	Resync time.Duration
	// Workers bounds the requests handled at once.
	Workers int
	// Replicas is the replica count of the KV buckets (3 in a cluster).
	Replicas int
	// Rooms configures group calls (PROTOCOL.md §14).
	Rooms RoomsConfig
	// Events are the limits of the events stream (docs/events.md).
	Events events.StreamConfig
	// Logger receives the router's logs (slog.Default() when nil).
	Logger *slog.Logger
	// Metrics registers the router's metrics (none when nil).
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults: 30 s ring timeout, 10 s resume grace,
// 3 s presence TTL, 60 s ended retention, 30 s resync, 64 workers, 1 replica.
func DefaultConfig() Config {
	return Config{
		Prefix:         messages.DefaultPrefix,
		RingTimeout:    30 * time.Second,
		ResumeGrace:    10 * time.Second,
		PresenceTTL:    3 * time.Second,
		EndedRetention: time.Minute,
		Resync:         30 * time.Second,
		Workers:        64,
		Replicas:       1,
		Rooms:          RoomsConfig{MaxMembers: DefaultMaxMembers, EmptyTimeout: 30 * time.Second, Exclusive: true},
		Events:         events.StreamConfig{Retention: 7 * 24 * time.Hour, MaxBytes: 1 << 30},
	}
}

// RoomsConfig is the rooms.* configuration.
type RoomsConfig struct {
	// MaxMembers is the most members of a room created from now on.
	MaxMembers int
	// EmptyTimeout is how long an empty room keeps its settings.
	EmptyTimeout time.Duration
	// Exclusive: a user in a room is busy for 1:1 calls, and the reverse.
	Exclusive bool
}

// Validate reports every problem with c; New calls it. Each problem is a
// *fielderr.Error naming the fields it is about.
func (c *Config) Validate() error {
	var errs []error
	bad := func(reason string, fields ...string) { errs = append(errs, fielderr.New(reason, fields...)) }
	if c.RingTimeout <= 0 {
		bad("must be positive", "RingTimeout")
	}
	if c.ResumeGrace < 0 {
		bad("must not be negative", "ResumeGrace")
	}
	if c.PresenceTTL <= 0 {
		bad("must be positive", "PresenceTTL")
	}
	if c.EndedRetention < time.Second {
		bad("must be at least 1s", "EndedRetention")
	}
	if c.Resync < time.Second {
		bad("must be at least 1s", "Resync")
	}
	if c.Workers < 1 {
		bad("must be at least 1", "Workers")
	}
	if c.Rooms.MaxMembers < 2 || c.Rooms.MaxMembers > 64 {
		bad("must be 2 to 64", "Rooms.MaxMembers")
	}
	if c.Rooms.EmptyTimeout < 0 {
		bad("must not be negative", "Rooms.EmptyTimeout")
	}
	if c.Events.Retention < time.Minute {
		bad("must be at least 1m", "Events.Retention")
	}
	if c.Events.MaxBytes < 1<<20 {
		bad("must be at least 1 MiB (1048576)", "Events.MaxBytes")
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("must be 1 to 5", "Replicas")
	}
	return errors.Join(errs...)
}
