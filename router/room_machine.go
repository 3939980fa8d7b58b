package router

import (
	"time"

	"github.com/callmesh/callmesh/messages"
)

// RoomKind is the kind of a RoomEvent.
type RoomKind int

// Room event kinds.
const (
	// RoomJoin: a connection asks to join (join, or the accept of a ring).
	RoomJoin RoomKind = iota + 1
	// RoomLeave: a member connection leaves (leave, bye), or is gone for
	// good (not resumed within the grace, or its gateway died: Dropped).
	RoomLeave
	// RoomKick: a moderator removes member connection Target.
	RoomKick
	RoomLock
	RoomUnlock
	// RoomInvite: member Conn rings user Target into the room with ring
	// call Call (the ring itself is a Call record, decided by Decide).
	RoomInvite
	// RoomUninvite: ring Call ended unanswered; its invitation goes.
	RoomUninvite
	// RoomResume: Conn resumed on Gateway.
	RoomResume
	// RoomExpire: the room's empty timeout may have passed.
	RoomExpire
	// RoomAdopt: accepted 1:1 call Call moves into a new room with its
	// two bound connections, Pair (caller first).
	RoomAdopt
)

// RoomEvent is something that happened to a room. User and Conn are the
// authenticated sender as the gateway reported them; the other facts the
// router established (from the token, the busy lock, its config).
type RoomEvent struct {
	Kind    RoomKind
	Room    string // the room id, for a room that has no record yet
	User    string
	Conn    string
	Gateway string
	// Target is the kicked connection (kick) or the rung user (invite).
	Target string
	// Call is the ring call (invite, uninvite) or the moved call (adopt).
	Call string
	// Dropped marks a leave of a connection that did not resume.
	Dropped bool
	// Granted: the session's token grants the room (claim rooms).
	Granted bool
	// Moderator: the session's token grants moderation of the room.
	Moderator bool
	// Busy: the user's busy lock is held by another call or room.
	Busy bool
	// InviteOnly, on the join that creates the room (or an adopt).
	InviteOnly bool
	// MaxMembers and EmptyTimeout are the router's config, for a room
	// this event creates or empties.
	MaxMembers   int
	EmptyTimeout time.Duration
	// Pair are the two connections of an adopted call, caller first.
	Pair [2]Member
	Now  time.Time
}

// RoomOutcome is what DecideRoom concludes: the next record (nil when
// unchanged), whether to delete the record instead, the deliveries to send
// once the write succeeded, and the reply to the requesting gateway.
type RoomOutcome struct {
	Next   *Room
	Delete bool
	// Effects go to single member connections (Delivery.Conn always set).
	Effects []Effect
	Reply   messages.Reply
	// Answered are the ring calls of invitations this join used up: the
	// router ends them (the device answered).
	Answered []string
	// Released is the member this event removed: the router releases its
	// user's busy lock once the effects are out.
	Released *Member
	// Repeat marks an event the record already reflects: Effects are what
	// its first decision published, to publish again. Next is nil.
	Repeat bool
}

// DefaultMaxMembers is rooms.max_members unless configured.
const DefaultMaxMembers = 8

// DecideRoom is the room state machine: a pure function of the current
// record (nil when there is none) and an event, like Decide for calls. The
// router stores Next with compare-and-set (or deletes the record) and
// publishes Effects only if that succeeds, or when the outcome is a Repeat.
func DecideRoom(r *Room, ev RoomEvent) RoomOutcome {
	switch ev.Kind {
	case RoomJoin:
		return decideJoin(r, ev)
	case RoomLeave:
		return decideRoomLeave(r, ev)
	case RoomKick:
		return decideKick(r, ev)
	case RoomLock, RoomUnlock:
		return decideLock(r, ev)
	case RoomInvite:
		return decideRoomInvite(r, ev)
	case RoomUninvite:
		return decideUninvite(r, ev)
	case RoomResume:
		return decideRoomResume(r, ev)
	case RoomExpire:
		return decideRoomExpire(r, ev)
	case RoomAdopt:
		return decideAdopt(r, ev)
	}
	return roomRefuse(messages.CodeInternal, "unknown room event")
}

// maxMembers is the limit of a room ev creates.
func maxMembers(ev RoomEvent) int {
	if ev.MaxMembers <= 0 {
		return DefaultMaxMembers
	}
	return ev.MaxMembers
}

func roomRefuse(code, message string) RoomOutcome {
	return RoomOutcome{Reply: messages.Reply{Code: code, Message: message}}
}

func roomID(r *Room, ev RoomEvent) string {
	if r != nil {
		return r.ID
	}
	return ev.Room
}

func roomAck(r *Room, ev RoomEvent, then ...*messages.Envelope) messages.Reply {
	return messages.Reply{Room: roomID(r, ev), Then: then}
}

func decideJoin(r *Room, ev RoomEvent) RoomOutcome {
	if i := r.member(ev.Conn); i >= 0 {
		if r.Members[i].User != ev.User {
			return roomRefuse(messages.CodeForbidden, "not your connection")
		}
		// A retried join: answer as the first, and tell the others again.
		out := joinedOutcome(r, r.Members[i])
		out.Repeat = true
		return out
	}
	if r.userIn(ev.User) >= 0 {
		return roomRefuse(messages.CodeInvalidState, "you are already in this room on another connection")
	}
	if ev.Busy {
		return roomRefuse(messages.CodeInvalidState, "you are already in a call or another room")
	}
	allowed := r.invited(ev.User) || !(r != nil && r.InviteOnly) && (ev.Granted || ev.Moderator)
	if !allowed {
		return roomRefuse(messages.CodeForbidden, "you may not join this room")
	}
	var next *Room
	if r == nil {
		next = &Room{ID: ev.Room, NextSeq: 1, Max: maxMembers(ev), InviteOnly: ev.InviteOnly, EmptyTimeout: ev.EmptyTimeout.Milliseconds(),
			CreatedMS: ev.Now.UnixMilli()}
	} else {
		if r.Locked {
			return roomRefuse(messages.CodeRoomLocked, "the room is locked")
		}
		if len(r.Members) >= r.Max {
			return roomRefuse(messages.CodeRoomFull, "the room is full")
		}
		next = r.clone()
	}
	m := Member{User: ev.User, Conn: ev.Conn, Gateway: ev.Gateway, Seq: next.NextSeq}
	next.NextSeq++
	next.Members = append(next.Members, m)
	next.EmptySince = 0
	var answered []string
	kept := next.Invited[:0]
	for _, inv := range next.Invited {
		if inv.User == ev.User {
			answered = append(answered, inv.Call)
		} else {
			kept = append(kept, inv)
		}
	}
	next.Invited = kept
	if len(next.Invited) == 0 {
		next.Invited = nil
	}
	out := joinedOutcome(next, m)
	out.Next, out.Answered = next, answered
	return out
}

// joinedOutcome is member m in room r (r lists it): joined to m, with
// every member; member_joined to each of the others.
func joinedOutcome(r *Room, m Member) RoomOutcome {
	var effects []Effect
	for _, o := range r.Members {
		if o.Conn != m.Conn {
			effects = append(effects, toMember(o, &messages.Envelope{
				Type: messages.TypeMemberJoined, Room: r.ID, Member: &messages.RoomMember{User: m.User, Conn: m.Conn},
			}))
		}
	}
	return RoomOutcome{Effects: effects, Reply: messages.Reply{Room: r.ID, Then: []*messages.Envelope{joinedEnv(r, "")}}}
}

// joinedEnv is the joined message for room r, naming call if a call moved in.
func joinedEnv(r *Room, call string) *messages.Envelope {
	members := make([]messages.RoomMember, len(r.Members))
	for i, m := range r.Members {
		members[i] = messages.RoomMember{User: m.User, Conn: m.Conn}
	}
	return &messages.Envelope{Type: messages.TypeJoined, Room: r.ID, Call: call, Members: members}
}

func toMember(m Member, env *messages.Envelope) Effect {
	return Effect{User: m.User, Gateway: m.Gateway, Delivery: messages.Delivery{Conn: m.Conn, Env: *env}}
}

func decideRoomLeave(r *Room, ev RoomEvent) RoomOutcome {
	reason := messages.LeftLeft
	if ev.Dropped {
		reason = messages.LeftDisconnected
	}
	i := r.member(ev.Conn)
	if i < 0 || r.Members[i].User != ev.User {
		if d, ok := r.departed(ev.Conn, ev.User, reason, ev.Conn); ok {
			return r.departedAgain(d, ev)
		}
		return RoomOutcome{Reply: roomAck(r, ev)} // leaving a room you are not in
	}
	return removeMember(r, ev, i, reason, ev.Conn)
}

// removeMember removes member i for reason, at the request of conn by.
func removeMember(r *Room, ev RoomEvent, i int, reason, by string) RoomOutcome {
	gone := r.Members[i]
	next := r.clone()
	next.Members = append(next.Members[:i], next.Members[i+1:]...)
	next.Departed = append(next.Departed, Departure{Member: gone, Reason: reason, By: by})
	if len(next.Departed) > maxDeparted {
		next.Departed = next.Departed[len(next.Departed)-maxDeparted:]
	}
	out := RoomOutcome{Next: next, Effects: leftEffects(next, gone, reason), Reply: roomAck(r, ev), Released: &gone}
	if len(next.Members) == 0 {
		next.EmptySince = ev.Now.UnixMilli()
		if next.EmptyTimeout <= 0 {
			out.Next, out.Delete = nil, true
		}
	}
	return out
}

// leftEffects tells r's members (and a kicked member itself) that gone left.
func leftEffects(r *Room, gone Member, reason string) []Effect {
	env := &messages.Envelope{Type: messages.TypeMemberLeft, Room: r.ID, Reason: reason,
		Member: &messages.RoomMember{User: gone.User, Conn: gone.Conn}}
	var effects []Effect
	for _, m := range r.Members {
		effects = append(effects, toMember(m, env))
	}
	if reason == messages.LeftKicked {
		effects = append(effects, toMember(gone, env))
	}
	return effects
}

// departed finds the departure of conn (of user) for reason by by.
func (r *Room) departed(conn, user, reason, by string) (Departure, bool) {
	if r == nil {
		return Departure{}, false
	}
	for _, d := range r.Departed {
		if d.Member.Conn == conn && d.Member.User == user && d.Reason == reason && d.By == by {
			return d, true
		}
	}
	return Departure{}, false
}

// departedAgain repeats departure d's member_left to the current members.
// The deleted record of a room emptied with no timeout cannot repeat: the
// last leaver has nobody to tell.
func (r *Room) departedAgain(d Departure, ev RoomEvent) RoomOutcome {
	gone := d.Member
	return RoomOutcome{Effects: leftEffects(r, gone, d.Reason), Reply: roomAck(r, ev), Released: &gone, Repeat: true}
}

func decideKick(r *Room, ev RoomEvent) RoomOutcome {
	if !ev.Moderator {
		return roomRefuse(messages.CodeForbidden, "only a moderator may kick")
	}
	if r == nil {
		return roomRefuse(messages.CodeNotFound, "no such room")
	}
	i := r.member(ev.Target)
	if i < 0 {
		for _, d := range r.Departed {
			if d.Member.Conn == ev.Target && d.Reason == messages.LeftKicked && d.By == ev.Conn {
				return r.departedAgain(d, ev)
			}
		}
		return roomRefuse(messages.CodeNotFound, "no such member")
	}
	return removeMember(r, ev, i, messages.LeftKicked, ev.Conn)
}

func decideLock(r *Room, ev RoomEvent) RoomOutcome {
	if !ev.Moderator {
		return roomRefuse(messages.CodeForbidden, "only a moderator may lock or unlock")
	}
	if r == nil {
		return roomRefuse(messages.CodeNotFound, "no such room")
	}
	lock := ev.Kind == RoomLock
	if r.Locked == lock {
		return RoomOutcome{Reply: roomAck(r, ev)}
	}
	next := r.clone()
	next.Locked = lock
	typ := messages.TypeUnlocked
	if lock {
		typ = messages.TypeLocked
	}
	var effects []Effect
	for _, m := range r.Members {
		if m.Conn != ev.Conn {
			effects = append(effects, toMember(m, &messages.Envelope{Type: typ, Room: r.ID, From: ev.User}))
		}
	}
	return RoomOutcome{Next: next, Effects: effects, Reply: roomAck(r, ev)}
}

func decideRoomInvite(r *Room, ev RoomEvent) RoomOutcome {
	i := r.member(ev.Conn)
	if i < 0 || r.Members[i].User != ev.User {
		return roomRefuse(messages.CodeForbidden, "only a member may invite")
	}
	for _, inv := range r.Invited {
		if inv.Call == ev.Call && inv.User == ev.Target && inv.By == ev.Conn {
			return RoomOutcome{Reply: messages.Reply{Room: r.ID, Call: ev.Call}} // a retry
		}
	}
	switch {
	case r.Locked:
		return roomRefuse(messages.CodeRoomLocked, "the room is locked")
	case r.userIn(ev.Target) >= 0:
		return roomRefuse(messages.CodeInvalidState, "already in the room")
	case len(r.Members) >= r.Max:
		return roomRefuse(messages.CodeRoomFull, "the room is full")
	case len(r.Invited) >= maxInvitedPerPlace*r.Max:
		return roomRefuse(messages.CodeInvalidState, "too many open invitations")
	}
	next := r.clone()
	next.Invited = append(next.Invited, Invitation{User: ev.Target, Call: ev.Call, By: ev.Conn})
	return RoomOutcome{Next: next, Reply: messages.Reply{Room: r.ID, Call: ev.Call}}
}

func decideUninvite(r *Room, ev RoomEvent) RoomOutcome {
	if r == nil {
		return RoomOutcome{}
	}
	for i, inv := range r.Invited {
		if inv.Call == ev.Call {
			next := r.clone()
			next.Invited = append(next.Invited[:i], next.Invited[i+1:]...)
			if len(next.Invited) == 0 {
				next.Invited = nil
			}
			return RoomOutcome{Next: next}
		}
	}
	return RoomOutcome{}
}

func decideRoomResume(r *Room, ev RoomEvent) RoomOutcome {
	i := r.member(ev.Conn)
	if i < 0 || r.Members[i].User != ev.User {
		return RoomOutcome{}
	}
	out := RoomOutcome{Reply: messages.Reply{Room: r.ID, Then: []*messages.Envelope{joinedEnv(r, "")}}}
	if r.Members[i].Gateway != ev.Gateway {
		next := r.clone()
		next.Members[i].Gateway = ev.Gateway
		out.Next = next
	}
	return out
}

func decideRoomExpire(r *Room, ev RoomEvent) RoomOutcome {
	if r == nil || len(r.Members) > 0 || r.EmptySince == 0 ||
		ev.Now.Before(time.UnixMilli(r.EmptySince+r.EmptyTimeout)) {
		return RoomOutcome{}
	}
	return RoomOutcome{Delete: true}
}

func decideAdopt(r *Room, ev RoomEvent) RoomOutcome {
	a, b := ev.Pair[0], ev.Pair[1]
	if a.Conn == "" || b.Conn == "" || a.Conn == b.Conn || a.User == b.User {
		return roomRefuse(messages.CodeInternal, "adopt needs the call's two connections")
	}
	if r != nil {
		if len(r.Members) == 2 && r.Members[0].Conn == a.Conn && r.Members[1].Conn == b.Conn && r.NextSeq == 3 {
			out := adopted(r, ev.Call)
			out.Repeat = true
			return out
		}
		return roomRefuse(messages.CodeInvalidState, "the room exists")
	}
	if !ev.Granted && !ev.Moderator {
		return roomRefuse(messages.CodeForbidden, "you may not create this room")
	}
	a.Seq, b.Seq = 1, 2
	next := &Room{ID: ev.Room, Members: []Member{a, b}, NextSeq: 3, Max: max(2, maxMembers(ev)), InviteOnly: ev.InviteOnly,
		EmptyTimeout: ev.EmptyTimeout.Milliseconds(), CreatedMS: ev.Now.UnixMilli()}
	out := adopted(next, ev.Call)
	out.Next = next
	return out
}

// adopted tells both connections of a call that it moved into room r.
func adopted(r *Room, call string) RoomOutcome {
	env := joinedEnv(r, call)
	effects := make([]Effect, 0, 2)
	for _, m := range r.Members {
		effects = append(effects, toMember(m, env))
	}
	return RoomOutcome{Effects: effects, Reply: messages.Reply{Room: r.ID, Call: call}}
}
