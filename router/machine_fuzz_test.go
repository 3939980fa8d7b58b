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

// The senders of random events: alice (the caller, from a1; a2 is her other
// connection), bob (the callee, devices b1–b3) and carol (a stranger).
var fzParties = [...]struct{ user, conn string }{
	{"alice", "a1"}, {"alice", "a2"},
	{"bob", "b1"}, {"bob", "b2"}, {"bob", "b3"},
	{"carol", "c1"},
}

// Flag bits of an encoded event.
const (
	fzBye = 1 << iota
	fzOtherDevices
	fzCallerBusy
	fzCalleeOnline
	fzCalleeBusy
	fzPastDeadline
	fzAtDeadline
)

// fzDecode reads an event from three bytes: kind (0 and 7 are no kind),
// sender, flags.
func fzDecode(b []byte) Event {
	p := fzParties[int(b[1])%len(fzParties)]
	f := b[2]
	ev := Event{
		Kind: Kind(b[0] % 8), User: p.user, Conn: p.conn,
		Bye: f&fzBye != 0, OtherDevices: f&fzOtherDevices != 0,
		CallerBusy: f&fzCallerBusy != 0, CalleeOnline: f&fzCalleeOnline != 0, CalleeBusy: f&fzCalleeBusy != 0,
		Now: mtDeadline.Add(-time.Second),
	}
	switch {
	case f&fzAtDeadline != 0:
		ev.Now = mtDeadline
	case f&fzPastDeadline != 0:
		ev.Now = mtDeadline.Add(time.Minute)
	}
	if ev.Kind == Expire {
		ev.User, ev.Conn = "", ""
	}
	return ev
}

// fzCheck applies the events encoded in data (three bytes each) to a
// ringing call from alice's a1 to bob, feeding every Next back in as the
// router does, and checks the machine's invariants after every step.
func fzCheck(t *testing.T, data []byte) {
	t.Helper()
	if len(data) > 3*fzMaxEvents {
		data = data[:3*fzMaxEvents]
	}
	c := mtRinging()
	var published []Effect // the effects of the write that made c
	for i := 0; i+3 <= len(data); i += 3 {
		ev := fzDecode(data[i : i+3])
		before := mtClone(c)
		out := Decide(c, ev)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("step %d: %s\ntrace:\n%s", i/3, fmt.Sprintf(format, args...), fzTrace(data[:i+3]))
		}

		if !reflect.DeepEqual(c, before) {
			fail("Decide mutated its input: got %+v, want %+v", c, before)
		}

		// Once ended, a call stays ended: nothing later moves it or tells
		// anyone anything new.
		if before.State == Ended && (out.Next != nil || len(out.Effects) > 0 && !out.Repeat) {
			fail("event on an ended call: next=%q effects=%d", mtNext(out.Next), len(out.Effects))
		}
		// A repeat writes nothing and publishes exactly what the write that
		// made the record published (its router may have died before).
		if out.Repeat {
			if out.Next != nil || before.State == Ringing {
				fail("repeat on a %s call with next=%q", before.State, mtNext(out.Next))
			}
			if !reflect.DeepEqual(out.Effects, published) {
				fail("repeat publishes %d effects, not the %d of the write:\n got %+v\nwant %+v", len(out.Effects), len(published), out.Effects, published)
			}
		}

		// The accepting connection: the one in the record, or the one this
		// event makes the winner.
		winner := before.CalleeConn
		if out.Next != nil {
			n := out.Next
			if n == c {
				fail("Next aliases the input record")
			}
			if n.ID != before.ID || n.Caller != before.Caller || n.CallerConn != before.CallerConn ||
				n.Callee != before.Callee || string(n.Data) != string(before.Data) || n.RingDeadline != before.RingDeadline {
				fail("Next changed the call's identity: %+v from %+v", n, before)
			}
			switch {
			case n.State == Accepted && before.State == Ringing:
				if ev.Kind != Accept || ev.User != before.Callee || n.CalleeConn != ev.Conn || n.CalleeConn == "" {
					fail("accepted by %s/%s with CalleeConn %q", ev.User, ev.Conn, n.CalleeConn)
				}
				winner = n.CalleeConn
			case n.State == Ended:
				if n.Reason == "" && n.Refused == "" {
					fail("ended without a reason: %+v", n)
				}
				if ev.Kind != Invite && (n.EndedBy == nil || *n.EndedBy != causeOf(ev)) {
					fail("ended by %+v, recorded as %+v", causeOf(ev), n.EndedBy)
				}
				if n.CalleeConn != before.CalleeConn {
					fail("ending changed CalleeConn from %q to %q", before.CalleeConn, n.CalleeConn)
				}
			default:
				fail("transition %s → %s", before.State, n.State)
			}
			if before.State == Accepted && n.CalleeConn != before.CalleeConn {
				fail("accepted call's CalleeConn changed from %q to %q", before.CalleeConn, n.CalleeConn)
			}
		}

		checkBind := func(what string, b *messages.Binding) {
			t.Helper()
			if b == nil {
				return
			}
			if b.Call != before.ID {
				fail("%s: bind for call %q", what, b.Call)
			}
			switch {
			case b.PeerUser == before.Caller && b.PeerConn == before.CallerConn:
			case b.PeerUser == before.Callee && b.PeerConn == winner && winner != "":
			default:
				fail("%s: bind to %s/%s, neither the caller's %s nor the accepting %q", what, b.PeerUser, b.PeerConn, before.CallerConn, winner)
			}
		}

		for _, e := range out.Effects {
			d := e.Delivery
			switch e.User {
			case before.Caller:
				if d.Conn != before.CallerConn {
					fail("effect to a caller connection that is not in the call: %s", mtEffect(e))
				}
			case before.Callee:
				if d.Conn != "" && d.Conn != winner {
					fail("effect to a callee connection that is not the accepting one: %s", mtEffect(e))
				}
			default:
				fail("effect to a non-party: %s", mtEffect(e))
			}
			if d.Env.Call != before.ID {
				fail("effect for call %q: %s", d.Env.Call, mtEffect(e))
			}
			if d.Bind != nil {
				// A binding goes to one bound connection, naming the other.
				if d.Conn == "" || d.Env.Type != messages.TypeAccepted {
					fail("binding on a broadcast or non-accepted delivery: %s", mtEffect(e))
				}
				if e.User == d.Bind.PeerUser {
					fail("binding a user to themselves: %s", mtEffect(e))
				}
			}
			checkBind("effect "+mtEffect(e), d.Bind)
		}

		if out.Reply.Code != "" && (len(out.Effects) > 0 || out.Reply.Then != nil || out.Reply.Bind != nil) {
			fail("error reply %q with effects or ack fields", out.Reply.Code)
		}
		checkBind("reply", out.Reply.Bind)
		if out.Reply.Bind != nil && (ev.User != before.Callee || ev.Conn != winner) {
			fail("reply binding sent to %s/%s, not the accepting connection %q", ev.User, ev.Conn, winner)
		}

		if out.Next != nil {
			c, published = out.Next, out.Effects
		}
	}
}

// fzMaxEvents bounds a sequence: longer ones reach no new state.
const fzMaxEvents = 64

// fzTrace replays the events in data for a failure message.
func fzTrace(data []byte) string {
	var b strings.Builder
	c := mtRinging()
	for i := 0; i+3 <= len(data); i += 3 {
		ev := fzDecode(data[i : i+3])
		out := Decide(mtClone(c), ev)
		fmt.Fprintf(&b, "  %s kind=%d %s/%s bye=%v others=%v busy=%v/%v online=%v now=%s → next=%q effects=%d reply=%q\n",
			c.State, ev.Kind, ev.User, ev.Conn, ev.Bye, ev.OtherDevices, ev.CallerBusy, ev.CalleeBusy, ev.CalleeOnline,
			ev.Now.Sub(mtDeadline), mtNext(out.Next), len(out.Effects), mtReply(out.Reply))
		if out.Next != nil {
			c = out.Next
		}
	}
	return b.String()
}

// fzEv encodes an event for the seed corpus.
func fzEv(k Kind, party int, flags byte) []byte { return []byte{byte(k), byte(party), flags} }

func fzSeq(events ...[]byte) []byte {
	var b []byte
	for _, e := range events {
		b = append(b, e...)
	}
	return b
}

// Party indexes into fzParties.
const (
	fzA1 = iota
	fzA2
	fzB1
	fzB2
	fzB3
	fzC1
)

func FuzzDecide(f *testing.F) {
	f.Add(fzSeq(fzEv(Invite, fzA1, fzCalleeOnline), fzEv(Accept, fzB2, 0), fzEv(Accept, fzB1, 0), fzEv(Hangup, fzB2, 0), fzEv(Hangup, fzA1, 0)))
	f.Add(fzSeq(fzEv(Invite, fzA1, fzCalleeOnline), fzEv(Reject, fzB3, 0), fzEv(Accept, fzB1, 0)))
	f.Add(fzSeq(fzEv(Leave, fzB1, fzOtherDevices), fzEv(Expire, 0, fzPastDeadline), fzEv(Leave, fzA1, fzBye)))
	f.Add(fzSeq(fzEv(Accept, fzB1, 0), fzEv(Leave, fzA2, fzBye), fzEv(Leave, fzB2, 0), fzEv(Leave, fzA1, 0), fzEv(Accept, fzB1, 0)))
	f.Add(fzSeq(fzEv(Invite, fzA1, fzCallerBusy), fzEv(Invite, fzA1, fzCalleeOnline), fzEv(Accept, fzB1, 0)))
	f.Add(fzSeq(fzEv(Hangup, fzC1, 0), fzEv(Accept, fzA1, 0), fzEv(Hangup, fzA2, 0), fzEv(Hangup, fzA1, 0), fzEv(Hangup, fzB1, 0)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fzCheck(t, data)
	})
}

// TestMachineRandomSequences runs the fuzz invariants over many seeded
// random event sequences, so plain `go test` explores more than the corpus.
func TestMachineRandomSequences(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 10000
	if testing.Short() {
		n = 1000
	}
	data := make([]byte, 0, 3*16)
	for range n {
		data = data[:0]
		for range 1 + r.IntN(16) {
			data = append(data, byte(r.IntN(8)), byte(r.IntN(len(fzParties))), byte(r.IntN(128)))
		}
		fzCheck(t, data)
	}
}
