// Package gateway is callmesh's WebSocket front door. A gateway holds client
// connections, verifies their tokens, subscribes to the NATS subject of
// every user it holds a connection of, forwards requests to the routers and
// relays signal between the two connections of an accepted call. It keeps no
// state that another gateway would need: presence and calls live in
// JetStream KV.
//
// Lock ordering: Server.mu before conn.mu; never the reverse.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// deliveryBuffer is how many deliveries may wait for the dispatcher before
// NATS drops them as a slow consumer (counted in metrics).
const deliveryBuffer = 1 << 16

// Server is one gateway. Create it with New; serve Handler; stop with
// Shutdown. It does not listen: the caller owns the listener.
type Server struct {
	cfg      Config
	id       string
	nc       *nats.Conn
	names    messages.Names
	log      *slog.Logger
	metrics  *metrics
	verifier *Verifier
	presence *presence.Registry
	hb       *presence.Heartbeat
	mux      *http.ServeMux

	bg         context.Context // cancelled by Shutdown
	cancel     context.CancelFunc
	deliveries chan *nats.Msg
	tasks      tasks       // every goroutine the gateway starts; Shutdown waits for them
	acks       *ackFlusher // the flushes that acks of relayed signals wait for

	open  atomic.Int64 // slots of MaxConns taken: connections being admitted or served
	guard *floodGuard

	mu       sync.Mutex
	users    map[string]*userSubs // subject → subscription and local conns; guarded by mu
	conns    map[*conn]struct{}   // sockets, open or holding a session in grace; guarded by mu
	draining bool                 // guarded by mu
	handover *nats.Subscription   // answers resumes of sessions held here
	inbound  *nats.Subscription   // the routers' deliveries to this gateway

	repairs repairs // presence entries to repair (reconcile.go)
}

// userSubs is the NATS subscription of one user and the user's connections
// on this gateway.
type userSubs struct {
	sub     *nats.Subscription
	ready   chan struct{}      // closed once the subscription reached the server
	err     error              // set before ready is closed
	conns   map[*conn]struct{} // two sockets share a session id while one resumes it
	invites *rate.Limiter      // the user's invites on this gateway
}

// New validates cfg, opens the presence bucket, starts the heartbeat and the
// dispatcher, and returns a gateway using nc. nc should be the gateway's own
// connection: New installs its asynchronous error handler.
func New(ctx context.Context, cfg Config, nc *nats.Conn) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: config: %w", err)
	}
	names, err := messages.NewNames(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	verifier, err := NewVerifier(ctx, cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("gateway: auth: %w", err)
	}
	id := cfg.ID
	if id == "" {
		id = messages.NewGatewayID(cfg.name())
	}
	// Until it has started, a subscription NATS refuses (the gateway's own
	// subjects under a Name its login is not entitled to, or an inbox
	// prefix not its own) ends the start: waiting would not help.
	ctx, refused := context.WithCancelCause(ctx)
	defer refused(nil)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), "subscription") {
			refused(fmt.Errorf("gateway: %w: gateway.name %q must be the name this NATS login is entitled to, and its inbox prefix %s (deploy/nats-auth.conf)",
				err, cfg.name(), names.GatewayInbox(id)))
		}
	})
	startErr := func(err error) error {
		if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
			return cause
		}
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("gateway: jetstream: %w", err)
	}
	reg, err := presence.Bind(ctx, js, names) // the routers create the buckets
	if err != nil {
		return nil, startErr(err)
	}
	s := &Server{
		cfg: cfg, id: id, nc: nc, names: names, metrics: newMetrics(cfg.Metrics),
		verifier: verifier, presence: reg, deliveries: make(chan *nats.Msg, deliveryBuffer),
		users: map[string]*userSubs{}, conns: map[*conn]struct{}{}, guard: newFloodGuard(cfg),
		repairs: repairs{orphans: map[string]orphan{}, users: map[string]struct{}{}},
	}
	s.log = cfg.Logger.With("component", "gateway", "gateway", s.id)
	s.acks = newAckFlusher(s)
	logReconnect := nc.Opts.ReconnectedCB
	nc.SetReconnectHandler(func(nc *nats.Conn) {
		if logReconnect != nil {
			logReconnect(nc)
		}
		s.goRun(s.onReconnect)
	})
	// Before the heartbeat: presence names no connection here until the
	// routers' deliveries to this gateway have a subscriber.
	if s.inbound, err = nc.ChanSubscribe(names.DeliverSubject(s.id), s.deliveries); err != nil {
		return nil, fmt.Errorf("gateway: subscribe deliveries: %w", err)
	}
	if s.handover, err = nc.Subscribe(names.GatewaySubject(s.id), s.serveHandover); err != nil {
		return nil, fmt.Errorf("gateway: subscribe handover: %w", err)
	}
	err = kvutil.Retry(ctx, s.log, "create heartbeat", func(ctx context.Context) (err error) {
		// The server has answered the subscriptions: a refusal has
		// reached the error handler (and ended ctx) before the flush.
		if err := nc.FlushTimeout(cfg.RouterAttempt); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.hb, err = reg.StartHeartbeat(ctx, s.id, cfg.Heartbeat, cfg.HeartbeatTTL, s.log)
		return err
	})
	if err != nil {
		_ = s.inbound.Unsubscribe()
		_ = s.handover.Unsubscribe()
		return nil, startErr(err)
	}
	nc.SetErrorHandler(s.countDrops)
	s.bg, s.cancel = context.WithCancel(context.Background())
	s.goRun(func() { s.hb.Run(s.bg, s.reregister) })
	s.goRun(s.dispatch)
	s.goRun(s.acks.run)
	s.goRun(s.sendTails)
	s.goRun(s.reconcile)

	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /ws", s.serveWS)
	s.mux.HandleFunc("GET /healthz", s.serveHealth)
	if g, ok := cfg.Metrics.(prometheus.Gatherer); ok {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	if cfg.DevTokens != nil {
		s.mux.HandleFunc("GET /dev/token", s.serveDevToken)
	}
	s.serveWeb(cfg.Demo, cfg.DevTokens != nil)
	s.log.Info("gateway started")
	return s, nil
}

// ID returns the gateway's id, as recorded in presence.
func (s *Server) ID() string { return s.id }

// Handler returns the gateway's HTTP handler: /ws, /healthz, /callmesh.js,
// and /metrics, /dev/token and the demo page (/, /demo/) where configured.
func (s *Server) Handler() http.Handler { return s.mux }

// Mux returns the gateway's mux, so a caller can add pages (the demo).
func (s *Server) Mux() *http.ServeMux { return s.mux }

// goRun runs f on a goroutine that Shutdown waits for, and reports false
// (running nothing) once Shutdown has begun waiting.
func (s *Server) goRun(f func()) bool { return s.tasks.run(f) }

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining || !s.nc.IsConnected() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// subscribe ensures this gateway receives user's deliveries and adds c as
// one of the user's local connections. It returns once the subscription has
// reached the NATS server, so that c may then be registered in presence.
func (s *Server) subscribe(c *conn) error {
	subject := s.names.UserSubject(c.user)
	s.mu.Lock()
	u := s.users[subject]
	if u == nil {
		u = &userSubs{ready: make(chan struct{}), conns: map[*conn]struct{}{},
			invites: rate.NewLimiter(rate.Limit(s.cfg.InviteRate), s.cfg.InviteBurst)}
		s.users[subject] = u
		u.sub, u.err = s.nc.ChanSubscribe(subject, s.deliveries)
		if u.err == nil {
			s.mu.Unlock()
			u.err = s.nc.FlushTimeout(s.cfg.RouterAttempt)
			s.mu.Lock()
		}
		if u.err != nil { // forget it, so the user's next connection tries again
			if s.users[subject] == u {
				delete(s.users, subject)
			}
			if u.sub != nil {
				_ = u.sub.Unsubscribe()
			}
		}
		close(u.ready)
	}
	u.conns[c] = struct{}{}
	s.conns[c] = struct{}{}
	c.invites = u.invites
	s.mu.Unlock()
	<-u.ready
	if u.err != nil {
		s.unsubscribe(c)
		return fmt.Errorf("gateway: subscribe: %w", u.err)
	}
	return nil
}

// unsubscribe forgets c and drops the user's subscription with its last
// local connection.
func (s *Server) unsubscribe(c *conn) {
	subject := s.names.UserSubject(c.user)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	u := s.users[subject]
	if u == nil {
		return
	}
	if _, ok := u.conns[c]; !ok {
		return
	}
	delete(u.conns, c)
	if len(u.conns) == 0 {
		delete(s.users, subject)
		if u.sub != nil {
			_ = u.sub.Unsubscribe()
		}
	}
}

// dispatch delivers what arrives on the users' subjects and from the
// routers to their local connections. One goroutine keeps each user's
// deliveries in order; it never blocks on a client (enqueue does not block).
//
// It is the one hand-off between NATS and the connections: nats.go hands
// every message to a goroutine other than its reader, either to a channel
// (ChanSubscribe, here: one channel and one goroutine for every user's
// subscription, and NATS counts what overflows it, countDrops) or to a
// goroutine per subscription (Subscribe with a handler), which would be a
// goroutine per user and no fewer hand-offs. What it does per message is
// kept small: the delivery's header and the frame's type, call and from are
// scanned (messages.DecodeDelivery), and the frame goes on as it came.
func (s *Server) dispatch() {
	var targets []*conn
	for {
		var m *nats.Msg
		select {
		case <-s.bg.Done():
			return
		case m = <-s.deliveries:
		}
		d, frame, err := messages.DecodeDelivery(m.Data)
		if err != nil {
			s.log.Warn("undecodable delivery", "err", err)
			continue
		}
		if m.Sub == s.inbound {
			s.receive(m, d, frame)
			continue
		}
		d.Bind = nil // bindings come from routers only
		if isRoomEvent(d.Env.Type) {
			continue // and so do changes of a room (rooms.go)
		}
		targets = targets[:0]
		s.mu.Lock()
		if u := s.users[m.Subject]; u != nil {
			for c := range u.conns {
				if (d.Conn == "" || d.Conn == c.id) && d.Except != c.id {
					targets = append(targets, c)
				}
			}
		}
		s.mu.Unlock()
		if d.Control != nil { // for the gateway, not the client (replay.go)
			for _, c := range targets {
				c.control(d.Control)
			}
			continue
		}
		for _, c := range targets {
			if d.Seq > 0 {
				c.track(d) // before deliver: a gap holds this frame too
			}
			c.deliver(d.ID, &d.Env, frame, nil)
		}
	}
}

// receive delivers a router's delivery to the connections it names and
// answers with a receipt naming those that are not here (any more), so
// the router looks for them again. A repeat (same id) is dropped by the
// connection.
func (s *Server) receive(m *nats.Msg, d *messages.Delivery, frame []byte) {
	var targets []*conn
	s.mu.Lock()
	if u := s.users[s.names.UserSubject(d.User)]; u != nil {
		for c := range u.conns { // two sockets share an id while one resumes it
			if slices.Contains(d.Conns, c.id) {
				targets = append(targets, c)
			}
		}
	}
	s.mu.Unlock()
	held := make(map[string]bool, len(d.Conns))
	for _, c := range targets {
		if c.deliver(d.ID, &d.Env, frame, d.Bind) {
			held[c.id] = true
		}
	}
	var missing []string
	for _, id := range d.Conns {
		if !held[id] {
			missing = append(missing, id)
		}
	}
	if missing != nil {
		s.recheck(d.User) // presence may name a connection of this gateway that no socket holds
	}
	receipt := receiptAllHeld
	if missing != nil {
		receipt = mustJSON(messages.Receipt{Missing: missing})
	}
	if err := m.Respond(receipt); err != nil {
		s.log.Warn("receipt", "err", err)
	}
}

// receiptAllHeld is the receipt of a delivery held for every connection it
// named (the usual one).
var receiptAllHeld = mustJSON(messages.Receipt{})

// reregister puts every attached connection back into presence after the
// gateway's heartbeat key had expired (monitors may have evicted them).
func (s *Server) reregister() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		taken, at := c.out.taken, c.presence()
		c.mu.Unlock()
		if taken || c.resuming.Load() { // a resume registers by takeover
			continue
		}
		if err := s.presence.Register(s.bg, c.user, c.id, at); err != nil {
			s.log.Warn("re-register", "conn", c.id, "err", err)
		}
	}
}

// countDrops counts deliveries NATS dropped because the dispatcher fell
// behind (slow consumer) and logs other asynchronous NATS errors.
func (s *Server) countDrops(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) {
		s.metrics.dropped.Inc()
		return
	}
	s.log.Warn("nats async error", "err", err)
}
