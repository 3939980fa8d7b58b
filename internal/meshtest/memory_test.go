package meshtest

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// refusals is how many connections TestRefusedConnectionsLeaveNothing has
// the gateway refuse; maxBytesPerRefusal bounds the heap they may leave
// behind. A refused connection whose socket (buffers, send queue) stayed
// reachable until its token expired held about 31 KiB.
const (
	refusals           = 2000
	maxBytesPerRefusal = 2 << 10
)

// A connection refused with 4004 leaves nothing behind on the gateway: no
// memory, no goroutine, however far in the future its token expires.
// Otherwise anyone with one valid token could exhaust a gateway's memory
// by connecting again and again while at their connection limit.
func TestRefusedConnectionsLeaveNothing(t *testing.T) {
	m := Start(t, Options{Gateways: 1, Routers: 1, Gateway: func(c *gateway.Config) { c.MaxConnsPerUser = 1 }})
	for _, tc := range []struct {
		name string
		exp  time.Time
	}{
		{"token for an hour", time.Now().Add(time.Hour)},
		{"token until year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := "hoarder-" + messages.NewID()[:6]
			token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": tc.exp.Unix()}).SignedString([]byte(Secret))
			if err != nil {
				t.Fatal(err)
			}
			if _, resp, err := m.For(t).DialRaw(0, token, ""); err != nil {
				t.Fatalf("first connection: %v (%v)", err, resp)
			}
			u := m.Gateways[0].URL + "?access_token=" + url.QueryEscape(token)
			refuseAll(t, u, 100) // warm-up: pools, lazily started goroutines
			heap0, goroutines0 := settled()

			refuseAll(t, u, refusals)
			// The gateway may still be finishing a close the client has seen.
			natstest.WaitFor(t, "goroutines of the refused connections", func() error {
				if n := runtime.NumGoroutine(); n > goroutines0 {
					return fmt.Errorf("%d goroutines, %d before the refusals", n, goroutines0)
				}
				return nil
			})
			heap, _ := settled()
			growth := int64(heap) - int64(heap0)
			t.Logf("%d refusals: live heap %d → %d bytes (%+d, %d per refusal)", refusals, heap0, heap, growth, growth/refusals)
			if growth > refusals*maxBytesPerRefusal {
				t.Errorf("the heap grew by %d bytes, %d per refused connection (at most %d expected)",
					growth, growth/refusals, maxBytesPerRefusal)
			}
		})
	}
}

// settled collects garbage (twice: sync.Pools keep their contents through
// one collection) and returns the live heap and the goroutine count.
func settled() (heapAlloc uint64, goroutines int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}

// refuseAll makes n connections to u from a few goroutines at once, each of
// which the gateway must refuse with 4004, and closes each properly. It
// keeps nothing of them (unlike DialRaw, whose cleanups hold every client
// until the test ends), so the heap measured afterwards is the gateway's.
func refuseAll(t *testing.T, u string, n int) {
	t.Helper()
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if err := refused(u); err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// refused connects to u and reads until the gateway closes the connection,
// which must be with 4004.
func refused(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return err
	}
	defer ws.CloseNow()
	for {
		if _, _, err = ws.Read(ctx); err != nil {
			break
		}
	}
	if code := websocket.CloseStatus(err); code != messages.CloseTooManyConns {
		return fmt.Errorf("closed with %d (%v), want %d", code, err, messages.CloseTooManyConns)
	}
	return nil
}
