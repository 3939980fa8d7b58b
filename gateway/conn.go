package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// conn is one client connection. The reader goroutine (run's caller, the
// HTTP handler) handles client messages in order; the writer goroutine
// drains send. Anything may enqueue; nothing blocks on a slow client.
//
// A session outlives its socket for the resume grace: while no socket
// serves it (and while a resuming socket catches up) its frames are held in
// order, to be handed to the socket that resumes it (session.go).
type conn struct {
	s      *Server
	id     string // the session's id: kept across resumes
	user   string
	holder string // this socket's id in presence (presence.Conn.Holder)
	ws     *websocket.Conn
	send   chan outFrame // bounded; a full queue closes the client with 4003

	// from is the resume token the client presented ("" for none).
	from string
	// resumeHash is the hash in presence of the secret that resumes this
	// session (written before the socket is shared, or under mu); token is
	// the token the client was given with it.
	resumeHash string
	token      string
	prevHash   string // after a resume: the hash of the token the client used
	// resuming is set while this socket takes a session over, so that the
	// old socket of the same session answers the handover, not this one.
	resuming atomic.Bool

	ctx    context.Context // done when the connection ends
	cancel context.CancelFunc

	limit   *rate.Limiter // client messages
	abuse   *rate.Limiter // refusals: empty means sustained abuse, close 1008
	invites *rate.Limiter // shared by the user's connections on this gateway; set by subscribe
	// bytes is the bucket of the bytes of client frames, bytesAbuse that
	// of the bytes refused (framelimit.go); raw is the TCP connection
	// under ws, nil if unknown (rawconn.go).
	bytes, bytesAbuse *rate.Limiter
	raw               *rawConn

	bye       atomic.Bool // the client said bye: no resume grace
	closeOnce sync.Once
	// lastCode and lastReason are written by the reader before it queues the
	// close marker, and read by the writer after it receives it.
	lastCode   websocket.StatusCode
	lastReason string

	mu    sync.Mutex
	calls map[string]*callView // this connection's live calls; guarded by mu
	ended recentCalls          // calls recently ended here, to drop repeats; guarded by mu
	// sentIDs are the deliveries last queued on this socket, and replays
	// the calls whose signals are being replayed to it (replay.go);
	// guarded by mu.
	sentIDs recentIDs
	replays map[string]chan struct{}
	expiry  *time.Timer // closes the connection when its token expires; guarded by mu
	// holding: frames go to held instead of send (no socket serves the
	// session, or a resuming socket has not caught up yet). Guarded by mu,
	// like the rest of the hold state.
	holding   bool
	held      []heldFrame
	heldBytes int
	overflow  bool        // held outgrew its bound: frames were lost
	unsent    *outFrame   // the frame whose write failed
	taken     bool        // the session has moved on: handed over or finished
	grace     *time.Timer // ends the session when the resume grace runs out
}

// outFrame is one frame for the client, with its delivery id ("" for
// replies) so a resume can drop frames that two gateways both held.
type outFrame struct {
	id    string
	frame []byte
}

// callView is what a connection knows of one of its calls: enough to relay
// signal without asking the router. The router stays the authority: it
// creates bindings (accepted) and removes them (ended).
type callView struct {
	role     string   // "caller" or "callee"
	state    string   // "ringing" or "accepted"
	peer     string   // the other party's user id
	peerConn string   // the other party's connection, once accepted
	sent     sentRing // the signals relayed to the peer, for a replay
	// sentSeq numbers the signals relayed (sentAt: the last). From the
	// peer's socket recvSrc, every signal up to recvSeq has been seen, and
	// recvMax is the highest number heard of (replay.go).
	sentSeq uint64
	sentAt  time.Time
	recvSeq uint64
	recvMax uint64
	recvSrc string
}

func newConn(s *Server, ws *websocket.Conn, claims Claims, resume string) *conn {
	c := &conn{
		s: s, id: messages.NewID(), user: claims.Subject, holder: messages.NewID(), ws: ws, from: resume,
		send: make(chan outFrame, s.cfg.SendQueue), calls: map[string]*callView{},
		limit: rate.NewLimiter(rate.Limit(s.cfg.MessageRate), s.cfg.MessageBurst),
		abuse: rate.NewLimiter(rate.Limit(s.cfg.MessageRate/10), s.cfg.MessageBurst),
	}
	c.bytes = rate.NewLimiter(rate.Limit(s.cfg.ByteRate), s.cfg.ByteBurst)
	c.bytesAbuse = rate.NewLimiter(rate.Limit(s.cfg.ByteRate/10), s.cfg.ByteBurst)
	c.token, c.resumeHash = messages.NewResumeToken(c.id)
	c.ctx, c.cancel = context.WithCancel(s.bg)
	c.setExpiry(claims.Expires)
	return c
}

// run registers the connection (or resumes its session), welcomes it and
// serves it until it ends.
func (c *conn) run() {
	defer c.cancel()
	// The token's expiry timer (newConn) refers to c: left armed, it would
	// keep a refused or ended socket in memory until the token expires.
	defer c.stopExpiry()
	log := c.s.log.With("conn", c.id)
	prev, resuming := c.s.resumable(c)
	if err := c.s.subscribe(c); err != nil {
		log.Error("subscribe", "err", err)
		c.closeWith(messages.CloseInternal, "unavailable")
		return
	}
	var welcome []byte
	if resuming {
		var ok bool
		if welcome, ok = c.takeOver(prev); !ok {
			return
		}
	} else if welcome = c.start(); welcome == nil {
		return
	}
	// Counted before the welcome: a client that has its welcome is counted.
	c.s.metrics.connections.Inc()
	defer c.s.metrics.connections.Dec()
	if err := c.write(welcome); err != nil {
		if resuming {
			c.unrotate()
		}
		c.s.left(c)
		return
	}
	if resuming && !c.catchUp() {
		c.s.left(c)
		return
	}

	g, ctx := errgroup.WithContext(c.ctx)
	g.Go(func() error { return c.writeLoop(ctx) })
	g.Go(func() error {
		defer c.cancel() // the reader's exit ends the writer
		return c.readLoop(ctx)
	})
	_ = g.Wait()
	c.s.left(c)
}

// start registers a new session and returns its welcome, or nil when the
// connection was refused (and closed): 4004 when the user has as many
// connections as allowed (counted in the compare-and-set that registers
// this one), 1011 when it could not be counted.
func (c *conn) start() []byte {
	err := c.s.presence.RegisterLimited(c.ctx, c.user, c.id, c.presence(), c.s.cfg.MaxConnsPerUser)
	if errors.Is(err, presence.ErrTooManyConns) {
		c.s.unsubscribe(c)
		c.s.recheck(c.user) // a phantom of this gateway may take a place (reconcile.go)
		c.closeWith(messages.CloseTooManyConns, "too many connections for this user")
		return nil
	}
	if err != nil {
		c.s.log.Error("register", "conn", c.id, "err", err)
		c.s.unsubscribe(c)
		// The write may have landed: the repair removes it.
		c.s.orphaned(orphan{user: c.user, conn: c.id, holder: c.holder})
		c.closeWith(messages.CloseInternal, "unavailable")
		return nil
	}
	// A call already ringing for this user rings this device too.
	attach, err := c.s.request(c.ctx, &messages.Request{Op: messages.OpAttach, User: c.user, Conn: c.id, Gateway: c.s.id})
	if err != nil {
		c.s.log.Warn("attach", "conn", c.id, "err", err)
	}
	for _, env := range attach.Then {
		c.deliver("", env, messages.Encode(env), nil)
	}
	return c.welcome(false, nil)
}

// presence is how presence records this socket holding the session.
func (c *conn) presence() presence.Conn {
	return presence.Conn{Gateway: c.s.id, Resume: c.resumeHash, Holder: c.holder}
}

func (c *conn) welcome(resumed bool, calls []messages.CallInfo) []byte {
	if calls == nil {
		calls = []messages.CallInfo{}
	}
	w := messages.Welcome{
		User: c.user, Conn: c.id, Resume: c.token, Resumed: resumed, Calls: calls,
		ResumeGraceMS: c.s.cfg.ResumeGrace.Milliseconds(), RingTimeoutMS: c.s.cfg.RingTimeout.Milliseconds(),
		ICEServers: iceServers(c.s.cfg.ICEServers, c.user, time.Now()),
	}
	return messages.Encode(&messages.Envelope{Type: messages.TypeWelcome, Data: mustJSON(w)})
}

func (c *conn) readLoop(ctx context.Context) error {
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err != nil {
			return err
		}
		frame, limit, err := c.readFrame(r) // the rate checks (framelimit.go)
		if err != nil {
			return err
		}
		if limit != "" {
			if !c.refuse(limit, frame) {
				<-ctx.Done() // the writer's close ends ctx
				return nil
			}
			continue
		}
		if typ != websocket.MessageText {
			c.replyError("", messages.CodeBadRequest, "frames must be JSON text")
			continue
		}
		env, err := messages.Decode(frame, c.s.cfg.MaxDataBytes)
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
		case f := <-c.send:
			if f.frame == nil { // closeAfterQueue's marker
				c.closeWith(c.lastCode, c.lastReason)
				return nil
			}
			if err := c.write(f.frame); err != nil {
				c.mu.Lock()
				c.unsent = &f // held for a resume (session.go)
				c.mu.Unlock()
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
// encoding of env; id is its delivery id). Repeats are dropped: a delivery
// tried again (same id), the same call rung twice (by attach and by the
// invite), and a second accepted or ended for a call (effects are at least
// once across router crashes). It reports false when the session has moved
// on (handed over or ended), so the frame is not this socket's to deliver.
func (c *conn) deliver(id string, env *messages.Envelope, frame []byte, bind *messages.Binding) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		return c.hold(outFrame{id, frame}, env, bind)
	}
	if id != "" && c.sentIDs.has(id) {
		return true // a replay of what this socket has (replay.go), or a retry
	}
	if c.apply(id, env, bind) {
		c.enqueueLocked(outFrame{id, frame})
	}
	return true
}

// apply updates the call views for env (delivery id, "" for a router's
// reply to this connection) and reports whether the client should see it.
// Guarded by mu.
func (c *conn) apply(id string, env *messages.Envelope, bind *messages.Binding) bool {
	v := c.calls[env.Call]
	switch env.Type {
	case messages.TypeRinging:
		if v != nil && v.state == "accepted" {
			return false // a retried invite's late reply: the call has moved on
		}
	case messages.TypeIncoming:
		if v != nil || c.ended.has(env.Call) {
			return false
		}
		c.calls[env.Call] = &callView{role: "callee", state: "ringing", peer: env.From}
	case messages.TypeAccepted:
		if bind == nil {
			return true
		}
		repeat := v != nil && v.state == "accepted" && v.peerConn == bind.PeerConn
		if repeat && id != "" || c.ended.has(env.Call) {
			return false // a reply to a retried accept is answered again
		}
		role := "caller"
		if env.From == c.user {
			role = "callee"
		}
		c.calls[env.Call] = &callView{role: role, state: "accepted", peer: bind.PeerUser, peerConn: bind.PeerConn}
	case messages.TypeEnded:
		if c.ended.has(env.Call) {
			return false
		}
		c.endCall(env.Call)
	}
	return true
}

// endCall forgets a call that ended for this connection. Guarded by mu.
func (c *conn) endCall(call string) {
	delete(c.calls, call)
	c.ended.add(call)
}

// enqueue queues a reply to the client (see enqueueLocked).
func (c *conn) enqueue(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.hold(outFrame{frame: frame}, nil, nil)
		return
	}
	c.enqueueLocked(outFrame{frame: frame})
}

// enqueueLocked queues f without blocking; a client whose queue is full is
// too slow to keep up and is closed (signaling is never silently dropped).
// Guarded by mu, so that no frame slips into send once holding began.
func (c *conn) enqueueLocked(f outFrame) {
	if f.id != "" {
		c.sentIDs.add(f.id)
	}
	select {
	case c.send <- f:
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
	case c.send <- outFrame{}:
	default:
		c.closeWith(code, reason)
	}
}
