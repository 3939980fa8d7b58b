package events

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/messages"
)

// queueSize bounds the events waiting to be published.
const queueSize = 1 << 14

// publishPatience is how long one event is retried before it is given up.
const publishPatience = time.Minute

// Publisher appends events to the stream in the order they were handed
// to it, from one goroutine, off the path of the request that made them:
// a slow or unavailable stream never delays a call. An event whose publish
// fails is tried again with backoff for publishPatience; past that, or
// when more than queueSize wait, events are dropped and counted.
type Publisher struct {
	js    jetstream.JetStream
	names messages.Names
	log   *slog.Logger

	published *prometheus.CounterVec
	dropped   *prometheus.CounterVec

	queue  chan Event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewPublisher starts a publisher; Close stops it. reg may be nil.
func NewPublisher(js jetstream.JetStream, names messages.Names, log *slog.Logger, reg prometheus.Registerer) *Publisher {
	p := &Publisher{
		js: js, names: names, log: log, queue: make(chan Event, queueSize), done: make(chan struct{}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_router_events_published_total", Help: "Call and room events appended to the events stream, by type.",
		}, []string{"type"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_router_events_dropped_total", Help: "Events given up: the stream did not take them in time, or too many waited.",
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(p.published, p.dropped)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p
}

// Publish queues ev. It never blocks.
func (p *Publisher) Publish(ev Event) {
	select {
	case p.queue <- ev:
	default:
		p.dropped.WithLabelValues(ev.Type).Inc()
		p.log.Warn("events: queue full, event dropped", "id", ev.ID)
	}
}

// Close publishes what is queued until ctx ends, then stops.
func (p *Publisher) Close(ctx context.Context) {
	p.once.Do(func() { close(p.queue) })
	select {
	case <-p.done:
	case <-ctx.Done():
		p.cancel()
		<-p.done
	}
}

func (p *Publisher) run() {
	defer close(p.done)
	for ev := range p.queue {
		p.publish(ev)
	}
}

// publish appends ev, trying again until publishPatience has passed.
func (p *Publisher) publish(ev Event) {
	data, err := json.Marshal(ev)
	if err != nil {
		p.log.Error("events: encode", "id", ev.ID, "err", err)
		return
	}
	msg := nats.NewMsg(p.names.EventSubject(ev.Call, ev.Room))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	deadline := time.Now().Add(publishPatience)
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		_, err := p.js.PublishMsg(ctx, msg)
		cancel()
		if err == nil {
			p.published.WithLabelValues(ev.Type).Inc()
			return
		}
		if p.ctx.Err() != nil || time.Now().After(deadline) {
			p.dropped.WithLabelValues(ev.Type).Inc()
			p.log.Warn("events: event given up", "id", ev.ID, "err", err)
			return
		}
		select {
		case <-time.After(courier.Backoff(try)):
		case <-p.ctx.Done():
		}
	}
}
