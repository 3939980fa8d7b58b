package router

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
)

// Rooms (PROTOCOL.md §14, docs/rooms.md). A room is one record; every
// change is DecideRoom on the record as read, stored with compare-and-set
// on its revision. A member's user holds a lock naming the room's key: its
// busy lock (rooms.exclusive), or its seat lock.

// roomCASAttempts bounds the re-read/re-decide rounds of one room change.
// Joins race on one key: of n joins at once, the unluckiest loses up to
// n-1 rounds, so the bound is larger than a call's, with a jittered pause
// between rounds (roomBackoff) that spreads the losers out.
const roomCASAttempts = 128

// roomBackoff is the pause after the n-th lost round of a room change.
func roomBackoff(n int) time.Duration {
	ceiling := time.Millisecond << min(n, 5) // 2 ms … 32 ms
	return rand.N(ceiling) + time.Millisecond/4
}

// roomLockKey is the key of the lock that user's room membership holds.
func (r *Router) roomLockKey(user string) string {
	if r.cfg.Rooms.Exclusive {
		return messages.BusyKey(user)
	}
	return messages.SeatKey(user)
}

// roomEvent is the event of a room request, with the router's settings.
func (r *Router) roomEvent(req *messages.Request, kind RoomKind) RoomEvent {
	return RoomEvent{
		Kind: kind, Room: req.Room, User: req.User, Conn: req.Conn, Gateway: req.Gateway, Target: req.Target,
		Granted: req.Granted, Moderator: req.Moderator, InviteOnly: req.InviteOnly,
		MaxMembers: r.cfg.Rooms.MaxMembers, EmptyTimeout: r.cfg.Rooms.EmptyTimeout,
	}
}

// changeRoom applies ev to room id: it reads the record, decides, writes
// with compare-and-set (re-reading from the leader on a conflict, or when
// the decision writes nothing, as transition does), then publishes the
// effects and releases the lock of a member that went. It returns the
// outcome and the record as it stands after it (nil when there is none).
func (r *Router) changeRoom(ctx context.Context, id string, ev RoomEvent) (RoomOutcome, *Room, error) {
	key := messages.RoomKey(id)
	ev.Room = id
	from := kvutil.Nearest // as for a call's transition: see there
	for try := 1; try <= roomCASAttempts; try++ {
		room, rev, err := r.store.RoomAt(ctx, key, from)
		if err != nil {
			return RoomOutcome{}, nil, err
		}
		ev.Now = time.Now()
		out := DecideRoom(room, ev)
		sure := from == kvutil.Leader
		from = kvutil.Leader
		if !out.Delete && out.Next == nil && !sure {
			continue
		}
		switch {
		case out.Delete:
			err = r.store.DeleteRoom(ctx, id, rev)
		case out.Next != nil:
			err = r.store.PutRoom(ctx, out.Next, rev)
		}
		if errors.Is(err, ErrConflict) {
			r.metrics.retries.Inc()
			select {
			case <-time.After(roomBackoff(try)):
			case <-ctx.Done():
				return RoomOutcome{}, nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return RoomOutcome{}, nil, err
		}
		if out.Repeat {
			r.metrics.repeats.Inc()
		}
		r.deliver.send(ctx, out.Effects)
		after := room
		switch {
		case out.Delete:
			after = nil
		case out.Next != nil:
			after = out.Next
		}
		r.roomEvents(ev, out, room, after)
		if m := out.Released; m != nil {
			if err := r.store.ReleaseLock(ctx, r.roomLockKey(m.User), key); err != nil {
				// Stale once the record no longer lists the user (Store.stale).
				r.log.Warn("release room lock", "room", id, "err", err)
			}
		}
		return out, after, nil
	}
	return RoomOutcome{}, nil, errConflicts
}

// join admits the connection into the room, creating it if needed: it
// claims the user's lock for the room, then changes the record. A refused
// join gives the lock back unless the user is in the room after all (on
// another connection).
func (r *Router) join(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	key, lock := messages.RoomKey(req.Room), r.roomLockKey(req.User)
	claimed, err := r.store.ClaimLock(ctx, lock, req.User, key)
	if err != nil {
		return messages.Reply{}, err
	}
	ev := r.roomEvent(req, RoomJoin)
	ev.Busy = !claimed
	out, room, err := r.changeRoom(ctx, req.Room, ev)
	if err != nil {
		return messages.Reply{}, err
	}
	if claimed && out.Reply.Code != "" && room.userIn(req.User) < 0 {
		if err := r.store.ReleaseLock(ctx, lock, key); err != nil {
			r.log.Warn("release room lock", "room", req.Room, "err", err)
		}
	}
	r.answerRings(ctx, out.Answered, "")
	return out.Reply, nil
}

// roomRequest serves leave, kick, lock and unlock: one change of the record.
func (r *Router) roomRequest(ctx context.Context, req *messages.Request, kind RoomKind) (messages.Reply, error) {
	out, _, err := r.changeRoom(ctx, req.Room, r.roomEvent(req, kind))
	return out.Reply, err
}

// leaveRoom removes a connection that is gone (bye, grace over, gateway
// evicted) from the room whose key its user's lock holds.
func (r *Router) leaveRoom(ctx context.Context, key, user, conn string, bye bool) error {
	id, ok := roomIDOf(key)
	if !ok {
		return nil
	}
	ev := RoomEvent{Kind: RoomLeave, User: user, Conn: conn, Dropped: !bye}
	_, _, err := r.changeRoom(ctx, id, ev)
	return err
}

// roomIDOf returns the room id of a room's key.
func roomIDOf(key string) (string, bool) {
	if !isRoomKey(key) {
		return "", false
	}
	id, err := messages.DecodeUserID(key[len("room."):])
	return id, err == nil
}

// resumeRoom lists the room whose key the user's lock holds, if the
// resumed connection is a member, and points its deliveries at the new
// gateway; and the rings into it this connection made that still ring (a
// room ring holds no lock of its caller, so the lock does not name them).
func (r *Router) resumeRoom(ctx context.Context, key string, req *messages.Request) ([]messages.RoomInfo, []messages.ResumedCall, error) {
	id, ok := roomIDOf(key)
	if !ok {
		return nil, nil, nil
	}
	ev := RoomEvent{Kind: RoomResume, User: req.User, Conn: req.Conn, Gateway: req.Gateway}
	out, room, err := r.changeRoom(ctx, id, ev)
	if err != nil || len(out.Reply.Then) == 0 {
		return nil, nil, err
	}
	var rings []messages.ResumedCall
	for _, inv := range room.Invited {
		if inv.By != req.Conn {
			continue
		}
		c, _, err := r.store.Call(ctx, inv.Call, kvutil.Leader)
		if err != nil {
			return nil, nil, err
		}
		if c != nil && c.State == Ringing {
			rings = append(rings, messages.ResumedCall{CallInfo: messages.CallInfo{
				Call: inv.Call, State: string(Ringing), Role: "caller", Peer: inv.User, Room: id,
			}})
		}
	}
	joined := out.Reply.Then[0]
	return []messages.RoomInfo{{Room: joined.Room, Members: joined.Members}}, rings, nil
}

// expireRoom ends room id if it has been empty for its empty timeout.
func (r *Router) expireRoom(ctx context.Context, id string) {
	if _, _, err := r.changeRoom(ctx, id, RoomEvent{Kind: RoomExpire}); err != nil && ctx.Err() == nil {
		r.log.Error("room empty timeout", "room", id, "err", err)
	}
}
