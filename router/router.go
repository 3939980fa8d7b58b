// Package router is the call authority of callmesh: it answers gateway
// requests on a NATS queue group, keeps calls and busy locks in JetStream KV
// with compare-and-set, fires ring timeouts and ends the calls of connections
// that are gone. Any number of routers may run at once; the KV revision
// decides every race and the router whose write won publishes its effects.
// A router may die between its write and its publish; the repeat of the
// event that the record reflects (a gateway's retry, another router's ring
// timer or eviction) publishes them again, so effects are at least once
// across router crashes and clients may get a duplicate (see repeat.go).
package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/internal/kvwatch"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// casAttempts bounds re-read/re-decide rounds on one call.
const casAttempts = 16

// workQueue is how many requests may wait for a worker. Past it NATS drops
// them (slow consumer, counted in callmesh_router_requests_dropped_total),
// and each drop costs its gateway a whole RouterAttempt before it asks
// again: room for a burst of connects (each asks to attach) from every
// gateway at once, like the gateway's deliveryBuffer.
const workQueue = 1 << 16

// Router serves gateway requests. Create it with New, then Start it.
type Router struct {
	cfg      Config
	nc       *nats.Conn
	names    messages.Names
	log      *slog.Logger
	metrics  *metrics
	store    *Store
	presence *presence.Registry
	timers   *ringTimers
	// roomTimers end empty rooms after rooms.empty_timeout.
	roomTimers *roomTimers
	view       *view // the calls bucket as watched, feeding timers
	deliver    *deliverer
	events     *events.Publisher // call and room events (events.go)

	cancel    context.CancelFunc // stops the watchers and timers
	sub       atomic.Pointer[nats.Subscription]
	droppedMu sync.Mutex
	dropped   int // requests sub has dropped, as last seen; guarded by droppedMu
	work      chan *nats.Msg
	stopWork  chan struct{} // closed by Shutdown: workers drain work and exit
	workers   sync.WaitGroup
	wg        sync.WaitGroup // the watchers
	stopOnce  sync.Once
	stopped   chan struct{} // closed when Shutdown has finished; set in stopOnce
	started   atomic.Bool   // Start has finished
	stopping  atomic.Bool   // Shutdown has begun
}

// New validates cfg and returns a router using nc.
func New(cfg Config, nc *nats.Conn) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router: config: %w", err)
	}
	names, err := messages.NewNames(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Router{cfg: cfg, nc: nc, names: names, log: cfg.Logger.With("component", "router")}
	r.metrics = newMetrics(cfg.Metrics, r.droppedRequests)
	return r, nil
}

// Start opens the buckets, starts the watchers and subscribes to requests.
func (r *Router) Start(ctx context.Context) error {
	js, err := jetstream.New(r.nc)
	if err != nil {
		return fmt.Errorf("router: jetstream: %w", err)
	}
	err = kvutil.Retry(ctx, r.log, "open buckets", func(ctx context.Context) (err error) {
		if r.store, err = OpenStore(ctx, js, r.names, r.cfg.Replicas, r.cfg.EndedRetention); err != nil {
			return err
		}
		if r.presence, err = presence.Open(ctx, js, r.names, r.cfg.Replicas); err != nil {
			return err
		}
		_, err = events.OpenStream(ctx, js, r.names, events.StreamConfig{
			Retention: r.cfg.Events.Retention, MaxBytes: r.cfg.Events.MaxBytes, Replicas: r.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return err
	}
	r.events = events.NewPublisher(js, r.names, r.log, r.cfg.Metrics)
	post, err := courier.New(r.nc)
	if err != nil {
		return fmt.Errorf("router: courier: %w", err)
	}
	bg, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.deliver = &deliverer{
		courier: post, names: r.names, presence: r.presence, bound: r.cfg.PresenceTTL + r.cfg.ResumeGrace,
		log: r.log, metrics: r.metrics,
	}
	r.deliver.ctx, r.deliver.cancel = context.WithCancel(bg)
	r.timers = newRingTimers(func(id string) { r.expire(bg, id) })
	r.roomTimers = newRoomTimers(func(id string) { r.expireRoom(bg, id) })
	r.view = newView(r.timers, r.roomTimers)
	r.store.view = r.view
	monitor := presence.NewMonitor(r.presence, r.cfg.ResumeGrace, r.cfg.Resync, r.evict, r.log)
	r.goRun(func() { kvwatch.Run(bg, r.store.KV(), ">", r.cfg.Resync, r.view, r.log) })
	r.goRun(func() { monitor.Run(bg) })

	r.work = make(chan *nats.Msg, workQueue)
	r.stopWork = make(chan struct{})
	for range r.cfg.Workers {
		r.workers.Add(1)
		go r.worker(bg)
	}
	sub, err := r.nc.ChanQueueSubscribe(r.names.RouterSubject(), r.names.RouterQueue(), r.work)
	if err != nil {
		cancel()
		return fmt.Errorf("router: subscribe: %w", err)
	}
	r.sub.Store(sub)
	if err := r.nc.Flush(); err != nil {
		return fmt.Errorf("router: flush: %w", err)
	}
	r.started.Store(true)
	r.log.Info("router started", "subject", r.names.RouterSubject())
	return nil
}

// worker handles requests until Shutdown, then finishes the ones already
// queued.
func (r *Router) worker(ctx context.Context) {
	defer r.workers.Done()
	for {
		select {
		case m := <-r.work:
			r.handle(ctx, m)
		case <-r.stopWork:
			for {
				select {
				case m := <-r.work:
					r.handle(ctx, m)
				default:
					return
				}
			}
		}
	}
}

// droppedRequests is how many requests NATS has dropped because the work
// queue was full, for the metric: the subscription's count, as last seen
// (it is gone once the subscription is).
func (r *Router) droppedRequests() float64 {
	r.droppedMu.Lock()
	defer r.droppedMu.Unlock()
	if sub := r.sub.Load(); sub != nil {
		if n, err := sub.Dropped(); err == nil {
			r.dropped = max(r.dropped, n)
		}
	}
	return float64(r.dropped)
}

func (r *Router) goRun(f func()) {
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f() }()
}

// Shutdown stops taking requests, finishes the ones it has taken and the
// deliveries they made (until ctx ends), then stops the watchers and timers
// (other routers fire those). It may be called more than once.
func (r *Router) Shutdown(ctx context.Context) error {
	r.stopping.Store(true)
	if sub := r.sub.Load(); sub != nil {
		r.droppedRequests() // the count dies with the subscription
		_ = sub.Unsubscribe()
	}
	r.stopOnce.Do(func() {
		r.stopped = make(chan struct{})
		go func() {
			if r.stopWork != nil {
				close(r.stopWork)
				r.workers.Wait()
			}
			if r.deliver != nil {
				r.deliver.wait(ctx)
			}
			if r.events != nil {
				r.events.Close(ctx)
			}
			if r.cancel != nil {
				r.cancel()
			}
			r.wg.Wait()
			close(r.stopped)
		}()
	})
	done := r.stopped
	select {
	case <-done:
		if r.timers != nil { // nil when Start failed early
			r.timers.stopAll()
			r.roomTimers.stopAll()
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Router) handle(ctx context.Context, m *nats.Msg) {
	start := time.Now()
	var req messages.Request
	var reply messages.Reply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply = messages.Reply{Code: messages.CodeInternal, Message: "undecodable request"}
	} else {
		reply = r.serve(ctx, &req)
	}
	code := reply.Code
	if code == "" {
		code = "ok"
	}
	r.metrics.requests.WithLabelValues(req.Op, code).Inc()
	r.metrics.latency.WithLabelValues(req.Op).Observe(time.Since(start).Seconds())
	if m.Reply != "" {
		if err := m.Respond(kvutil.MustJSON(reply)); err != nil {
			r.log.Warn("reply failed", "op", req.Op, "err", err)
		}
	}
}

// serve answers one request. Gateways are trusted to report the
// authenticated User and Conn; everything else is checked here.
func (r *Router) serve(ctx context.Context, req *messages.Request) messages.Reply {
	if req.Call != "" && !messages.ValidCallID(req.Call) || req.MoveCall != "" && !messages.ValidCallID(req.MoveCall) {
		return messages.Reply{Code: messages.CodeBadRequest, Message: "malformed call id"}
	}
	if req.Room != "" && messages.ValidRoomID(req.Room) != nil {
		return messages.Reply{Code: messages.CodeBadRequest, Message: "malformed room id"}
	}
	var reply messages.Reply
	var err error
	switch req.Op {
	case messages.OpInvite:
		if req.Room != "" {
			reply, err = r.roomInvite(ctx, req)
		} else {
			reply, err = r.invite(ctx, req)
		}
	case messages.OpAccept:
		reply, err = r.transition(ctx, req.Call, Event{Kind: Accept, User: req.User, Conn: req.Conn, Gateway: req.Gateway})
	case messages.OpReject:
		reply, err = r.transition(ctx, req.Call, Event{Kind: Reject, User: req.User, Conn: req.Conn})
	case messages.OpHangup:
		reply, err = r.transition(ctx, req.Call, Event{Kind: Hangup, User: req.User, Conn: req.Conn})
	case messages.OpLeave:
		err = r.leave(ctx, req.User, req.Conn, req.Bye)
	case messages.OpAttach:
		reply, err = r.attach(ctx, req)
	case messages.OpResume:
		reply, err = r.resume(ctx, req)
	case messages.OpJoin:
		reply, err = r.join(ctx, req)
	case messages.OpRoomLeave:
		reply, err = r.roomRequest(ctx, req, RoomLeave)
	case messages.OpKick:
		reply, err = r.roomRequest(ctx, req, RoomKick)
	case messages.OpLock:
		reply, err = r.roomRequest(ctx, req, RoomLock)
	case messages.OpUnlock:
		reply, err = r.roomRequest(ctx, req, RoomUnlock)
	default:
		return messages.Reply{Code: messages.CodeBadRequest, Message: "unknown op"}
	}
	if err != nil {
		r.log.Error("request failed", "op", req.Op, "call", req.Call, "err", err)
		return messages.Reply{Code: messages.CodeInternal, Message: "the request could not be completed; retry"}
	}
	return reply
}

// invite creates the call and decides it. Every step is idempotent, so a
// gateway's retry of the same call id completes what a failed attempt began.
func (r *Router) invite(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	c := &Call{
		ID: req.Call, Caller: req.User, CallerConn: req.Conn, CallerGateway: req.Gateway, Callee: req.To, State: Ringing, Room: req.Room,
		StartedMS: time.Now().UnixMilli(),
		Data:      req.Data, RingDeadline: time.Now().Add(r.cfg.RingTimeout).UnixMilli(),
	}
	if c.Caller == c.Callee || messages.ValidUserID(c.Callee) != nil {
		return Decide(c, Event{Kind: Invite}).Reply, nil
	}
	rev, err := r.store.Create(ctx, c)
	if err != nil && !errors.Is(err, ErrExists) {
		return messages.Reply{}, err
	}
	for range casAttempts {
		if rev == 0 { // a retry, or a lost race: decide from what is stored
			if c, rev, err = r.store.Call(ctx, req.Call, kvutil.Leader); err != nil {
				return messages.Reply{}, err
			}
			if c == nil || c.Caller != req.User || c.CallerConn != req.Conn || c.Room != req.Room {
				return messages.Reply{Code: messages.CodeBadRequest, Message: "call id in use"}, nil
			}
		}
		ev := Event{Kind: Invite}
		if c.State == Ringing {
			if ev, err = r.inviteFacts(ctx, c); err != nil {
				return messages.Reply{}, err
			}
		}
		out := Decide(c, ev)
		reply, done, err := r.commit(ctx, c, out, rev)
		if done && err == nil && out.Next == nil && c.State == Ringing && len(out.Effects) > 0 {
			r.ringingEvent(c) // it rings the callee's devices
		}
		if done || err != nil {
			return reply, err
		}
		rev = 0
	}
	return messages.Reply{}, errConflicts
}

// inviteFacts claims the busy locks of a ringing call's parties and reads the
// callee's presence. A room ring claims the callee's only: its caller is a
// member of the room, which holds the caller's lock.
func (r *Router) inviteFacts(ctx context.Context, c *Call) (Event, error) {
	ev := Event{Kind: Invite}
	if c.Room == "" {
		ok, err := r.store.Claim(ctx, c.Caller, c.ID)
		if err != nil || !ok {
			ev.CallerBusy = !ok
			return ev, err
		}
	}
	conns, err := r.presence.Lookup(ctx, c.Callee)
	if err != nil || len(conns) == 0 {
		return ev, err
	}
	ev.CalleeOnline = true
	ok, err := r.store.Claim(ctx, c.Callee, c.ID)
	ev.CalleeBusy = !ok
	return ev, err
}

// transition applies ev to call id with compare-and-set, re-reading and
// re-deciding on a conflict, and publishes the effects of the write that won.
//
// The first decision is made on the call as the view knows it, or else as
// the nearest replica has it: a decision that writes is checked by its
// compare-and-set. One that writes nothing (a refusal, "no such call", a
// repeat), and any made after a lost compare-and-set, is made on the
// leader's copy (kvutil.Read).
func (r *Router) transition(ctx context.Context, id string, ev Event) (messages.Reply, error) {
	c, rev := r.view.call(id)
	known := c != nil // decide on the view's copy before reading
	from := kvutil.Nearest
	for range casAttempts {
		sure := false // c is the leader's copy
		if !known {
			var err error
			if c, rev, err = r.store.Call(ctx, id, from); err != nil {
				return messages.Reply{}, err
			}
			sure = from == kvutil.Leader
		}
		known, from = false, kvutil.Leader
		if ev.Kind == Accept && c != nil && c.Room != "" {
			if !sure {
				continue // decide a room ring's accept on the leader's copy
			}
			reply, done, err := r.acceptRoom(ctx, c, rev, ev)
			if done || err != nil {
				return reply, err
			}
			continue
		}
		if ev.Kind == Leave && c.live() && c.State == Ringing && ev.User == c.Callee {
			var err error
			if ev.OtherDevices, err = r.otherDevices(ctx, c.Callee, ev.Conn); err != nil {
				return messages.Reply{}, err
			}
		}
		out := Decide(c, ev)
		if out.Next == nil && !sure {
			continue
		}
		reply, done, err := r.commit(ctx, c, out, rev)
		if done || err != nil {
			return reply, err
		}
	}
	return messages.Reply{}, errConflicts
}

// errConflicts: a call kept changing under every attempt to decide it.
var errConflicts = errors.New("router: too many conflicting writes")

// commit stores out.Next at revision rev and, if that write won (or there
// was nothing to write), publishes the effects and releases an ended call's
// locks. done is false when another write came first: re-read, re-decide.
//
// The locks go after the publish: a router that dies between its write and
// its publish leaves them held, so a repeated leave still finds the call
// through them, and its repeat (out.Repeat) publishes and releases. Locks of
// an ended call that are left behind are stale and taken over by the next
// claim.
func (r *Router) commit(ctx context.Context, c *Call, out Outcome, rev uint64) (reply messages.Reply, done bool, err error) {
	if c != nil && c.Room != "" {
		roomed(&out, c.Room)
	}
	if out.Next != nil {
		stamp(c, out.Next, time.Now())
		err := r.store.Update(ctx, out.Next, rev)
		if errors.Is(err, ErrConflict) {
			r.metrics.retries.Inc()
			return messages.Reply{}, false, nil
		}
		if err != nil {
			return messages.Reply{}, false, err
		}
		r.countEnded(out.Next)
		r.callEvents(c, out.Next)
	}
	if out.Repeat {
		r.metrics.repeats.Inc()
	}
	r.deliver.send(ctx, out.Effects)
	switch {
	case out.Next != nil:
		r.release(ctx, out.Next)
		if out.Next.State == Ended && out.Next.Room != "" {
			r.uninvite(ctx, out.Next) // a room ring that ended unanswered
		}
	case out.Repeat:
		r.release(ctx, c)
	}
	return out.Reply, true, nil
}

func (r *Router) otherDevices(ctx context.Context, user, conn string) (bool, error) {
	conns, err := r.presence.Conns(ctx, user, kvutil.Leader)
	delete(conns, conn)
	return len(conns) > 0, err
}

// countEnded counts c if it has ended.
func (r *Router) countEnded(c *Call) {
	if c.State != Ended {
		return
	}
	reason := c.Reason
	if c.Refused != "" {
		reason = "refused"
	}
	r.metrics.ended.WithLabelValues(reason).Inc()
}

// release drops the parties' busy locks once c has ended. It is idempotent.
func (r *Router) release(ctx context.Context, c *Call) {
	if c == nil || c.State != Ended {
		return
	}
	for _, user := range []string{c.Caller, c.Callee} {
		if err := r.store.Release(ctx, user, c.ID); err != nil {
			// A lock left behind is stale and is taken over by the next claim.
			r.log.Warn("release lock", "call", c.ID, "err", err)
		}
	}
}

// leave ends what conn's departure ends. A user is party to at most one
// live call or room, the one holding its busy lock, and with
// rooms.exclusive off in at most one room besides, the one holding its seat
// lock.
func (r *Router) leave(ctx context.Context, user, conn string, bye bool) error {
	id, err := r.store.BusyCall(ctx, user, kvutil.Leader) // nothing to end: be sure
	switch {
	case err != nil:
		return err
	case isRoomKey(id):
		err = r.leaveRoom(ctx, id, user, conn, bye)
	case id != "":
		_, err = r.transition(ctx, id, Event{Kind: Leave, User: user, Conn: conn, Bye: bye})
	}
	if err != nil || r.cfg.Rooms.Exclusive {
		return err
	}
	seat, err := r.store.Holder(ctx, messages.SeatKey(user), kvutil.Leader)
	if err != nil || seat == "" {
		return err
	}
	return r.leaveRoom(ctx, seat, user, conn, bye)
}

// attach rings a newly connected device if a call to its user is ringing.
// It reads the nearest replica, as it runs on every connect: a device that
// connects within a replica's lag of an invite may not ring, as the
// invite's own read of the callee's presence has the same window.
func (r *Router) attach(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	id, err := r.store.BusyCall(ctx, req.User, kvutil.Nearest)
	if err != nil || id == "" || isRoomKey(id) {
		return messages.Reply{}, err
	}
	c, _, err := r.store.Call(ctx, id, kvutil.Nearest)
	if err != nil || c == nil || c.State != Ringing || c.Callee != req.User {
		return messages.Reply{}, err
	}
	return messages.Reply{Then: []*messages.Envelope{{Type: messages.TypeIncoming, Call: c.ID, Room: c.Room, From: c.Caller, Data: c.Data}}}, nil
}

// expire ends call id with no_answer if it still rings past its deadline.
func (r *Router) expire(ctx context.Context, id string) {
	if _, err := r.transition(ctx, id, Event{Kind: Expire, Now: time.Now()}); err != nil && ctx.Err() == nil {
		r.log.Error("ring timeout", "call", id, "err", err)
	}
}

// evict ends a dead gateway's connection, unless its session resumed on
// another gateway. First presence marks it as evicted, in the same
// compare-and-set that a resume would need (so a resume can no longer take
// it, a resumed one is left alone, and from then on it counts as gone, see
// presence.Evicted); then its calls end as for a drop;
// then it leaves presence. A router that dies in between leaves it marked
// but in presence, so every monitor evicts it again, at the latest on its
// next resync, and the repeat tells the other party.
func (r *Router) evict(ctx context.Context, user, conn, gateway string) {
	at := presence.Conn{Gateway: gateway}
	_, held, err := r.presence.Takeover(ctx, user, conn, at, presence.Conn{Gateway: gateway, Holder: presence.Evicted})
	if err != nil || !held {
		if err != nil {
			r.log.Warn("evict", "conn", conn, "err", err)
		}
		return // gone already, or resumed elsewhere
	}
	if err := r.leave(ctx, user, conn, false); err != nil {
		r.log.Warn("evict leave", "conn", conn, "err", err)
		return
	}
	if _, err := r.presence.Unregister(ctx, user, conn, presence.Conn{Gateway: gateway, Holder: presence.Evicted}); err != nil {
		r.log.Warn("evict", "conn", conn, "err", err)
	}
}
