package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// callmesh events --all --follow=false prints every event of the stream,
// one JSON line each, and stops.
func TestEventsCommand(t *testing.T) {
	srv := natstest.Server(t)
	jsOn, err := jetstream.New(natstest.Connect(t, srv, "test"))
	if err != nil {
		t.Fatal(err)
	}
	names, _ := messages.NewNames(messages.DefaultPrefix)
	ctx := context.Background()
	if _, err := events.OpenStream(ctx, jsOn, names, events.StreamConfig{Retention: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	p := events.NewPublisher(jsOn, names, slog.New(slog.DiscardHandler), nil)
	p.Publish(events.Event{ID: "a", Type: events.CallRinging, Time: time.Now(), Call: "c1", Caller: "alice", Callee: "bob"})
	p.Publish(events.Event{ID: "b", Type: events.RoomCreated, Time: time.Now(), Room: "standup"})
	p.Close(ctx)

	var stdout, stderr bytes.Buffer
	code := Run(ctx, []string{"events", "--all", "--follow=false", "--nats.url", srv.ClientURL()}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"type":"call.ringing"`) || !strings.Contains(lines[1], `"room":"standup"`) {
		t.Fatalf("printed %q", stdout.String())
	}

	// --since: the events of that long ago; none, and it stops at once.
	for since, want := range map[string]int{"1h": 2, "1ns": 0} {
		stdout.Reset()
		code := Run(ctx, []string{"events", "--since", since, "--follow=false", "--nats.url", srv.ClientURL()}, nil, &stdout, &stderr)
		if got := strings.Count(stdout.String(), "\n"); code != 0 || got != want {
			t.Errorf("--since %s: exit %d, %d events (want %d): %q %s", since, code, got, want, stdout.String(), stderr.String())
		}
	}
}

func TestWebhookNeedsKeys(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"webhook"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "webhook.url") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
