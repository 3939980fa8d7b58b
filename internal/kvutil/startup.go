package kvutil

import (
	"context"
	"log/slog"
	"time"
)

// StartupBudget bounds how long a component retries opening its buckets.
const StartupBudget = 30 * time.Second

// Retry runs step until it succeeds, ctx is done or StartupBudget has
// passed, backing off from 250 ms to 2 s, and returns its last error.
// Opening buckets fails for a few seconds while a fresh or recovering
// JetStream cluster elects its leaders ("no response from stream", a
// deadline): components started with the cluster wait it out instead of
// exiting.
func Retry(ctx context.Context, log *slog.Logger, what string, step func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, StartupBudget)
	defer cancel()
	wait := 250 * time.Millisecond
	for {
		err := step(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		log.Warn("retrying", "what", what, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
