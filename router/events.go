package router

import (
	"strconv"
	"time"

	"github.com/callmesh/callmesh/events"
	"github.com/callmesh/callmesh/messages"
)

// A router publishes an event for every lifecycle change its write made
// (docs/events.md): the router whose compare-and-set won, once; a repeat
// of the change (effects are at least once across router crashes) makes
// an event with the same id, which the stream drops.

// stamp sets the times next's transition from prev makes.
func stamp(prev, next *Call, now time.Time) {
	switch {
	case next.State == Accepted && next.AnsweredMS == 0:
		next.AnsweredMS = now.UnixMilli()
	case next.State == Ended && next.EndedMS == 0 && prev.live():
		next.EndedMS = now.UnixMilli()
	}
}

// callEvents publishes what the write of next over prev means.
func (r *Router) callEvents(prev, next *Call) {
	if next == nil {
		return
	}
	switch {
	case next.State == Accepted && prev != nil && prev.State == Ringing:
		r.events.Publish(callEvent(events.CallAnswered, next))
	case next.State == Ended && prev.live():
		r.events.Publish(callEvent(events.CallEnded, next))
	}
}

// ringingEvent publishes that call c rings.
func (r *Router) ringingEvent(c *Call) { r.events.Publish(callEvent(events.CallRinging, c)) }

func callEvent(typ string, c *Call) events.Event {
	ev := events.Event{ID: typ + ":" + c.ID, Type: typ, Time: time.Now(), Call: c.ID, Caller: c.Caller, Callee: c.Callee, Room: c.Room}
	if c.StartedMS > 0 {
		ev.Started = msTime(c.StartedMS)
	}
	if c.AnsweredMS > 0 {
		ev.Answered = msTime(c.AnsweredMS)
	}
	if typ != events.CallEnded {
		return ev
	}
	ev.Reason = c.Reason
	if c.Refused != "" {
		ev.Reason = "refused"
	}
	end := c.EndedMS
	if end == 0 {
		end = time.Now().UnixMilli()
	}
	if c.StartedMS > 0 {
		rang := end - c.StartedMS
		if c.AnsweredMS > 0 {
			rang = c.AnsweredMS - c.StartedMS
		}
		ev.RingMS = &rang
	}
	if c.AnsweredMS > 0 {
		talk := end - c.AnsweredMS
		ev.TalkMS = &talk
	}
	return ev
}

func msTime(ms int64) *time.Time {
	t := time.UnixMilli(ms).UTC()
	return &t
}

// roomEvents publishes what a room change (ev, which made out) did:
// before and after are the record around it (nil when there is none).
func (r *Router) roomEvents(ev RoomEvent, out RoomOutcome, before, after *Room) {
	if out.Repeat || out.Reply.Code != "" {
		return
	}
	if before == nil && after != nil {
		r.events.Publish(roomEvent(events.RoomCreated, after, nil, ""))
	}
	room := after
	if room == nil {
		room = before
	}
	if room == nil {
		return
	}
	for _, m := range after.membersNotIn(before) {
		r.events.Publish(roomEvent(events.RoomJoined, room, &m, ""))
	}
	for _, m := range before.membersNotIn(after) {
		r.events.Publish(roomEvent(events.RoomLeft, room, &m, leftReason(ev)))
	}
	if out.Delete {
		r.events.Publish(roomEvent(events.RoomEnded, room, nil, ""))
	}
}

// leftReason is the member_left reason of a removal by ev.
func leftReason(ev RoomEvent) string {
	switch {
	case ev.Kind == RoomKick:
		return messages.LeftKicked
	case ev.Dropped:
		return messages.LeftDisconnected
	}
	return messages.LeftLeft
}

// membersNotIn returns r's members that other does not list.
func (r *Room) membersNotIn(other *Room) []Member {
	if r == nil {
		return nil
	}
	var out []Member
	for _, m := range r.Members {
		if other.member(m.Conn) < 0 {
			out = append(out, m)
		}
	}
	return out
}

func roomEvent(typ string, r *Room, m *Member, reason string) events.Event {
	id := typ + ":" + messages.EncodeUserID(r.ID) + ":" + strconv.FormatInt(r.CreatedMS, 10)
	ev := events.Event{Type: typ, Time: time.Now(), Room: r.ID, Reason: reason}
	if m != nil {
		id += ":" + strconv.FormatUint(m.Seq, 10)
		ev.User, ev.Conn = m.User, m.Conn
	}
	ev.ID = id
	return ev
}
