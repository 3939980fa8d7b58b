package gateway

import (
	"context"
	"encoding/json"

	"github.com/callmesh/callmesh/messages"
)

// roomView is what a connection knows of a room it is a member of: the
// member connections and their users, enough to relay the room's signal
// without asking the router. The router stays the authority: its joined,
// member_joined and member_left (a reply or a delivery of a router, never
// a gateway's: dispatch drops those) are the only changes.
type roomView struct {
	members map[string]string // member connection → its user
}

// isRoomEvent reports whether a message type changes a room's membership
// or settings: only routers send those.
func isRoomEvent(typ string) bool {
	switch typ {
	case messages.TypeJoined, messages.TypeMemberJoined, messages.TypeMemberLeft, messages.TypeLocked, messages.TypeUnlocked:
		return true
	}
	return false
}

// setRoom records room with members (joined, or a resume). Guarded by mu.
func (c *conn) setRoom(room string, members []messages.RoomMember) {
	v := &roomView{members: make(map[string]string, len(members))}
	for _, m := range members {
		v.members[m.Conn] = m.User
	}
	if c.rooms == nil {
		c.rooms = make(map[string]*roomView, 1)
	}
	c.rooms[room] = v
}

// roomMember reports whether conn of user is a member of room, as this
// connection knows it. Guarded by mu.
func (c *conn) roomMember(room, user, conn string) bool {
	v := c.rooms[room]
	return v != nil && conn != c.id && v.members[conn] == user && user != ""
}

// applyRoom updates the room views for env, a message about a room, and
// reports whether the client should see it. Guarded by mu.
func (c *conn) applyRoom(env *messages.Envelope) bool {
	v := c.rooms[env.Room]
	switch env.Type {
	case messages.TypeJoined:
		c.setRoom(env.Room, env.Members) // with call: ended{moved} ends it
	case messages.TypeMemberJoined:
		// A repeat (effects are at least once) tells the client nothing new.
		if v == nil || env.Member == nil || v.members[env.Member.Conn] == env.Member.User {
			return false
		}
		v.members[env.Member.Conn] = env.Member.User
	case messages.TypeMemberLeft:
		if v == nil || env.Member == nil || v.members[env.Member.Conn] != env.Member.User {
			return false
		}
		if env.Member.Conn == c.id { // kicked
			delete(c.rooms, env.Room)
		} else {
			delete(v.members, env.Member.Conn)
		}
	case messages.TypeLocked, messages.TypeUnlocked:
		return v != nil
	case messages.TypeSignal:
		return c.roomMember(env.Room, env.From, env.FromConn)
	case messages.TypeAccepted, messages.TypeEnded:
		// The end of a room ring, or of a call that moved into a room.
		if c.ended.has(env.Call) {
			return false
		}
		c.endCall(env.Call)
	case messages.TypeIncoming:
		if c.calls[env.Call] != nil || c.ended.has(env.Call) {
			return false
		}
		c.setCall(env.Call, &callView{role: roleCallee, state: callRinging, peer: env.From, room: env.Room})
	case messages.TypeRinging:
		return !c.ended.has(env.Call)
	}
	return true
}

// relayRoom publishes a room signal to member connection to_conn, if both
// it and this connection are members of the room as this gateway knows it;
// the receiving gateway checks the same before it hands the signal on.
// Room signal is not numbered or replayed across a gateway's crash, as a
// call's is (replay.go): it is held across a dropped socket, and a peer
// connection that lost some restarts ICE (PROTOCOL.md §14.11).
func (c *conn) relayRoom(env *messages.Envelope) {
	c.mu.Lock()
	v := c.rooms[env.Room]
	peer, ok := "", false
	if v != nil {
		peer, ok = v.members[env.ToConn]
	}
	if !ok || env.ToConn == c.id {
		c.mu.Unlock()
		c.replyError(env.ID, messages.CodeForbidden, "to_conn and this connection must both be members of the room")
		return
	}
	id := messages.NextDeliveryID()
	d := messages.Delivery{ID: id, Conn: env.ToConn, Env: messages.Envelope{
		Type: messages.TypeSignal, ID: id, Room: env.Room, From: c.user, FromConn: c.id, Data: env.Data,
	}}
	err := c.s.nc.Publish(c.s.names.UserSubject(peer), messages.EncodeDelivery(&d))
	c.mu.Unlock()
	c.answerRelayed(env.ID, "", env.Room, err) // the ack once NATS has it (ackflush.go)
}

// roomRequest forwards join, leave, kick, lock and unlock to the routers.
func (c *conn) roomRequest(ctx context.Context, env *messages.Envelope) {
	req := &messages.Request{Op: roomOps[env.Type], Room: env.Room, Target: env.Conn}
	c.roomFacts(req, env)
	if env.Type == messages.TypeJoin {
		c.awaitJoin(env.Room)
		defer c.joinDone()
	}
	c.ask(ctx, env, req, func(messages.Reply) {
		if env.Type == messages.TypeLeave {
			c.mu.Lock()
			delete(c.rooms, env.Room)
			c.mu.Unlock()
		}
	})
}

// roomOps maps room request types to router operations.
var roomOps = map[string]string{
	messages.TypeJoin:   messages.OpJoin,
	messages.TypeLeave:  messages.OpRoomLeave,
	messages.TypeKick:   messages.OpKick,
	messages.TypeLock:   messages.OpLock,
	messages.TypeUnlock: messages.OpUnlock,
}

// roomFacts adds what the session's token grants for env's room to req,
// and whether a room it creates is invite-only: data.invite_only, which is
// false by default for a join and true for a call moved into a room.
func (c *conn) roomFacts(req *messages.Request, env *messages.Envelope) {
	c.mu.Lock()
	req.Granted, req.Moderator = c.grants.Join(env.Room), c.grants.Moderate(env.Room)
	c.mu.Unlock()
	req.Room = env.Room
	moving := env.Type == messages.TypeInvite && env.Call != ""
	if moving {
		req.MoveCall = env.Call
	}
	var opts struct {
		InviteOnly *bool `json:"invite_only"`
	}
	req.InviteOnly = moving
	if env.Type == messages.TypeJoin || moving {
		if json.Unmarshal(env.Data, &opts) == nil && opts.InviteOnly != nil {
			req.InviteOnly = *opts.InviteOnly
		}
	}
}

// joinWait is a join in flight and the deliveries about its room that
// arrived meanwhile. The answer to a join (ack, then joined: the members
// so far) comes back on the router request; what changes after it
// (member_joined, member_left, and the newer members' signals, offers
// first) comes through the delivery subjects and the members' gateways,
// and can arrive first: a member admitted right after this connection is
// told to it as soon as its own join is written. Applied before joined,
// such a delivery would be dropped (no room yet) or overwritten by the
// older list, and the client would never learn of that member. So they
// wait, in order, and follow the answer.
type joinWait struct {
	room   string
	frames []heldFrame
}

// awaitJoin makes room's deliveries wait until joinDone. A connection has
// one request in flight at a time (handle runs on its reader).
func (c *conn) awaitJoin(room string) {
	c.mu.Lock()
	c.joining = &joinWait{room: room}
	c.mu.Unlock()
}

// joinDone delivers, in order, what waited for the join's answer.
func (c *conn) joinDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.joining
	c.joining = nil
	if w == nil {
		return
	}
	for _, f := range w.frames {
		c.deliverLocked(f.id, f.env, f.frame, f.bind)
	}
}

// waitForJoin keeps a delivery (id set: not a router's reply) about the
// room of the join in flight, and reports whether it did. Past the send
// queue's size it keeps no more: those go on at once, as before. Guarded
// by mu.
func (c *conn) waitForJoin(id string, env *messages.Envelope, frame []byte, bind *messages.Binding) bool {
	w := c.joining
	if w == nil || id == "" || env.Room != w.room || len(w.frames) >= c.out.max {
		return false
	}
	w.frames = append(w.frames, heldFrame{outFrame: outFrame{id: id, frame: frame}, env: env, bind: bind})
	return true
}
