package meshtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// A dropped member keeps its place for the resume grace; a resume (here on
// the other gateway) restores the membership, with what was sent to it
// meanwhile, in order (PROTOCOL.md §14.11).
func TestRoomResumeKeepsMembership(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 3 * time.Second})
	const room = "r"
	alice, bob, carol := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere), m.DialGrants(1, "carol", Everywhere)
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)

	dropped(t, m, 0, alice)
	for n := 1; n <= 5; n++ {
		bob.RoomSignal(room, alice, n)
	}
	carol.Join(room)
	bob.ExpectMemberJoined(room, carol)
	carol.RoomSignal(room, alice, 6)

	back := m.Resume(1, alice)
	want := fmt.Sprint([]messages.RoomInfo{{Room: room, Members: []messages.RoomMember{alice.Member(), bob.Member(), carol.Member()}}})
	if got := fmt.Sprint(back.Welcome.Rooms); !back.Welcome.Resumed || got != want {
		t.Fatalf("welcome after resume: resumed %v, rooms %s; want %s", back.Welcome.Resumed, got, want)
	}
	for n := 1; n <= 5; n++ {
		back.ExpectRoomSignal(room, bob, n)
	}
	back.ExpectMemberJoined(room, carol)
	back.ExpectRoomSignal(room, carol, 6)

	// Still a member, on its new gateway: signal flows both ways.
	back.RoomSignal(room, carol, 7)
	carol.ExpectRoomSignal(room, back, 7)
	bob.RoomSignal(room, back, 8)
	back.ExpectRoomSignal(room, bob, 8)
	for _, c := range []*Client{back, bob, carol} {
		m.Barrier(c)
	}
}

// A member that does not resume within the grace is gone: the others get
// member_left{disconnected}, and its place is free.
func TestRoomDropAfterGrace(t *testing.T) {
	m := Start(t, Options{})
	const room = "r"
	alice, bob := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere)
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)
	bob.Drop()
	alice.ExpectMemberLeft(room, bob, messages.LeftDisconnected)

	// bob, reconnecting afresh, is in no room and may join again.
	again := m.DialGrants(1, "bob", Everywhere)
	if len(again.Welcome.Rooms) != 0 {
		t.Fatalf("fresh welcome lists rooms %v", again.Welcome.Rooms)
	}
	ExpectMembers(again, again.Join(room), alice, again)
	alice.ExpectMemberJoined(room, again)
}

// A gateway that dies with members on it: once its connections are
// evicted (TTL + grace), the members elsewhere get member_left{disconnected}.
func TestRoomGatewayCrash(t *testing.T) {
	m := Start(t, Options{Gateways: 3})
	const room = "r"
	alice, bob, carol := m.DialGrants(0, "alice", Everywhere), m.DialGrants(1, "bob", Everywhere), m.DialGrants(1, "carol", Everywhere)
	alice.Join(room)
	bob.Join(room)
	alice.ExpectMemberJoined(room, bob)
	carol.Join(room)
	alice.ExpectMemberJoined(room, carol)
	bob.ExpectMemberJoined(room, carol)

	m.Gateways[1].Crash()
	left := map[string]bool{}
	for range 2 {
		e := alice.Expect(messages.TypeMemberLeft)
		if e.Reason != messages.LeftDisconnected {
			t.Fatalf("member_left reason %q, want disconnected", e.Reason)
		}
		left[e.Member.Conn] = true
	}
	if !left[bob.Conn] || !left[carol.Conn] {
		t.Fatalf("member_left for %v, want bob and carol", left)
	}
	dave := m.DialGrants(2, "dave", Everywhere)
	ExpectMembers(dave, dave.Join(room), alice, dave)
	alice.ExpectMemberJoined(room, dave)
}

// An inviter that resumes while its room ring rings finds the ring in
// welcome.data.calls (with the room), and the ring goes on.
func TestRoomResumeKeepsTheRing(t *testing.T) {
	m := Start(t, Options{ResumeGrace: 3 * time.Second})
	alice, carol := m.DialGrants(0, "alice", Everywhere), m.Dial(1, "carol")
	alice.Join("r")
	ring := inviteInto(t, alice, "r", "carol")
	carol.Expect(messages.TypeIncoming)
	dropped(t, m, 0, alice)
	back := m.Resume(1, alice)
	want := messages.CallInfo{Call: ring, State: "ringing", Role: "caller", Peer: "carol", Room: "r"}
	if len(back.Welcome.Calls) != 1 || back.Welcome.Calls[0] != want {
		t.Fatalf("welcome lists calls %+v, want %+v", back.Welcome.Calls, want)
	}
	carol.Do(messages.TypeAccept, ring)
	carol.Expect(messages.TypeJoined)
	var accepted, joined bool
	for !accepted || !joined {
		switch e := back.Next(); {
		case e.Type == messages.TypeAccepted && e.Call == ring:
			accepted = true
		case e.Type == messages.TypeMemberJoined && e.Member.User == "carol":
			joined = true
		default:
			t.Fatalf("after the resume: %s", describe(e))
		}
	}
}
