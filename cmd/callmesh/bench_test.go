package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/callmesh/callmesh/internal/bench"
	"github.com/callmesh/callmesh/internal/meshtest"
)

// TestBenchSmoke runs every scenario of `callmesh bench` briefly against
// an in-process mesh with its rate limits lifted, as CI's smoke test of
// the load generator: each must complete with no error and report every
// field. Nothing here asserts a timing; `callmesh bench` measures them.
func TestBenchSmoke(t *testing.T) {
	m := meshtest.Start(t, meshtest.Options{Gateway: meshtest.NoRateLimits})
	urls := m.Gateways[0].URL + "," + m.Gateways[1].URL
	common := []string{"--url", urls, "--jwt.secret", meshtest.Secret, "--json",
		"--duration", "1s", "--warmup", "200ms", "--drain", "1s", "--settle", "100ms"}
	tests := []struct {
		name  string
		args  []string
		steps int
	}{
		{"connect", []string{"connect", "--conns", "40", "--dialers", "8"}, 1},
		{"connect sweep", []string{"connect", "--conns", "40", "--dialers", "8", "--sweep", "--max-p99", "1h"}, 4},
		{"calls", []string{"calls", "--pairs", "4", "--rate", "20"}, 1},
		{"relay", []string{"relay", "--pairs", "4", "--rate", "200"}, 1},
		{"relay sweep", []string{"relay", "--pairs", "4", "--rate", "100", "--sweep", "--sweep-steps", "2", "--max-p99", "1h"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"bench"}, tt.args...), common...)
			if code := Run(context.Background(), args, nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit code %d: %s", code, stderr.String())
			}
			var rep bench.Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, stdout.String())
			}
			if len(rep.Steps) != tt.steps {
				t.Fatalf("%d steps, want %d:\n%s", len(rep.Steps), tt.steps, stdout.String())
			}
			for _, s := range rep.Steps {
				checkStep(t, tt.args[0], s)
			}
			if rep.RateLimited {
				t.Error("rate limited, with the limits lifted")
			}
			// Every field is in the JSON, zero or not.
			var raw struct{ Steps []map[string]any }
			_ = json.Unmarshal(stdout.Bytes(), &raw)
			for _, key := range []string{"target", "scenario", "step", "conns", "rate", "achieved_rate", "ops", "duration_s",
				"latency", "errors", "failed", "lost", "dups", "server_pid", "server_rss_per_conn_kib", "server_rss_mib",
				"server_cpu_per_op_us", "server_cpu_util", "pass"} {
				if _, ok := raw.Steps[0][key]; !ok {
					t.Errorf("no %q in the report", key)
				}
			}
		})
	}
}

// checkStep checks what a user of the report would look at: the work was
// done, nothing failed, and the server (this process) was found and measured.
func checkStep(t *testing.T, scenario string, s bench.Result) {
	t.Helper()
	if s.Scenario != scenario || s.Target != bench.TargetCallmesh {
		t.Errorf("step %d: %s/%s", s.Step, s.Target, s.Scenario)
	}
	if s.Ops == 0 || s.Latency.Count == 0 || s.Achieved <= 0 || s.Latency.P99 <= 0 || s.Latency.Max < s.Latency.P50 {
		t.Errorf("step %d: nothing measured: %+v", s.Step, s)
	}
	if len(s.Errors) > 0 || s.Failed > 0 || s.Lost > 0 || s.Dups > 0 {
		t.Errorf("step %d: errors %v, failed %d, lost %d, dups %d", s.Step, s.Errors, s.Failed, s.Lost, s.Dups)
	}
	if s.ServerPID != os.Getpid() {
		t.Errorf("step %d: server pid %d, want this process (%d)", s.Step, s.ServerPID, os.Getpid())
	}
	switch scenario {
	case bench.ScenarioConnect:
		if s.Conns == 0 || int64(s.Conns) < s.Ops || s.ServerRSSMiB <= 0 {
			t.Errorf("step %d: conns %d, ops %d, rss %.1f MiB", s.Step, s.Conns, s.Ops, s.ServerRSSMiB)
		}
	case bench.ScenarioCalls:
		if s.Ring == nil || s.Ring.Count != s.Latency.Count || s.Rate != 20 {
			t.Errorf("step %d: ring %+v, setup %+v, rate %v", s.Step, s.Ring, s.Latency, s.Rate)
		}
	case bench.ScenarioRelay:
		if s.SendLag == nil || s.SendLag.Count != s.Ops || s.Latency.Count != s.Ops {
			t.Errorf("step %d: sent %d, received %d, send lag %+v", s.Step, s.Ops, s.Latency.Count, s.SendLag)
		}
	}
}

// TestBenchTable checks the human report: a row per step, and the hint
// when a gateway's rate limits refused load.
func TestBenchTable(t *testing.T) {
	// The shipped message limits (50/s per connection) against 1 000 signals
	// a second on two connections.
	m := meshtest.Start(t, meshtest.Options{})
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "relay", "--url", m.Gateways[0].URL + "," + m.Gateways[1].URL, "--jwt.secret", meshtest.Secret,
		"--pairs", "1", "--rate", "1000", "--duration", "1s", "--warmup", "0s", "--drain", "500ms"}
	if code := Run(context.Background(), args, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"relay p50", "callmesh", "error:rate_limited", "CALLMESH_LIMITS_MESSAGE_RATE"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
