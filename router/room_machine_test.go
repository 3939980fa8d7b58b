package router

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// The room fixtures: room "r" with a limit of 3. alice (a1, also a2),
// bob (b1, b2), carol (c1), dave (d1) and eve (e1) are the users.
const rtRoomID = "r"

var rtNow = time.UnixMilli(1_700_000_000_000)

// rtRoom returns room r with members conns (user is the conn's letter).
func rtRoom(conns ...string) *Room {
	r := &Room{ID: rtRoomID, Max: 3, NextSeq: 1, EmptyTimeout: 30_000}
	for _, c := range conns {
		r.Members = append(r.Members, Member{User: rtUser(c), Conn: c, Gateway: "gw-" + c, Seq: r.NextSeq})
		r.NextSeq++
	}
	return r
}

func rtUser(conn string) string {
	return map[byte]string{'a': "alice", 'b': "bob", 'c': "carol", 'd': "dave", 'e': "eve"}[conn[0]]
}

// rtEv returns an event of kind from conn.
func rtEv(kind RoomKind, conn string, f ...func(*RoomEvent)) RoomEvent {
	ev := RoomEvent{Kind: kind, Room: rtRoomID, User: rtUser(conn), Conn: conn, Gateway: "gw-" + conn,
		MaxMembers: 3, EmptyTimeout: 30 * time.Second, Now: rtNow}
	for _, g := range f {
		g(&ev)
	}
	return ev
}

func granted(ev *RoomEvent)   { ev.Granted = true }
func moderator(ev *RoomEvent) { ev.Moderator = true }
func busy(ev *RoomEvent)      { ev.Busy = true }
func dropped(ev *RoomEvent)   { ev.Dropped = true }
func target(t string) func(*RoomEvent) {
	return func(ev *RoomEvent) { ev.Target = t }
}
func ring(call string) func(*RoomEvent) { return func(ev *RoomEvent) { ev.Call = call } }

func rtWith(r *Room, f func(*Room)) *Room { r = r.clone(); f(r); return r }

// rtMembers renders a record's members as "a1 b1 c1" (+ flags), or
// "deleted", or "" for no change.
func rtNext(out RoomOutcome) string {
	if out.Delete {
		return "deleted"
	}
	r := out.Next
	if r == nil {
		return ""
	}
	var b []string
	for _, m := range r.Members {
		b = append(b, m.Conn)
	}
	s := "[" + strings.Join(b, " ") + "]"
	if r.Locked {
		s += " locked"
	}
	if r.InviteOnly {
		s += " invite-only"
	}
	for _, inv := range r.Invited {
		s += " invited=" + inv.User + "/" + inv.Call
	}
	if r.EmptySince != 0 {
		s += " empty"
	}
	return s
}

// rtEffect renders an effect as "b1 member_joined a1" or "c1 member_left/kicked b1".
func rtEffect(e Effect) string {
	d := e.Delivery
	s := d.Conn + " " + d.Env.Type
	if d.Env.Reason != "" {
		s += "/" + d.Env.Reason
	}
	if d.Env.Member != nil {
		s += " " + d.Env.Member.Conn
	}
	if d.Env.From != "" {
		s += " from=" + d.Env.From
	}
	return s
}

// rtReply renders a reply as "error room_full", "ack then=[joined a1 b1]"
// or "ack call=k1".
func rtReply(r messages.Reply) string {
	if r.Code != "" {
		return "error " + r.Code
	}
	if reflect.DeepEqual(r, messages.Reply{}) {
		return ""
	}
	s := "ack"
	if r.Call != "" {
		s += " call=" + r.Call
	}
	for _, e := range r.Then {
		var conns []string
		for _, m := range e.Members {
			conns = append(conns, m.Conn)
		}
		s += " then=[" + e.Type + " " + strings.Join(conns, " ") + "]"
	}
	return s
}

type rtCase struct {
	name     string
	room     *Room
	ev       RoomEvent
	next     string
	effects  []string
	reply    string
	repeat   bool
	answered []string
}

func rtRun(t *testing.T, cases []rtCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.room.clone()
			out := DecideRoom(tc.room, tc.ev)
			if !reflect.DeepEqual(tc.room, before) {
				t.Errorf("DecideRoom mutated its input:\n got %+v\nwant %+v", tc.room, before)
			}
			if got := rtNext(out); got != tc.next {
				t.Errorf("next = %q, want %q", got, tc.next)
			}
			got := make([]string, len(out.Effects))
			for i, e := range out.Effects {
				got[i] = rtEffect(e)
				if e.Delivery.Env.Room != rtRoomID {
					t.Errorf("effect %s for room %q", got[i], e.Delivery.Env.Room)
				}
				if e.Gateway != "gw-"+e.Delivery.Conn || e.User != rtUser(e.Delivery.Conn) {
					t.Errorf("effect %s addressed to %s at %s", got[i], e.User, e.Gateway)
				}
			}
			want := slices.Clone(tc.effects)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("effects:\n got %q\nwant %q", got, want)
			}
			if got := rtReply(out.Reply); got != tc.reply {
				t.Errorf("reply = %q, want %q", got, tc.reply)
			}
			if out.Reply.Code != "" && (out.Reply.Message == "" || len(out.Effects) > 0 || out.Next != nil || out.Delete) {
				t.Errorf("error reply with a message %q, effects or a write", out.Reply.Message)
			}
			if out.Repeat != tc.repeat {
				t.Errorf("repeat = %v, want %v", out.Repeat, tc.repeat)
			}
			if !slices.Equal(out.Answered, tc.answered) {
				t.Errorf("answered = %q, want %q", out.Answered, tc.answered)
			}
		})
	}
}

func TestDecideRoomJoin(t *testing.T) {
	full := rtRoom("a1", "b1", "c1")
	invited := rtWith(rtRoom("a1"), func(r *Room) { r.Invited = []Invitation{{User: "carol", Call: "k1", By: "a1"}} })
	inviteOnly := rtWith(invited, func(r *Room) { r.InviteOnly = true })
	locked := rtWith(invited, func(r *Room) { r.Locked = true })
	empty := rtWith(rtRoom(), func(r *Room) { r.EmptySince, r.NextSeq, r.Locked = rtNow.UnixMilli()-1000, 4, true })

	rtRun(t, []rtCase{
		// The first join creates the room; it needs a grant.
		{name: "creates", ev: rtEv(RoomJoin, "a1", granted),
			next: "[a1]", reply: "ack then=[joined a1]"},
		{name: "creates invite-only", ev: rtEv(RoomJoin, "a1", granted, func(e *RoomEvent) { e.InviteOnly = true }),
			next: "[a1] invite-only", reply: "ack then=[joined a1]"},
		{name: "a moderator grant creates", ev: rtEv(RoomJoin, "a1", moderator),
			next: "[a1]", reply: "ack then=[joined a1]"},
		{name: "no grant creates nothing", ev: rtEv(RoomJoin, "a1"), reply: "error forbidden"},
		{name: "busy creates nothing", ev: rtEv(RoomJoin, "a1", granted, busy), reply: "error invalid_state"},

		// A join tells every other member; the joiner sees all, in order.
		{name: "second", room: rtRoom("a1"), ev: rtEv(RoomJoin, "b1", granted),
			next: "[a1 b1]", effects: []string{"a1 member_joined b1"}, reply: "ack then=[joined a1 b1]"},
		{name: "late joiner sees everyone", room: rtRoom("a1", "b1"), ev: rtEv(RoomJoin, "c1", granted),
			next: "[a1 b1 c1]", effects: []string{"a1 member_joined c1", "b1 member_joined c1"}, reply: "ack then=[joined a1 b1 c1]"},

		// The limit.
		{name: "full", room: full, ev: rtEv(RoomJoin, "d1", granted), reply: "error room_full"},
		{name: "full for the invited too", room: rtWith(full, func(r *Room) { r.Invited = []Invitation{{User: "dave", Call: "k1", By: "a1"}} }),
			ev: rtEv(RoomJoin, "d1"), reply: "error room_full"},
		{name: "a member's retry in a full room", room: full, ev: rtEv(RoomJoin, "c1", granted),
			effects: []string{"a1 member_joined c1", "b1 member_joined c1"}, reply: "ack then=[joined a1 b1 c1]", repeat: true},

		// Already in: a retry is answered as the first; another device is refused.
		{name: "retry", room: rtRoom("a1", "b1"), ev: rtEv(RoomJoin, "b1", granted),
			effects: []string{"a1 member_joined b1"}, reply: "ack then=[joined a1 b1]", repeat: true},
		{name: "retry without the grant any more", room: rtRoom("a1", "b1"), ev: rtEv(RoomJoin, "b1"),
			effects: []string{"a1 member_joined b1"}, reply: "ack then=[joined a1 b1]", repeat: true},
		{name: "another device of a member", room: rtRoom("a1", "b1"), ev: rtEv(RoomJoin, "a2", granted), reply: "error invalid_state"},
		{name: "someone else's conn id", room: rtRoom("a1", "b1"), ev: func() RoomEvent {
			ev := rtEv(RoomJoin, "b1", granted)
			ev.User = "eve"
			return ev
		}(), reply: "error forbidden"},

		// Busy: in a call or another room.
		{name: "busy", room: rtRoom("a1"), ev: rtEv(RoomJoin, "b1", granted, busy), reply: "error invalid_state"},

		// Grants and invitations.
		{name: "stranger", room: rtRoom("a1"), ev: rtEv(RoomJoin, "b1"), reply: "error forbidden"},
		{name: "invited without a grant", room: invited, ev: rtEv(RoomJoin, "c1"),
			next: "[a1 c1]", effects: []string{"a1 member_joined c1"}, reply: "ack then=[joined a1 c1]", answered: []string{"k1"}},
		{name: "invite-only admits the invited", room: inviteOnly, ev: rtEv(RoomJoin, "c1"),
			next: "[a1 c1] invite-only", effects: []string{"a1 member_joined c1"}, reply: "ack then=[joined a1 c1]", answered: []string{"k1"}},
		{name: "invite-only ignores grants", room: inviteOnly, ev: rtEv(RoomJoin, "b1", granted), reply: "error forbidden"},
		{name: "invite-only ignores moderator grants", room: inviteOnly, ev: rtEv(RoomJoin, "b1", moderator), reply: "error forbidden"},

		// Locked: nobody new, invited or granted; a stranger is still forbidden.
		{name: "locked, granted", room: locked, ev: rtEv(RoomJoin, "b1", granted), reply: "error room_locked"},
		{name: "locked, invited", room: locked, ev: rtEv(RoomJoin, "c1"), reply: "error room_locked"},
		{name: "locked, stranger", room: locked, ev: rtEv(RoomJoin, "b1"), reply: "error forbidden"},
		{name: "locked, a member's retry", room: locked, ev: rtEv(RoomJoin, "a1"),
			reply: "ack then=[joined a1]", repeat: true},

		// An empty room keeps its settings until it expires; a join revives it.
		{name: "empty room, locked", room: empty, ev: rtEv(RoomJoin, "a1", granted), reply: "error room_locked"},
		{name: "empty room revived", room: rtWith(empty, func(r *Room) { r.Locked = false }), ev: rtEv(RoomJoin, "a1", granted),
			next: "[a1]", reply: "ack then=[joined a1]"},
	})
}

func TestDecideRoomJoinOrder(t *testing.T) {
	// Join numbers are never reused: the order survives leaves.
	r := rtRoom("a1", "b1")
	out := DecideRoom(r, rtEv(RoomLeave, "a1"))
	out = DecideRoom(out.Next, rtEv(RoomJoin, "a2", granted))
	got := out.Next.Members
	if len(got) != 2 || got[0].Conn != "b1" || got[1].Conn != "a2" || got[1].Seq != 3 || out.Next.NextSeq != 4 {
		t.Fatalf("members after a leave and a join: %+v (next seq %d)", got, out.Next.NextSeq)
	}
}

func TestDecideRoomLeave(t *testing.T) {
	left := rtWith(rtRoom("b1"), func(r *Room) {
		r.Departed = []Departure{{Member: Member{User: "alice", Conn: "a1", Gateway: "gw-a1", Seq: 1}, Reason: messages.LeftLeft, By: "a1"}}
	})
	noTimeout := rtWith(rtRoom("a1"), func(r *Room) { r.EmptyTimeout = 0 })
	rtRun(t, []rtCase{
		{name: "leave", room: rtRoom("a1", "b1", "c1"), ev: rtEv(RoomLeave, "a1"),
			next: "[b1 c1]", effects: []string{"b1 member_left/left a1", "c1 member_left/left a1"}, reply: "ack"},
		// A drop that was not resumed in the grace: the place was kept
		// until now; the others hear disconnected.
		{name: "drop after the grace", room: rtRoom("a1", "b1", "c1"), ev: rtEv(RoomLeave, "b1", dropped),
			next: "[a1 c1]", effects: []string{"a1 member_left/disconnected b1", "c1 member_left/disconnected b1"}, reply: "ack"},
		{name: "last one leaves: empty, kept for the timeout", room: rtRoom("a1"), ev: rtEv(RoomLeave, "a1"),
			next: "[] empty", reply: "ack"},
		{name: "last one leaves, no timeout: deleted", room: noTimeout, ev: rtEv(RoomLeave, "a1"),
			next: "deleted", reply: "ack"},
		{name: "not a member", room: rtRoom("a1"), ev: rtEv(RoomLeave, "b1"), reply: "ack"},
		{name: "another device of a member", room: rtRoom("a1"), ev: rtEv(RoomLeave, "a2"), reply: "ack"},
		{name: "no room", ev: rtEv(RoomLeave, "a1"), reply: "ack"},
		// The repeat of a leave publishes member_left again.
		{name: "repeated leave", room: left, ev: rtEv(RoomLeave, "a1"),
			effects: []string{"b1 member_left/left a1"}, reply: "ack", repeat: true},
		{name: "a drop after the leave is not its repeat", room: left, ev: rtEv(RoomLeave, "a1", dropped), reply: "ack"},
	})
}

func TestDecideRoomKickAndLock(t *testing.T) {
	kicked := rtWith(rtRoom("a1", "c1"), func(r *Room) {
		r.Departed = []Departure{{Member: Member{User: "bob", Conn: "b1", Gateway: "gw-b1", Seq: 2}, Reason: messages.LeftKicked, By: "e1"}}
	})
	rtRun(t, []rtCase{
		{name: "kick by a moderator", room: rtRoom("a1", "b1", "c1"), ev: rtEv(RoomKick, "e1", moderator, target("b1")),
			next: "[a1 c1]", effects: []string{"a1 member_left/kicked b1", "c1 member_left/kicked b1", "b1 member_left/kicked b1"}, reply: "ack"},
		{name: "kick by a member who is a moderator", room: rtRoom("a1", "b1"), ev: rtEv(RoomKick, "a1", moderator, target("b1")),
			next: "[a1]", effects: []string{"a1 member_left/kicked b1", "b1 member_left/kicked b1"}, reply: "ack"},
		{name: "kick by a member", room: rtRoom("a1", "b1"), ev: rtEv(RoomKick, "a1", granted, target("b1")), reply: "error forbidden"},
		{name: "kick by a stranger", room: rtRoom("a1", "b1"), ev: rtEv(RoomKick, "e1", target("b1")), reply: "error forbidden"},
		{name: "kick of a non-member", room: rtRoom("a1", "b1"), ev: rtEv(RoomKick, "e1", moderator, target("c1")), reply: "error not_found"},
		{name: "kick in no room", ev: rtEv(RoomKick, "e1", moderator, target("c1")), reply: "error not_found"},
		{name: "kick in no room, no moderator", ev: rtEv(RoomKick, "e1", target("c1")), reply: "error forbidden"},
		{name: "repeated kick", room: kicked, ev: rtEv(RoomKick, "e1", moderator, target("b1")),
			effects: []string{"a1 member_left/kicked b1", "c1 member_left/kicked b1", "b1 member_left/kicked b1"}, reply: "ack", repeat: true},

		{name: "lock", room: rtRoom("a1", "b1"), ev: rtEv(RoomLock, "a1", moderator),
			next: "[a1 b1] locked", effects: []string{"b1 locked from=alice"}, reply: "ack"},
		{name: "lock by a non-member moderator", room: rtRoom("a1", "b1"), ev: rtEv(RoomLock, "e1", moderator),
			next: "[a1 b1] locked", effects: []string{"a1 locked from=eve", "b1 locked from=eve"}, reply: "ack"},
		{name: "lock again", room: rtWith(rtRoom("a1"), func(r *Room) { r.Locked = true }), ev: rtEv(RoomLock, "e1", moderator), reply: "ack"},
		{name: "lock by a member", room: rtRoom("a1", "b1"), ev: rtEv(RoomLock, "a1", granted), reply: "error forbidden"},
		{name: "lock no room", ev: rtEv(RoomLock, "e1", moderator), reply: "error not_found"},
		{name: "unlock", room: rtWith(rtRoom("a1", "b1"), func(r *Room) { r.Locked = true }), ev: rtEv(RoomUnlock, "a1", moderator),
			next: "[a1 b1]", effects: []string{"b1 unlocked from=alice"}, reply: "ack"},
		{name: "unlock an unlocked room", room: rtRoom("a1"), ev: rtEv(RoomUnlock, "a1", moderator), reply: "ack"},
	})
}

func TestDecideRoomInvite(t *testing.T) {
	invited := rtWith(rtRoom("a1"), func(r *Room) { r.Invited = []Invitation{{User: "carol", Call: "k1", By: "a1"}} })
	rtRun(t, []rtCase{
		{name: "a member invites", room: rtRoom("a1", "b1"), ev: rtEv(RoomInvite, "a1", target("carol"), ring("k1")),
			next: "[a1 b1] invited=carol/k1", reply: "ack call=k1"},
		{name: "retry", room: invited, ev: rtEv(RoomInvite, "a1", target("carol"), ring("k1")), reply: "ack call=k1"},
		{name: "another device of a member", room: rtRoom("a1"), ev: rtEv(RoomInvite, "a2", target("carol"), ring("k1")), reply: "error forbidden"},
		{name: "a stranger with a grant", room: rtRoom("a1"), ev: rtEv(RoomInvite, "b1", granted, target("carol"), ring("k1")), reply: "error forbidden"},
		{name: "no room", ev: rtEv(RoomInvite, "a1", target("carol"), ring("k1")), reply: "error forbidden"},
		{name: "a member", room: rtRoom("a1", "b1"), ev: rtEv(RoomInvite, "a1", target("bob"), ring("k1")), reply: "error invalid_state"},
		{name: "locked", room: rtWith(rtRoom("a1"), func(r *Room) { r.Locked = true }), ev: rtEv(RoomInvite, "a1", target("carol"), ring("k1")), reply: "error room_locked"},
		{name: "full", room: rtRoom("a1", "b1", "c1"), ev: rtEv(RoomInvite, "a1", target("dave"), ring("k1")), reply: "error room_full"},
		{name: "too many rings", room: rtWith(rtRoom("a1"), func(r *Room) {
			for i := range 6 {
				r.Invited = append(r.Invited, Invitation{User: fmt.Sprint("u", i), Call: fmt.Sprint("k", i), By: "a1"})
			}
		}), ev: rtEv(RoomInvite, "a1", target("carol"), ring("k9")), reply: "error invalid_state"},
		// The ring ended unanswered: the invitation goes, nobody is told here
		// (the ring's ended comes from the call machine).
		{name: "uninvite", room: invited, ev: rtEv(RoomUninvite, "a1", ring("k1")), next: "[a1]"},
		{name: "uninvite unknown", room: invited, ev: rtEv(RoomUninvite, "a1", ring("k2"))},
		// After the ring ended, an invite-only room refuses the user.
		{name: "uninvited then joins", room: rtWith(rtRoom("a1"), func(r *Room) { r.InviteOnly = true }), ev: rtEv(RoomJoin, "c1"), reply: "error forbidden"},
	})
}

func TestDecideRoomResumeAndExpire(t *testing.T) {
	empty := rtWith(rtRoom(), func(r *Room) { r.EmptySince = rtNow.UnixMilli() })
	rtRun(t, []rtCase{
		// A resume within the grace restores membership (welcome lists it)
		// and moves deliveries to the new gateway.
		{name: "resume elsewhere", room: rtRoom("a1", "b1"), ev: rtEv(RoomResume, "b1", func(e *RoomEvent) { e.Gateway = "gw-x" }),
			next: "[a1 b1]", reply: "ack then=[joined a1 b1]"},
		{name: "resume on the same gateway", room: rtRoom("a1", "b1"), ev: rtEv(RoomResume, "b1"), reply: "ack then=[joined a1 b1]"},
		{name: "resume of a non-member", room: rtRoom("a1"), ev: rtEv(RoomResume, "b1")},

		{name: "expire before the timeout", room: empty, ev: rtEv(RoomExpire, "a1", func(e *RoomEvent) { e.Now = rtNow.Add(29 * time.Second) })},
		{name: "expire at the timeout", room: empty, ev: rtEv(RoomExpire, "a1", func(e *RoomEvent) { e.Now = rtNow.Add(30 * time.Second) }), next: "deleted"},
		{name: "expire of a room with members", room: rtRoom("a1"), ev: rtEv(RoomExpire, "a1", func(e *RoomEvent) { e.Now = rtNow.Add(time.Hour) })},
		{name: "expire of no room", ev: rtEv(RoomExpire, "a1")},
	})
	// Resume records the new gateway.
	out := DecideRoom(rtRoom("a1", "b1"), rtEv(RoomResume, "b1", func(e *RoomEvent) { e.Gateway = "gw-x" }))
	if g := out.Next.Members[1].Gateway; g != "gw-x" {
		t.Fatalf("resumed member's gateway = %q", g)
	}
}

func TestDecideRoomAdopt(t *testing.T) {
	pair := func(e *RoomEvent) {
		e.Call, e.InviteOnly = "call-1", true
		e.Pair = [2]Member{{User: "alice", Conn: "a1", Gateway: "gw-a1"}, {User: "bob", Conn: "b1", Gateway: "gw-b1"}}
	}
	adopted := rtWith(rtRoom("a1", "b1"), func(r *Room) { r.InviteOnly = true })
	rtRun(t, []rtCase{
		{name: "a call moves in", ev: rtEv(RoomAdopt, "a1", granted, pair),
			next:    "[a1 b1] invite-only",
			effects: []string{"a1 joined", "b1 joined"}, reply: "ack call=call-1"},
		{name: "without a grant", ev: rtEv(RoomAdopt, "a1", pair), reply: "error forbidden"},
		{name: "into an existing room", room: rtRoom("c1"), ev: rtEv(RoomAdopt, "a1", granted, pair), reply: "error invalid_state"},
		{name: "retry", room: adopted, ev: rtEv(RoomAdopt, "a1", granted, pair),
			effects: []string{"a1 joined", "b1 joined"}, reply: "ack call=call-1", repeat: true},
	})
	out := DecideRoom(nil, rtEv(RoomAdopt, "a1", granted, pair))
	j := out.Effects[0].Delivery.Env
	if j.Call != "call-1" || len(j.Members) != 2 || j.Members[0].Conn != "a1" || j.Members[1].Conn != "b1" {
		t.Fatalf("joined after a move: %+v", j)
	}
}
