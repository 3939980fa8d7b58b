package kvutil

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var errNotYet = errors.New("jetstream: not yet")

// A cluster that takes longer than any fixed budget to form: Retry keeps
// going, with the backoff capped at 2 s, and logs every failure at warn.
func TestRetryOutlastsASlowCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		start := time.Now()
		var calls []time.Duration
		err := Retry(t.Context(), log, "open buckets", func(context.Context) error {
			calls = append(calls, time.Since(start))
			if time.Since(start) < 2*time.Minute {
				return errNotYet
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Retry: %v", err)
		}
		if got := time.Since(start); got < 2*time.Minute {
			t.Fatalf("Retry returned after %v, before the step succeeded", got)
		}
		want := []time.Duration{0, 250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond, 3750 * time.Millisecond, 5750 * time.Millisecond}
		for i, w := range want {
			if calls[i] != w {
				t.Fatalf("attempt %d at %v, want %v (attempts at %v)", i+1, calls[i], w, calls[:len(want)])
			}
		}
		for i := 5; i < len(calls); i++ {
			if gap := calls[i] - calls[i-1]; gap != 2*time.Second {
				t.Fatalf("attempt %d came %v after the one before, want the 2 s cap", i+1, gap)
			}
		}
		if n := strings.Count(logs.String(), "level=WARN msg=retrying what=\"open buckets\""); n != len(calls)-1 {
			t.Fatalf("%d warnings for %d failed attempts:\n%s", n, len(calls)-1, logs.String())
		}
		if !strings.Contains(logs.String(), "level=INFO msg=\"retry succeeded\"") {
			t.Fatalf("no info line once it succeeded:\n%s", logs.String())
		}
	})
}

// Stopping the process stops the retries: the error says why and what
// failed last.
func TestRetryStopsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(10*time.Second, cancel)
		start := time.Now()
		err := Retry(ctx, slog.New(slog.DiscardHandler), "create heartbeat", func(context.Context) error { return errNotYet })
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errNotYet) {
			t.Fatalf("err = %v, want one wrapping context.Canceled and the step's error", err)
		}
		if !strings.HasPrefix(err.Error(), "create heartbeat: ") {
			t.Fatalf("err = %q, want it to name the step", err)
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Fatalf("returned %v after the start, want at the cancel (10s)", got)
		}
	})
}
