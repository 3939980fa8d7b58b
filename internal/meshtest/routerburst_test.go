package meshtest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
)

// A burst of requests, as when thousands of clients connect at once (each
// connect asks the routers to attach it), waits in the router's queue: none
// is dropped. A dropped request costs its gateway a whole RouterAttempt
// before it asks again.
func TestRouterTakesABurst(t *testing.T) {
	m := Start(t, Options{Gateways: 1, Routers: 1})
	const n = 2000
	var answered atomic.Int64
	inbox := nats.NewInbox()
	sub, err := m.nc.Subscribe(inbox+".*", func(*nats.Msg) { answered.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil { // the test must not drop answers either
		t.Fatal(err)
	}
	for i := range n {
		req, _ := json.Marshal(messages.Request{Op: messages.OpAttach, User: "burst-" + strconv.Itoa(i), Conn: messages.NewID(), Gateway: "test"})
		if err := m.nc.PublishRequest(m.names.RouterSubject(), inbox+"."+strconv.Itoa(i), req); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, "answers to the burst", func() error {
		if got := answered.Load(); got < n {
			return fmt.Errorf("%d of %d requests answered; the router dropped %d", got, n, m.routerDropped())
		}
		return nil
	})
	if dropped := m.routerDropped(); dropped != 0 {
		t.Fatalf("every request was answered, yet the router counts %d dropped", dropped)
	}
}
