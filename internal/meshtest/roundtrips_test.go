package meshtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/router"
)

// TestRoundTrips counts the NATS round trips of each call operation on the
// routers and the gateways (traffic_test.go), one operation at a time on a
// quiet mesh, prints them as a table, and holds them to a budget: a change
// that adds a KV read to a call's path fails here, whatever the timings.
// One router, so that every count is one router's: with more, each of
// them also fires every ring timer (the losers repeat the no_answer, about
// the winner's cost again) and receives every watch push.
func TestRoundTrips(t *testing.T) {
	if testing.Short() {
		t.Skip("counts every message of a mesh")
	}
	const ring = 3 * time.Second
	m := Start(t, Options{
		RoleInboxes: true, RingTimeout: ring, Routers: 1,
		Gateway: func(c *gateway.Config) { NoInviteLimit(c); c.Heartbeat, c.HeartbeatTTL = time.Minute, 2*time.Minute },
		Router:  func(c *router.Config) { c.Resync = time.Hour },
	})
	tp := newTap(t, m)
	type row struct {
		op              string
		counts          map[string]int
		router, gateway int // budgets
	}
	var rows []row
	measure := func(op string, routerBudget, gatewayBudget int, do func()) {
		t.Helper()
		tp.settle()
		do()
		rows = append(rows, row{op, tp.settle(), routerBudget, gatewayBudget})
	}

	// bye leaves with c and waits until a router has handled the leave
	// (the gateway asks after the socket has closed).
	bye := func(c *Client) {
		t.Helper()
		leaves := m.RouterRequests(messages.OpLeave)
		c.Send(&messages.Envelope{Type: messages.TypeBye})
		c.ExpectClosed()
		natstest.WaitFor(t, "the leave", func() error {
			if m.RouterRequests(messages.OpLeave) == leaves {
				return fmt.Errorf("no leave yet")
			}
			return nil
		})
	}
	var alice, bob, bob2 *Client
	measure("connect (attach, no call)", 1, 3, func() { alice = m.Dial(0, "alice") })
	bob = m.Dial(1, "bob")
	var call string
	measure("invite (rings)", 6, 1, func() {
		call = alice.Invite("bob")
		alice.Expect(messages.TypeRinging)
		bob.Expect(messages.TypeIncoming)
	})
	measure("connect while ringing (attach rings)", 2, 3, func() {
		bob2 = m.Dial(1, "bob")
		if in := bob2.Expect(messages.TypeIncoming); in.Call != call {
			t.Fatalf("bob2 rang for %s, not %s", in.Call, call)
		}
	})
	measure("accept", 4, 1, func() {
		bob.Do(messages.TypeAccept, call)
		bob.Expect(messages.TypeAccepted)
		alice.Expect(messages.TypeAccepted)
		bob2.ExpectEnded(call, messages.ReasonAnsweredElsewhere)
	})
	measure("hangup (accepted call)", 4, 1, func() {
		alice.Do(messages.TypeHangup, call)
		bob.ExpectEnded(call, messages.ReasonHangup)
	})
	bye(bob2)
	// A refusal is decided on the calls bucket's leader (kvutil.Read):
	// the nearest replica may not have a call created a moment ago.
	measure("hangup (no such call)", 2, 1, func() {
		id := "hangup-" + messages.NewID()[:8]
		alice.Send(&messages.Envelope{Type: messages.TypeHangup, ID: id, Call: messages.NewID()})
		alice.ExpectError(id, messages.CodeNotFound)
	})
	if counts := rows[len(rows)-1].counts; counts["router kv leader get calls call"] != 1 {
		t.Errorf("not_found was not decided on the leader's copy of the call: %s", describeCounts(counts))
	}
	// "Offline" is decided on the presence bucket's leader: one more read.
	measure("invite (offline)", 7, 1, func() {
		c := alice.Invite("carol")
		alice.ExpectEnded(c, messages.ReasonOffline)
	})
	measure("invite (rings, users called before)", 6, 1, func() {
		call = alice.Invite("bob")
		alice.Expect(messages.TypeRinging)
		bob.Expect(messages.TypeIncoming)
	})
	measure("invite (busy)", 8, 1, func() {
		dave := m.Dial(0, "dave")
		tp.settle()
		c := dave.Invite("bob")
		dave.ExpectEnded(c, messages.ReasonBusy)
	})
	measure("reject", 5, 1, func() {
		bob.Do(messages.TypeReject, call)
		alice.ExpectEnded(call, messages.ReasonRejected)
	})
	measure("ring timeout", 6, 0, func() {
		call = alice.Invite("bob")
		alice.Expect(messages.TypeRinging)
		bob.Expect(messages.TypeIncoming)
		tp.settle() // count the timeout alone
		alice.ExpectEnded(call, messages.ReasonNoAnswer)
		bob.ExpectEnded(call, messages.ReasonNoAnswer)
	})
	call = Establish(alice, bob)
	measure("leave (bye in an accepted call)", 5, 3, func() {
		bye(alice)
		bob.ExpectEnded(call, messages.ReasonHangup)
	})
	measure("leave (bye, no call)", 1, 3, func() {
		bye(bob)
	})

	var b strings.Builder
	fmt.Fprintf(&b, "\n%-38s %6s %7s  %s\n", "operation", "router", "gateway", "requests (role kind ×n; pushes are watch deliveries, every router's)")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-38s %6d %7d  %s\n", r.op, roundTrips(r.counts, "router"), roundTrips(r.counts, "gateway"), describeCounts(r.counts))
	}
	t.Log(b.String())
	// Each event costs one publish: the stream holds as many as the
	// router published (a repeat would be a publish the stream dropped).
	tp.settle()
	js, err := jetstream.New(m.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(context.Background(), m.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tp.mu.Lock()
	published := tp.events
	tp.mu.Unlock()
	t.Logf("%d events, %d publishes", info.State.Msgs, published)
	if uint64(published) != info.State.Msgs || published == 0 {
		t.Errorf("%d event publishes for %d events in the stream", published, info.State.Msgs)
	}
	for _, r := range rows {
		if n := roundTrips(r.counts, "router"); n > r.router {
			t.Errorf("%s: %d router round trips, budget %d", r.op, n, r.router)
		}
		if n := roundTrips(r.counts, "gateway"); n > r.gateway {
			t.Errorf("%s: %d gateway round trips, budget %d", r.op, n, r.gateway)
		}
	}
}
