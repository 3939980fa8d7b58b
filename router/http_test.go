package router

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callmesh/callmesh/internal/natstest"
)

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// startRouter starts a router with its own registry on a fresh server and
// serves its Handler on a real socket.
func startRouter(t *testing.T) (*Router, *httptest.Server, func()) {
	t.Helper()
	srv := natstest.Server(t)
	cfg := DefaultConfig()
	cfg.Metrics = prometheus.NewRegistry()
	r, err := New(cfg, natstest.Connect(t, srv, "router"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(r.Handler())
	t.Cleanup(hs.Close)
	if code, _ := get(t, hs.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("healthz before Start: %d, want 503", code)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return r, hs, srv.Shutdown
}

func TestHealthzAndMetrics(t *testing.T) {
	r, hs, _ := startRouter(t)
	if code, body := get(t, hs.URL+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz of a started router: %d %q, want 200 ok", code, body)
	}
	code, body := get(t, hs.URL+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "callmesh_router_cas_retries_total") {
		t.Errorf("metrics: %d, want 200 with the router's counters:\n%s", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, hs.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("healthz after Shutdown: %d, want 503", code)
	}
}

func TestHealthzNATSDown(t *testing.T) {
	_, hs, stopNATS := startRouter(t)
	if code, _ := get(t, hs.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d, want 200", code)
	}
	stopNATS()
	natstest.Eventually(t, "healthz answers 503 without NATS", func() bool {
		code, _ := get(t, hs.URL+"/healthz")
		return code == http.StatusServiceUnavailable
	})
}
