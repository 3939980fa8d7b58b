package presence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB) *Registry {
	t.Helper()
	names, _ := messages.NewNames("test")
	reg, err := Open(t.Context(), natstest.JetStream(t), names, 1)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

type evictions struct {
	mu   sync.Mutex
	seen map[string]string // conn → gateway
}

func (e *evictions) evict(_ context.Context, _, conn, gw string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen[conn] = gw
}

func (e *evictions) has(conn string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.seen[conn]
	return ok
}

func TestRegisterAcrossGateways(t *testing.T) {
	reg := open(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 20 { // concurrent writers on one user record: none is lost
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := reg.Register(ctx, "a.b", string(rune('a'+i)), Conn{Gateway: "gw" + string(rune('0'+i%2))}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	conns, err := reg.Conns(ctx, "a.b", kvutil.Leader)
	if err != nil || len(conns) != 20 {
		t.Fatalf("conns = %v (%v), want 20", conns, err)
	}
	if other, _ := reg.Conns(ctx, "a", kvutil.Leader); len(other) != 0 {
		t.Fatalf("user a sees a.b's connections: %v", other)
	}
	// Unregister with the wrong gateway keeps the connection.
	if gone, _ := reg.Unregister(ctx, "a.b", "a", Conn{Gateway: "gw1"}); gone {
		t.Fatal("removed a connection held by another gateway")
	}
	for c := range conns {
		if _, err := reg.Unregister(ctx, "a.b", c, Conn{}); err != nil {
			t.Fatal(err)
		}
	}
	if conns, _ := reg.Conns(ctx, "a.b", kvutil.Leader); len(conns) != 0 {
		t.Fatalf("left over: %v", conns)
	}
}

// A gateway that stops refreshing its heartbeat is noticed through the
// key's TTL (no resync helps here: the key's expiry leaves no marker, the
// monitor reads the key); its connections are evicted after the grace, the
// live gateway's never.
func TestMonitorEvictsDeadGateway(t *testing.T) {
	reg := open(t)
	ctx := t.Context()
	live, err := reg.StartHeartbeat(ctx, "live", 200*time.Millisecond, time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	hctx, stopLive := context.WithCancel(ctx)
	defer stopLive()
	go live.Run(hctx, nil)
	if _, err := reg.StartHeartbeat(ctx, "dead", 200*time.Millisecond, time.Second, quiet); err != nil {
		t.Fatal(err)
	}
	// "dead" never refreshes: it has crashed.
	_ = reg.Register(ctx, "alice", "c-live", Conn{Gateway: "live"})
	_ = reg.Register(ctx, "bob", "c-dead", Conn{Gateway: "dead"})

	ev := &evictions{seen: map[string]string{}}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	go NewMonitor(reg, 300*time.Millisecond, time.Hour, ev.evict, quiet).Run(mctx)

	natstest.Eventually(t, "eviction of the dead gateway's connection", func() bool { return ev.has("c-dead") })
	// Let the live gateway outlive several TTLs: heartbeats must keep its key.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if ev.has("c-live") {
			t.Fatal("evicted a connection of a live gateway")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := reg.KV().Get(ctx, messages.GatewayKey("live")); err != nil {
		t.Fatalf("live heartbeat key: %v", err)
	}
}

// Retire starts the grace at once, long before the heartbeat TTL would.
func TestRetireStartsGrace(t *testing.T) {
	reg := open(t)
	ctx := t.Context()
	hb, err := reg.StartHeartbeat(ctx, "gw", time.Hour, 30*time.Second, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_ = reg.Register(ctx, "carol", "c1", Conn{Gateway: "gw"})
	ev := &evictions{seen: map[string]string{}}
	go NewMonitor(reg, 100*time.Millisecond, time.Second, ev.evict, quiet).Run(ctx)
	if err := hb.Retire(ctx); err != nil {
		t.Fatal(err)
	}
	// Well before the 30 s TTL.
	natstest.Eventually(t, "eviction after retire", func() bool { return ev.has("c1") })
}

func TestTakeoverNeedsTheSecretAndMovesTheConnection(t *testing.T) {
	ctx := context.Background()
	reg := open(t)
	_, hash := messages.NewResumeToken("c1")
	if err := reg.Register(ctx, "dana", "c1", Conn{Gateway: "g1", Resume: hash, Holder: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := reg.Takeover(ctx, "dana", "c1", Conn{Resume: messages.HashResumeSecret("wrong")}, Conn{Gateway: "g2"}); ok {
		t.Fatal("takeover with a wrong secret succeeded")
	}
	if _, ok, _ := reg.Takeover(ctx, "eve", "c1", Conn{Resume: hash}, Conn{Gateway: "g2"}); ok {
		t.Fatal("another user took the session over")
	}
	prev, ok, err := reg.Takeover(ctx, "dana", "c1", Conn{Resume: hash}, Conn{Gateway: "g2", Resume: "h2", Holder: "s2"})
	if err != nil || !ok || prev.Gateway != "g1" {
		t.Fatalf("takeover = %v, %v, %v; want g1, true", prev, ok, err)
	}
	// The old gateway's grace ends: the session lives on at g2.
	if gone, err := reg.Unregister(ctx, "dana", "c1", Conn{Holder: "s1"}); gone || err != nil {
		t.Fatalf("old holder's unregister: gone=%v err=%v; want kept", gone, err)
	}
	if _, ok, _ := reg.Takeover(ctx, "dana", "c1", Conn{Resume: hash}, Conn{Gateway: "g3"}); ok {
		t.Fatal("a used resume secret worked twice")
	}
	if gone, err := reg.Unregister(ctx, "dana", "c1", Conn{Gateway: "g2"}); !gone || err != nil {
		t.Fatalf("holder's unregister: gone=%v err=%v", gone, err)
	}
}

// Gateways write to the bucket, so it refuses what would let one of them
// erase everyone's keys: a roll-up (one publish with Nats-Rollup: all to
// any key) and a purge.
func TestBucketRefusesRollupAndPurge(t *testing.T) {
	reg := open(t)
	ctx := t.Context()
	if _, err := reg.StartHeartbeat(ctx, "gw", time.Hour, time.Minute, quiet); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx, "alice", "c1", Conn{Gateway: "gw"}); err != nil {
		t.Fatal(err)
	}
	for _, rollup := range []string{"all", "sub"} {
		msg := nats.NewMsg(kvutil.Subject(reg.kv, messages.UserKey("mallory")))
		msg.Header.Set("Nats-Rollup", rollup)
		if _, err := reg.js.PublishMsg(ctx, msg); err == nil {
			t.Errorf("a publish with Nats-Rollup: %s was stored", rollup)
		}
	}
	if err := reg.kv.Purge(ctx, messages.UserKey("alice")); err == nil {
		t.Error("KV purge succeeded")
	}
	s, err := reg.js.Stream(ctx, "KV_"+reg.kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("stream purge succeeded")
	}
	if _, err := reg.kv.Get(ctx, messages.GatewayKey("gw")); err != nil {
		t.Errorf("heartbeat: %v", err)
	}
	if conns, err := reg.Conns(ctx, "alice", kvutil.Leader); err != nil || len(conns) != 1 {
		t.Errorf("alice: %v, %v", conns, err)
	}
}

// Simultaneous limited registers of one user never admit more than the
// limit, and each one not admitted is told so (not failed).
func TestRegisterLimitedNeverExceedsTheLimit(t *testing.T) {
	const limit, writers = 5, 60
	reg := open(t)
	ctx := t.Context()
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			conn := fmt.Sprintf("c%d", i)
			err := reg.RegisterLimited(ctx, "fay", conn, Conn{Gateway: fmt.Sprintf("gw%d", i%3), Holder: conn}, limit)
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.Is(err, ErrTooManyConns):
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	conns, err := reg.Conns(ctx, "fay", kvutil.Leader)
	if err != nil {
		t.Fatal(err)
	}
	if admitted.Load() != limit || refused.Load() != writers-limit || len(conns) != limit {
		t.Fatalf("admitted %d, refused %d, registered %d; want %d, %d, %d",
			admitted.Load(), refused.Load(), len(conns), limit, writers-limit, limit)
	}
}

// At the limit, a retry of a register that landed is not refused, and a
// connection being evicted leaves its place to a new one.
func TestRegisterLimitedCountsLiveConnections(t *testing.T) {
	reg := open(t)
	ctx := t.Context()
	at := Conn{Gateway: "gw", Holder: "s1"}
	if err := reg.RegisterLimited(ctx, "gil", "c1", at, 1); err != nil {
		t.Fatal(err)
	}
	if err := reg.RegisterLimited(ctx, "gil", "c1", at, 1); err != nil {
		t.Fatalf("retry of a register that landed: %v", err)
	}
	if err := reg.RegisterLimited(ctx, "gil", "c2", Conn{Gateway: "gw", Holder: "s2"}, 1); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("second connection over a limit of 1: %v, want %v", err, ErrTooManyConns)
	}
	if _, ok, err := reg.Takeover(ctx, "gil", "c1", Conn{Gateway: "gw"}, Conn{Gateway: "gw", Holder: Evicted}); !ok || err != nil {
		t.Fatalf("evict: %v %v", ok, err)
	}
	if err := reg.RegisterLimited(ctx, "gil", "c2", Conn{Gateway: "gw", Holder: "s2"}, 1); err != nil {
		t.Fatalf("register beside a connection being evicted: %v", err)
	}
}

// Many writers registering and unregistering on one user's record at once
// all get their change in: none gives up on the conflicts, and nothing is
// left behind.
func TestChangesOutlastContention(t *testing.T) {
	const writers = 100
	reg := open(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			conn := fmt.Sprintf("c%d", i)
			at := Conn{Gateway: fmt.Sprintf("gw%d", i%2), Holder: conn}
			if err := reg.Register(ctx, "hal", conn, at); err != nil {
				t.Errorf("register %s: %v", conn, err)
				return
			}
			if gone, err := reg.Unregister(ctx, "hal", conn, at); !gone || err != nil {
				t.Errorf("unregister %s: gone=%v, %v", conn, gone, err)
			}
		})
	}
	wg.Wait()
	if conns, err := reg.Conns(ctx, "hal", kvutil.Leader); err != nil || len(conns) != 0 {
		t.Fatalf("left behind: %v (%v)", conns, err)
	}
}

// BenchmarkContendedChanges measures one user's record under contention:
// each op is writers goroutines each registering and unregistering one
// connection on the same key at once (ns/op is the whole round).
func BenchmarkContendedChanges(b *testing.B) {
	for _, writers := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			reg := open(b)
			ctx := b.Context()
			for b.Loop() {
				var wg sync.WaitGroup
				for i := range writers {
					wg.Go(func() {
						conn := fmt.Sprintf("c%d", i)
						at := Conn{Gateway: "gw", Holder: conn}
						if err := reg.RegisterLimited(ctx, "ivy", conn, at, writers); err != nil {
							b.Error(err)
						}
						if _, err := reg.Unregister(ctx, "ivy", conn, at); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
