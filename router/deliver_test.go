package router

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/internal/natstest"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// deliveryRig is a deliverer on a real NATS server with a presence bucket,
// and a stand-in for the gateways: subscribers on their delivery subjects.
type deliveryRig struct {
	t     *testing.T
	nc    *nats.Conn
	names messages.Names
	reg   *presence.Registry
	dl    *deliverer
}

func newDeliveryRig(t *testing.T, bound time.Duration) *deliveryRig {
	t.Helper()
	srv := natstest.Server(t)
	nc := natstest.Connect(t, srv, "router")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := messages.NewNames(messages.DefaultPrefix)
	ctx, cancel := context.WithTimeout(context.Background(), natstest.Wait)
	defer cancel()
	reg, err := presence.Open(ctx, js, names, 1)
	if err != nil {
		t.Fatal(err)
	}
	post, err := courier.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dl := &deliverer{
		courier: post, names: names, presence: reg, bound: bound,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }),
	}
	dl.ctx, dl.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { dl.cancel(); dl.wg.Wait() })
	return &deliveryRig{t: t, nc: natstest.Connect(t, srv, "gateways"), names: names, reg: reg, dl: dl}
}

func (r *deliveryRig) register(user, conn, gw string) {
	r.t.Helper()
	if err := r.reg.Register(context.Background(), user, conn, presence.Conn{Gateway: gw}); err != nil {
		r.t.Fatal(err)
	}
}

// gateway answers deliveries to gw with receipt(d) and records them.
type fakeGateway struct {
	mu  sync.Mutex
	got []*messages.Delivery
}

func (r *deliveryRig) gateway(gw string, receipt func(*messages.Delivery) messages.Receipt) *fakeGateway {
	r.t.Helper()
	g := &fakeGateway{}
	_, err := r.nc.Subscribe(r.names.DeliverSubject(gw), func(m *nats.Msg) {
		d, _, err := messages.DecodeDelivery(m.Data)
		if err != nil {
			r.t.Error(err)
			return
		}
		g.mu.Lock()
		g.got = append(g.got, d)
		g.mu.Unlock()
		_ = m.Respond(kvutil.MustJSON(receipt(d)))
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
	return g
}

func (g *fakeGateway) deliveries() []*messages.Delivery {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*messages.Delivery(nil), g.got...)
}

func holdsAll(*messages.Delivery) messages.Receipt { return messages.Receipt{} }

func ended(user, conn string) Effect {
	return Effect{User: user, Delivery: messages.Delivery{Conn: conn, Env: *messages.Ended("call1", messages.ReasonHangup)}}
}

func (r *deliveryRig) finished() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natstest.Wait)
	defer cancel()
	r.dl.wait(ctx)
	if ctx.Err() != nil {
		r.t.Fatal("deliveries still under way")
	}
}

func (r *deliveryRig) counts(typ string) (retried, givenUp float64) {
	value := func(c prometheus.Counter) float64 {
		var m dto.Metric
		if err := c.Write(&m); err != nil {
			r.t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	return value(r.dl.metrics.retried.WithLabelValues(typ)), value(r.dl.metrics.givenUp.WithLabelValues(typ))
}

// A gateway whose subscription is not there yet (its interest has not
// reached the router's NATS node) gets the delivery once it is.
func TestDeliveryWaitsForTheGatewaysSubscription(t *testing.T) {
	r := newDeliveryRig(t, natstest.Wait)
	r.register("bob", "b1", "g1")
	r.dl.send(context.Background(), []Effect{ended("bob", "b1")})
	natstest.Eventually(t, "a retry", func() bool { n, _ := r.counts(messages.TypeEnded); return n > 0 })
	g := r.gateway("g1", holdsAll)
	r.finished()
	got := g.deliveries()
	if len(got) == 0 || got[0].User != "bob" || len(got[0].Conns) != 1 || got[0].Conns[0] != "b1" || got[0].Env.Reason != messages.ReasonHangup {
		t.Fatalf("deliveries: %+v", got)
	}
	for _, d := range got[1:] {
		if d.ID != got[0].ID {
			t.Fatalf("a retry changed the delivery id: %s then %s", got[0].ID, d.ID)
		}
	}
	if _, givenUp := r.counts(messages.TypeEnded); givenUp != 0 {
		t.Fatalf("given up: %v", givenUp)
	}
}

// Every device of the user but the one excepted gets the delivery, each
// from the gateway presence names for it, in one post per gateway.
func TestDeliveryReachesEveryDeviceOnItsGateway(t *testing.T) {
	r := newDeliveryRig(t, natstest.Wait)
	r.register("bob", "b1", "g1")
	r.register("bob", "b2", "g1")
	r.register("bob", "b3", "g2")
	r.register("bob", "b4", "g2")
	g1, g2 := r.gateway("g1", holdsAll), r.gateway("g2", holdsAll)
	env := messages.Ended("call1", messages.ReasonAnsweredElsewhere)
	r.dl.send(context.Background(), []Effect{{User: "bob", Delivery: messages.Delivery{Except: "b4", Env: *env}}})
	r.finished()
	conns := func(g *fakeGateway) map[string]bool {
		set := map[string]bool{}
		for _, d := range g.deliveries() {
			for _, c := range d.Conns {
				set[c] = true
			}
		}
		return set
	}
	if c1, c2 := conns(g1), conns(g2); len(c1) != 2 || !c1["b1"] || !c1["b2"] || len(c2) != 1 || !c2["b3"] {
		t.Fatalf("g1 got %v, g2 got %v; want b1, b2 and b3", c1, c2)
	}
}

// A gateway that no longer holds the connection says so; the router finds
// the connection where presence now has it (a resume moved it) and
// delivers there.
func TestDeliveryFollowsAConnectionThatMoved(t *testing.T) {
	r := newDeliveryRig(t, natstest.Wait)
	r.register("bob", "b1", "g1")
	r.gateway("g1", func(d *messages.Delivery) messages.Receipt {
		r.register("bob", "b1", "g2") // the session resumed on g2
		return messages.Receipt{Missing: d.Conns}
	})
	g2 := r.gateway("g2", holdsAll)
	r.dl.send(context.Background(), []Effect{ended("bob", "b1")})
	r.finished()
	if got := g2.deliveries(); len(got) != 1 || got[0].Conns[0] != "b1" {
		t.Fatalf("g2 got %+v", got)
	}
}

// A connection that leaves presence is owed nothing more: the retries
// stop, and nothing counts as given up.
func TestDeliveryStopsForAConnectionThatLeft(t *testing.T) {
	r := newDeliveryRig(t, natstest.Wait)
	r.register("bob", "b1", "g1") // g1 is dead: nobody answers
	r.dl.send(context.Background(), []Effect{ended("bob", "b1")})
	natstest.Eventually(t, "a retry", func() bool { n, _ := r.counts(messages.TypeEnded); return n > 0 })
	if _, err := r.reg.Unregister(context.Background(), "bob", "b1", presence.Conn{}); err != nil {
		t.Fatal(err)
	}
	r.finished()
	if _, givenUp := r.counts(messages.TypeEnded); givenUp != 0 {
		t.Fatalf("given up: %v", givenUp)
	}
}

// A connection presence still lists on a gateway that never answers is
// given up on at the bound, and counted.
func TestDeliveryGivesUpAtTheBound(t *testing.T) {
	r := newDeliveryRig(t, 300*time.Millisecond)
	r.register("bob", "b1", "g1")
	r.dl.send(context.Background(), []Effect{ended("bob", "b1")})
	r.finished()
	if _, givenUp := r.counts(messages.TypeEnded); givenUp != 1 {
		t.Fatalf("given up: %v, want 1", givenUp)
	}
}
