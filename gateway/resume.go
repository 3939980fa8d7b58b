package gateway

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/presence"
)

// Resuming a session on this gateway, as the client's new socket c:
//
//  1. resumable: the token names a session of c's user still in presence
//     with that secret. c takes the session's id and holds its frames.
//  2. subscribe (run): from here on, this gateway receives the session's
//     deliveries too.
//  3. takeOver: presence moves the session to this socket (compare-and-set,
//     so only one resume wins and the old socket's grace no longer ends it);
//     the gateway that held it hands over what it kept meanwhile; the
//     routers list its live calls.
//     The other party of each accepted call sends its signals again
//     (replay.go): the old gateway may have died, or written some into a
//     dead socket.
//  4. welcome (resumed, with the calls and the new token that step 3 put in
//     presence: a token works once), then catchUp: the
//     handed-over frames, then what arrived here meanwhile, minus the
//     deliveries both gateways received.

// resumable reports whether c presented the token of a live session of its
// user. If so, c becomes that session (same id) and holds its frames until
// it has caught up; from says what presence must still record for the
// takeover to go through.
func (s *Server) resumable(c *conn) (from presence.Conn, ok bool) {
	if c.from == "" {
		return presence.Conn{}, false
	}
	id, secret, ok := messages.ParseResumeToken(c.from)
	if !ok {
		return presence.Conn{}, false
	}
	conns, err := s.presence.Conns(c.ctx, c.user, kvutil.Nearest)
	if _, found := conns[id]; err == nil && !found {
		conns, err = s.presence.Conns(c.ctx, c.user, kvutil.Leader) // before a fresh session
	}
	if err != nil {
		s.log.Warn("resume: read presence", "err", err)
		return presence.Conn{}, false
	}
	hash := messages.HashResumeSecret(secret)
	if cur, found := conns[id]; !found || !messages.SameHash(cur.Resume, hash) {
		return presence.Conn{}, false // ended, or not this user's: a fresh session
	}
	c.id, c.prevHash = id, hash
	c.token, c.resumeHash = messages.NewResumeToken(id)
	c.resuming.Store(true)
	c.mu.Lock()
	c.out.startHolding()
	c.mu.Unlock()
	return presence.Conn{Resume: hash}, true
}

// takeOver moves the session to c and returns its welcome and whether it
// may go on. When it may not, c has been closed.
func (c *conn) takeOver(from presence.Conn) ([]byte, bool) {
	s := c.s
	prev, ok, err := s.presence.Takeover(c.ctx, c.user, c.id, from, c.presence())
	if err != nil || !ok {
		// The grace ran out or another socket resumed it first.
		if err != nil { // or the takeover landed: the repair removes it
			s.orphaned(orphan{user: c.user, conn: c.id, holder: c.holder})
		}
		s.unsubscribe(c)
		c.closeWith(messages.CloseInternal, "the session could not be resumed; reconnect")
		return nil, false
	}
	frames := s.askHandover(c, prev.Gateway)
	c.resuming.Store(false)
	c.prependHeld(frames)
	reply, err := s.request(c.ctx, &messages.Request{Op: messages.OpResume, User: c.user, Conn: c.id, Gateway: s.id})
	if err != nil {
		// The session stays held here: the client's next resume gets it.
		s.log.Warn("resume: calls", "conn", c.id, "err", err)
		c.closeWith(messages.CloseInternal, "unavailable; resume again")
		s.left(c)
		return nil, false
	}
	infos := make([]messages.CallInfo, 0, len(reply.Calls))
	var peers []peerRef
	c.mu.Lock()
	for _, rc := range reply.Calls {
		v := &callView{role: callRoleOf(rc.Role), state: callStateOf(rc.State), peer: rc.Peer, peerConn: rc.PeerConn}
		c.setCall(rc.Call, v)
		infos = append(infos, rc.CallInfo)
		if v.state == callAccepted {
			peers = append(peers, peerRef{rc.Call, rc.Peer, rc.PeerConn})
		}
	}
	for _, room := range reply.Rooms {
		c.setRoom(room.Room, room.Members)
	}
	c.mu.Unlock()
	c.askReplays(peers) // what a dead gateway or socket lost
	s.metrics.resumed.Inc()
	return c.welcome(true, infos, reply.Rooms), true
}

// handoverPatience is how long a resume keeps asking a gateway that has no
// subscriber for its handover. A gateway subscribes at its start, so none
// means it has died (the common case, which this delay slows down) or that
// a NATS route is being rebuilt right now (rare and brief).
const handoverPatience = 250 * time.Millisecond

// askHandover asks the gateway that held the session for what it kept,
// trying again on no responders (for handoverPatience) and once after a
// timeout. A gateway that has died answers nothing: what it held is lost,
// but welcome's calls say where each call stands, and the peers' gateways
// replay the signals.
func (s *Server) askHandover(c *conn, gateway string) []messages.HeldFrame {
	data := mustJSON(messages.Handover{User: c.user, Conn: c.id})
	start := time.Now()
	timeouts := 0
	for try := 1; ; try++ {
		msg, err := s.nc.Request(s.names.GatewaySubject(gateway), data, s.cfg.RouterAttempt)
		if err == nil {
			var reply messages.HandoverReply
			if err := json.Unmarshal(msg.Data, &reply); err != nil {
				s.log.Warn("resume: bad handover", "conn", c.id, "err", err)
				return nil
			}
			return reply.Frames
		}
		switch {
		case errors.Is(err, nats.ErrNoResponders) && time.Since(start) < handoverPatience:
			time.Sleep(courier.Backoff(try))
			continue
		case errors.Is(err, nats.ErrTimeout) && timeouts == 0:
			timeouts++
			continue
		}
		s.log.Info("resume: no handover", "conn", c.id, "from", gateway, "err", err)
		return nil
	}
}

// prependHeld puts the handed-over frames before what c holds, dropping
// the deliveries that c received too. Another gateway's frames are decoded
// and validated (messages.DecodeHeld) and sent re-encoded, never as they
// came; catchUp delivers their signals only within c's calls.
func (c *conn) prependHeld(frames []messages.HeldFrame) {
	if len(frames) == 0 {
		return
	}
	seen := make(map[string]bool, len(frames))
	held := make([]heldFrame, 0, len(frames))
	for _, f := range frames {
		env, err := messages.DecodeHeld(f.Frame, c.s.cfg.MaxDataBytes)
		if err != nil || len(f.ID) > messages.MaxIDLen {
			c.s.metrics.refusedHandover.Inc()
			c.s.log.Warn("resume: handed-over frame refused", "conn", c.id, "err", err)
			continue
		}
		if f.ID != "" {
			seen[f.ID] = true
		}
		held = append(held, heldFrame{outFrame: outFrame{id: f.ID, frame: messages.Encode(env)}, env: env, handedOver: true})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.prepend(held, seen)
}

// fromPeer reports whether a handed-over signal belongs to one of c's
// accepted calls, from its peer. Guarded by mu.
func (c *conn) fromPeer(env *messages.Envelope) bool {
	if env.Room != "" {
		return c.roomMember(env.Room, env.From, env.FromConn)
	}
	v := c.calls[env.Call]
	return v.accepted() && v.peer == env.From
}

// unrotate puts back the resume secret the client still has, when the
// welcome with its new one could not be written (a token works for one
// resume: takeOver replaced it).
func (c *conn) unrotate() {
	from := presence.Conn{Resume: c.resumeHash, Holder: c.holder}
	next := presence.Conn{Gateway: c.s.id, Resume: c.prevHash, Holder: c.holder}
	if _, ok, err := c.s.presence.Takeover(c.s.bg, c.user, c.id, from, next); err != nil || !ok {
		c.s.log.Warn("resume: restore token", "conn", c.id, "ok", ok, "err", err)
		return
	}
	c.mu.Lock()
	c.resumeHash = c.prevHash
	c.mu.Unlock()
}

// catchUp writes what c holds, in order, until nothing is left; then frames
// flow through send again. It reports false if the socket failed, with
// what was not written held again.
func (c *conn) catchUp() bool {
	for {
		c.mu.Lock()
		batch := c.out.release()
		if len(batch) == 0 {
			c.out.stopHolding()
			c.mu.Unlock()
			return true
		}
		out := batch[:0]
		for _, f := range batch {
			switch {
			case f.handedOver:
				// What the old socket held: the client has not seen it, and
				// the calls came from the routers since (takeOver).
				if f.env.Type != messages.TypeSignal || c.fromPeer(f.env) {
					out = append(out, f)
				}
			case f.env == nil || c.apply(f.id, f.env, f.bind):
				out = append(out, f)
			}
		}
		c.mu.Unlock()
		frames := make([]outFrame, len(out))
		for i, f := range out {
			frames[i] = f.outFrame
		}
		if n, err := c.writeFrames(frames); err != nil {
			c.mu.Lock()
			c.out.holdAgain(out[n:])
			c.mu.Unlock()
			return false
		}
	}
}

// serveHandover answers another gateway's (or this one's) resume of a
// session held here: it hands over what was kept and closes the old socket
// if it is still open (4001).
func (s *Server) serveHandover(m *nats.Msg) {
	var h messages.Handover
	var reply messages.HandoverReply
	if json.Unmarshal(m.Data, &h) == nil {
		if c := s.session(h.User, h.Conn); c != nil {
			reply.Frames, reply.Found = c.handOver()
			if reply.Found {
				s.unsubscribe(c)
				s.goRun(func() { c.closeWith(messages.CloseTakenOver, "session resumed on another connection") })
			}
		}
	}
	if err := m.Respond(mustJSON(reply)); err != nil {
		s.log.Warn("handover reply", "conn", h.Conn, "err", err)
	}
}

// session finds the socket holding session id of user here, not counting a
// socket that is resuming it.
func (s *Server) session(user, id string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[s.names.UserSubject(user)]
	if u == nil {
		return nil
	}
	for c := range u.conns {
		if c.id == id && !c.resuming.Load() {
			return c
		}
	}
	return nil
}
