package router

import (
	"context"

	"github.com/callmesh/callmesh/messages"
)

// resume lists the live calls of a connection that resumed its session, so
// its new gateway can welcome it and relay its signal. A user is party to at
// most one live call, the one holding its busy lock.
func (r *Router) resume(ctx context.Context, req *messages.Request) (messages.Reply, error) {
	id, err := r.store.BusyCall(ctx, req.User)
	if err != nil || id == "" {
		return messages.Reply{}, err
	}
	c, _, err := r.store.Call(ctx, id)
	if err != nil || !c.live() {
		return messages.Reply{}, err
	}
	if rc, ok := resumedCall(c, req.User, req.Conn); ok {
		return messages.Reply{Calls: []messages.ResumedCall{rc}}, nil
	}
	return messages.Reply{}, nil
}

// resumedCall is live call c as connection conn of user sees it, if conn is
// one of its parties: the caller's connection, the accepting callee device,
// or any callee device while it rings.
func resumedCall(c *Call, user, conn string) (messages.ResumedCall, bool) {
	info := func(role, peer, peerConn string) messages.ResumedCall {
		return messages.ResumedCall{
			CallInfo: messages.CallInfo{Call: c.ID, State: string(c.State), Role: role, Peer: peer},
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
