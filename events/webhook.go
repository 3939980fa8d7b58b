package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/internal/fielderr"
	"github.com/callmesh/callmesh/messages"
)

// WebhookConfig configures Forward (webhook.* keys).
type WebhookConfig struct {
	// URL receives a POST of each event's JSON.
	URL string
	// Secret signs every POST (SignatureHeader).
	Secret string
	// Timeout bounds one POST.
	Timeout time.Duration
	// MaxAttempts bounds the POSTs of one event; then it is given up.
	MaxAttempts int
	// Durable names the stream consumer, shared by every forwarder of the
	// same endpoint: each event goes to one of them.
	Durable string
	// Client makes the requests (a client with Timeout when nil).
	Client *http.Client
}

// MinSecretBytes is the shortest WebhookConfig.Secret.
const MinSecretBytes = 16

// Validate reports every problem with c; Forward calls it. Each problem is
// a *fielderr.Error naming the fields it is about.
func (c *WebhookConfig) Validate() error {
	var errs []error
	bad := func(reason string, fields ...string) { errs = append(errs, fielderr.New(reason, fields...)) }
	if u, err := url.Parse(c.URL); c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("must be an http(s) URL", "URL")
	}
	if len(c.Secret) < MinSecretBytes {
		bad(fmt.Sprintf("must be at least %d bytes", MinSecretBytes), "Secret")
	}
	if c.Timeout <= 0 {
		bad("must be positive", "Timeout")
	}
	if c.MaxAttempts < 1 {
		bad("must be at least 1", "MaxAttempts")
	}
	if c.Durable == "" {
		bad("must be set", "Durable")
	}
	return errors.Join(errs...)
}

// Headers of a webhook POST.
const (
	// SignatureHeader is "t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
	// "<t>.<body>")>" (Sign, Verify).
	SignatureHeader = "Callmesh-Signature"
	EventIDHeader   = "Callmesh-Event-Id"
	EventTypeHeader = "Callmesh-Event-Type"
)

// retryDelays are the pauses before an event's second, third, … POST; the
// last repeats.
var retryDelays = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}

// retryDelay is the pause after the n-th failed POST of an event.
func retryDelay(n int) time.Duration { return retryDelays[min(max(n, 1), len(retryDelays))-1] }

// Sign returns the SignatureHeader value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + signature(secret, ts, body)
}

func signature(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// ErrSignature: a webhook POST whose signature does not check out.
var ErrSignature = errors.New("events: bad webhook signature")

// Verify checks a webhook POST's SignatureHeader value against its body,
// as a receiver should: the HMAC must match and the time be within
// tolerance of now (so a captured request cannot be replayed later).
func Verify(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("%w: malformed", ErrSignature)
	}
	if d := now.Sub(time.Unix(unix, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: sent %v from now", ErrSignature, d.Round(time.Second))
	}
	if !hmac.Equal([]byte(sig), []byte(signature(secret, ts, body))) {
		return ErrSignature
	}
	return nil
}

// forwarder is Forward's state.
type forwarder struct {
	cfg       WebhookConfig
	log       *slog.Logger
	delivered prometheus.Counter
	failed    *prometheus.CounterVec
	givenUp   prometheus.Counter
}

// Forward POSTs every event of the stream from now on to cfg.URL, signed,
// until ctx ends. An event is acknowledged once the endpoint answers 2xx;
// otherwise it is tried again after 1 s, 5 s, 30 s, 2 min, then every
// 10 min, up to MaxAttempts POSTs, while the events after it go on. So
// events arrive in order unless one is retried. reg may be nil.
func Forward(ctx context.Context, js jetstream.JetStream, names messages.Names, cfg WebhookConfig, log *slog.Logger, reg prometheus.Registerer) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("events: webhook config: %w", err)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	f := &forwarder{
		cfg: cfg, log: log,
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "callmesh_webhook_delivered_total", Help: "Events the endpoint took (2xx)."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callmesh_webhook_failed_total", Help: "Failed POSTs, by status (or error), each tried again later.",
		}, []string{"status"}),
		givenUp: prometheus.NewCounter(prometheus.CounterOpts{Name: "callmesh_webhook_given_up_total", Help: "Events given up after webhook.max_attempts POSTs."}),
	}
	if reg != nil {
		reg.MustRegister(f.delivered, f.failed, f.givenUp)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, names.EventsStream(), jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "callmesh webhook to " + cfg.URL,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.Timeout + 5*time.Second,
		MaxDeliver:    cfg.MaxAttempts,
		MaxAckPending: 256,
	})
	if err != nil {
		return fmt.Errorf("events: webhook consumer: %w", err)
	}
	cc, err := c.Consume(f.handle)
	if err != nil {
		return fmt.Errorf("events: webhook consume: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

// handle POSTs one event and acknowledges it, or asks for it again later.
func (f *forwarder) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	status := f.post(msg)
	if status == "" {
		f.delivered.Inc()
		_ = msg.Ack()
		return
	}
	f.failed.WithLabelValues(status).Inc()
	attempt := int(meta.NumDelivered)
	if attempt >= f.cfg.MaxAttempts {
		f.givenUp.Inc()
		f.log.Warn("webhook: event given up", "subject", msg.Subject(), "attempts", attempt, "status", status)
		_ = msg.Term()
		return
	}
	_ = msg.NakWithDelay(retryDelay(attempt))
}

// post sends msg's event and returns "" on a 2xx answer, else what failed.
func (f *forwarder) post(msg jetstream.Msg) string {
	body := msg.Data()
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return "request"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(f.cfg.Secret, time.Now(), body))
	req.Header.Set(EventIDHeader, msg.Headers().Get(jetstream.MsgIDHeader))
	req.Header.Set(EventTypeHeader, eventType(body))
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		return "error"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return ""
	}
	return strconv.Itoa(resp.StatusCode)
}

// eventType reads an event's type from its JSON ("" if it has none).
func eventType(body []byte) string {
	var ev struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &ev)
	return ev.Type
}
