package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/messages"
)

// devEvents logs dev's call and room events at info, one line each, as the
// router appends them to the events stream (docs/events.md): what the
// developer's calls do, without `callmesh events` in another terminal.
type devEvents struct {
	nc      *nats.Conn
	consume jetstream.ConsumeContext
}

// startEvents follows the events stream, from now on, on its own NATS
// connection. The router must have started: it makes the stream.
func (m *devMesh) startEvents(ctx context.Context, cfg *Config, url string, opts ...nats.Option) error {
	nc, err := connectNATS(natsConfig{URL: url}, "events", m.log, opts...)
	if err != nil {
		return err
	}
	m.events = &devEvents{nc: nc}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	names, err := messages.NewNames(cfg.NATS.Prefix)
	if err != nil {
		return err
	}
	stream, err := js.Stream(ctx, names.EventsStream())
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	m.events.consume, err = c.Consume(func(msg jetstream.Msg) {
		var ev events.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			m.log.Warn("undecodable event", "subject", msg.Subject(), "err", err)
			return
		}
		logEvent(m.log, ev)
	})
	return err
}

// close stops following the stream.
func (e *devEvents) close() {
	if e.consume != nil {
		e.consume.Stop()
	}
	closeNATS(e.nc)
}

// logEvent logs ev in one line: "call ended" call=… caller=alice
// callee=bob reason=hangup rang=4.4s talked=1m6.7s.
func logEvent(log *slog.Logger, ev events.Event) {
	attrs := make([]any, 0, 16)
	add := func(key, v string) {
		if v != "" {
			attrs = append(attrs, key, v)
		}
	}
	add("call", ev.Call)
	add("caller", ev.Caller)
	add("callee", ev.Callee)
	add("room", ev.Room)
	add("user", ev.User)
	add("conn", ev.Conn)
	add("reason", ev.Reason)
	if ev.RingMS != nil {
		attrs = append(attrs, "rang", ms(*ev.RingMS))
	} else if ev.Type == events.CallAnswered && ev.Started != nil && ev.Answered != nil {
		attrs = append(attrs, "rang", ev.Answered.Sub(*ev.Started).Round(time.Millisecond))
	}
	if ev.TalkMS != nil {
		attrs = append(attrs, "talked", ms(*ev.TalkMS))
	}
	msg := map[string]string{
		events.CallRinging: "call ringing", events.CallAnswered: "call answered", events.CallEnded: "call ended",
		events.RoomCreated: "room created", events.RoomJoined: "room joined", events.RoomLeft: "room left",
		events.RoomEnded: "room ended",
	}[ev.Type]
	if msg == "" {
		msg = "event " + ev.Type
	}
	log.Info(msg, attrs...)
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
