package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// conn is one client connection. Its reader goroutine (run) handles client
// messages in order; a writer goroutine, started while there is something
// to write (writer.go), drains its outbox. Anything may queue; nothing
// blocks on a slow client.
//
// A session outlives its socket for the resume grace: while no socket
// serves it (and while a resuming socket catches up) its frames are held in
// order, to be handed to the socket that resumes it (outbox.go, session.go).
//
// Lock ordering: Server.mu before conn.mu before rawConn.mu.
type conn struct {
	// Set before the conn is shared (newConn, serveWS, and run before it
	// subscribes: resumable may change id and token), then read-only.
	s      *Server
	id     string // the session's id: kept across resumes
	user   string
	holder string // this socket's id in presence (presence.Conn.Holder)
	ws     *websocket.Conn
	raw    *rawConn // the TCP connection under ws, nil if unknown (rawconn.go)
	from   string   // the resume token the client presented ("" for none)
	token  string   // the resume token the client is given
	ctx    context.Context
	cancel context.CancelFunc // ends ctx: the connection ends
	// invites is shared by the user's connections on this gateway; set by
	// subscribe, before the reader reads.
	invites *rate.Limiter

	// Owned by the reader (run). limit is the bucket of client messages,
	// abuse that of refusals (empty means sustained abuse, close 1008);
	// bytes is the bucket of the bytes of client frames, bytesAbuse that
	// of the bytes refused (framelimit.go). abuse and bytesAbuse are made
	// at the first refusal: a bucket never used is full, as a new one is.
	limit, abuse      *rate.Limiter
	bytes, bytesAbuse *rate.Limiter
	prevHash          string // after a resume: the hash of the token the client used

	// Safe for concurrent use.
	// resuming is set while this socket takes a session over, so that the
	// old socket of the same session answers the handover, not this one.
	resuming  atomic.Bool
	bye       atomic.Bool // the client said bye: no resume grace
	closeOnce sync.Once
	// writers counts the writer while one runs: the reader waits for it
	// before the session is held, so that what it could not write is kept.
	writers sync.WaitGroup

	// ackRound is the flush round this connection last has acks in
	// (ackflush.go). Guarded by s.acks.mu.
	ackRound uint64

	mu sync.Mutex
	// Guarded by mu.
	// resumeHash is the hash in presence of the secret that resumes this
	// session (the reader writes it before the socket is shared).
	resumeHash string
	calls      map[string]*callView     // this connection's live calls; nil until one
	rooms      map[string]*roomView     // the rooms this connection is a member of; nil until one
	joining    *joinWait                // the join in flight and the room's deliveries meanwhile; nil if none
	grants     Grants                   // the room grants of the session's current token
	ended      recentCalls              // calls recently ended here, to drop repeats
	replays    map[string]chan struct{} // the calls whose signals are being replayed (replay.go)
	expiry     *time.Timer              // closes the connection when its token expires (expiry.go)
	pinger     *time.Timer              // the next ping (writer.go)
	out        outbox                   // the queue and the hold
}

func newConn(s *Server, ws *websocket.Conn, claims Claims, resume string) *conn {
	c := &conn{
		s: s, id: messages.NewID(), user: claims.Subject, holder: messages.NewID(), ws: ws, from: resume,
		limit: rate.NewLimiter(rate.Limit(s.cfg.MessageRate), s.cfg.MessageBurst),
	}
	c.out.max = s.cfg.SendQueue
	c.bytes = rate.NewLimiter(rate.Limit(s.cfg.ByteRate), s.cfg.ByteBurst)
	c.token, c.resumeHash = messages.NewResumeToken(c.id)
	c.ctx, c.cancel = context.WithCancel(s.bg)
	c.grants = claims.Grants
	c.setExpiry(claims.Expires)
	return c
}

// run registers the connection (or resumes its session) and welcomes it,
// on the goroutine that accepted it, then starts its reader (read) on a
// goroutine of its own, whose stack is no deeper than reading needs, and
// returns. It reports whether the reader was started; then done runs when
// the connection has ended.
func (c *conn) run(done func()) (reading bool) {
	welcome, resuming := c.open()
	if welcome == nil {
		c.end()
		return false
	}
	// Counted before the welcome: a client that has its welcome is counted.
	c.s.metrics.connections.Inc()
	if _, err := c.writeFrames([]outFrame{{frame: welcome}}); err != nil {
		if resuming {
			c.unrotate()
		}
		c.s.left(c)
		c.s.metrics.connections.Dec()
		c.end()
		return false
	}
	if resuming && !c.catchUp() {
		c.s.left(c)
		c.s.metrics.connections.Dec()
		c.end()
		return false
	}
	c.serve()
	reading = c.s.goRun(func() {
		defer done()
		c.read()
	})
	if !reading { // the gateway has stopped
		c.closeWith(messages.CloseRestart, "server restarting; resume elsewhere")
		c.read()
	}
	return reading
}

// open registers the connection, or resumes its session, and returns its
// welcome; nil when it was refused (and closed).
func (c *conn) open() (welcome []byte, resuming bool) {
	prev, resuming := c.s.resumable(c)
	if err := c.s.subscribe(c); err != nil {
		c.s.log.Error("subscribe", "conn", c.id, "err", err)
		c.closeWith(messages.CloseInternal, "unavailable")
		return nil, resuming
	}
	if resuming {
		welcome, _ = c.takeOver(prev)
		return welcome, true
	}
	return c.start(), false
}

// read serves the client's messages until the connection ends, then holds
// the session for a resume (or ends it).
func (c *conn) read() {
	defer c.end()
	defer c.s.metrics.connections.Dec()
	_ = c.readLoop(c.ctx)
	c.cancel() // the reader's exit ends the writer's socket
	c.mu.Lock()
	c.out.end()
	c.pinger.Stop()
	c.mu.Unlock()
	c.writers.Wait()
	c.s.left(c)
}

// end lets go of what the connection holds outside the session.
func (c *conn) end() {
	c.cancel()
	// The token's expiry timer (newConn) refers to c: left armed, it would
	// keep a refused or ended socket in memory until the token expires.
	c.stopExpiry()
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
	return c.welcome(false, nil, nil)
}

// presence is how presence records this socket holding the session.
func (c *conn) presence() presence.Conn {
	return presence.Conn{Gateway: c.s.id, Resume: c.resumeHash, Holder: c.holder}
}

func (c *conn) welcome(resumed bool, calls []messages.CallInfo, rooms []messages.RoomInfo) []byte {
	if calls == nil {
		calls = []messages.CallInfo{}
	}
	if rooms == nil {
		rooms = []messages.RoomInfo{}
	}
	w := messages.Welcome{
		User: c.user, Conn: c.id, Resume: c.token, Resumed: resumed, Calls: calls, Rooms: rooms,
		ResumeGraceMS: c.s.cfg.ResumeGrace.Milliseconds(), RingTimeoutMS: c.s.cfg.RingTimeout.Milliseconds(),
		ICEServers: iceServers(c.s.cfg.ICEServers, c.user, time.Now()), ICETransportPolicy: c.s.cfg.icePolicy(),
	}
	return messages.Encode(&messages.Envelope{Type: messages.TypeWelcome, Data: mustJSON(w)})
}

func (c *conn) readLoop(ctx context.Context) error {
	// The end of ctx closes the socket, which ends a read. Reads get a
	// context that never ends: coder/websocket would otherwise arm (and
	// disarm) a context.AfterFunc for every frame.
	context.AfterFunc(ctx, func() { _ = c.ws.CloseNow() })
	for {
		typ, r, err := c.ws.Reader(context.WithoutCancel(ctx))
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
		c.s.metrics.receivedBy[env.Type].Inc() // Decode accepts client types only
		if env.Type == messages.TypeBye {
			c.bye.Store(true)
			c.closeWith(messages.CloseNormal, "bye")
			return nil
		}
		c.handle(ctx, env)
	}
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
	return c.deliverLocked(id, env, frame, bind)
}

// deliverLocked is deliver with mu held. A delivery about the room of a
// join in flight waits for the join's answer (joinWait).
func (c *conn) deliverLocked(id string, env *messages.Envelope, frame []byte, bind *messages.Binding) bool {
	if c.waitForJoin(id, env, frame, bind) {
		return true
	}
	if c.out.holding {
		return c.hold(heldFrame{outFrame: outFrame{id: id, frame: frame}, env: env, bind: bind})
	}
	if id != "" && c.out.sent.has(id) {
		return true // a replay of what this socket has (replay.go), or a retry
	}
	if c.apply(id, env, bind) {
		c.enqueueLocked(outFrame{id: id, frame: frame})
	}
	return true
}

// apply updates the call views for env (delivery id, "" for a router's
// reply to this connection) and reports whether the client should see it.
// Guarded by mu.
func (c *conn) apply(id string, env *messages.Envelope, bind *messages.Binding) bool {
	if env.Room != "" {
		return c.applyRoom(env)
	}
	v := c.calls[env.Call]
	switch env.Type {
	case messages.TypeRinging:
		if v.accepted() {
			return false // a retried invite's late reply: the call has moved on
		}
	case messages.TypeIncoming:
		if v != nil || c.ended.has(env.Call) {
			return false
		}
		c.setCall(env.Call, &callView{role: roleCallee, state: callRinging, peer: env.From})
	case messages.TypeAccepted:
		if bind == nil {
			return true
		}
		repeat := v.accepted() && v.peerConn == bind.PeerConn
		if repeat && id != "" || c.ended.has(env.Call) {
			return false // a reply to a retried accept is answered again
		}
		role := roleCaller
		if env.From == c.user {
			role = roleCallee
		}
		c.setCall(env.Call, &callView{role: role, state: callAccepted, peer: bind.PeerUser, peerConn: bind.PeerConn})
	case messages.TypeEnded:
		if c.ended.has(env.Call) {
			return false
		}
		c.endCall(env.Call)
	}
	return true
}

// enqueue queues a reply to the client (see enqueueLocked), or holds it
// while the session is held.
func (c *conn) enqueue(f outFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out.holding {
		c.hold(heldFrame{outFrame: f})
		return
	}
	c.enqueueLocked(f)
}

// enqueueLocked queues f without blocking; a client whose queue is full is
// too slow to keep up and is closed (signaling is never silently dropped).
// Guarded by mu, so that no frame slips into the queue once holding began.
func (c *conn) enqueueLocked(f outFrame) {
	start, full := c.out.push(f)
	if full {
		c.s.goRun(func() { c.closeWith(messages.CloseTooSlow, "too slow: send queue overflow") })
		return
	}
	if start {
		c.startWriter()
	}
}

func (c *conn) send1(env *messages.Envelope) { c.enqueue(outFrame{frame: messages.Encode(env)}) }

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
	c.mu.Lock()
	start, full := c.out.closeAfter(code, reason)
	if start {
		c.startWriter()
	}
	c.mu.Unlock()
	if full {
		c.closeWith(code, reason)
	}
}
