package meshtest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// Test 3: offline callee, self-invite and malformed invites.
func TestInviteRefusals(t *testing.T) {
	m := Start(t, Options{})
	alice := m.Dial(0, "alice")

	call := alice.Invite("nobody")
	alice.ExpectEnded(call, messages.ReasonOffline)

	for _, tc := range []struct{ name, frame, id, code string }{
		{"self", `{"type":"invite","id":"x1","to":"alice"}`, "x1", messages.CodeBadRequest},
		{"empty to", `{"type":"invite","id":"x2","to":""}`, "x2", messages.CodeBadRequest},
		{"no to", `{"type":"invite","id":"x3"}`, "x3", messages.CodeBadRequest},
		{"long to", `{"type":"invite","id":"x4","to":"` + strings.Repeat("a", 257) + `"}`, "x4", messages.CodeBadRequest},
		{"to not a string", `{"type":"invite","id":"x5","to":42}`, "", messages.CodeBadRequest},
		{"not json", `invite bob`, "", messages.CodeBadRequest},
		{"unknown type", `{"type":"dial","id":"x6","to":"bob"}`, "x6", messages.CodeUnknownType},
		{"data too large", `{"type":"invite","id":"x7","to":"bob","data":"` + strings.Repeat("a", messages.DefaultMaxData) + `"}`, "x7", messages.CodeTooLarge},
	} {
		alice.SendRaw([]byte(tc.frame))
		alice.ExpectError(tc.id, tc.code)
	}
	// The connection survives all of that and alice is not busy.
	bob := m.Dial(1, "bob")
	call = alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	bob.Expect(messages.TypeIncoming)
}

// Test 4: bob on two devices on different gateways; both ring, the first
// accept wins and the other device stops; a reject stops both.
func TestTwoDevices(t *testing.T) {
	m := Start(t, Options{})
	alice := m.Dial(0, "alice")
	phone, laptop := m.Dial(0, "bob"), m.Dial(1, "bob")

	call := alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	phone.Expect(messages.TypeIncoming)
	laptop.Expect(messages.TypeIncoming)
	laptop.Do(messages.TypeAccept, call)
	laptop.Expect(messages.TypeAccepted)
	alice.Expect(messages.TypeAccepted)
	phone.ExpectEnded(call, messages.ReasonAnsweredElsewhere)

	// A late accept from the phone is refused and relays nothing.
	phone.Send(&messages.Envelope{Type: messages.TypeAccept, ID: "late", Call: call})
	phone.ExpectError("late", messages.CodeInvalidState)
	// Signal flows between alice and the laptop only.
	alice.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: json.RawMessage(`{"sdp":"x"}`)})
	relayed(t, laptop, call, "alice", json.RawMessage(`{"sdp":"x"}`))
	phone.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "s", Call: call, Data: json.RawMessage(`{"sdp":"y"}`)})
	phone.ExpectError("s", messages.CodeForbidden)
	m.Barrier(alice)
	m.Barrier(phone)
	laptop.Do(messages.TypeHangup, call)
	alice.ExpectEnded(call, messages.ReasonHangup)
	m.Barrier(phone)

	// A reject from one device stops both, and the caller hears rejected.
	call = alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	phone.Expect(messages.TypeIncoming)
	laptop.Expect(messages.TypeIncoming)
	phone.Do(messages.TypeReject, call)
	alice.ExpectEnded(call, messages.ReasonRejected)
	laptop.ExpectEnded(call, messages.ReasonRejected)
	m.Barrier(phone)

	// A device that connects while a call rings rings too.
	call = alice.Invite("bob")
	alice.Expect(messages.TypeRinging)
	phone.Expect(messages.TypeIncoming)
	laptop.Expect(messages.TypeIncoming)
	tablet := m.Dial(1, "bob")
	if in := tablet.Expect(messages.TypeIncoming); in.Call != call || in.From != "alice" {
		t.Fatalf("tablet: %s", describe(in))
	}
	m.Barrier(tablet) // rung once, not twice
	alice.Do(messages.TypeHangup, call)
	for _, d := range []*Client{phone, laptop, tablet} {
		d.ExpectEnded(call, messages.ReasonCancelled)
	}
}
