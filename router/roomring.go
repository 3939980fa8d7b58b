package router

import (
	"context"
	"time"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
)

// Ringing people into a room (PROTOCOL.md §14.5) and moving a 1:1 call into
// one (§14.7). A room ring is a call record with Room set: Decide rings,
// times out, rejects and cancels it as any call, and every message about
// it names the room. Accepting it joins the room instead of binding a
// call.

// reasonJoined ends a room ring that its callee answered by joining the
// room. Nobody is told it: the inviter gets accepted, the device joined.
const reasonJoined = "joined"

// roomInvite serves invite{room, to}: with MoveCall it first moves that
// call into the (new) room; then the room records the invitation and the
// ring call is made as for a 1:1 invite.
func (r *Router) roomInvite(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	if req.To == req.User || messages.ValidUserID(req.To) != nil {
		return messages.Reply{Code: messages.CodeBadRequest, Message: "cannot invite yourself"}, nil
	}
	if req.MoveCall != "" {
		if reply, err := r.moveCall(ctx, req); err != nil || reply.Code != "" {
			return reply, err
		}
	}
	ev := r.roomEvent(req, RoomInvite)
	ev.Target, ev.Call = req.To, req.Call
	out, _, err := r.changeRoom(ctx, req.Room, ev)
	if err != nil || out.Reply.Code != "" {
		return out.Reply, err
	}
	return r.invite(ctx, req)
}

// roomed names room in every message of out: a room ring's.
func roomed(out *Outcome, room string) {
	for i := range out.Effects {
		out.Effects[i].Delivery.Env.Room = room
	}
	for _, env := range out.Reply.Then {
		env.Room = room
	}
}

// acceptRoom serves the accept of room ring c (read at rev): the device
// wins the ring as for a call (Decide), then joins the room with the
// invitation as its grant. Its user's lock moves from the ring to the room
// in one compare-and-set, and the ring ends without a word (reasonJoined).
// If the room no longer admits it, the ring ends with join_failed and the
// device gets the join's error. Every step is idempotent, so a retried
// accept completes what a router that died midway began. done is false
// when the call changed under the first write: re-read, re-decide.
func (r *Router) acceptRoom(ctx context.Context, c *Call, rev uint64, ev Event) (reply messages.Reply, done bool, err error) {
	answered := c.State == Ended && c.Reason == reasonJoined && c.Callee == ev.User && c.CalleeConn == ev.Conn
	var others []Effect // the callee's other devices stop ringing
	if !answered {
		out := Decide(c, ev)
		if out.Reply.Code != "" {
			return out.Reply, true, nil
		}
		if out.Next != nil {
			stamp(c, out.Next, time.Now())
			if err := r.store.Update(ctx, out.Next, rev); err == ErrConflict {
				r.metrics.retries.Inc()
				return messages.Reply{}, false, nil
			} else if err != nil {
				return messages.Reply{}, true, err
			}
			r.callEvents(c, out.Next)
			c = out.Next
		}
		others = []Effect{ringAnswered(c, ev.Conn)}
	}
	key := messages.RoomKey(c.Room)
	seat := false // with rooms.exclusive off, the user's seat lock is claimed for the room
	if !r.cfg.Rooms.Exclusive {
		if seat, err = r.store.ClaimLock(ctx, messages.SeatKey(ev.User), ev.User, key); err != nil {
			return messages.Reply{}, true, err
		}
	}
	join := RoomEvent{Kind: RoomJoin, User: ev.User, Conn: ev.Conn, Gateway: ev.Gateway,
		Busy: !r.cfg.Rooms.Exclusive && !seat, MaxMembers: r.cfg.Rooms.MaxMembers, EmptyTimeout: r.cfg.Rooms.EmptyTimeout}
	jout, room, err := r.changeRoom(ctx, c.Room, join)
	if err != nil {
		return messages.Reply{}, true, err
	}
	if jout.Reply.Code != "" {
		if seat && room.userIn(ev.User) < 0 {
			_ = r.store.ReleaseLock(ctx, messages.SeatKey(ev.User), key)
		}
		failed := toCaller(c, messages.ReasonJoinFailed)
		failed.Delivery.Env.Room = c.Room
		r.deliver.send(ctx, append(others, failed))
		return jout.Reply, true, r.endRing(ctx, c.ID, messages.ReasonJoinFailed)
	}
	if r.cfg.Rooms.Exclusive {
		if ok, err := r.store.SwapLock(ctx, messages.BusyKey(ev.User), c.ID, key); err != nil || !ok {
			r.log.Warn("room ring: lock did not move to the room", "call", c.ID, "ok", ok, "err", err)
		}
	}
	r.deliver.send(ctx, append(others, ringAccepted(c)))
	if err := r.endRing(ctx, c.ID, reasonJoined); err != nil {
		return messages.Reply{}, true, err
	}
	r.answerRings(ctx, jout.Answered, c.ID)
	reply = jout.Reply
	reply.Call = c.ID
	return reply, true, nil
}

// ringAccepted tells the inviter of room ring c that its callee joined.
func ringAccepted(c *Call) Effect {
	return Effect{User: c.Caller, Gateway: c.CallerGateway, Delivery: messages.Delivery{
		Conn: c.CallerConn, Env: messages.Envelope{Type: messages.TypeAccepted, Call: c.ID, Room: c.Room, From: c.Callee},
	}}
}

// ringAnswered tells the callee's devices but except that room ring c was
// answered.
func ringAnswered(c *Call, except string) Effect {
	return toDevices(c, except, &messages.Envelope{
		Type: messages.TypeEnded, Call: c.ID, Reason: messages.ReasonAnsweredElsewhere, Room: c.Room,
	})
}

// answerRings ends the rings that a join used up (RoomOutcome.Answered:
// rings of the joining user into that room) but skip, the one being
// accepted, as an accept would end them: the inviter gets accepted, every
// device of the user ended{answered_elsewhere}, and the ring gives back
// the callee's lock. A ring that has ended meanwhile was told its ending.
func (r *Router) answerRings(ctx context.Context, rings []string, skip string) {
	for _, id := range rings {
		if id == skip {
			continue
		}
		c, err := r.endLive(ctx, id, reasonJoined, "")
		if err != nil {
			r.log.Warn("room ring: end a ring the join answered", "call", id, "err", err)
		}
		if c == nil {
			continue
		}
		r.release(ctx, c)
		r.deliver.send(ctx, []Effect{ringAnswered(c, ""), ringAccepted(c)})
	}
}

// endRing ends room ring id, if it is still live, with reason, telling
// nobody (the caller published what the ending means), and gives back the
// locks it holds. A ring that did not end by joining gives up its
// invitation too.
func (r *Router) endRing(ctx context.Context, id, reason string) error {
	next, err := r.endLive(ctx, id, reason, "")
	if next != nil {
		r.release(ctx, next)
		if reason != reasonJoined {
			r.uninvite(ctx, next)
		}
	}
	return err
}

// endLive ends call id with reason (naming room, if set) if it is still
// live, with compare-and-set, and returns the ended record; nil if it had
// ended already.
func (r *Router) endLive(ctx context.Context, id, reason, room string) (*Call, error) {
	for range casAttempts {
		c, rev, err := r.store.Call(ctx, id, kvutil.Leader)
		if err != nil || !c.live() {
			return nil, err
		}
		next := end(c, reason)
		if room != "" {
			next.Room = room
		}
		stamp(c, next, time.Now())
		err = r.store.Update(ctx, next, rev)
		if err == ErrConflict {
			r.metrics.retries.Inc()
			continue
		}
		if err != nil {
			return nil, err
		}
		r.countEnded(next)
		r.callEvents(c, next)
		return next, nil
	}
	return nil, errConflicts
}

// uninvite drops the invitation of room ring c, which ended unanswered.
func (r *Router) uninvite(ctx context.Context, c *Call) {
	if _, _, err := r.changeRoom(ctx, c.Room, RoomEvent{Kind: RoomUninvite, Call: c.ID}); err != nil {
		r.log.Warn("room ring: drop invitation", "call", c.ID, "err", err)
	}
}

// moveCall moves accepted call req.MoveCall, which req's connection is
// bound to, into new room req.Room (PROTOCOL.md §14.7): the room is created
// with both connections as members (joined{call} to each), both users'
// locks move to it, and the call ends with moved. A retry finds the call
// moved (or the room made) and goes on.
func (r *Router) moveCall(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	c, _, err := r.store.Call(ctx, req.MoveCall, kvutil.Leader)
	if err != nil {
		return messages.Reply{}, err
	}
	bound := c != nil && (req.User == c.Caller && req.Conn == c.CallerConn || req.User == c.Callee && req.Conn == c.CalleeConn)
	switch {
	case bound && c.State == Ended && c.Reason == messages.ReasonMoved && c.Room == req.Room:
		return messages.Reply{}, nil // a retry: moved already
	case !bound || c.State != Accepted:
		return messages.Reply{Code: messages.CodeInvalidState, Message: "this connection is not in that accepted call"}, nil
	}
	ev := r.roomEvent(req, RoomAdopt)
	ev.Call = c.ID
	ev.Pair = [2]Member{
		{User: c.Caller, Conn: c.CallerConn, Gateway: c.CallerGateway},
		{User: c.Callee, Conn: c.CalleeConn, Gateway: c.CalleeGateway},
	}
	out, _, err := r.changeRoom(ctx, req.Room, ev)
	if err != nil || out.Reply.Code != "" {
		return out.Reply, err
	}
	key := messages.RoomKey(req.Room)
	for _, user := range []string{c.Caller, c.Callee} {
		var ok bool
		if r.cfg.Rooms.Exclusive {
			ok, err = r.store.SwapLock(ctx, messages.BusyKey(user), c.ID, key)
		} else {
			ok, err = r.store.ClaimLock(ctx, messages.SeatKey(user), user, key)
		}
		if err != nil {
			return messages.Reply{}, err
		}
		if !ok {
			r.log.Warn("move call: lock did not move to the room", "call", c.ID, "room", req.Room)
		}
	}
	return messages.Reply{}, r.endMoved(ctx, c.ID, req.Room)
}

// endMoved ends call id with moved, telling both connections which room it
// moved into.
func (r *Router) endMoved(ctx context.Context, id, room string) error {
	next, err := r.endLive(ctx, id, messages.ReasonMoved, room)
	if next == nil {
		return err
	}
	moved := []Effect{toCaller(next, messages.ReasonMoved), toCallee(next, messages.ReasonMoved)}
	for i := range moved {
		moved[i].Delivery.Env.Room = room
	}
	r.deliver.send(ctx, moved)
	r.release(ctx, next) // with rooms.exclusive off, the call's locks
	return nil
}
