package meshtest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// Test 2: a busy callee ends the new call with busy for the caller only; a
// busy caller gets invalid_state.
func TestBusy(t *testing.T) {
	m := Start(t, Options{})
	alice, bob, carol := m.Dial(0, "alice"), m.Dial(1, "bob"), m.Dial(0, "carol")

	call := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)

	// bob is ringing: busy.
	busy := carol.Invite("bob")
	carol.ExpectEnded(busy, messages.ReasonBusy)
	// alice is calling: busy too.
	busy = carol.Invite("alice")
	carol.ExpectEnded(busy, messages.ReasonBusy)
	m.Barrier(alice)
	m.Barrier(bob)

	// In a call: still busy, and the call is untouched.
	bob.Do(messages.TypeAccept, call)
	alice.Expect(messages.TypeAccepted)
	bob.Expect(messages.TypeAccepted)
	busy = carol.Invite("bob")
	carol.ExpectEnded(busy, messages.ReasonBusy)
	m.Barrier(alice)
	m.Barrier(bob)

	// A busy caller cannot start a second call.
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "again", To: "carol"})
	alice.ExpectError("again", messages.CodeInvalidState)
	m.Barrier(carol)

	bob.Do(messages.TypeHangup, call)
	alice.ExpectEnded(call, messages.ReasonHangup)
	// Released: carol reaches bob now.
	call = carol.Invite("bob")
	carol.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
}

// Test 7a: 50 callers invite the same callee at the same instant through two
// routers and two gateways: exactly one rings, 49 get busy. Twenty rounds.
func TestInviteRace(t *testing.T) {
	const callers, rounds = 50, 20
	m := Start(t, Options{Gateway: NoInviteLimit})
	bob := m.Dial(1, "bob")
	cs := make([]*Client, callers)
	for i := range cs {
		cs[i] = m.Dial(i%2, fmt.Sprintf("caller-%02d", i))
	}
	for round := range rounds {
		calls := make([]string, callers)
		SendAtOnce(t, &messages.Envelope{Type: messages.TypeInvite, ID: "race", To: "bob"}, cs...)
		ringing, busy := 0, 0
		var winner string
		for i, c := range cs {
			calls[i] = c.ExpectAck("race").Call
			e := c.Next()
			switch {
			case e.Type == messages.TypeRinging && e.Call == calls[i]:
				ringing++
				winner = calls[i]
			case e.Type == messages.TypeEnded && e.Reason == messages.ReasonBusy && e.Call == calls[i]:
				busy++
			default:
				t.Fatalf("round %d: %s got %s", round, c, describe(e))
			}
		}
		if ringing != 1 || busy != callers-1 {
			t.Fatalf("round %d: %d ringing, %d busy; want 1 and %d", round, ringing, busy, callers-1)
		}
		in := bob.Expect(messages.TypeIncoming)
		if in.Call != winner {
			t.Fatalf("round %d: bob rings for %s, the winner is %s", round, in.Call, winner)
		}
		m.Barrier(bob)
		bob.Do(messages.TypeReject, winner)
		for i, c := range cs {
			if calls[i] == winner {
				c.ExpectEnded(winner, messages.ReasonRejected)
			}
		}
	}
}

// Test 7b: two devices accept at the same instant: exactly one wins.
func TestAcceptRace(t *testing.T) {
	m := Start(t, Options{Gateway: NoInviteLimit})
	alice := m.Dial(0, "alice")
	for round := range 20 {
		d1, d2 := m.Dial(0, "bob"), m.Dial(1, "bob")
		call := alice.Invite("bob")
		alice.Expect(messages.TypeRinging)
		d1.Expect(messages.TypeIncoming)
		d2.Expect(messages.TypeIncoming)
		var wg sync.WaitGroup
		for _, d := range []*Client{d1, d2} {
			wg.Add(1)
			go func() { defer wg.Done(); d.Send(&messages.Envelope{Type: messages.TypeAccept, ID: "acc", Call: call}) }()
		}
		wg.Wait()
		winners := 0
		for _, d := range []*Client{d1, d2} {
			e := d.Next()
			switch {
			case e.Type == messages.TypeAck:
				winners++
				d.Expect(messages.TypeAccepted)
			case e.Type == messages.TypeEnded && e.Reason == messages.ReasonAnsweredElsewhere:
				d.ExpectError("acc", messages.CodeInvalidState)
			case e.Type == messages.TypeError && e.Code == messages.CodeInvalidState:
				d.ExpectEnded(call, messages.ReasonAnsweredElsewhere)
			default:
				t.Fatalf("round %d: %s got %s", round, d, describe(e))
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d devices won the call", round, winners)
		}
		alice.Expect(messages.TypeAccepted)
		m.Barrier(alice)
		alice.Do(messages.TypeHangup, call)
		d1.Send(&messages.Envelope{Type: messages.TypeBye})
		d2.Send(&messages.Envelope{Type: messages.TypeBye})
		d1.ExpectClosed()
		d2.ExpectClosed()
	}
}
