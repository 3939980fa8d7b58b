package meshtest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/router"
)

// A router can die between storing a transition and publishing its effects.
// These tests store the transition as that router would (the real Decide,
// a compare-and-set Update, no publish, no lock release) and check that the
// other party still hears, through whatever repeats the event: the
// gateway's retry, another router's ring timer, another router's eviction.

// deadRouterWrite decides ev on call and stores the outcome as a router
// would, then publishes nothing: it died.
func (m *Mesh) deadRouterWrite(call string, ev router.Event) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	js, err := jetstream.New(m.nc)
	if err != nil {
		m.t.Fatal(err)
	}
	store, err := router.OpenStore(ctx, js, m.names, 1, time.Minute)
	if err != nil {
		m.t.Fatal(err)
	}
	c, rev, err := store.Call(ctx, call, kvutil.Leader)
	if err != nil || c == nil {
		m.t.Fatalf("read call %s: %v, %+v", call, err, c)
	}
	out := router.Decide(c, ev)
	if out.Next == nil {
		m.t.Fatalf("%+v does not change call %+v", ev, c)
	}
	if err := store.Update(ctx, out.Next, rev); err != nil {
		m.t.Fatal(err)
	}
}

// dyingRouter shuts the mesh's routers down and takes the next router
// request for op as the only router. The test then stores its transition
// with (*dyingRouter).die: it never replies nor publishes.
func (m *Mesh) dyingRouter(op string) *dyingRouter {
	m.t.Helper()
	for _, r := range m.Routers {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		if err := r.Shutdown(ctx); err != nil {
			m.t.Fatal(err)
		}
		cancel()
	}
	d := &dyingRouter{m: m, took: make(chan messages.Request, 1)}
	requests := make(chan *nats.Msg, 16)
	sub, err := m.nc.ChanQueueSubscribe(m.names.RouterSubject(), m.names.RouterQueue(), requests)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.nc.Flush(); err != nil {
		m.t.Fatal(err)
	}
	go func() {
		for msg := range requests {
			var req messages.Request
			if json.Unmarshal(msg.Data, &req) != nil || req.Op != op {
				continue // unanswered: the gateway retries it
			}
			_ = sub.Unsubscribe()
			d.took <- req
			return
		}
	}()
	return d
}

type dyingRouter struct {
	m    *Mesh
	took chan messages.Request
}

// die waits for the router's request and stores the transition of kind it
// asks for, as the router did before it died.
func (d *dyingRouter) die(kind router.Kind) {
	d.m.t.Helper()
	select {
	case req := <-d.took:
		d.m.deadRouterWrite(req.Call, router.Event{Kind: kind, User: req.User, Conn: req.Conn})
	case <-time.After(Wait):
		d.m.t.Fatal("the dying router got no request")
	}
}

// The caller must hear accepted, or would ring on forever while the callee
// talks to nobody.
func TestRouterDiesAfterAccept(t *testing.T) {
	m := Start(t, Options{Routers: 1})
	alice, bob, laptop := m.Dial(0, "alice"), m.Dial(1, "bob"), m.Dial(0, "bob")
	call := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
	laptop.Expect(messages.TypeIncoming)

	dying := m.dyingRouter(messages.OpAccept)
	bob.Send(&messages.Envelope{Type: messages.TypeAccept, ID: "acc", Call: call})
	dying.die(router.Accept)
	m.AddRouter() // the gateway's retry reaches it

	bob.ExpectAck("acc")
	bob.Expect(messages.TypeAccepted)
	if e := alice.Expect(messages.TypeAccepted); e.Call != call || e.From != "bob" {
		t.Fatalf("alice: %s", describe(e))
	}
	laptop.ExpectEnded(call, messages.ReasonAnsweredElsewhere)
	// Alice's gateway was told whom to relay to.
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(`{"sdp":1}`)})
	relayed(t, bob, call, "alice", json.RawMessage(`{"sdp":1}`))
}

// The other party must hear that the call is over, and both must be free.
func TestRouterDiesAfterHangup(t *testing.T) {
	m := Start(t, Options{Routers: 1})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	dying := m.dyingRouter(messages.OpHangup)
	bob.Send(&messages.Envelope{Type: messages.TypeHangup, ID: "bye", Call: call})
	dying.die(router.Hangup)
	m.AddRouter()

	bob.ExpectAck("bye")
	alice.ExpectEnded(call, messages.ReasonHangup)
	alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
}

// A router whose clock runs ahead ends a call with no_answer and dies; the
// ring timer of a live router still tells both sides.
func TestRouterDiesAfterRingTimeout(t *testing.T) {
	m := Start(t, Options{Routers: 1, RingTimeout: 2 * time.Second})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)

	m.deadRouterWrite(call, router.Event{Kind: router.Expire, Now: time.Now().Add(time.Hour)})

	alice.ExpectEnded(call, messages.ReasonNoAnswer)
	bob.ExpectEnded(call, messages.ReasonNoAnswer)
	bob.Invite("alice")
	bob.Expect(messages.TypeRinging)
	alice.Expect(messages.TypeIncoming)
}

// A router evicts the connections of a crashed gateway, ends their call and
// dies; the other routers' evictions tell the other party.
func TestRouterDiesAfterEviction(t *testing.T) {
	m := Start(t, Options{})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	call := Establish(alice, bob)

	m.deadRouterWrite(call, router.Event{Kind: router.Leave, User: "bob", Conn: bob.Conn})
	m.Gateways[1].Crash()

	alice.ExpectEnded(call, messages.ReasonDisconnected)
}

// An invite whose answer the gateway did not get in time was refused to the
// caller (unavailable), yet the router may have rung the callee: the
// gateway withdraws it, so the callee stops ringing and both are free.
// Here the only router's link to NATS is held back while alice invites:
// the router gets the invite, but nothing it sends (its KV writes, its
// answer) goes on until alice's gateway has given up; then the router
// rings bob.
func TestRefusedInviteDoesNotRingOn(t *testing.T) {
	m := Start(t, Options{Routers: 1, Gateway: func(c *gateway.Config) {
		c.RouterTimeout, c.RouterAttempt = 300*time.Millisecond, 100*time.Millisecond
	}})
	link := startLinkProxy(t, m.NATS.Addr().String())
	nc, err := nats.Connect(link.URL(), nats.Name("router"), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	m.AddRouterOn(nc)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	if err := m.Routers[0].Shutdown(shutdownCtx); err != nil { // the router behind the link is the only one
		t.Fatal(err)
	}
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	// A copy of every router request: which call the invite made.
	requests := make(chan *nats.Msg, 1024)
	if _, err := m.nc.ChanSubscribe(m.names.RouterSubject(), requests); err != nil {
		t.Fatal(err)
	}
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	link.Pause()
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "i", To: "bob"})
	alice.ExpectError("i", messages.CodeUnavailable)
	var call string
	for call == "" {
		select {
		case msg := <-requests:
			var req messages.Request
			if err := json.Unmarshal(msg.Data, &req); err != nil {
				t.Fatalf("request %s: %v", msg.Data, err)
			}
			if req.Op == messages.OpInvite {
				call = req.Call
			}
		case <-time.After(Wait):
			t.Fatal("the invite never reached the routers' subject")
		}
	}
	link.Resume()
	// The withdrawal may overtake the invite in the router (then bob gets
	// ended alone, for a call he never heard of); either way he is not
	// left ringing.
	if e := bob.Next(); e.Type != messages.TypeIncoming || e.Call != call {
		if e.Type != messages.TypeEnded || e.Call != call || e.Reason != messages.ReasonCancelled {
			t.Fatalf("bob: %s, want incoming or ended{cancelled} of %s", describe(e), call)
		}
	} else {
		bob.ExpectEnded(call, messages.ReasonCancelled)
	}
	// Neither is left busy: bob (on the other gateway) can call alice.
	again := bob.Invite("alice")
	bob.Expect(messages.TypeRinging)
	if in := alice.Expect(messages.TypeIncoming); in.Call != again {
		t.Fatalf("alice: %s", describe(in))
	}
}
