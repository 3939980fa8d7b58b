package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/messages"
)

// eventsFlags are the flags of `callmesh events`.
type eventsFlags struct {
	since  *time.Duration
	all    *bool
	follow *bool
}

func addEventsFlags(fs *flag.FlagSet) eventsFlags {
	return eventsFlags{
		since:  fs.Duration("since", 0, "start with the events of this long ago (0: only new ones)"),
		all:    fs.Bool("all", false, "start with the oldest event the stream keeps"),
		follow: fs.Bool("follow", true, "keep printing new events until interrupted; false: stop at the last one"),
	}
}

// runEvents prints the events stream as JSON lines (docs/events.md).
func runEvents(ctx context.Context, cfg *Config, ef eventsFlags, log *slog.Logger, out io.Writer) error {
	nc, js, names, err := cfg.jetStream("events", log)
	if err != nil {
		return err
	}
	defer closeNATS(nc)
	oc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case *ef.all:
		oc.DeliverPolicy = jetstream.DeliverAllPolicy
	case *ef.since > 0:
		start := time.Now().Add(-*ef.since)
		oc.DeliverPolicy, oc.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	stream, err := js.Stream(ctx, names.EventsStream())
	if err != nil {
		return fmt.Errorf("events stream %s: %w (a router creates it)", names.EventsStream(), err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	c, err := stream.OrderedConsumer(ctx, oc)
	if err != nil {
		return err
	}
	last := info.State.LastSeq // without --follow, stop there
	if !*ef.follow && (oc.DeliverPolicy == jetstream.DeliverNewPolicy || info.State.Msgs == 0) {
		return nil
	}
	// A fetch may come back empty, or fail, while the stream or its
	// consumer has no leader (a NATS node died): without --follow, that is
	// not the end, unless it lasts.
	progress := time.Now()
	for ctx.Err() == nil {
		msgs, err := c.Fetch(64, jetstream.FetchMaxWait(time.Second))
		n := 0
		if err == nil {
			for msg := range msgs.Messages() {
				n++
				fmt.Fprintf(out, "%s\n", msg.Data())
				meta, err := msg.Metadata()
				if err == nil && !*ef.follow && (meta.Sequence.Stream >= last || meta.NumPending == 0) {
					return nil
				}
			}
			err = msgs.Error()
		}
		switch {
		case n > 0:
			progress = time.Now()
		case *ef.follow:
		case err == nil && c.CachedInfo() != nil && c.CachedInfo().NumPending == 0:
			return nil // none of the events left is to be printed (--since)
		case time.Since(progress) > eventsStall:
			if err == nil {
				err = errors.New("no event arrived")
			}
			return fmt.Errorf("events stream %s: %w for %v, before its last one (%d)", names.EventsStream(), err, eventsStall, last)
		}
		if err != nil && n == 0 {
			select { // a fetch that failed at once: not in a busy loop
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// eventsStall is how long `callmesh events --follow=false` waits for the
// stream's next event before it gives up: long enough for NATS to elect
// new leaders after a node's death.
const eventsStall = 30 * time.Second

// metricsHandler serves reg at /metrics.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// runWebhook runs the webhook forwarder until ctx is done, serving /healthz
// and /metrics on webhook.http_addr unless it is empty.
func runWebhook(ctx context.Context, cfg *Config, log *slog.Logger) error {
	w := cfg.Webhook
	wc := events.WebhookConfig{URL: w.URL, Secret: w.Secret, Timeout: w.Timeout, MaxAttempts: w.MaxAttempts, Durable: w.Durable}
	if err := wc.Validate(); err != nil {
		return cfg.explain(err, webhookFields)
	}
	nc, js, names, err := cfg.jetStream("webhook", log)
	if err != nil {
		return err
	}
	defer closeNATS(nc)
	reg := newRegistry()
	if w.HTTPAddr != "" {
		ln, err := cfg.listen("webhook.http_addr")
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
			if !nc.IsConnected() {
				http.Error(rw, "unavailable", http.StatusServiceUnavailable)
				return
			}
			_, _ = rw.Write([]byte("ok\n"))
		})
		mux.Handle("GET /metrics", metricsHandler(reg))
		hs := newHTTPServer(mux, cfg.HTTP.HandshakeTimeout, log)
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
	}
	log.Info("webhook forwarding", "url", w.URL, "stream", names.EventsStream())
	err = events.Forward(ctx, js, names, wc, log, reg)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// jetStream connects to NATS as name and returns the connection (close it
// with closeNATS), its JetStream and the configured names.
func (c *Config) jetStream(name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, messages.Names, error) {
	names, err := messages.NewNames(c.NATS.Prefix)
	if err != nil {
		return nil, nil, names, configError{err}
	}
	nc, err := c.connectNATS(name, log)
	if err != nil {
		return nil, nil, names, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		closeNATS(nc)
		return nil, nil, names, err
	}
	return nc, js, names, nil
}
