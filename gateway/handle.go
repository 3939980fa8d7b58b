package gateway

import (
	"context"
	"encoding/json"
	"time"

	"github.com/callmesh/callmesh/internal/courier"
	"github.com/callmesh/callmesh/messages"
)

// handle serves one decoded client message on the reader goroutine, so a
// connection's requests are answered in the order they were sent.
func (c *conn) handle(ctx context.Context, env *messages.Envelope) {
	switch env.Type {
	case messages.TypePing:
		c.send1(&messages.Envelope{Type: messages.TypePong, ID: env.ID})
	case messages.TypeSignal:
		if env.Room != "" {
			c.relayRoom(env)
			return
		}
		c.relay(env)
	case messages.TypeRefresh:
		c.refresh(env)
	case messages.TypeJoin, messages.TypeLeave, messages.TypeKick, messages.TypeLock, messages.TypeUnlock:
		c.roomRequest(ctx, env)
	case messages.TypeInvite:
		if env.To == c.user {
			c.replyError(env.ID, messages.CodeBadRequest, "cannot invite yourself")
			return
		}
		if !c.invites.Allow() {
			c.replyError(env.ID, messages.CodeRateLimited, "too many invites; slow down")
			return
		}
		call := messages.NewID()
		req := &messages.Request{Op: messages.OpInvite, Call: call, To: env.To, Data: env.Data}
		if env.Room != "" {
			c.roomFacts(req, env)
		}
		answered := c.ask(ctx, env, req, func(messages.Reply) {
			c.mu.Lock()
			if c.calls[call] == nil { // a retried invite may reply after accepted arrived
				c.setCall(call, &callView{role: roleCaller, state: callRinging, peer: env.To})
			}
			c.mu.Unlock()
		})
		if !answered {
			c.s.withdraw(c.user, c.id, call)
		}
	case messages.TypeAccept:
		c.mu.Lock()
		room := ""
		if v := c.calls[env.Call]; v != nil {
			room = v.room // a room ring: accepting joins the room
		}
		c.mu.Unlock()
		if room != "" {
			c.awaitJoin(room)
			defer c.joinDone()
		}
		c.ask(ctx, env, &messages.Request{Op: messages.OpAccept, Call: env.Call}, func(reply messages.Reply) {
			if reply.Room != "" { // a room ring answered: the device joined the room
				c.mu.Lock()
				c.endCall(env.Call)
				c.mu.Unlock()
			}
		})
	case messages.TypeReject, messages.TypeHangup:
		op := messages.OpReject
		if env.Type == messages.TypeHangup {
			op = messages.OpHangup
		}
		c.ask(ctx, env, &messages.Request{Op: op, Call: env.Call}, func(messages.Reply) {
			c.mu.Lock()
			c.endCall(env.Call)
			c.mu.Unlock()
		})
	}
}

// ask forwards a request to the routers. On success it runs ok, acks the
// client and then sends the reply's follow-up messages in order (ringing or
// ended after an invite, accepted after an accept). It reports whether a
// router answered for sure: false when none did in time or one failed
// midway (the request may have taken effect all the same).
func (c *conn) ask(ctx context.Context, env *messages.Envelope, req *messages.Request, ok func(messages.Reply)) (answered bool) {
	req.User, req.Conn, req.Gateway = c.user, c.id, c.s.id
	reply, err := c.s.request(ctx, req)
	if err != nil {
		c.replyError(env.ID, messages.CodeUnavailable, "the call service is unavailable; retry")
		return false
	}
	if reply.Code != "" {
		c.replyError(env.ID, reply.Code, reply.Message)
		return reply.Code != messages.CodeInternal
	}
	if ok != nil {
		ok(reply)
	}
	c.send1(messages.RoomAck(env.ID, reply.Call, reply.Room))
	for _, then := range reply.Then {
		c.deliver("", then, messages.Encode(then), reply.Bind)
	}
	return true
}

// withdraw ends an invite whose caller was told it failed: the router may
// have rung the callee all the same (the answer was lost, or came too
// late), which would leave the callee ringing and the caller busy until
// the ring timeout. It hangs the call up, in the background, trying again
// until a router answers or the ring timeout has passed; a hangup of a call
// that was never made is harmless (not_found).
func (s *Server) withdraw(user, conn, call string) {
	s.goRun(func() {
		ctx, cancel := context.WithTimeout(s.bg, s.cfg.RingTimeout)
		defer cancel()
		req := &messages.Request{Op: messages.OpHangup, User: user, Conn: conn, Gateway: s.id, Call: call}
		for try := 1; ; try++ {
			if reply, err := s.request(ctx, req); err == nil && reply.Code != messages.CodeInternal {
				return
			}
			select {
			case <-ctx.Done():
				s.log.Warn("withdraw invite: no router answered", "call", call)
				return
			case <-time.After(courier.Backoff(try)):
			}
		}
	})
}

// relay publishes a signal to the other party's bound connection, and keeps
// it for a replay (replay.go). Only the two connections of an accepted call
// are bound; the binding came from the router, so no KV read is on this
// path. The signal's delivery id is its id for the receiving client. Its
// ack waits until the NATS server has it (ackflush.go).
func (c *conn) relay(env *messages.Envelope) {
	c.mu.Lock()
	view := c.calls[env.Call]
	switch {
	case view == nil:
		c.mu.Unlock()
		c.replyError(env.ID, messages.CodeForbidden, "this connection is not in that call")
		return
	case view.state != callAccepted:
		c.mu.Unlock()
		c.replyError(env.ID, messages.CodeInvalidState, "signal is relayed only once the call is accepted")
		return
	}
	id := messages.NextDeliveryID()
	d := messages.Delivery{ID: id, Conn: view.peerConn, Seq: view.sentSeq + 1, Src: c.holder, Env: messages.Envelope{
		Type: messages.TypeSignal, ID: id, Call: env.Call, From: c.user, Data: env.Data,
	}}
	frame := messages.EncodeDelivery(&d)
	err := c.s.nc.Publish(c.s.names.UserSubject(view.peer), frame)
	if err == nil {
		view.sent.add(frame)
		view.sentSeq++
		view.sentAt = time.Now()
	}
	c.mu.Unlock()
	c.answerRelayed(env.ID, env.Call, "", err) // the ack once NATS has it (ackflush.go)
}

// refresh replaces the session's token with a fresh one of the same user.
func (c *conn) refresh(env *messages.Envelope) {
	var r messages.RefreshData
	_ = json.Unmarshal(env.Data, &r) // Decode checked it
	claims, err := c.s.verifier.Verify(r.Token)
	switch {
	case err != nil:
		c.replyError(env.ID, messages.CodeForbidden, "token refused: "+err.Error())
	case claims.Subject != c.user:
		c.replyError(env.ID, messages.CodeForbidden, "the new token is for another user")
	default:
		c.mu.Lock()
		c.grants = claims.Grants
		c.mu.Unlock()
		c.setExpiry(claims.Expires)
		c.send1(messages.Ack(env.ID, ""))
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("gateway: marshal: " + err.Error())
	}
	return b
}
