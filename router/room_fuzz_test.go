package router

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// The senders and targets of random room events.
var frParties = [...]struct{ user, conn string }{
	{"alice", "a1"}, {"alice", "a2"}, {"bob", "b1"}, {"bob", "b2"},
	{"carol", "c1"}, {"dave", "d1"}, {"eve", "e1"},
}

// Flag bits of an encoded room event.
const (
	frGranted = 1 << iota
	frModerator
	frBusy
	frDropped
	frInviteOnly
	frLater     // the event comes an empty timeout later than the last
	frOtherGate // the sender is on another gateway
)

// frMax is the room limit in the fuzz: small, so that rooms fill up.
const frMax = 3

// frDecode reads a room event from four bytes: kind (0 and 11+ are no
// kind), sender, target, flags. now is advanced by frLater.
func frDecode(b []byte, now *time.Time) RoomEvent {
	p := frParties[int(b[1])%len(frParties)]
	tg := frParties[int(b[2])%len(frParties)]
	f := b[3]
	if f&frLater != 0 {
		*now = now.Add(30 * time.Second)
	} else {
		*now = now.Add(time.Second)
	}
	ev := RoomEvent{
		Kind: RoomKind(b[0] % 12), Room: rtRoomID, User: p.user, Conn: p.conn, Gateway: "gw-" + p.conn,
		Granted: f&frGranted != 0, Moderator: f&frModerator != 0, Busy: f&frBusy != 0,
		Dropped: f&frDropped != 0, InviteOnly: f&frInviteOnly != 0,
		MaxMembers: frMax, EmptyTimeout: 30 * time.Second, Now: *now,
	}
	if f&frOtherGate != 0 {
		ev.Gateway = "gw-other"
	}
	switch ev.Kind {
	case RoomKick:
		ev.Target = tg.conn
	case RoomInvite, RoomUninvite:
		ev.Target, ev.Call = tg.user, "k-"+tg.user
	case RoomAdopt:
		ev.Call = "call-" + p.conn
		ev.Pair = [2]Member{{User: p.user, Conn: p.conn, Gateway: ev.Gateway}, {User: tg.user, Conn: tg.conn, Gateway: "gw-" + tg.conn}}
	}
	return ev
}

// frCheck applies the events encoded in data (four bytes each) to a room
// that does not exist yet, feeding every Next back in as the router does,
// and checks the machine's invariants after every step.
func frCheck(t *testing.T, data []byte) {
	t.Helper()
	if len(data) > 4*fzMaxEvents {
		data = data[:4*fzMaxEvents]
	}
	var r *Room
	now := rtNow
	for i := 0; i+4 <= len(data); i += 4 {
		ev := frDecode(data[i:i+4], &now)
		before := r.clone()
		out := DecideRoom(r, ev)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("step %d: %s\ntrace:\n%s", i/4, fmt.Sprintf(format, args...), frTrace(data[:i+4]))
		}
		if !reflect.DeepEqual(r, before) {
			fail("DecideRoom mutated its input: got %+v, want %+v", r, before)
		}
		if out.Reply.Code != "" && (out.Next != nil || out.Delete || len(out.Effects) > 0 || out.Repeat) {
			fail("error reply %q with a write or effects", out.Reply.Code)
		}
		if out.Next != nil && out.Delete {
			fail("both a next record and a deletion")
		}
		if out.Repeat && (out.Next != nil || out.Delete) {
			fail("a repeat writes")
		}
		if out.Delete && before != nil && len(before.Members) > 1 {
			fail("deleted a room of %d members", len(before.Members))
		}

		isMember := func(room *Room, user, conn string) bool {
			i := room.member(conn)
			return i >= 0 && room.Members[i].User == user
		}
		if n := out.Next; n != nil {
			if n == r {
				fail("Next aliases the input record")
			}
			if n.ID != rtRoomID {
				fail("room id %q", n.ID)
			}
			if before != nil && (n.Max != before.Max || n.InviteOnly != before.InviteOnly) {
				fail("Max or InviteOnly changed: %+v from %+v", n, before)
			}
			if len(n.Members) > n.Max || n.Max < 1 {
				fail("%d members in a room of %d", len(n.Members), n.Max)
			}
			conns, users := map[string]bool{}, map[string]bool{}
			var last uint64
			for _, m := range n.Members {
				if conns[m.Conn] || users[m.User] {
					fail("duplicate member %s/%s: %+v", m.User, m.Conn, n.Members)
				}
				conns[m.Conn], users[m.User] = true, true
				if m.Seq <= last || m.Seq >= n.NextSeq {
					fail("join numbers out of order: %+v (next %d)", n.Members, n.NextSeq)
				}
				last = m.Seq
			}
			if len(n.Invited) > maxInvitedPerPlace*n.Max {
				fail("%d open invitations", len(n.Invited))
			}
			if len(n.Departed) > maxDeparted {
				fail("%d departures kept", len(n.Departed))
			}
			if (len(n.Members) == 0) != (n.EmptySince != 0) && ev.Kind != RoomAdopt {
				fail("empty_since %d with %d members", n.EmptySince, len(n.Members))
			}
			// Who came in, and by what right.
			for _, m := range n.Members {
				if isMember(before, m.User, m.Conn) {
					continue
				}
				switch {
				case ev.Kind == RoomAdopt && before == nil && (ev.Granted || ev.Moderator):
				case ev.Kind == RoomJoin && m.Conn == ev.Conn && m.User == ev.User:
					if before != nil && before.Locked {
						fail("a locked room admitted %s", m.Conn)
					}
					if ev.Busy {
						fail("a busy user joined")
					}
					invited := before.invited(ev.User)
					if !invited && (before != nil && before.InviteOnly || !ev.Granted && !ev.Moderator) {
						fail("%s joined without a grant or an invitation", m.Conn)
					}
					if invited && n.invited(ev.User) {
						fail("the invitation outlived the join")
					}
				default:
					fail("%s/%s came in by a %d event of %s", m.User, m.Conn, ev.Kind, ev.Conn)
				}
			}
			// Who went out, and by what right.
			if before != nil {
				for _, m := range before.Members {
					if isMember(n, m.User, m.Conn) {
						continue
					}
					switch {
					case ev.Kind == RoomLeave && ev.Conn == m.Conn && ev.User == m.User:
					case ev.Kind == RoomKick && ev.Moderator && ev.Target == m.Conn:
					default:
						fail("%s/%s went out by a %d event of %s", m.User, m.Conn, ev.Kind, ev.Conn)
					}
					if out.Released == nil || out.Released.Conn != m.Conn {
						fail("%s left but its lock is not released", m.Conn)
					}
				}
				if n.Locked != before.Locked && !(ev.Moderator && (ev.Kind == RoomLock || ev.Kind == RoomUnlock)) {
					fail("locked changed by a %d event (moderator %v)", ev.Kind, ev.Moderator)
				}
			}
		}

		// Every effect goes to one connection that is a member now or was
		// one just before (a leaver, a kicked member), about this room.
		after := out.Next
		if after == nil && !out.Delete {
			after = before
		}
		for _, e := range out.Effects {
			d := e.Delivery
			if d.Conn == "" || d.Except != "" {
				fail("room effect not addressed to one connection: %s", rtEffect(e))
			}
			if d.Env.Room != rtRoomID {
				fail("effect for room %q", d.Env.Room)
			}
			if !isMember(before, e.User, d.Conn) && !(after != nil && isMember(after, e.User, d.Conn)) &&
				!(out.Repeat && d.Env.Type == messages.TypeMemberLeft && d.Env.Reason == messages.LeftKicked && d.Env.Member.Conn == d.Conn) {
				fail("effect to %s/%s, neither a member now nor just before: %s", e.User, d.Conn, rtEffect(e))
			}
			if d.Env.Type == messages.TypeMemberJoined && d.Env.Member.Conn == d.Conn {
				fail("member_joined about itself: %s", rtEffect(e))
			}
			if d.Env.Type == messages.TypeMemberLeft && d.Env.Member.Conn == d.Conn && d.Env.Reason != messages.LeftKicked {
				fail("member_left about itself: %s", rtEffect(e))
			}
		}
		if out.Delete {
			r = nil
		} else if out.Next != nil {
			r = out.Next
		}
	}
}

// frTrace replays the events in data for a failure message.
func frTrace(data []byte) string {
	var b strings.Builder
	var r *Room
	now := rtNow
	for i := 0; i+4 <= len(data); i += 4 {
		ev := frDecode(data[i:i+4], &now)
		out := DecideRoom(r.clone(), ev)
		fmt.Fprintf(&b, "  kind=%d %s/%s target=%s granted=%v mod=%v busy=%v dropped=%v → next=%q effects=%d reply=%q repeat=%v\n",
			ev.Kind, ev.User, ev.Conn, ev.Target, ev.Granted, ev.Moderator, ev.Busy, ev.Dropped,
			rtNext(out), len(out.Effects), rtReply(out.Reply), out.Repeat)
		if out.Delete {
			r = nil
		} else if out.Next != nil {
			r = out.Next
		}
	}
	return b.String()
}

// frEv encodes a room event for the seed corpus.
func frEv(k RoomKind, party, target int, flags byte) []byte {
	return []byte{byte(k), byte(party), byte(target), flags}
}

// Party indexes into frParties.
const (
	frA1 = iota
	frA2
	frB1
	frB2
	frC1
	frD1
	frE1
)

func FuzzDecideRoom(f *testing.F) {
	// join, late join, full, leave, rejoin.
	f.Add(fzSeq(frEv(RoomJoin, frA1, 0, frGranted), frEv(RoomJoin, frB1, 0, frGranted), frEv(RoomJoin, frC1, 0, frGranted),
		frEv(RoomJoin, frD1, 0, frGranted), frEv(RoomLeave, frB1, 0, 0), frEv(RoomJoin, frD1, 0, frGranted), frEv(RoomJoin, frB2, 0, frGranted)))
	// invite-only: invite, join by invitation, stranger refused.
	f.Add(fzSeq(frEv(RoomJoin, frA1, 0, frGranted|frInviteOnly), frEv(RoomInvite, frA1, frC1, 0), frEv(RoomJoin, frB1, 0, frGranted),
		frEv(RoomJoin, frC1, 0, 0), frEv(RoomUninvite, frA1, frC1, 0)))
	// lock, kick, unlock.
	f.Add(fzSeq(frEv(RoomJoin, frA1, 0, frModerator), frEv(RoomJoin, frB1, 0, frGranted), frEv(RoomLock, frA1, 0, frModerator),
		frEv(RoomJoin, frC1, 0, frGranted), frEv(RoomKick, frE1, frB1, frModerator), frEv(RoomKick, frE1, frB1, frModerator),
		frEv(RoomUnlock, frB1, 0, 0), frEv(RoomUnlock, frE1, 0, frModerator), frEv(RoomJoin, frC1, 0, frGranted)))
	// drop after the grace, resume, empty room, expiry.
	f.Add(fzSeq(frEv(RoomJoin, frA1, 0, frGranted), frEv(RoomJoin, frB1, 0, frGranted), frEv(RoomResume, frB1, 0, frOtherGate),
		frEv(RoomLeave, frA1, 0, frDropped), frEv(RoomLeave, frA1, 0, frDropped), frEv(RoomLeave, frB1, 0, 0),
		frEv(RoomExpire, frA1, 0, 0), frEv(RoomExpire, frA1, 0, frLater), frEv(RoomJoin, frA2, 0, frGranted)))
	// a call moved in, then a third joins.
	f.Add(fzSeq(frEv(RoomAdopt, frA1, frB1, frGranted|frInviteOnly), frEv(RoomAdopt, frA1, frB1, frGranted|frInviteOnly),
		frEv(RoomInvite, frB1, frC1, 0), frEv(RoomJoin, frC1, 0, frBusy), frEv(RoomJoin, frC1, 0, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		frCheck(t, data)
	})
}

// TestRoomRandomSequences runs the fuzz invariants over many seeded random
// event sequences, so plain `go test` explores more than the corpus.
func TestRoomRandomSequences(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	n := 10000
	if testing.Short() {
		n = 1000
	}
	data := make([]byte, 0, 4*24)
	for range n {
		data = data[:0]
		for range 1 + r.IntN(24) {
			data = append(data, byte(1+r.IntN(10)), byte(r.IntN(len(frParties))), byte(r.IntN(len(frParties))), byte(r.IntN(128)))
		}
		frCheck(t, data)
	}
}
