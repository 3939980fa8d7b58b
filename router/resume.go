package router

import (
	"context"

	"github.com/callmesh/callmesh/internal/kvutil"
	"github.com/callmesh/callmesh/messages"
)

// resume lists the live calls of a connection that resumed its session, so
// its new gateway can welcome it and relay its signal. A user is party to at
// most one live call, the one holding its busy lock.
//
// A member of a room gets the room with its members (the router's record
// of its gateway moves to the new one): the room whose key the user's busy
// lock holds, or with rooms.exclusive off its seat lock.
func (r *Router) resume(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	var reply messages.Reply
	id, err := r.store.BusyCall(ctx, req.User, kvutil.Leader)
	if err != nil {
		return reply, err
	}
	if isRoomKey(id) {
		reply.Rooms, reply.Calls, err = r.resumeRoom(ctx, id, req)
		return reply, err
	}
	if id != "" {
		c, _, err := r.store.Call(ctx, id, kvutil.Leader)
		if err != nil {
			return reply, err
		}
		if rc, ok := resumedCall(c, req.User, req.Conn); c.live() && ok {
			reply.Calls = []messages.ResumedCall{rc}
		}
	}
	if r.cfg.Rooms.Exclusive {
		return reply, nil
	}
	seat, err := r.store.Holder(ctx, messages.SeatKey(req.User), kvutil.Leader)
	if err != nil || seat == "" {
		return reply, err
	}
	var rings []messages.ResumedCall
	reply.Rooms, rings, err = r.resumeRoom(ctx, seat, req)
	reply.Calls = append(reply.Calls, rings...)
	return reply, err
}

// resumedCall is live call c as connection conn of user sees it, if conn is
// one of its parties: the caller's connection, the accepting callee device,
// or any callee device while it rings.
func resumedCall(c *Call, user, conn string) (messages.ResumedCall, bool) {
	info := func(role, peer, peerConn string) messages.ResumedCall {
		return messages.ResumedCall{
			CallInfo: messages.CallInfo{Call: c.ID, State: string(c.State), Role: role, Peer: peer, Room: c.Room},
			PeerConn: peerConn,
		}
	}
	switch {
	case user == c.Caller && conn == c.CallerConn:
		return info("caller", c.Callee, c.CalleeConn), true
	case user == c.Callee && c.State == Ringing:
		return info("callee", c.Caller, ""), true
	case user == c.Callee && conn == c.CalleeConn:
		return info("callee", c.Caller, c.CallerConn), true
	}
	return messages.ResumedCall{}, false
}
