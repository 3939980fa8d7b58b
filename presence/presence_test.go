package presence

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t *testing.T) *Registry {
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
	conns, err := reg.Conns(ctx, "a.b")
	if err != nil || len(conns) != 20 {
		t.Fatalf("conns = %v (%v), want 20", conns, err)
	}
	if other, _ := reg.Conns(ctx, "a"); len(other) != 0 {
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
	if conns, _ := reg.Conns(ctx, "a.b"); len(conns) != 0 {
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
	if conns, err := reg.Conns(ctx, "alice"); err != nil || len(conns) != 1 {
		t.Errorf("alice: %v, %v", conns, err)
	}
}
