package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// histShards spreads recordings over this many locked histograms, so that
// hundreds of reader goroutines do not queue on one lock.
const histShards = 16

// latencies records durations from 1 µs to 1 min with 3 significant
// digits (HdrHistogram). Safe for concurrent use.
type latencies struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram // guarded by mu
		_  [40]byte                // keep shards on their own cache lines
	}
}

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	}
	return l
}

// record adds d, in the shard of key (a connection's index).
func (l *latencies) record(key int, d time.Duration) {
	us := max(int64(d/time.Microsecond), 1)
	s := &l.shards[key%histShards]
	s.mu.Lock()
	_ = s.h.RecordValue(us) // over a minute: counted as the highest value
	s.mu.Unlock()
}

// reset forgets every recording.
func (l *latencies) reset() {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		s.h.Reset()
		s.mu.Unlock()
	}
}

// summary merges the shards into percentiles.
func (l *latencies) summary() Percentiles {
	all := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: all.TotalCount(),
		P50:   ms(all.ValueAtQuantile(50)),
		P90:   ms(all.ValueAtQuantile(90)),
		P99:   ms(all.ValueAtQuantile(99)),
		P999:  ms(all.ValueAtQuantile(99.9)),
		Max:   ms(all.Max()),
	}
}

// Percentiles summarizes a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}
