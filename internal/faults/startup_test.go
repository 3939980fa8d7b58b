//go:build faults

package faults

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterStartup measures how the harness's NATS cluster starts, when
// FAULTS_CLUSTER_STARTS is set to a number of starts (otherwise it skips):
//
//	FAULTS_CLUSTER_STARTS=40 go test -tags faults -timeout 0 -v -run TestClusterStartup ./internal/faults
//
// For each start: the time until startCluster found it ready, the time
// until a client then created the two R3 buckets a router creates (5 s a
// try, as JetStream's default timeout; failed tries listed), and the
// "Duplicate Route" lines the nodes logged. It asserts only that every
// start got ready: it is for finding out, not a timing check.
func TestClusterStartup(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("FAULTS_CLUSTER_STARTS"))
	if n <= 0 {
		t.Skip("set FAULTS_CLUSTER_STARTS to a number of starts")
	}
	var ready, buckets []time.Duration
	for i := range n {
		start := time.Now()
		c := startCluster(t, bins.nats, t.TempDir(), 3)
		ready = append(ready, time.Since(start))

		nc, err := nats.Connect(c.URLs())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		created := time.Now()
		var failed []string
		for _, bucket := range []string{"startup_calls", "startup_presence"} {
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
					Bucket: bucket, History: 1, Replicas: 3, LimitMarkerTTL: time.Minute,
				})
				cancel()
				if err == nil {
					break
				}
				failed = append(failed, ms(time.Since(created))+" "+err.Error())
				if time.Since(created) > time.Minute {
					t.Fatalf("start %d: no buckets a minute after the cluster was ready: %v", i, failed)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
		buckets = append(buckets, time.Since(created))
		nc.Close()

		dup := 0
		for _, node := range c.nodes {
			b, _ := os.ReadFile(node.proc.log)
			dup += strings.Count(string(b), "Duplicate Route")
			node.proc.kill()
		}
		t.Logf("start %d: ready %s, buckets %s later (failed tries: %v), %d Duplicate Route lines",
			i, ms(ready[i]), ms(buckets[i]), failed, dup)
	}
	t.Logf("ready: %s; buckets after ready: %s", quantiles(ready), quantiles(buckets))
}

// quantiles is the p50, p90 and max of ds.
func quantiles(ds []time.Duration) string {
	ds = slices.Sorted(slices.Values(ds))
	return "p50 " + ms(ds[len(ds)/2]) + ", p90 " + ms(ds[len(ds)*9/10]) + ", max " + ms(ds[len(ds)-1])
}
