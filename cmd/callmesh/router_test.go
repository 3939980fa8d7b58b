package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/callmesh/callmesh/internal/natstest"
)

// TestRouterHTTP runs `callmesh router` in-process with router.http_addr on
// a free port: /healthz answers ok, /metrics has the router's and the
// process's metrics, and cancelling stops it cleanly.
func TestRouterHTTP(t *testing.T) {
	srv := natstest.Server(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- Run(ctx, []string{"router", "--nats.url", srv.ClientURL(), "--router.http_addr", "127.0.0.1:0"},
			nil, &stdout, &stderr)
	}()

	var base string
	listening := regexp.MustCompile(`msg="router http listening" addr=(\S+)`)
	natstest.WaitFor(t, "router listens", func() error {
		select {
		case code := <-exit:
			t.Fatalf("router exited with %d:\n%s", code, stderr.String())
		default:
		}
		m := listening.FindStringSubmatch(stderr.String())
		if m == nil {
			return fmt.Errorf("not listening:\n%s", stderr.String())
		}
		base = "http://" + m[1]
		return nil
	})
	natstest.WaitFor(t, "router ready", func() error {
		if code, body := get(base + "/healthz"); code != http.StatusOK {
			return fmt.Errorf("/healthz %d %q", code, body)
		}
		return nil
	})

	for path, want := range map[string]string{
		"/healthz": "ok\n",
		"/metrics": "callmesh_router_cas_retries_total",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%s", path, resp.StatusCode, want, b)
		}
		if path == "/metrics" && !strings.Contains(string(b), "go_goroutines") {
			t.Errorf("GET /metrics lacks the Go collector:\n%s", b)
		}
	}

	cancel()
	if code := <-exit; code != 0 {
		t.Errorf("exit code %d after cancel:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "router stopped") {
		t.Errorf("no clean stop in the log:\n%s", stderr.String())
	}
}
