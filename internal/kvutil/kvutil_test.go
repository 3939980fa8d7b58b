package kvutil

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/natstest"
)

// TestIsConflict: every lost compare-and-set is a conflict, on a bucket
// with one replica and on one with three, which reports a write that races
// another one still in flight on the same key with another error code
// (10164, not 10071).
func TestIsConflict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replicas int
		nodes    func(t *testing.T) []*server.Server
	}{
		{"one server", 1, func(t *testing.T) []*server.Server { return []*server.Server{natstest.Server(t)} }},
		{"three replicas", 3, func(t *testing.T) []*server.Server { return natstest.Cluster(t, 3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), natstest.Wait)
			defer cancel()
			js, err := jetstream.New(natstest.Connect(t, tc.nodes(t)[0], t.Name()))
			if err != nil {
				t.Fatal(err)
			}
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test", Replicas: tc.replicas})
			if err != nil {
				t.Fatal(err)
			}
			rev, err := kv.Create(ctx, "k", []byte("0"))
			if err != nil {
				t.Fatal(err)
			}
			// Writers race at the same revision, in each way callmesh writes
			// with compare-and-set: exactly one wins, every other one loses
			// with a conflict.
			ops := map[string]func() error{
				"update": func() error { _, err := kv.Update(ctx, "k", []byte("1"), rev); return err },
				"delete": func() error { return kv.Delete(ctx, "k", jetstream.LastRevision(rev)) },
				"publish": func() error {
					_, err := js.Publish(ctx, Subject(kv, "k"), []byte("1"), jetstream.WithExpectLastSequencePerSubject(rev))
					return err
				},
			}
			var mu sync.Mutex
			wins := 0
			var wg sync.WaitGroup
			for range 8 {
				for what, op := range ops {
					wg.Go(func() {
						err := op()
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							wins++
						case !IsConflict(err):
							t.Errorf("%s at a stale revision: %v is not a conflict", what, err)
						}
					})
				}
			}
			wg.Wait()
			if wins != 1 {
				t.Errorf("%d writers won", wins)
			}
			if _, err := kv.Create(ctx, "k2", []byte("0")); err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Create(ctx, "k2", []byte("1")); !IsConflict(err) {
				t.Errorf("create of an existing key: %v is not a conflict", err)
			}
			if IsConflict(nil) || IsConflict(context.DeadlineExceeded) {
				t.Error("a success or a timeout is a conflict")
			}
		})
	}
}
