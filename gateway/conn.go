package gateway

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/callmesh/callmesh/messages"
)

// conn is one client connection. The reader goroutine (run's caller, the
// HTTP handler) handles client messages in order; the writer goroutine
// drains send. Anything may enqueue; nothing blocks on a slow client.
type conn struct {
	s      *Server
	id     string
	user   string
	resume string
	ws     *websocket.Conn
	send   chan []byte // bounded; a full queue closes the client with 4003

	ctx    context.Context // done when the connection ends
	cancel context.CancelFunc

	limit   *rate.Limiter // client messages
	abuse   *rate.Limiter // refusals: empty means sustained abuse, close 1008
	invites *rate.Limiter // shared by the user's connections on this gateway; set by subscribe

	bye       atomic.Bool // the client said bye: no resume grace
	detached  atomic.Bool // the socket is gone; deliveries are dropped
	closeOnce sync.Once
	// lastCode and lastReason are written by the reader before it queues the
	// close marker, and read by the writer after it receives it.
	lastCode   websocket.StatusCode
	lastReason string

	mu     sync.Mutex
	calls  map[string]*callView // this connection's live calls; guarded by mu
	expiry *time.Timer          // closes the connection when its token expires; guarded by mu
}

// callView is what a connection knows of one of its calls: enough to relay
// signal without asking the router. The router stays the authority: it
// creates bindings (accepted) and removes them (ended).
type callView struct {
	role     string // "caller" or "callee"
	state    string // "ringing" or "accepted"
	peer     string // the other party's user id
	peerConn string // the other party's connection, once accepted
}

func newConn(s *Server, ws *websocket.Conn, claims Claims) *conn {
	c := &conn{
		s: s, id: messages.NewID(), user: claims.Subject, resume: messages.NewID(), ws: ws,
		send: make(chan []byte, s.cfg.SendQueue), calls: map[string]*callView{},
		limit: rate.NewLimiter(rate.Limit(s.cfg.MessageRate), s.cfg.MessageBurst),
		abuse: rate.NewLimiter(rate.Limit(s.cfg.MessageRate/10), s.cfg.MessageBurst),
	}
	c.ctx, c.cancel = context.WithCancel(s.bg)
	c.setExpiry(claims.Expires)
	return c
}

// run registers the connection, welcomes it and serves it until it ends.
func (c *conn) run() {
	defer c.cancel()
	log := c.s.log.With("conn", c.id)
	if err := c.s.subscribe(c); err != nil {
		log.Error("subscribe", "err", err)
		c.closeWith(messages.CloseInternal, "unavailable")
		return
	}
	if max := c.s.cfg.MaxConnsPerUser; max > 0 {
		conns, err := c.s.presence.Conns(c.ctx, c.user)
		if err == nil && len(conns) >= max {
			c.s.unsubscribe(c)
			c.closeWith(messages.CloseTooManyConns, "too many connections for this user")
			return
		}
	}
	if err := c.s.presence.Register(c.ctx, c.user, c.id, c.s.id); err != nil {
		log.Error("register", "err", err)
		c.s.unsubscribe(c)
		c.closeWith(messages.CloseInternal, "unavailable")
		return
	}
	// A call already ringing for this user rings this device too.
	attach, err := c.s.request(c.ctx, &messages.Request{Op: messages.OpAttach, User: c.user, Conn: c.id, Gateway: c.s.id})
	if err != nil {
		log.Warn("attach", "err", err)
	}
	if err := c.write(c.welcome()); err != nil {
		c.s.left(c)
		return
	}
	c.s.metrics.connections.Inc()
	defer c.s.metrics.connections.Dec()
	for _, env := range attach.Then {
		c.deliver(env, messages.Encode(env), nil)
	}

	g, ctx := errgroup.WithContext(c.ctx)
	g.Go(func() error { return c.writeLoop(ctx) })
	g.Go(func() error {
		defer c.cancel() // the reader's exit ends the writer
		return c.readLoop(ctx)
	})
	_ = g.Wait()
	c.stopExpiry()
	c.s.left(c)
}

func (c *conn) welcome() []byte {
	w := messages.Welcome{
		User: c.user, Conn: c.id, Resume: c.resume,
		ResumeGraceMS: c.s.cfg.ResumeGrace.Milliseconds(), RingTimeoutMS: c.s.cfg.RingTimeout.Milliseconds(),
		ICEServers: iceServers(c.s.cfg.ICEServers, c.user, time.Now()), Calls: []messages.CallInfo{},
	}
	return messages.Encode(&messages.Envelope{Type: messages.TypeWelcome, Data: mustJSON(w)})
}

func (c *conn) readLoop(ctx context.Context) error {
	for {
		typ, frame, err := c.ws.Read(ctx)
		if err != nil {
			return err
		}
		allowed := c.limit.Allow()
		if !allowed && !c.abuse.Allow() {
			// Close once the errors already queued have been written, so the
			// client can see why; the writer's close ends ctx.
			c.closeAfterQueue(messages.ClosePolicy, "message rate limit exceeded again and again")
			<-ctx.Done()
			return nil
		}
		if typ != websocket.MessageText {
			c.replyError("", messages.CodeBadRequest, "frames must be JSON text")
			continue
		}
		env, err := messages.Decode(frame, c.s.cfg.MaxDataBytes)
		if !allowed {
			// Refusals are answered while the client reads its answers; a
			// flood that does not is refused silently rather than
			// overflowing its own queue, until the abuse limit closes it.
			if len(c.send) < cap(c.send)/2 {
				id := ""
				if err == nil {
					id = env.ID
				}
				c.replyError(id, messages.CodeRateLimited, "too many messages; slow down")
			}
			continue
		}
		if err != nil {
			de := err.(*messages.DecodeError)
			c.replyError(de.ID, de.Code, de.Message)
			continue
		}
		c.s.metrics.received.WithLabelValues(env.Type).Inc()
		if env.Type == messages.TypeBye {
			c.bye.Store(true)
			c.closeWith(messages.CloseNormal, "bye")
			return nil
		}
		c.handle(ctx, env)
	}
}

func (c *conn) writeLoop(ctx context.Context) error {
	ping := time.NewTicker(c.s.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case frame := <-c.send:
			if frame == nil { // closeAfterQueue's marker
				c.closeWith(c.lastCode, c.lastReason)
				return nil
			}
			if err := c.write(frame); err != nil {
				return err
			}
		case <-ping.C:
			// Ping waits for the pong; it must not hold up writes.
			go func() {
				pctx, cancel := context.WithTimeout(ctx, c.s.cfg.PingInterval)
				defer cancel()
				if err := c.ws.Ping(pctx); err != nil && ctx.Err() == nil {
					c.closeWith(messages.ClosePolicy, "no pong")
				}
			}()
		}
	}
}

func (c *conn) write(frame []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, frame)
}

// deliver updates the connection's view of its calls and queues frame (the
// encoding of env). A duplicate incoming (the same call rung twice, by
// attach and by the invite) is dropped.
func (c *conn) deliver(env *messages.Envelope, frame []byte, bind *messages.Binding) {
	if c.detached.Load() {
		return
	}
	c.mu.Lock()
	switch env.Type {
	case messages.TypeRinging:
		if v := c.calls[env.Call]; v != nil && v.state == "accepted" {
			c.mu.Unlock()
			return // a retried invite's late reply: the call has moved on
		}
	case messages.TypeIncoming:
		if _, dup := c.calls[env.Call]; dup {
			c.mu.Unlock()
			return
		}
		c.calls[env.Call] = &callView{role: "callee", state: "ringing", peer: env.From}
	case messages.TypeAccepted:
		if bind != nil {
			role := "caller"
			if env.From == c.user {
				role = "callee"
			}
			c.calls[env.Call] = &callView{role: role, state: "accepted", peer: bind.PeerUser, peerConn: bind.PeerConn}
		}
	case messages.TypeEnded:
		delete(c.calls, env.Call)
	}
	c.mu.Unlock()
	c.enqueue(frame)
}

// enqueue queues frame without blocking; a client whose queue is full is
// too slow to keep up and is closed (signaling is never silently dropped).
func (c *conn) enqueue(frame []byte) {
	select {
	case c.send <- frame:
	default:
		go c.closeWith(messages.CloseTooSlow, "too slow: send queue overflow")
	}
}

func (c *conn) send1(env *messages.Envelope) { c.enqueue(messages.Encode(env)) }

func (c *conn) replyError(id, code, message string) {
	c.s.metrics.refused.WithLabelValues(code).Inc()
	c.send1(messages.Error(id, code, message))
}

// closeWith closes the connection with a close code, once.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.s.metrics.closed.WithLabelValues(strconv.Itoa(int(code))).Inc()
		_ = c.ws.Close(code, reason)
		c.cancel()
	})
}

// closeAfterQueue closes the connection once the frames queued before it are
// written (at once if the queue is full). Called by the reader only.
func (c *conn) closeAfterQueue(code websocket.StatusCode, reason string) {
	c.lastCode, c.lastReason = code, reason
	select {
	case c.send <- nil:
	default:
		c.closeWith(code, reason)
	}
}

// shutdown closes the connection because the gateway is going away.
func (c *conn) shutdown() { c.closeWith(messages.CloseGoingAway, "server shutting down") }

// left handles the end of c's socket: with bye at once, otherwise after the
// resume grace, its calls end and it leaves presence. On shutdown nothing is
// ended here: the routers evict the gateway's connections after the grace.
func (s *Server) left(c *conn) {
	c.detached.Store(true)
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	switch {
	case draining:
		s.unsubscribe(c)
	case c.bye.Load() || s.cfg.ResumeGrace == 0:
		s.finish(c)
	default:
		time.AfterFunc(s.cfg.ResumeGrace, func() { s.finish(c) })
	}
}

// finish removes c from presence and tells the routers it is gone.
func (s *Server) finish(c *conn) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if !draining {
		if _, err := s.presence.Unregister(s.bg, c.user, c.id, s.id); err != nil {
			s.log.Warn("unregister", "conn", c.id, "err", err)
		}
		req := &messages.Request{Op: messages.OpLeave, User: c.user, Conn: c.id, Gateway: s.id, Bye: c.bye.Load()}
		if _, err := s.request(s.bg, req); err != nil {
			s.log.Warn("leave", "conn", c.id, "err", err)
		}
	}
	s.unsubscribe(c)
}
