package kvwatch

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/natstest"
)

// view is a Handler that keeps the bucket's live keys, as a real one would.
type view struct {
	mu   sync.Mutex
	keys map[string]string
}

func (v *view) Sync(entries map[string]Entry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keys = map[string]string{}
	for k, e := range entries {
		v.keys[k] = string(e.Value)
	}
}

func (v *view) Update(e Entry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Deleted {
		delete(v.keys, e.Key)
	} else {
		v.keys[e.Key] = string(e.Value)
	}
}

func (v *view) get(key string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	val, ok := v.keys[key]
	return val, ok
}

func TestRunFollowsAndResyncs(t *testing.T) {
	js := natstest.JetStream(t)
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "w"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = kv.Put(ctx, "a.1", []byte("before"))
	_, _ = kv.Put(ctx, "b.1", []byte("other filter"))

	v := &view{}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go Run(rctx, kv, "a.*", time.Second, v, slog.New(slog.NewTextHandler(io.Discard, nil)))

	natstest.Eventually(t, "initial sync", func() bool { val, ok := v.get("a.1"); return ok && val == "before" })
	if _, ok := v.get("b.1"); ok {
		t.Fatal("a key outside the filter reached the handler")
	}
	// Live updates and deletes.
	_, _ = kv.Put(ctx, "a.2", []byte("live"))
	_ = kv.Delete(ctx, "a.1")
	natstest.Eventually(t, "live update", func() bool {
		_, gone := v.get("a.1")
		val, ok := v.get("a.2")
		return !gone && ok && val == "live"
	})
	// A change the handler missed (here: forged away) is repaired by the next resync.
	v.mu.Lock()
	delete(v.keys, "a.2")
	v.keys["a.ghost"] = "never existed"
	v.mu.Unlock()
	natstest.Eventually(t, "resync repairs the view", func() bool {
		_, ghost := v.get("a.ghost")
		_, ok := v.get("a.2")
		return !ghost && ok
	})
}
