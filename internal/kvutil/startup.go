package kvutil

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Backoff of Retry: the first wait, and the most it grows to.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 2 * time.Second
)

// Retry runs step until it succeeds or ctx is done, logging each failure at
// warn and backing off from 250 ms to at most 2 s. It has no budget of its
// own: ctx bounds it. A component passes its process context, so that it
// waits out a JetStream cluster that is still forming or electing leaders,
// however long that takes, until it is stopped; a test passes a context
// with a deadline. Each step gets ctx; JetStream calls bound themselves
// (5 s by default) when ctx has no deadline.
//
// When ctx ends first, the error wraps ctx's cause and step's last error.
func Retry(ctx context.Context, log *slog.Logger, what string, step func(context.Context) error) error {
	wait := retryFirst
	for attempt := 1; ; attempt++ {
		err := step(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info("retry succeeded", "what", what, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %w)", what, context.Cause(ctx), err)
		}
		log.Warn("retrying", "what", what, "attempt", attempt, "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", what, context.Cause(ctx), err)
		case <-t.C:
		}
		wait = min(2*wait, retryMax)
	}
}
