package router

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// deliverAttempt is how long one try of a delivery waits for the gateway's
// receipt before it is tried again (a repeat is dropped by the gateway).
const deliverAttempt = 500 * time.Millisecond

// A router's effects reach their connections at least once. For each
// effect the router looks up the target connections in presence, posts the
// delivery to the subject of each gateway holding one (DeliverSubject; a
// gateway subscribes to it once, at its start), and waits for each
// gateway's receipt. A gateway that did not answer within deliverAttempt,
// that the NATS server knows no subscriber for (its interest has not
// reached this node yet, or a route is being rebuilt), or that no longer
// holds a connection, is tried again: presence is read again, so a
// connection that moved (resumed elsewhere) is followed, and one that left
// presence is no longer owed anything. The retries stop at the bound, the
// longest presence can list a connection nobody holds (a dead gateway's,
// until its TTL runs out and the grace after it): such deliveries are
// counted as given up.
//
// An effect for one connection whose gateway the call record names
// (Effect.Gateway) skips the first lookup: its first try goes to that
// gateway, and a receipt naming it missing sends the retry through
// presence like any other.
//
// The first try of every effect is posted before commit returns, in the
// order Decide listed them; retries follow in the background.
type deliverer struct {
	courier  *courier.Courier
	names    messages.Names
	presence *presence.Registry
	bound    time.Duration
	log      *slog.Logger
	metrics  *metrics

	ctx    context.Context // cancelled when the router gives up on shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup // the deliveries being retried
}

// delivery is one effect on its way: the connections still owed a receipt
// and the gateway each is tried at.
type delivery struct {
	user    string
	typ     string
	d       messages.Delivery
	owed    map[string]string // connection → gateway ("": look it up)
	tickets map[string]*courier.Ticket
	start   time.Time
	// unresolved: the first presence lookup failed, so the targets (Conn,
	// Except) are yet to be found.
	unresolved         bool
	onlyConn, skipConn string
}

// targets reports whether conn is one of x's targets.
func (x *delivery) targets(conn string) bool {
	return (x.onlyConn == "" || x.onlyConn == conn) && x.skipConn != conn
}

// send posts the first try of each effect and follows up in the
// background. A presence lookup that fails is retried like a lost post.
func (dl *deliverer) send(ctx context.Context, effects []Effect) {
	looked := map[string]map[string]presence.Conn{}
	for _, e := range effects {
		conns, ok := looked[e.User]
		if !ok && e.Gateway != "" && e.Delivery.Conn != "" {
			conns, ok = map[string]presence.Conn{e.Delivery.Conn: {Gateway: e.Gateway}}, true
		}
		if !ok {
			var err error
			if conns, err = dl.presence.Lookup(ctx, e.User); err != nil {
				dl.log.Warn("deliver: presence", "err", err)
				conns = nil
			}
			looked[e.User] = conns
		}
		x := &delivery{
			user: e.User, typ: e.Delivery.Env.Type, d: e.Delivery, owed: map[string]string{}, start: time.Now(),
			unresolved: conns == nil, onlyConn: e.Delivery.Conn, skipConn: e.Delivery.Except,
		}
		x.d.ID = messages.NextDeliveryID()
		x.d.User, x.d.Conn, x.d.Except = e.User, "", ""
		for conn, at := range conns {
			if x.targets(conn) {
				x.owed[conn] = at.Gateway
			}
		}
		if len(x.owed) == 0 && !x.unresolved {
			continue // nobody to tell: the user has no connection (left)
		}
		dl.post(x)
		dl.wg.Add(1)
		go dl.follow(x)
	}
}

// post sends x to the gateway of each connection it still owes.
func (dl *deliverer) post(x *delivery) {
	byGateway := map[string][]string{}
	for conn, gw := range x.owed {
		if gw != "" {
			byGateway[gw] = append(byGateway[gw], conn)
		}
	}
	x.tickets = make(map[string]*courier.Ticket, len(byGateway))
	for gw, conns := range byGateway {
		d := x.d
		d.Conns = conns
		t, err := dl.courier.Post(&nats.Msg{Subject: dl.names.DeliverSubject(gw), Data: messages.EncodeDelivery(&d)})
		if err != nil {
			dl.log.Warn("deliver: post", "gateway", gw, "err", err)
			continue
		}
		x.tickets[gw] = t
	}
}

// follow waits for x's receipts and tries again until every connection
// has its receipt, has left presence, or the bound has passed.
func (dl *deliverer) follow(x *delivery) {
	defer dl.wg.Done()
	ctx, cancel := context.WithDeadline(dl.ctx, x.start.Add(dl.bound))
	defer cancel()
	for tries := 1; ; tries++ {
		noResponders := dl.collect(ctx, x)
		if len(x.owed) == 0 && !x.unresolved {
			return
		}
		if ctx.Err() == nil && noResponders {
			select {
			case <-ctx.Done():
			case <-time.After(courier.Backoff(tries)):
			}
		}
		if ctx.Err() != nil {
			dl.metrics.givenUp.WithLabelValues(x.typ).Inc()
			dl.log.Warn("deliver: given up", "type", x.typ, "call", x.d.Env.Call, "conns", len(x.owed), "tries", tries)
			return
		}
		conns, err := dl.presence.Conns(ctx, x.user, kvutil.Leader)
		if err != nil {
			continue // try the lookup again
		}
		if x.unresolved {
			x.unresolved = false
			for conn, at := range conns {
				if x.targets(conn) {
					x.owed[conn] = at.Gateway
				}
			}
		}
		for conn := range x.owed {
			if at, ok := conns[conn]; ok {
				x.owed[conn] = at.Gateway
			} else {
				delete(x.owed, conn) // gone: nothing owed
			}
		}
		if len(x.owed) == 0 {
			return
		}
		dl.metrics.retried.WithLabelValues(x.typ).Inc()
		dl.post(x)
	}
}

// collect waits for the receipts of x's tickets (one attempt's time in
// all) and forgets the connections they cover. It reports whether a
// gateway had no responders.
func (dl *deliverer) collect(ctx context.Context, x *delivery) (noResponders bool) {
	until := time.Now().Add(deliverAttempt)
	for gw, t := range x.tickets {
		m, err := t.Wait(ctx, time.Until(until))
		if err != nil {
			noResponders = noResponders || errors.Is(err, courier.ErrNoResponders)
			continue
		}
		var r messages.Receipt
		if err := json.Unmarshal(m.Data, &r); err != nil {
			dl.log.Warn("deliver: bad receipt", "gateway", gw, "err", err)
			continue
		}
		missing := make(map[string]bool, len(r.Missing))
		for _, conn := range r.Missing {
			missing[conn] = true
		}
		for conn, at := range x.owed {
			if at == gw && !missing[conn] {
				delete(x.owed, conn)
			}
		}
	}
	x.tickets = nil
	return noResponders
}

// wait waits for the deliveries being retried, until ctx ends; then it
// gives up on the rest.
func (dl *deliverer) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { dl.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		dl.cancel()
		<-done
	}
}
