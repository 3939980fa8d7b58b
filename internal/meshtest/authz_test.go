package meshtest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// Test 8: nobody but the parties can touch a call; a party's other device
// cannot either; nothing is relayed and the call goes on.
func TestAuthorization(t *testing.T) {
	m := Start(t, Options{})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")
	mallory := m.Dial(1, "mallory")
	aliceTablet := m.Dial(1, "alice")
	ringing := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)

	// While ringing: a stranger cannot accept, reject or hang up; the
	// caller cannot accept or reject her own call; signal is not open yet.
	try := func(c *Client, typ, call, code string) {
		t.Helper()
		env := &messages.Envelope{Type: typ, ID: "t-" + typ, Call: call}
		if typ == messages.TypeSignal {
			env.Data = json.RawMessage(`{"evil":true}`)
		}
		c.Send(env)
		c.ExpectError(env.ID, code)
	}
	for _, typ := range []string{messages.TypeAccept, messages.TypeReject, messages.TypeHangup} {
		try(mallory, typ, ringing, messages.CodeForbidden)
	}
	try(mallory, messages.TypeSignal, ringing, messages.CodeForbidden)
	try(alice, messages.TypeAccept, ringing, messages.CodeForbidden)
	try(alice, messages.TypeReject, ringing, messages.CodeForbidden)
	try(alice, messages.TypeSignal, ringing, messages.CodeInvalidState)
	try(aliceTablet, messages.TypeHangup, ringing, messages.CodeForbidden)
	try(mallory, messages.TypeAccept, "NoSuchCallAtAll000000", messages.CodeNotFound)
	for _, c := range []*Client{alice, bob, aliceTablet} {
		m.Barrier(c)
	}

	bob.Do(messages.TypeAccept, ringing)
	bob.Expect(messages.TypeAccepted)
	alice.Expect(messages.TypeAccepted)
	// In the call: strangers and alice's other device are refused.
	for _, typ := range []string{messages.TypeSignal, messages.TypeAccept, messages.TypeReject, messages.TypeHangup} {
		try(mallory, typ, ringing, messages.CodeForbidden)
	}
	try(aliceTablet, messages.TypeSignal, ringing, messages.CodeForbidden)
	try(aliceTablet, messages.TypeHangup, ringing, messages.CodeForbidden)
	for _, c := range []*Client{alice, bob} {
		m.Barrier(c)
	}

	// The call is untouched: signal still flows, with the server's from.
	bob.SendRaw([]byte(fmt.Sprintf(`{"type":"signal","call":%q,"from":"mallory","data":{"ok":1}}`, ringing)))
	relayed(t, alice, ringing, "bob", json.RawMessage(`{"ok":1}`))
	alice.Do(messages.TypeHangup, ringing)
	bob.ExpectEnded(ringing, messages.ReasonHangup)
	// A second hangup is harmless.
	alice.Do(messages.TypeHangup, ringing)
	m.Barrier(bob)
}

// Test 9: user ids that mean something to NATS, or contain odd characters,
// work and never receive each other's messages.
func TestHostileUserIDs(t *testing.T) {
	m := Start(t, Options{})
	ids := []string{"a.b", "a", "b", "*", ">", "alice@example.com", "ñandú", "a b", "a.*", "callmesh.user.>"}
	clients := make([]*Client, len(ids))
	for i, id := range ids {
		clients[i] = m.Dial(i%2, id)
		if clients[i].User != id {
			t.Fatalf("welcome user = %q, want %q", clients[i].User, id)
		}
	}
	for i, caller := range clients {
		callee := clients[(i+1)%len(clients)]
		call := caller.Invite(callee.User)
		caller.Expect(messages.TypeRinging)
		if in := callee.Expect(messages.TypeIncoming); in.Call != call || in.From != caller.User {
			t.Fatalf("%s: incoming %s", callee, describe(in))
		}
		callee.Do(messages.TypeAccept, call)
		callee.Expect(messages.TypeAccepted)
		caller.Expect(messages.TypeAccepted)
		caller.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(`"hi"`)})
		relayed(t, callee, call, caller.User, json.RawMessage(`"hi"`))
		caller.Do(messages.TypeHangup, call)
		callee.ExpectEnded(call, messages.ReasonHangup)
		for _, c := range clients {
			m.Barrier(c) // nobody else heard any of it
		}
	}
}
