package meshtest

import (
	"encoding/json"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// Rooms (PROTOCOL.md §14): join, late join, pairwise signal, leave; three
// members on two gateways.
func TestRoomJoinSignalLeave(t *testing.T) {
	m := Start(t, Options{})
	alice, bob, carol := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere), m.DialGrants(1, "carol", Everywhere)
	const room = "standup"

	ExpectMembers(alice, alice.Join(room), alice)
	ExpectMembers(bob, bob.Join(room), alice, bob)
	alice.ExpectMemberJoined(room, bob)

	// The newer member (bob) offers; signal flows both ways between the pair.
	bob.RoomSignal(room, alice, 1)
	alice.ExpectRoomSignal(room, bob, 1)
	alice.RoomSignal(room, bob, 2)
	bob.ExpectRoomSignal(room, alice, 2)

	// A late joiner sees everyone, and everyone sees it.
	ExpectMembers(carol, carol.Join(room), alice, bob, carol)
	alice.ExpectMemberJoined(room, carol)
	bob.ExpectMemberJoined(room, carol)
	carol.RoomSignal(room, alice, 3)
	alice.ExpectRoomSignal(room, carol, 3)
	carol.RoomSignal(room, bob, 4)
	bob.ExpectRoomSignal(room, carol, 4)

	// A retried join is answered as the first, and tells the others nothing
	// new: their gateways drop the repeated member_joined.
	ExpectMembers(carol, carol.Join(room), alice, bob, carol)

	bob.RoomDo(messages.TypeLeave, room, "")
	alice.ExpectMemberLeft(room, bob, messages.LeftLeft)
	carol.ExpectMemberLeft(room, bob, messages.LeftLeft)

	// bob is no longer a member: signal either way is refused.
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "late", Room: room, ToConn: alice.Conn, Data: json.RawMessage(`{}`)})
	bob.ExpectError("late", messages.CodeForbidden)
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "gone", Room: room, ToConn: bob.Conn, Data: json.RawMessage(`{}`)})
	alice.ExpectError("gone", messages.CodeForbidden)
	// Leaving again, or a room one was never in, is acked and tells nobody
	// anything new.
	bob.RoomDo(messages.TypeLeave, room, "")
	bob.RoomDo(messages.TypeLeave, "elsewhere", "")

	// bye leaves every room at once, with left.
	carol.Send(&messages.Envelope{Type: messages.TypeBye})
	alice.ExpectMemberLeft(room, carol, messages.LeftLeft)
	for _, c := range []*Client{alice, bob} {
		m.Barrier(c)
	}
}
