// Package kvwatch keeps an in-memory view of a JetStream KV bucket current.
//
// A KV watcher can stall after the NATS node it uses dies, and its channel
// can close. Run therefore never trusts one watcher: it starts a fresh one
// (which replays every current value) when the channel closes and again every
// resync period, and hands the handler the complete state each time, so a
// missed event is repaired by the next resync.
package kvwatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry is one key's current value; Deleted marks a deleted, purged or
// expired key.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Deleted  bool
}

// Handler receives the bucket's state. Run calls it from one goroutine.
type Handler interface {
	// Sync replaces the whole view with the live keys in entries.
	Sync(entries map[string]Entry)
	// Update applies one change that arrived after the last Sync.
	Update(e Entry)
}

// Run watches keys matching filter in kv until ctx is done, resyncing every
// resync period (and whenever the watcher's channel closes).
func Run(ctx context.Context, kv jetstream.KeyValue, filter string, resync time.Duration, h Handler, log *slog.Logger) {
	for ctx.Err() == nil {
		if err := watchOnce(ctx, kv, filter, resync, h); err != nil && ctx.Err() == nil {
			log.Warn("kv watch restarting", "bucket", kv.Bucket(), "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
}

func watchOnce(ctx context.Context, kv jetstream.KeyValue, filter string, resync time.Duration, h Handler) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.Watch(wctx, filter)
	if err != nil {
		return err
	}
	defer w.Stop()
	deadline := time.NewTimer(resync)
	defer deadline.Stop()

	initial := map[string]Entry{}
	syncing := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil // resync with a fresh watcher
		case kve, ok := <-w.Updates():
			if !ok {
				return errClosed
			}
			if kve == nil { // end of the initial values
				if syncing {
					syncing = false
					h.Sync(initial)
					initial = nil
				}
				continue
			}
			e := Entry{Key: kve.Key(), Value: kve.Value(), Revision: kve.Revision(), Deleted: kve.Operation() != jetstream.KeyValuePut}
			switch {
			case !syncing:
				h.Update(e)
			case e.Deleted:
				delete(initial, e.Key)
			default:
				initial[e.Key] = e
			}
		}
	}
}

type watchError string

func (e watchError) Error() string { return string(e) }

const errClosed = watchError("kvwatch: watcher channel closed")
