package meshtest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/callmesh/callmesh/gateway"
	"github.com/callmesh/callmesh/messages"
	"github.com/callmesh/callmesh/router"
)

// Moderators kick, lock and unlock (PROTOCOL.md §14.6); nobody else may.
func TestRoomKickAndLock(t *testing.T) {
	m := Start(t, Options{})
	const room = "team-a"
	mod := m.DialGrants(0, "mod", gateway.Grants{Moderator: []string{"team-*"}})
	alice, bob := m.DialGrants(1, "alice", gateway.Grants{Rooms: []string{"team-*"}}), m.DialGrants(0, "bob", gateway.Grants{Rooms: []string{"team-a"}})
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)

	// A member without a moderator grant may not kick or lock.
	alice.Send(&messages.Envelope{Type: messages.TypeKick, ID: "k", Room: room, Conn: bob.Conn})
	alice.ExpectError("k", messages.CodeForbidden)
	alice.Send(&messages.Envelope{Type: messages.TypeLock, ID: "l", Room: room})
	alice.ExpectError("l", messages.CodeForbidden)

	// The moderator, not a member, kicks bob: bob and alice are told.
	mod.RoomDo(messages.TypeKick, room, bob.Conn)
	bob.ExpectMemberLeft(room, bob, messages.LeftKicked)
	alice.ExpectMemberLeft(room, bob, messages.LeftKicked)
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s", Room: room, ToConn: alice.Conn, Data: json.RawMessage(`{}`)})
	bob.ExpectError("s", messages.CodeForbidden)
	mod.Send(&messages.Envelope{Type: messages.TypeKick, ID: "k2", Room: room, Conn: "nosuchconn"})
	mod.ExpectError("k2", messages.CodeNotFound)

	// Locked: nobody new joins, granted or not; unlocked: they do.
	mod.RoomDo(messages.TypeLock, room, "")
	alice.Expect(messages.TypeLocked)
	bob.JoinRefused(room, messages.CodeRoomLocked)
	mod.RoomDo(messages.TypeUnlock, room, "")
	alice.Expect(messages.TypeUnlocked)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)

	// Grants are patterns: team-* is not team, and a grant of team-a is not team-b.
	bob.JoinRefused("team-b", messages.CodeInvalidState) // bob is in team-a: busy
	carol := m.DialGrants(1, "carol", gateway.Grants{Rooms: []string{"team-a"}})
	carol.JoinRefused("team-b", messages.CodeForbidden)
	carol.JoinRefused("team", messages.CodeForbidden)
	stranger := m.Dial(1, "stranger")
	stranger.JoinRefused(room, messages.CodeForbidden)
	stranger.Send(&messages.Envelope{Type: messages.TypeLock, ID: "l2", Room: "nowhere"})
	stranger.ExpectError("l2", messages.CodeForbidden)
	mod.Send(&messages.Envelope{Type: messages.TypeLock, ID: "l3", Room: "team-nowhere"})
	mod.ExpectError("l3", messages.CodeNotFound)
	for _, c := range []*Client{mod, alice, bob} {
		m.Barrier(c)
	}
}

// Ringing someone into a room (PROTOCOL.md §14.5): every device rings; the
// one that accepts joins, the others get answered_elsewhere, the inviter
// accepted; the invitation is the grant. A reject reaches the inviter.
func TestRoomInvite(t *testing.T) {
	m := Start(t, Options{})
	const room = "r"
	alice, bob := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere)
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)
	dave1, dave2 := m.Dial(0, "dave"), m.Dial(1, "dave") // no grant

	dave1.JoinRefused(room, messages.CodeForbidden)
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "i", Room: room, To: "dave"})
	call := alice.ExpectAck("i").Call
	if r := alice.Expect(messages.TypeRinging); r.Call != call || r.Room != room {
		t.Fatalf("ringing %s", describe(r))
	}
	for _, d := range []*Client{dave1, dave2} {
		if in := d.Expect(messages.TypeIncoming); in.Call != call || in.Room != room || in.From != "alice" {
			t.Fatalf("%s: incoming %s", d, describe(in))
		}
	}
	dave2.Send(&messages.Envelope{Type: messages.TypeAccept, ID: "a", Call: call})
	if ack := dave2.ExpectAck("a"); ack.Call != call || ack.Room != room {
		t.Fatalf("ack of accept %s", describe(ack))
	}
	ExpectMembers(dave2, dave2.Expect(messages.TypeJoined), alice, bob, dave2)
	if e := dave1.Expect(messages.TypeEnded); e.Call != call || e.Reason != messages.ReasonAnsweredElsewhere {
		t.Fatalf("other device: %s", describe(e))
	}
	gotAccepted, gotJoined := false, false
	for range 2 {
		switch e := alice.Next(); {
		case e.Type == messages.TypeAccepted && e.Call == call && e.Room == room && e.From == "dave":
			gotAccepted = true
		case e.Type == messages.TypeMemberJoined && *e.Member == dave2.Member():
			gotJoined = true
		default:
			t.Fatalf("inviter got %s", describe(e))
		}
	}
	if !gotAccepted || !gotJoined {
		t.Fatal("inviter missed accepted or member_joined")
	}
	bob.ExpectMemberJoined(room, dave2)
	dave2.RoomSignal(room, alice, 1)
	alice.ExpectRoomSignal(room, dave2, 1)

	// Only members invite; a reject reaches the inviter.
	eve := m.Dial(0, "eve")
	dave1.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "x", Room: room, To: "eve"})
	dave1.ExpectError("x", messages.CodeForbidden)
	call = inviteInto(t, bob, room, "eve")
	eve.Expect(messages.TypeIncoming)
	eve.Do(messages.TypeReject, call)
	bob.ExpectEnded(call, messages.ReasonRejected)
	for _, c := range []*Client{alice, bob, dave1, dave2, eve} {
		m.Barrier(c)
	}
}

// inviteInto has member c ring user to into room and returns the ring.
func inviteInto(t *testing.T, c *Client, room, to string) string {
	t.Helper()
	id := "inv-" + messages.NewID()[:8]
	c.Send(&messages.Envelope{Type: messages.TypeInvite, ID: id, Room: room, To: to})
	call := c.ExpectAck(id).Call
	c.Expect(messages.TypeRinging)
	return call
}

// Rooms and 1:1 calls exclude each other (PROTOCOL.md §14.10), unless
// rooms.exclusive is off.
func TestRoomBusyRules(t *testing.T) {
	m := Start(t, Options{})
	const room = "r"
	alice, bob, carol := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere), m.DialGrants(1, "carol", Everywhere)
	alice.Join(room)

	// In a room: busy for a 1:1 call, and cannot call out.
	call := bob.Invite("alice")
	bob.ExpectEnded(call, messages.ReasonBusy)
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "out", To: "bob"})
	alice.ExpectError("out", messages.CodeInvalidState)
	// One room at a time.
	alice.JoinRefused("other", messages.CodeInvalidState)

	// In a call: cannot join, and a room ring ends busy.
	call = Establish(bob, carol)
	bob.JoinRefused(room, messages.CodeInvalidState)
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "ring", Room: room, To: "bob"})
	alice.ExpectEnded(alice.ExpectAck("ring").Call, messages.ReasonBusy)
	bob.Do(messages.TypeHangup, call)
	carol.ExpectEnded(call, messages.ReasonHangup)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)
	for _, c := range []*Client{alice, bob, carol} {
		m.Barrier(c)
	}

	t.Run("not exclusive", func(t *testing.T) {
		m := Start(t, Options{Router: func(c *router.Config) { c.Rooms.Exclusive = false }})
		alice, bob := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere)
		alice.Join(room)
		call := Establish(bob, alice) // in a room, and in a call
		alice.Signal(call, 1)
		bob.ExpectSignal(call, 1)
		alice.JoinRefused("other", messages.CodeInvalidState) // still one room
		bob.Join(room)
		alice.ExpectMemberJoined(room, bob)
		bob.Do(messages.TypeHangup, call)
		alice.ExpectEnded(call, messages.ReasonHangup)
		bob.RoomSignal(room, alice, 2)
		alice.ExpectRoomSignal(room, bob, 2)
		alice.Drop() // gone: leaves the room too
		bob.ExpectMemberLeft(room, alice, messages.LeftDisconnected)
	})
}

// A stranger's room signal is refused, a member's to a stranger too, and a
// room event published on a user subject (by anyone but a router) is
// dropped; hostile room ids are rooms of their own.
func TestRoomIsolation(t *testing.T) {
	m := Start(t, Options{})
	alice, bob, mallory := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere), m.DialGrants(1, "mallory", Everywhere)
	const room = "r"
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)

	mallory.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s", Room: room, ToConn: alice.Conn, Data: json.RawMessage(`{}`)})
	mallory.ExpectError("s", messages.CodeForbidden)
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s", Room: room, ToConn: mallory.Conn, Data: json.RawMessage(`{}`)})
	alice.ExpectError("s", messages.CodeForbidden)
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s2", Room: room, ToConn: alice.Conn, Data: json.RawMessage(`{}`)})
	alice.ExpectError("s2", messages.CodeForbidden)

	// A forged member_joined for mallory, on alice's user subject, is
	// dropped: alice never sees it, and mallory still cannot signal her.
	forged := messages.Delivery{Conn: alice.Conn, Env: messages.Envelope{
		Type: messages.TypeMemberJoined, Room: room, Member: &messages.RoomMember{User: "mallory", Conn: mallory.Conn}}}
	if err := m.nc.Publish(m.names.UserSubject("alice"), messages.EncodeDelivery(&forged)); err != nil {
		t.Fatal(err)
	}
	m.Barrier(alice)

	// Room ids that look like subjects or keys are rooms of their own.
	hostile := []string{"a.b", "a", "*", ">", "room.cg", " ", "ä.*", "r.>"}
	for i, id := range hostile {
		c := m.DialGrants(i%2, "h"+string(rune('a'+i)), Everywhere)
		ExpectMembers(c, c.Join(id), c)
	}
	for _, c := range []*Client{alice, bob, mallory} {
		m.Barrier(c)
	}
	bad := m.DialGrants(0, "bad", Everywhere)
	for _, id := range []string{"", string(make([]byte, 300)), "\ufffd"} {
		bad.Send(&messages.Envelope{Type: messages.TypeJoin, ID: "b", Room: id})
		bad.ExpectError("b", messages.CodeBadRequest)
	}
}

// A 1:1 call becomes a room when a party invites a third user (PROTOCOL.md
// §14.7): both get joined{call} and ended{moved}, keep talking as room
// members, and the third is rung in.
func TestRoomFromCall(t *testing.T) {
	m := Start(t, Options{})
	alice, bob, carol := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere), m.Dial(1, "carol")
	call := Establish(alice, bob)
	const room = "moved"
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "m", Room: room, To: "carol", Call: call})
	// Both parties get joined{call} and ended{moved}; alice the ack of her
	// invite, then ringing.
	var ring string
	for _, c := range []*Client{alice, bob} {
		var joined, ended bool
		for !joined || !ended || c == alice && ring == "" {
			switch e := c.Next(); {
			case e.Type == messages.TypeJoined && e.Room == room && e.Call == call:
				ExpectMembers(c, e, alice, bob)
				joined = true
			case e.Type == messages.TypeEnded && e.Call == call && e.Reason == messages.ReasonMoved && e.Room == room:
				ended = true
			case e.Type == messages.TypeAck && e.ID == "m" && c == alice:
				ring = e.Call
				alice.Expect(messages.TypeRinging)
			default:
				t.Fatalf("%s: got %s", c, describe(e))
			}
		}
	}
	// The old call's signal path is closed, the room's is open.
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "old", Call: call, Data: json.RawMessage(`{}`)})
	bob.ExpectError("old", messages.CodeForbidden)
	bob.RoomSignal(room, alice, 1)
	alice.ExpectRoomSignal(room, bob, 1)

	in := carol.Expect(messages.TypeIncoming)
	if in.Room != room || in.Call != ring {
		t.Fatalf("carol: %s", describe(in))
	}
	carol.Do(messages.TypeAccept, ring)
	ExpectMembers(carol, carol.Expect(messages.TypeJoined), alice, bob, carol)
	bob.ExpectMemberJoined(room, carol)

	// A room made from a call is invite-only: a grant is not enough.
	dave := m.DialGrants(0, "dave", Everywhere)
	dave.JoinRefused(room, messages.CodeForbidden)
}

// An empty room keeps its settings for rooms.empty_timeout, then ends: its
// id is free again.
func TestRoomEmptyTimeout(t *testing.T) {
	m := Start(t, Options{Router: func(c *router.Config) { c.Rooms.EmptyTimeout = 500 * time.Millisecond }})
	const room = "r"
	mod := m.DialGrants(0, "mod", gateway.Grants{Moderator: []string{"*"}})
	alice := m.DialGrants(1, "alice", Everywhere)
	mod.Join(room)
	mod.RoomDo(messages.TypeLock, room, "")
	mod.RoomDo(messages.TypeLeave, room, "")
	alice.JoinRefused(room, messages.CodeRoomLocked) // kept, locked
	deadline := time.Now().Add(Wait)
	for {
		id := "j-" + messages.NewID()[:6]
		alice.Send(&messages.Envelope{Type: messages.TypeJoin, ID: id, Room: room})
		e := alice.Next()
		if e.Type == messages.TypeAck {
			ExpectMembers(alice, alice.Expect(messages.TypeJoined), alice)
			return // ended, and made anew by this join
		}
		if e.Code != messages.CodeRoomLocked || time.Now().After(deadline) {
			t.Fatalf("join after the empty timeout: %s", describe(e))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An invite-only room admits only the invited, grants notwithstanding.
func TestRoomInviteOnly(t *testing.T) {
	m := Start(t, Options{})
	const room = "private"
	alice, bob := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere)
	alice.Send(&messages.Envelope{Type: messages.TypeJoin, ID: "j", Room: room, Data: json.RawMessage(`{"invite_only":true}`)})
	alice.ExpectAck("j")
	alice.Expect(messages.TypeJoined)
	bob.JoinRefused(room, messages.CodeForbidden)
	ring := inviteInto(t, alice, room, "bob")
	bob.Expect(messages.TypeIncoming)
	bob.Do(messages.TypeAccept, ring)
	ExpectMembers(bob, bob.Expect(messages.TypeJoined), alice, bob)
}

// With rooms.exclusive off a ring does not keep its callee from joining
// the room directly. That join answers the ring as an accept would
// (PROTOCOL.md §14.5): the inviter gets accepted, every device of the
// callee (the joining one too) ended{answered_elsewhere}, and the callee
// is free for a call at once, not at the ring timeout.
func TestRoomJoinAnswersItsRing(t *testing.T) {
	m := Start(t, Options{Router: func(c *router.Config) { c.Rooms.Exclusive = false }})
	const room = "r"
	alice, bob := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere)
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)
	dave1, dave2 := m.DialGrants(0, "dave", Everywhere), m.DialGrants(1, "dave", Everywhere)
	ring := inviteInto(t, alice, room, "dave")
	for _, d := range []*Client{dave1, dave2} {
		if in := d.Expect(messages.TypeIncoming); in.Call != ring {
			t.Fatalf("%s: %s", d, describe(in))
		}
	}

	dave1.Send(&messages.Envelope{Type: messages.TypeJoin, ID: "j", Room: room})
	var acked, answered bool
	for !acked || !answered { // the join's answer and the ring's end, in either order
		switch e := dave1.Next(); {
		case e.Type == messages.TypeAck && e.ID == "j":
			ExpectMembers(dave1, dave1.Expect(messages.TypeJoined), alice, bob, dave1)
			acked = true
		case e.Type == messages.TypeEnded && e.Call == ring && e.Reason == messages.ReasonAnsweredElsewhere && e.Room == room:
			answered = true
		default:
			t.Fatalf("%s: %s", dave1, describe(e))
		}
	}
	if e := dave2.Expect(messages.TypeEnded); e.Call != ring || e.Reason != messages.ReasonAnsweredElsewhere {
		t.Fatalf("%s: %s", dave2, describe(e))
	}
	var accepted, joined bool
	for !accepted || !joined {
		switch e := alice.Next(); {
		case e.Type == messages.TypeAccepted && e.Call == ring && e.Room == room && e.From == "dave":
			accepted = true
		case e.Type == messages.TypeMemberJoined && *e.Member == dave1.Member():
			joined = true
		default:
			t.Fatalf("inviter got %s", describe(e))
		}
	}
	bob.ExpectMemberJoined(room, dave1)

	carol := m.Dial(0, "carol")
	call := carol.Invite("dave")
	carol.Expect(messages.TypeRinging)
	for _, d := range []*Client{dave1, dave2} {
		if in := d.Expect(messages.TypeIncoming); in.Call != call {
			t.Fatalf("%s: %s", d, describe(in))
		}
	}
}
