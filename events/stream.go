package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/messages"
)

// StreamConfig are the limits of the events stream (events.* keys).
type StreamConfig struct {
	// Retention is how long an event is kept (MaxAge).
	Retention time.Duration
	// MaxBytes bounds the stream's size; the oldest events go first.
	MaxBytes int64
	// Replicas is the stream's replica count (nats.replicas).
	Replicas int
}

// duplicateWindow is how long the stream remembers an event's id: a router
// that publishes an event again (effects are at least once) within it adds
// nothing.
const duplicateWindow = 2 * time.Minute

// OpenStream creates or updates the events stream.
func OpenStream(ctx context.Context, js jetstream.JetStream, names messages.Names, cfg StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        names.EventsStream(),
		Description: "callmesh call and room events (docs/events.md)",
		Subjects:    []string{names.EventsSubjects()},
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
		MaxAge:      cfg.Retention,
		MaxBytes:    cfg.MaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  duplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("events: open stream: %w", err)
	}
	return s, nil
}
