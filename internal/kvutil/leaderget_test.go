package kvutil

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/internal/natstest"
)

// TestLeaderGet: LeaderGet reads what KV Get reads, and reports a key
// that was never written, deleted, purged or expired as not found.
func TestLeaderGet(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), natstest.Wait)
	defer cancel()
	nc := natstest.Connect(t, natstest.Server(t), t.Name())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test", LimitMarkerTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	notFound := func(key string) {
		t.Helper()
		if e, err := LeaderGet(ctx, nc, kv, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s: got %q at %d, %v; want ErrKeyNotFound", key, e.Value, e.Revision, err)
		}
	}
	notFound("never")

	for _, key := range []string{"deleted", "purged", "kept"} {
		if _, err := kv.Put(ctx, key, []byte("v1")); err != nil {
			t.Fatal(err)
		}
		rev, err := kv.Put(ctx, key, []byte("v2"))
		if err != nil {
			t.Fatal(err)
		}
		e, err := LeaderGet(ctx, nc, kv, key)
		if err != nil || string(e.Value) != "v2" || e.Revision != rev || e.Created.IsZero() {
			t.Fatalf("%s: got %q at %d (%v), %v; want v2 at %d", key, e.Value, e.Revision, e.Created, err, rev)
		}
	}
	if err := kv.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "purged"); err != nil {
		t.Fatal(err)
	}
	notFound("deleted")
	notFound("purged")

	if _, err := kv.Create(ctx, "expires", []byte("v"), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, "the key's expiry", func() error {
		if _, err := kv.Get(ctx, "expires"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("KV Get: %v", err)
		}
		return nil
	})
	notFound("expires")
}

// TestLeaderGetHasEveryAcknowledgedWrite: on a 3-node cluster, a key read
// from any node right after its write was acknowledged is found by
// LeaderGet every time, where KV Get (answered by the nearest replica,
// which may be the one that has not caught up yet) can miss it.
func TestLeaderGetHasEveryAcknowledgedWrite(t *testing.T) {
	const writes = 300
	ctx, cancel := context.WithTimeout(context.Background(), natstest.ClusterWait)
	defer cancel()
	nodes := natstest.Cluster(t, 3)
	js, err := jetstream.New(natstest.Connect(t, nodes[0], "writer"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for n, node := range nodes {
		nc := natstest.Connect(t, node, fmt.Sprintf("reader %d", n+1))
		rjs, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		near, err := rjs.KeyValue(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		missed := 0
		for i := range writes {
			key := fmt.Sprintf("n%d-%d", n, i)
			rev, err := kv.Create(ctx, key, []byte("v"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := near.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
				missed++
			}
			if e, err := LeaderGet(ctx, nc, near, key); err != nil || e.Revision != rev {
				t.Fatalf("reader on node %d: %s written at %d, read from the leader: %d, %v", n+1, key, rev, e.Revision, err)
			}
		}
		t.Logf("reader on node %d: KV Get missed %d of %d keys just written, LeaderGet none", n+1, missed, writes)
	}
}

// BenchmarkGet compares a KV Get (direct get) with LeaderGet on one
// server, where both are answered by the same node: what a read from the
// leader costs beyond the API it goes through.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	nc := natstest.Connect(b, natstest.Server(b), b.Name())
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte(`{"id":"a call record of some size","state":"ringing"}`)); err != nil {
		b.Fatal(err)
	}
	b.Run("nearest", func(b *testing.B) {
		for b.Loop() {
			if _, err := Get(ctx, js, kv, "k", Nearest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("leader", func(b *testing.B) {
		for b.Loop() {
			if _, err := Get(ctx, js, kv, "k", Leader); err != nil {
				b.Fatal(err)
			}
		}
	})
}
