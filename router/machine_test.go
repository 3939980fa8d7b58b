package router

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callmesh/callmesh/messages"
)

// The fixtures: alice calls bob from her connection a1; alice also has a2,
// bob has the devices b1, b2 and b3, carol is a stranger to the call.
const mtCallID = "call-1"

var (
	mtDeadline = time.UnixMilli(1_700_000_030_000)
	mtData     = json.RawMessage(`{"sdp":"offer"}`)
)

func mtRinging() *Call {
	return &Call{
		ID: mtCallID, Caller: "alice", CallerConn: "a1", Callee: "bob", State: Ringing,
		Data: slices.Clone(mtData), RingDeadline: mtDeadline.UnixMilli(),
	}
}

// mtAccepted was answered by bob's device b1.
func mtAccepted() *Call {
	c := mtRinging()
	c.State, c.CalleeConn = Accepted, "b1"
	return c
}

func mtEnded(reason string) *Call {
	c := mtRinging()
	c.State, c.Reason = Ended, reason
	return c
}

func mtEndedAccepted(reason string) *Call {
	c := mtAccepted()
	c.State, c.Reason = Ended, reason
	return c
}

func mtClone(c *Call) *Call {
	if c == nil {
		return nil
	}
	d := *c
	d.Data = slices.Clone(c.Data)
	return &d
}

// mtEnv renders an envelope as "type/reason to=.. from=.. data=..",
// leaving out empty fields.
func mtEnv(e *messages.Envelope) string {
	s := e.Type
	if e.Reason != "" {
		s += "/" + e.Reason
	}
	if e.To != "" {
		s += " to=" + e.To
	}
	if e.From != "" {
		s += " from=" + e.From
	}
	if e.Code != "" {
		s += " code=" + e.Code
	}
	if len(e.Data) > 0 {
		s += " data=" + string(e.Data)
	}
	return s
}

func mtBind(b *messages.Binding) string {
	if b == nil {
		return ""
	}
	return " bind=" + b.PeerUser + "/" + b.PeerConn
}

// mtEffect renders an effect as "bob conn= except=b1 ended/rejected".
func mtEffect(e Effect) string {
	d := e.Delivery
	return fmt.Sprintf("%s conn=%s except=%s %s%s", e.User, d.Conn, d.Except, mtEnv(&d.Env), mtBind(d.Bind))
}

// mtNext renders the next record as "accepted conn=b2" or
// "ended/rejected conn=b1"; "" is no next record.
func mtNext(c *Call) string {
	if c == nil {
		return ""
	}
	s := string(c.State)
	if c.State == Ended || c.Reason != "" {
		s += "/" + c.Reason
	}
	if c.Refused != "" {
		s += " refused=" + c.Refused
	}
	if c.CalleeConn != "" {
		s += " conn=" + c.CalleeConn
	}
	return s
}

// mtReply renders a reply as "error forbidden" or
// "ack call=call-1 then=[accepted from=bob] bind=alice/a1"; "" is the zero
// reply (nobody is waiting for one).
func mtReply(r messages.Reply) string {
	switch {
	case reflect.DeepEqual(r, messages.Reply{}):
		return ""
	case r.Code != "":
		return "error " + r.Code
	}
	s := "ack call=" + r.Call
	if len(r.Then) > 0 {
		then := make([]string, len(r.Then))
		for i, e := range r.Then {
			then[i] = mtEnv(e)
		}
		s += " then=[" + strings.Join(then, ", ") + "]"
	}
	return s + mtBind(r.Bind)
}

type mtCase struct {
	name    string
	call    *Call
	ev      Event
	next    string   // mtNext of Outcome.Next; "" = no next record
	effects []string // mtEffect of every effect, in any order
	reply   string   // mtReply of Outcome.Reply
	repeat  bool     // Outcome.Repeat
}

func mtRun(t *testing.T, cases []mtCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := mtClone(tc.call)
			out := Decide(tc.call, tc.ev)

			if !reflect.DeepEqual(tc.call, before) {
				t.Errorf("Decide mutated its input:\n got %+v\nwant %+v", tc.call, before)
			}
			if got := mtNext(out.Next); got != tc.next {
				t.Errorf("next = %q, want %q", got, tc.next)
			}
			mtCheckNext(t, tc.call, tc.ev, out.Next)
			if out.Repeat != tc.repeat {
				t.Errorf("repeat = %v, want %v", out.Repeat, tc.repeat)
			}
			if out.Repeat && out.Next != nil {
				t.Errorf("a repeat writes %s", mtNext(out.Next))
			}

			got := make([]string, len(out.Effects))
			for i, e := range out.Effects {
				got[i] = mtEffect(e)
				mtCheckCall(t, "effect "+got[i], &e.Delivery.Env, e.Delivery.Bind)
			}
			want := slices.Clone(tc.effects)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("effects:\n got %q\nwant %q", got, want)
			}

			if got := mtReply(out.Reply); got != tc.reply {
				t.Errorf("reply = %q, want %q", got, tc.reply)
			}
			if out.Reply.Code != "" {
				if out.Reply.Message == "" {
					t.Errorf("error reply %q has no message", out.Reply.Code)
				}
				if out.Reply.Then != nil || out.Reply.Bind != nil || out.Reply.Call != "" {
					t.Errorf("error reply carries ack fields: %+v", out.Reply)
				}
				if len(out.Effects) > 0 {
					t.Errorf("error reply %q with effects %q", out.Reply.Code, got)
				}
			}
			for _, e := range out.Reply.Then {
				mtCheckCall(t, "then "+mtEnv(e), e, nil)
			}
			if out.Reply.Bind != nil {
				mtCheckCall(t, "reply bind", &messages.Envelope{Call: mtCallID}, out.Reply.Bind)
			}
		})
	}
}

// mtCheckNext checks that a next record is a fresh record of the same
// call: only State, Reason, Refused, (when accepting) CalleeConn and (when
// ev ends it, but for an invite) EndedBy move.
func mtCheckNext(t *testing.T, in *Call, ev Event, next *Call) {
	t.Helper()
	if next == nil {
		return
	}
	if next == in {
		t.Errorf("Next is the input record itself")
	}
	if in == nil {
		t.Fatalf("Next %+v for a nil call", next)
	}
	if next.State == Ended && next.Reason == "" && next.Refused == "" {
		t.Errorf("ended Next without a reason: %+v", next)
	}
	if next.State == Ringing {
		t.Errorf("Next is ringing: %+v", next)
	}
	want := mtClone(in)
	want.State, want.Reason, want.Refused = next.State, next.Reason, next.Refused
	if in.State == Ringing && next.State == Accepted {
		want.CalleeConn = next.CalleeConn
	}
	if next.State == Ended && ev.Kind != Invite {
		cause := causeOf(ev)
		want.EndedBy = &cause
	}
	if !reflect.DeepEqual(next, want) {
		t.Errorf("Next changed more than its state:\n got %+v\nwant %+v", next, want)
	}
}

func mtCheckCall(t *testing.T, what string, e *messages.Envelope, b *messages.Binding) {
	t.Helper()
	if e.Call != mtCallID {
		t.Errorf("%s: call = %q, want %q", what, e.Call, mtCallID)
	}
	if b != nil && b.Call != mtCallID {
		t.Errorf("%s: bind call = %q, want %q", what, b.Call, mtCallID)
	}
}

func TestDecideInvite(t *testing.T) {
	self := mtRinging()
	self.Callee = "alice"
	refused := mtEnded("")
	refused.Refused = messages.CodeInvalidState
	online := Event{Kind: Invite, User: "alice", Conn: "a1", CalleeOnline: true}
	with := func(f func(*Event)) Event { ev := online; f(&ev); return ev }

	mtRun(t, []mtCase{
		// Rule 2: inviting yourself.
		{name: "self", call: self, ev: Event{Kind: Invite, User: "alice", Conn: "a1"},
			reply: "error bad_request"},
		{name: "self even when online and free", call: self, ev: online,
			reply: "error bad_request"},
		{name: "self even when busy", call: self, ev: with(func(e *Event) { e.CallerBusy, e.CalleeBusy = true, true }),
			reply: "error bad_request"},

		// Rule 1: a busy caller is refused; the refusal is stored.
		{name: "caller busy", call: mtRinging(), ev: with(func(e *Event) { e.CallerBusy = true }),
			next: "ended/ refused=invalid_state", reply: "error invalid_state"},
		{name: "caller busy beats callee offline", call: mtRinging(),
			ev:   Event{Kind: Invite, User: "alice", Conn: "a1", CallerBusy: true},
			next: "ended/ refused=invalid_state", reply: "error invalid_state"},
		{name: "caller busy beats callee busy", call: mtRinging(), ev: with(func(e *Event) { e.CallerBusy, e.CalleeBusy = true, true }),
			next: "ended/ refused=invalid_state", reply: "error invalid_state"},

		// Rule 2: nobody connected → offline, for the caller only.
		{name: "callee offline", call: mtRinging(), ev: Event{Kind: Invite, User: "alice", Conn: "a1"},
			next: "ended/offline", reply: "ack call=call-1 then=[ended/offline]"},
		{name: "callee offline beats callee busy", call: mtRinging(), ev: Event{Kind: Invite, User: "alice", Conn: "a1", CalleeBusy: true},
			next: "ended/offline", reply: "ack call=call-1 then=[ended/offline]"},

		// Rule 1: busy callee → busy for the caller only; the busy user and
		// their call see nothing.
		{name: "callee busy", call: mtRinging(), ev: with(func(e *Event) { e.CalleeBusy = true }),
			next: "ended/busy", reply: "ack call=call-1 then=[ended/busy]"},

		// Rule 3: every callee device rings; the caller hears ringing.
		{name: "rings", call: mtRinging(), ev: online,
			effects: []string{`bob conn= except= incoming from=alice data={"sdp":"offer"}`},
			reply:   "ack call=call-1 then=[ringing to=bob]"},
		{name: "rings without data", call: func() *Call { c := mtRinging(); c.Data = nil; return c }(), ev: online,
			effects: []string{`bob conn= except= incoming from=alice`},
			reply:   "ack call=call-1 then=[ringing to=bob]"},

		// A retried invite of a decided call returns the stored outcome,
		// whatever the facts are now.
		{name: "retry refused", call: refused, ev: online, reply: "error invalid_state"},
		{name: "retry refused, still busy", call: refused, ev: with(func(e *Event) { e.CallerBusy = true }),
			reply: "error invalid_state"},
		{name: "retry offline", call: mtEnded(messages.ReasonOffline), ev: online,
			reply: "ack call=call-1 then=[ended/offline]"},
		{name: "retry busy", call: mtEnded(messages.ReasonBusy), ev: with(func(e *Event) { e.CalleeBusy = true }),
			reply: "ack call=call-1 then=[ended/busy]"},
		{name: "retry after the call ended", call: mtEndedAccepted(messages.ReasonHangup), ev: online,
			reply: "ack call=call-1 then=[ended/hangup]"},
		{name: "retry after no answer", call: mtEnded(messages.ReasonNoAnswer), ev: Event{Kind: Invite},
			reply: "ack call=call-1 then=[ended/no_answer]"},
	})
}

// TestDecideInviteRetryOnAcceptedCall: a gateway retries an invite whose
// first attempt succeeded but whose reply was lost, and bob answered in
// between. The store still reports the facts of a live call (the caller's
// and callee's locks are held by this very call, so Claim succeeds), so
// Decide sees an accepted record with CalleeOnline set. The retry must not
// ring bob's devices again (b2 and b3 were told answered_elsewhere and would
// ring forever: nothing ever ends the call for them) nor tell alice
// "ringing" after "accepted"; and a retry that finds the callee offline must
// not end an accepted call without telling the accepting device.
func TestDecideInviteRetryOnAcceptedCall(t *testing.T) {
	for _, online := range []bool{true, false} {
		t.Run(fmt.Sprintf("online=%v", online), func(t *testing.T) {
			c := mtAccepted()
			out := Decide(c, Event{Kind: Invite, User: "alice", Conn: "a1", CalleeOnline: online})
			for _, e := range out.Effects {
				if e.Delivery.Env.Type == messages.TypeIncoming {
					t.Errorf("retried invite of an accepted call rings the callee again: %s", mtEffect(e))
				}
			}
			for _, e := range out.Reply.Then {
				if e.Type == messages.TypeRinging {
					t.Errorf("retried invite of an accepted call tells the caller %s", mtEnv(e))
				}
			}
			if out.Next != nil && out.Next.State == Ended &&
				!slices.ContainsFunc(out.Effects, func(e Effect) bool { return e.User == "bob" }) {
				t.Errorf("retried invite ends the accepted call (%s) without telling bob's b1", mtNext(out.Next))
			}
		})
	}
}

func TestDecideAccept(t *testing.T) {
	ev := func(user, conn string) Event { return Event{Kind: Accept, User: user, Conn: conn} }
	mtRun(t, []mtCase{
		{name: "no call", call: nil, ev: ev("bob", "b1"), reply: "error not_found"},
		{name: "stranger", call: mtRinging(), ev: ev("carol", "c1"), reply: "error forbidden"},
		{name: "stranger on an ended call", call: mtEnded(messages.ReasonHangup), ev: ev("carol", "c1"), reply: "error forbidden"},
		{name: "caller", call: mtRinging(), ev: ev("alice", "a1"), reply: "error forbidden"},
		{name: "caller other conn", call: mtRinging(), ev: ev("alice", "a2"), reply: "error forbidden"},
		{name: "caller on accepted", call: mtAccepted(), ev: ev("alice", "a1"), reply: "error forbidden"},

		// Rule 3: the first accept wins.
		{name: "first accept wins", call: mtRinging(), ev: ev("bob", "b2"),
			next: "accepted conn=b2",
			effects: []string{
				"alice conn=a1 except= accepted from=bob bind=bob/b2",
				"bob conn= except=b2 ended/answered_elsewhere",
			},
			reply: "ack call=call-1 then=[accepted from=bob] bind=alice/a1"},
		{name: "first accept wins, b1", call: mtRinging(), ev: ev("bob", "b1"),
			next: "accepted conn=b1",
			effects: []string{
				"alice conn=a1 except= accepted from=bob bind=bob/b1",
				"bob conn= except=b1 ended/answered_elsewhere",
			},
			reply: "ack call=call-1 then=[accepted from=bob] bind=alice/a1"},
		// The router that stored the accept may have died before telling
		// alice: the retry tells her (and the other devices) again.
		{name: "retried by the winner", call: mtAccepted(), ev: ev("bob", "b1"),
			effects: []string{
				"alice conn=a1 except= accepted from=bob bind=bob/b1",
				"bob conn= except=b1 ended/answered_elsewhere",
			},
			reply: "ack call=call-1 then=[accepted from=bob] bind=alice/a1", repeat: true},
		{name: "late accept by another device", call: mtAccepted(), ev: ev("bob", "b2"), reply: "error invalid_state"},
		{name: "accept after ringing ended", call: mtEnded(messages.ReasonCancelled), ev: ev("bob", "b1"), reply: "error invalid_state"},
		{name: "retry after the call ended", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("bob", "b1"), reply: "error invalid_state"},
		{name: "after answered elsewhere and ended", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("bob", "b2"), reply: "error invalid_state"},
	})
}

func TestDecideReject(t *testing.T) {
	ev := func(user, conn string) Event { return Event{Kind: Reject, User: user, Conn: conn} }
	mtRun(t, []mtCase{
		{name: "no call", call: nil, ev: ev("bob", "b1"), reply: "error not_found"},
		{name: "stranger", call: mtRinging(), ev: ev("carol", "c1"), reply: "error forbidden"},
		{name: "caller", call: mtRinging(), ev: ev("alice", "a1"), reply: "error forbidden"},
		{name: "caller other conn", call: mtRinging(), ev: ev("alice", "a2"), reply: "error forbidden"},

		// Rule 3: reject ends the call for the caller and every other device.
		{name: "ringing", call: mtRinging(), ev: ev("bob", "b2"),
			next: "ended/rejected",
			effects: []string{
				"alice conn=a1 except= ended/rejected",
				"bob conn= except=b2 ended/rejected",
			},
			reply: "ack call=call-1"},
		{name: "ended is harmless", call: mtEnded(messages.ReasonRejected), ev: ev("bob", "b2"), reply: "ack call=call-1"},
		{name: "ended by another reason is harmless", call: mtEnded(messages.ReasonCancelled), ev: ev("bob", "b3"), reply: "ack call=call-1"},
		{name: "accepted, winner", call: mtAccepted(), ev: ev("bob", "b1"), reply: "error invalid_state"},
		{name: "accepted, other device", call: mtAccepted(), ev: ev("bob", "b2"), reply: "error invalid_state"},
	})
}

func TestDecideHangup(t *testing.T) {
	ev := func(user, conn string) Event { return Event{Kind: Hangup, User: user, Conn: conn} }
	mtRun(t, []mtCase{
		{name: "no call", call: nil, ev: ev("alice", "a1"), reply: "error not_found"},
		{name: "stranger ringing", call: mtRinging(), ev: ev("carol", "c1"), reply: "error forbidden"},
		{name: "stranger accepted", call: mtAccepted(), ev: ev("carol", "c1"), reply: "error forbidden"},
		{name: "stranger ended", call: mtEnded(messages.ReasonHangup), ev: ev("carol", "c1"), reply: "error forbidden"},

		// Rule 6: a second hangup is harmless, from any party's connection.
		{name: "ended, caller", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("alice", "a1"), reply: "ack call=call-1"},
		{name: "ended, caller other conn", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("alice", "a2"), reply: "ack call=call-1"},
		{name: "ended, callee winner", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("bob", "b1"), reply: "ack call=call-1"},
		{name: "ended, callee other device", call: mtEnded(messages.ReasonCancelled), ev: ev("bob", "b3"), reply: "ack call=call-1"},

		// The caller's other connection is not in the call.
		{name: "caller other conn ringing", call: mtRinging(), ev: ev("alice", "a2"), reply: "error forbidden"},
		{name: "caller other conn accepted", call: mtAccepted(), ev: ev("alice", "a2"), reply: "error forbidden"},

		// Rule 6: cancel while ringing, hangup once accepted.
		{name: "caller ringing cancels", call: mtRinging(), ev: ev("alice", "a1"),
			next:    "ended/cancelled",
			effects: []string{"bob conn= except= ended/cancelled"},
			reply:   "ack call=call-1"},
		{name: "caller accepted", call: mtAccepted(), ev: ev("alice", "a1"),
			next:    "ended/hangup conn=b1",
			effects: []string{"bob conn=b1 except= ended/hangup"},
			reply:   "ack call=call-1"},

		// A ringing callee device hanging up declines.
		{name: "callee ringing rejects", call: mtRinging(), ev: ev("bob", "b3"),
			next: "ended/rejected",
			effects: []string{
				"alice conn=a1 except= ended/rejected",
				"bob conn= except=b3 ended/rejected",
			},
			reply: "ack call=call-1"},
		{name: "callee winner accepted", call: mtAccepted(), ev: ev("bob", "b1"),
			next:    "ended/hangup conn=b1",
			effects: []string{"alice conn=a1 except= ended/hangup"},
			reply:   "ack call=call-1"},
		{name: "callee other device accepted", call: mtAccepted(), ev: ev("bob", "b2"), reply: "error forbidden"},
	})
}

func TestDecideLeave(t *testing.T) {
	ev := func(user, conn string, bye, others bool) Event {
		return Event{Kind: Leave, User: user, Conn: conn, Bye: bye, OtherDevices: others}
	}
	mtRun(t, []mtCase{
		{name: "no call", call: nil, ev: ev("alice", "a1", true, false)},
		{name: "ended, caller", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("alice", "a1", true, false)},
		{name: "ended, callee", call: mtEndedAccepted(messages.ReasonHangup), ev: ev("bob", "b1", false, false)},
		{name: "ended ringing, last device", call: mtEnded(messages.ReasonCancelled), ev: ev("bob", "b2", false, false)},
		{name: "stranger", call: mtRinging(), ev: ev("carol", "c1", true, false)},
		{name: "stranger accepted", call: mtAccepted(), ev: ev("carol", "c1", false, false)},

		// Caller's connection while ringing: cancelled (bye) / disconnected (drop).
		{name: "caller bye ringing", call: mtRinging(), ev: ev("alice", "a1", true, false),
			next: "ended/cancelled", effects: []string{"bob conn= except= ended/cancelled"}},
		{name: "caller drop ringing", call: mtRinging(), ev: ev("alice", "a1", false, false),
			next: "ended/disconnected", effects: []string{"bob conn= except= ended/disconnected"}},
		// Caller's connection in a call: hangup (bye) / disconnected (drop).
		{name: "caller bye accepted", call: mtAccepted(), ev: ev("alice", "a1", true, false),
			next: "ended/hangup conn=b1", effects: []string{"bob conn=b1 except= ended/hangup"}},
		{name: "caller drop accepted", call: mtAccepted(), ev: ev("alice", "a1", false, false),
			next: "ended/disconnected conn=b1", effects: []string{"bob conn=b1 except= ended/disconnected"}},
		// The caller's other connection is not in the call.
		{name: "caller other conn bye ringing", call: mtRinging(), ev: ev("alice", "a2", true, false)},
		{name: "caller other conn drop ringing", call: mtRinging(), ev: ev("alice", "a2", false, true)},
		{name: "caller other conn bye accepted", call: mtAccepted(), ev: ev("alice", "a2", true, false)},
		{name: "caller other conn drop accepted", call: mtAccepted(), ev: ev("alice", "a2", false, false)},

		// Rule 7: one of several ringing devices leaving: the others keep ringing.
		{name: "callee device drop ringing, others left", call: mtRinging(), ev: ev("bob", "b2", false, true)},
		{name: "callee device bye ringing, others left", call: mtRinging(), ev: ev("bob", "b2", true, true)},
		// The last ringing device gone: the caller gets disconnected.
		{name: "last callee device drop ringing", call: mtRinging(), ev: ev("bob", "b2", false, false),
			next: "ended/disconnected", effects: []string{"alice conn=a1 except= ended/disconnected"}},
		{name: "last callee device bye ringing", call: mtRinging(), ev: ev("bob", "b2", true, false),
			next: "ended/disconnected", effects: []string{"alice conn=a1 except= ended/disconnected"}},

		// The accepting device leaving a call: hangup (bye) / disconnected (drop).
		{name: "winner bye accepted", call: mtAccepted(), ev: ev("bob", "b1", true, false),
			next: "ended/hangup conn=b1", effects: []string{"alice conn=a1 except= ended/hangup"}},
		{name: "winner drop accepted", call: mtAccepted(), ev: ev("bob", "b1", false, false),
			next: "ended/disconnected conn=b1", effects: []string{"alice conn=a1 except= ended/disconnected"}},
		{name: "winner drop accepted, others left", call: mtAccepted(), ev: ev("bob", "b1", false, true),
			next: "ended/disconnected conn=b1", effects: []string{"alice conn=a1 except= ended/disconnected"}},
		// Another callee device leaving an accepted call changes nothing.
		{name: "other device bye accepted", call: mtAccepted(), ev: ev("bob", "b2", true, false)},
		{name: "other device drop accepted", call: mtAccepted(), ev: ev("bob", "b2", false, true)},
	})
}

func TestDecideExpire(t *testing.T) {
	at := func(now time.Time) Event { return Event{Kind: Expire, Now: now} }
	noAnswer := []string{
		"alice conn=a1 except= ended/no_answer",
		"bob conn= except= ended/no_answer",
	}
	mtRun(t, []mtCase{
		// Rule 4.
		{name: "at the deadline", call: mtRinging(), ev: at(mtDeadline),
			next: "ended/no_answer", effects: noAnswer},
		{name: "half a millisecond past", call: mtRinging(), ev: at(mtDeadline.Add(500 * time.Microsecond)),
			next: "ended/no_answer", effects: noAnswer},
		{name: "long past (the router that made it died)", call: mtRinging(), ev: at(mtDeadline.Add(time.Hour)),
			next: "ended/no_answer", effects: noAnswer},
		{name: "a millisecond early", call: mtRinging(), ev: at(mtDeadline.Add(-time.Millisecond))},
		{name: "a nanosecond early", call: mtRinging(), ev: at(mtDeadline.Add(-time.Nanosecond))},
		{name: "zero time", call: mtRinging(), ev: at(time.Time{})},
		{name: "accepted", call: mtAccepted(), ev: at(mtDeadline.Add(time.Hour))},
		{name: "ended", call: mtEnded(messages.ReasonRejected), ev: at(mtDeadline.Add(time.Hour))},
		{name: "ended no answer", call: mtEnded(messages.ReasonNoAnswer), ev: at(mtDeadline.Add(time.Hour))},
		{name: "no call", call: nil, ev: at(mtDeadline.Add(time.Hour))},
	})
}

// TestDecideUnknownKind: an event of no known kind changes nothing.
func TestDecideUnknownKind(t *testing.T) {
	mtRun(t, []mtCase{
		{name: "zero kind, party", call: mtRinging(), ev: Event{User: "alice", Conn: "a1"}, reply: "error internal"},
		{name: "zero kind, stranger", call: mtRinging(), ev: Event{User: "carol", Conn: "c1"}, reply: "error forbidden"},
		{name: "zero kind, no call", call: nil, ev: Event{User: "bob", Conn: "b1"}, reply: "error not_found"},
		{name: "out of range", call: mtAccepted(), ev: Event{Kind: Expire + 1, User: "bob", Conn: "b1"}, reply: "error internal"},
	})
}

// TestMachineScenarios walks whole calls through Decide, feeding each Next
// back in, as the router does.
func TestMachineScenarios(t *testing.T) {
	type step struct {
		ev      Event
		next    string // "" = record unchanged
		effects []string
		reply   string
	}
	acceptB2 := Event{Kind: Accept, User: "bob", Conn: "b2"}
	scenarios := []struct {
		name  string
		steps []step
	}{
		{"answered, then hung up twice", []step{
			{ev: Event{Kind: Invite, User: "alice", Conn: "a1", CalleeOnline: true},
				effects: []string{`bob conn= except= incoming from=alice data={"sdp":"offer"}`},
				reply:   "ack call=call-1 then=[ringing to=bob]"},
			{ev: acceptB2, next: "accepted conn=b2",
				effects: []string{"alice conn=a1 except= accepted from=bob bind=bob/b2", "bob conn= except=b2 ended/answered_elsewhere"},
				reply:   "ack call=call-1 then=[accepted from=bob] bind=alice/a1"},
			{ev: Event{Kind: Accept, User: "bob", Conn: "b1"}, reply: "error invalid_state"},
			{ev: acceptB2, // a retry: told again
				effects: []string{"alice conn=a1 except= accepted from=bob bind=bob/b2", "bob conn= except=b2 ended/answered_elsewhere"},
				reply:   "ack call=call-1 then=[accepted from=bob] bind=alice/a1"},
			{ev: Event{Kind: Expire, Now: mtDeadline.Add(time.Minute)}},
			{ev: Event{Kind: Hangup, User: "bob", Conn: "b2"}, next: "ended/hangup conn=b2",
				effects: []string{"alice conn=a1 except= ended/hangup"}, reply: "ack call=call-1"},
			{ev: Event{Kind: Hangup, User: "bob", Conn: "b2"}, // a retry: told again
				effects: []string{"alice conn=a1 except= ended/hangup"}, reply: "ack call=call-1"},
			{ev: Event{Kind: Hangup, User: "alice", Conn: "a1"}, reply: "ack call=call-1"},
			{ev: Event{Kind: Leave, User: "alice", Conn: "a1", Bye: true}},
			{ev: Event{Kind: Leave, User: "bob", Conn: "b2", Bye: true}},
			{ev: Event{Kind: Accept, User: "bob", Conn: "b2"}, reply: "error invalid_state"},
		}},
		{"one device drops, the other keeps ringing, then no answer", []step{
			{ev: Event{Kind: Leave, User: "bob", Conn: "b1", OtherDevices: true}},
			{ev: Event{Kind: Expire, Now: mtDeadline.Add(-time.Second)}},
			{ev: Event{Kind: Expire, Now: mtDeadline}, next: "ended/no_answer",
				effects: []string{"alice conn=a1 except= ended/no_answer", "bob conn= except= ended/no_answer"}},
			{ev: Event{Kind: Expire, Now: mtDeadline.Add(time.Second)}, // another router's timer
				effects: []string{"alice conn=a1 except= ended/no_answer", "bob conn= except= ended/no_answer"}},
			{ev: Event{Kind: Reject, User: "bob", Conn: "b2"}, reply: "ack call=call-1"},
			{ev: Event{Kind: Invite, User: "alice", Conn: "a1", CalleeOnline: true}, reply: "ack call=call-1 then=[ended/no_answer]"},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := mtRinging()
			for i, st := range sc.steps {
				before := mtClone(c)
				out := Decide(c, st.ev)
				if !reflect.DeepEqual(c, before) {
					t.Fatalf("step %d: Decide mutated its input", i)
				}
				got := make([]string, len(out.Effects))
				for j, e := range out.Effects {
					got[j] = mtEffect(e)
				}
				want := slices.Clone(st.effects)
				slices.Sort(got)
				slices.Sort(want)
				if n := mtNext(out.Next); n != st.next || !slices.Equal(got, want) || mtReply(out.Reply) != st.reply {
					t.Fatalf("step %d (%+v):\n got next=%q effects=%q reply=%q\nwant next=%q effects=%q reply=%q",
						i, st.ev, n, got, mtReply(out.Reply), st.next, want, st.reply)
				}
				if out.Next != nil {
					c = out.Next
				}
			}
		})
	}
}

// mtAfter is the record that ev makes of c (failing if it makes none).
func mtAfter(t *testing.T, c *Call, ev Event) *Call {
	t.Helper()
	next := Decide(c, ev).Next
	if next == nil {
		t.Fatalf("%+v leaves %+v unchanged", ev, c)
	}
	return next
}

// TestDecideRepeat: a router that stored an ending and died before
// publishing it. The same event again (a gateway's retry on another router,
// another router's ring timer or eviction) finds the ended record and
// publishes the ending's effects again, writing nothing; any other event on
// the ended call tells nobody anything.
func TestDecideRepeat(t *testing.T) {
	ev := func(k Kind, user, conn string) Event { return Event{Kind: k, User: user, Conn: conn} }
	leave := func(user, conn string, bye bool) Event { return Event{Kind: Leave, User: user, Conn: conn, Bye: bye} }
	expire := Event{Kind: Expire, Now: mtDeadline}

	hungUpByBob := mtAfter(t, mtAccepted(), ev(Hangup, "bob", "b1"))
	hungUpByAlice := mtAfter(t, mtAccepted(), ev(Hangup, "alice", "a1"))
	cancelled := mtAfter(t, mtRinging(), ev(Hangup, "alice", "a1"))
	rejected := mtAfter(t, mtRinging(), ev(Reject, "bob", "b2"))
	declined := mtAfter(t, mtRinging(), ev(Hangup, "bob", "b3"))
	noAnswer := mtAfter(t, mtRinging(), expire)
	callerDropped := mtAfter(t, mtAccepted(), leave("alice", "a1", false))
	callerByeRinging := mtAfter(t, mtRinging(), leave("alice", "a1", true))
	lastDeviceGone := mtAfter(t, mtRinging(), leave("bob", "b2", false))
	winnerBye := mtAfter(t, mtAccepted(), leave("bob", "b1", true))

	mtRun(t, []mtCase{
		// The other party never heard: tell them now.
		{name: "callee's hangup retried", call: hungUpByBob, ev: ev(Hangup, "bob", "b1"),
			effects: []string{"alice conn=a1 except= ended/hangup"}, reply: "ack call=call-1", repeat: true},
		{name: "caller's hangup retried", call: hungUpByAlice, ev: ev(Hangup, "alice", "a1"),
			effects: []string{"bob conn=b1 except= ended/hangup"}, reply: "ack call=call-1", repeat: true},
		{name: "cancel retried", call: cancelled, ev: ev(Hangup, "alice", "a1"),
			effects: []string{"bob conn= except= ended/cancelled"}, reply: "ack call=call-1", repeat: true},
		{name: "reject retried", call: rejected, ev: ev(Reject, "bob", "b2"),
			effects: []string{"alice conn=a1 except= ended/rejected", "bob conn= except=b2 ended/rejected"},
			reply:   "ack call=call-1", repeat: true},
		{name: "declining hangup retried", call: declined, ev: ev(Hangup, "bob", "b3"),
			effects: []string{"alice conn=a1 except= ended/rejected", "bob conn= except=b3 ended/rejected"},
			reply:   "ack call=call-1", repeat: true},
		{name: "ring timeout on another router", call: noAnswer, ev: Event{Kind: Expire, Now: mtDeadline.Add(time.Millisecond)},
			effects: []string{"alice conn=a1 except= ended/no_answer", "bob conn= except= ended/no_answer"}, repeat: true},
		{name: "ring timeout on a router with a slow clock", call: noAnswer, ev: Event{Kind: Expire, Now: mtDeadline.Add(-time.Second)},
			effects: []string{"alice conn=a1 except= ended/no_answer", "bob conn= except= ended/no_answer"}, repeat: true},
		{name: "eviction by another router", call: callerDropped, ev: leave("alice", "a1", false),
			effects: []string{"bob conn=b1 except= ended/disconnected"}, repeat: true},
		{name: "caller's bye retried while ringing", call: callerByeRinging, ev: leave("alice", "a1", true),
			effects: []string{"bob conn= except= ended/cancelled"}, repeat: true},
		{name: "last ringing device evicted again", call: lastDeviceGone, ev: leave("bob", "b2", false),
			effects: []string{"alice conn=a1 except= ended/disconnected"}, repeat: true},
		{name: "winner's bye retried", call: winnerBye, ev: leave("bob", "b1", true),
			effects: []string{"alice conn=a1 except= ended/hangup"}, repeat: true},

		// Not the event that ended the call: nothing new to tell.
		{name: "the other party's hangup", call: hungUpByBob, ev: ev(Hangup, "alice", "a1"), reply: "ack call=call-1"},
		{name: "hangup from the caller's other conn", call: hungUpByAlice, ev: ev(Hangup, "alice", "a2"), reply: "ack call=call-1"},
		{name: "hanging up after one's bye", call: winnerBye, ev: ev(Hangup, "bob", "b1"), reply: "ack call=call-1"},
		{name: "leaving after one's hangup", call: hungUpByBob, ev: leave("bob", "b1", true)},
		{name: "dropping after one's hangup", call: hungUpByBob, ev: leave("bob", "b1", false)},
		{name: "bye where a drop ended it", call: callerDropped, ev: leave("alice", "a1", true)},
		{name: "drop where a bye ended it", call: callerByeRinging, ev: leave("alice", "a1", false)},
		{name: "reject by another device", call: rejected, ev: ev(Reject, "bob", "b1"), reply: "ack call=call-1"},
		{name: "hangup where a reject ended it", call: rejected, ev: ev(Hangup, "bob", "b2"), reply: "ack call=call-1"},
		{name: "ring timeout of a rejected call", call: rejected, ev: expire},
		{name: "a leave of a call that timed out", call: noAnswer, ev: leave("alice", "a1", false)},
		{name: "stranger copying the cause", call: hungUpByBob, ev: ev(Hangup, "carol", "b1"), reply: "error forbidden"},
		{name: "accept retried after the call ended", call: hungUpByBob, ev: ev(Accept, "bob", "b1"), reply: "error invalid_state"},
		{name: "ended record without a cause (older router)", call: mtEndedAccepted(messages.ReasonHangup), ev: ev(Hangup, "bob", "b1"),
			reply: "ack call=call-1"},
	})
}
