package natstest

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestCluster forms a 3-node cluster, writes a KV bucket with 3 replicas
// through one node and reads it back through each of the others.
func TestCluster(t *testing.T) {
	nodes := Cluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	js, err := jetstream.New(Connect(t, nodes[0], "writer"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, srv := range nodes[1:] {
		js, err := jetstream.New(Connect(t, srv, "reader"))
		if err != nil {
			t.Fatal(err)
		}
		kv, err := js.KeyValue(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
			t.Errorf("%s: bucket has %d replicas", srv.Name(), r)
		}
		WaitFor(t, "read through "+srv.Name(), func() error { // a follower may lag
			e, err := kv.Get(ctx, "k")
			if err != nil {
				return err
			}
			if string(e.Value()) != "v" {
				return fmt.Errorf("got %q", e.Value())
			}
			return nil
		})
	}
}
