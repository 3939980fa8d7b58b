package events

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// Sign and Verify agree; a wrong secret, a changed body, a stale or a
// malformed header do not verify. The vector was computed independently:
// printf '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac whsec.
func TestSignature(t *testing.T) {
	body := []byte(`{"id":"x"}`)
	at := time.Unix(1700000000, 0)
	h := Sign("whsec", at, body)
	if want := "t=1700000000,v1=53c863f98a429b819c35087cf6e3f9bcad57da8addfbf41135fafcb6ba9ab225"; h != want {
		t.Fatalf("Sign = %s, want %s", h, want)
	}
	if err := Verify("whsec", h, body, time.Minute, at.Add(30*time.Second)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for name, err := range map[string]error{
		"other secret": Verify("other", h, body, time.Minute, at),
		"other body":   Verify("whsec", h, []byte(`{"id":"y"}`), time.Minute, at),
		"stale":        Verify("whsec", h, body, time.Minute, at.Add(2*time.Minute)),
		"malformed":    Verify("whsec", "v1=abc", body, time.Minute, at),
	} {
		if !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
	}
}

// Forward POSTs each event, signed; an endpoint that fails gets the event
// again (after 1 s), and the events behind it are not held up; one that
// always fails gives the event up after max attempts.
func TestForward(t *testing.T) {
	js := natstest.JetStream(t)
	names, _ := messages.NewNames(messages.DefaultPrefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := OpenStream(ctx, js, names, StreamConfig{Retention: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	const secret = "whsec-0123456789" // MinSecretBytes
	var mu sync.Mutex
	posts := map[string]int{} // event id → POSTs seen
	var order []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, r.Header.Get(SignatureHeader), body, time.Minute, time.Now()); err != nil {
			t.Errorf("POST with %v", err)
		}
		var ev Event
		_ = json.Unmarshal(body, &ev)
		if r.Header.Get(EventIDHeader) != ev.ID || r.Header.Get(EventTypeHeader) != ev.Type {
			t.Errorf("headers %v for %+v", r.Header, ev)
		}
		mu.Lock()
		posts[ev.ID]++
		n := posts[ev.ID]
		order = append(order, ev.ID)
		mu.Unlock()
		switch {
		case ev.ID == "flaky" && n == 1, ev.ID == "broken":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()

	reg := prometheus.NewRegistry()
	done := make(chan error, 1)
	go func() {
		done <- Forward(ctx, js, names, WebhookConfig{URL: srv.URL, Secret: secret, Timeout: 2 * time.Second, MaxAttempts: 2, Durable: "test"},
			slog.New(slog.DiscardHandler), reg)
	}()
	natstest.WaitFor(t, "the webhook consumer", func() error {
		_, err := js.Consumer(ctx, names.EventsStream(), "test")
		return err
	})
	p := NewPublisher(js, names, slog.New(slog.DiscardHandler), nil)
	for _, id := range []string{"first", "flaky", "broken", "last"} {
		p.Publish(Event{ID: id, Type: CallEnded, Time: time.Now(), Call: "c-" + id})
	}
	p.Close(ctx)

	natstest.Eventually(t, "every event delivered or given up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return posts["first"] == 1 && posts["flaky"] == 2 && posts["broken"] == 2 && posts["last"] == 1
	})
	// In order, but the retry of flaky waits, and last does not wait for it.
	mu.Lock()
	retried, last := -1, -1
	for i, id := range order {
		if id == "flaky" && i > 1 {
			retried = i
		}
		if id == "last" {
			last = i
		}
	}
	if order[0] != "first" || order[1] != "flaky" || last > retried {
		t.Errorf("POST order %v: want first, flaky, …, last before flaky again", order)
	}
	mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, err := testutil.GatherAndCount(reg, "callmesh_webhook_given_up_total"); err != nil || got != 1 {
		t.Fatalf("given up metric: %v %v", got, err)
	}
	if v := gathered(t, reg, "callmesh_webhook_given_up_total"); v != 1 {
		t.Errorf("given up %v, want 1", v)
	}
	if v := gathered(t, reg, "callmesh_webhook_delivered_total"); v != 3 {
		t.Errorf("delivered %v, want 3", v)
	}
}

// gathered is the value of counter name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
