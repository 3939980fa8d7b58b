package meshtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// The call states of the authorization matrix (PROTOCOL.md §13).
const (
	inRinging  = "ringing"
	inAccepted = "accepted"
	inEnded    = "ended" // ended, within the ended retention
	// unknown: a well-formed call id that names no call. The row's
	// connections are in an accepted call of their own meanwhile, which
	// the request must not touch.
	inUnknown = "unknown"
)

// The sender roles of the matrix, each played by one connection of the row's
// little world:
//
//	C   the caller's connection in the call   (caller,    gateway 0)
//	C2  the caller's other connection         (caller,    gateway 1)
//	D1  callee device: the one that rings, and that wins the accept in the
//	    accepted and ended states             (callee,    gateway 1)
//	D2  the callee's other device: rings too, and loses the accept
//	    (answered_elsewhere)                  (callee,    gateway 0)
//	S   a stranger, another user              (mallory,   gateway 1)
const (
	asCaller      = "C"
	asCallerOther = "C2"
	asDevice      = "D1" // ringing device (ringing) / winning device (accepted, ended)
	asOtherDevice = "D2" // the other callee device
	asStranger    = "S"
)

// matrixConns is every connection of a row, in the order they are checked.
var matrixConns = []string{asCaller, asCallerOther, asDevice, asOtherDevice, asStranger}

// matrixFrame is one frame a connection must get for the row's call:
// accepted is from the callee, a relayed signal from the sender with the
// data it sent, ended has a reason.
type matrixFrame struct{ typ, reason string }

var (
	frameAccepted = matrixFrame{typ: messages.TypeAccepted}
	frameSignal   = matrixFrame{typ: messages.TypeSignal}
)

func frameEnded(reason string) matrixFrame {
	return matrixFrame{typ: messages.TypeEnded, reason: reason}
}

// matrixCell is one cell of the matrix: message msg sent in state by role from.
type matrixCell struct {
	msg, state, from string
	// code is the error code the sender gets; "" means ack.
	code string
	// accepted: the ack is followed by accepted{from: callee} on the sender.
	accepted bool
	// sees lists the frames every other connection gets; absent: nothing.
	sees map[string][]matrixFrame
	// after is the call's state afterwards; "" means unchanged.
	after string
}

// matrix mirrors PROTOCOL.md §13 cell by cell, one row per cell.
var matrix = []matrixCell{
	// accept
	{msg: messages.TypeAccept, state: inRinging, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeAccept, state: inRinging, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeAccept, state: inRinging, from: asDevice, accepted: true, after: inAccepted,
		sees: map[string][]matrixFrame{asCaller: {frameAccepted}, asOtherDevice: {frameEnded(messages.ReasonAnsweredElsewhere)}}},
	{msg: messages.TypeAccept, state: inRinging, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeAccept, state: inAccepted, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeAccept, state: inAccepted, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeAccept, state: inAccepted, from: asDevice, accepted: true}, // a retried accept
	{msg: messages.TypeAccept, state: inAccepted, from: asOtherDevice, code: messages.CodeInvalidState},
	{msg: messages.TypeAccept, state: inAccepted, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeAccept, state: inEnded, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeAccept, state: inEnded, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeAccept, state: inEnded, from: asDevice, code: messages.CodeInvalidState},
	{msg: messages.TypeAccept, state: inEnded, from: asOtherDevice, code: messages.CodeInvalidState},
	{msg: messages.TypeAccept, state: inEnded, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeAccept, state: inUnknown, from: asCaller, code: messages.CodeNotFound},
	{msg: messages.TypeAccept, state: inUnknown, from: asCallerOther, code: messages.CodeNotFound},
	{msg: messages.TypeAccept, state: inUnknown, from: asDevice, code: messages.CodeNotFound},
	{msg: messages.TypeAccept, state: inUnknown, from: asOtherDevice, code: messages.CodeNotFound},
	{msg: messages.TypeAccept, state: inUnknown, from: asStranger, code: messages.CodeNotFound},

	// reject
	{msg: messages.TypeReject, state: inRinging, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeReject, state: inRinging, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeReject, state: inRinging, from: asDevice, after: inEnded,
		sees: map[string][]matrixFrame{asCaller: {frameEnded(messages.ReasonRejected)}, asOtherDevice: {frameEnded(messages.ReasonRejected)}}},
	{msg: messages.TypeReject, state: inRinging, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeReject, state: inAccepted, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeReject, state: inAccepted, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeReject, state: inAccepted, from: asDevice, code: messages.CodeInvalidState},
	{msg: messages.TypeReject, state: inAccepted, from: asOtherDevice, code: messages.CodeInvalidState},
	{msg: messages.TypeReject, state: inAccepted, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeReject, state: inEnded, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeReject, state: inEnded, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeReject, state: inEnded, from: asDevice},
	{msg: messages.TypeReject, state: inEnded, from: asOtherDevice},
	{msg: messages.TypeReject, state: inEnded, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeReject, state: inUnknown, from: asCaller, code: messages.CodeNotFound},
	{msg: messages.TypeReject, state: inUnknown, from: asCallerOther, code: messages.CodeNotFound},
	{msg: messages.TypeReject, state: inUnknown, from: asDevice, code: messages.CodeNotFound},
	{msg: messages.TypeReject, state: inUnknown, from: asOtherDevice, code: messages.CodeNotFound},
	{msg: messages.TypeReject, state: inUnknown, from: asStranger, code: messages.CodeNotFound},

	// hangup
	{msg: messages.TypeHangup, state: inRinging, from: asCaller, after: inEnded,
		sees: map[string][]matrixFrame{asDevice: {frameEnded(messages.ReasonCancelled)}, asOtherDevice: {frameEnded(messages.ReasonCancelled)}}},
	{msg: messages.TypeHangup, state: inRinging, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeHangup, state: inRinging, from: asDevice, after: inEnded,
		sees: map[string][]matrixFrame{asCaller: {frameEnded(messages.ReasonRejected)}, asOtherDevice: {frameEnded(messages.ReasonRejected)}}},
	{msg: messages.TypeHangup, state: inRinging, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeHangup, state: inAccepted, from: asCaller, after: inEnded,
		sees: map[string][]matrixFrame{asDevice: {frameEnded(messages.ReasonHangup)}}},
	{msg: messages.TypeHangup, state: inAccepted, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeHangup, state: inAccepted, from: asDevice, after: inEnded,
		sees: map[string][]matrixFrame{asCaller: {frameEnded(messages.ReasonHangup)}}},
	{msg: messages.TypeHangup, state: inAccepted, from: asOtherDevice, code: messages.CodeForbidden},
	{msg: messages.TypeHangup, state: inAccepted, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeHangup, state: inEnded, from: asCaller},
	{msg: messages.TypeHangup, state: inEnded, from: asCallerOther},
	{msg: messages.TypeHangup, state: inEnded, from: asDevice},
	{msg: messages.TypeHangup, state: inEnded, from: asOtherDevice},
	{msg: messages.TypeHangup, state: inEnded, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeHangup, state: inUnknown, from: asCaller, code: messages.CodeNotFound},
	{msg: messages.TypeHangup, state: inUnknown, from: asCallerOther, code: messages.CodeNotFound},
	{msg: messages.TypeHangup, state: inUnknown, from: asDevice, code: messages.CodeNotFound},
	{msg: messages.TypeHangup, state: inUnknown, from: asOtherDevice, code: messages.CodeNotFound},
	{msg: messages.TypeHangup, state: inUnknown, from: asStranger, code: messages.CodeNotFound},

	// signal
	{msg: messages.TypeSignal, state: inRinging, from: asCaller, code: messages.CodeInvalidState},
	{msg: messages.TypeSignal, state: inRinging, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inRinging, from: asDevice, code: messages.CodeInvalidState},
	{msg: messages.TypeSignal, state: inRinging, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeSignal, state: inAccepted, from: asCaller,
		sees: map[string][]matrixFrame{asDevice: {frameSignal}}},
	{msg: messages.TypeSignal, state: inAccepted, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inAccepted, from: asDevice,
		sees: map[string][]matrixFrame{asCaller: {frameSignal}}},
	{msg: messages.TypeSignal, state: inAccepted, from: asOtherDevice, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inAccepted, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeSignal, state: inEnded, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inEnded, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inEnded, from: asDevice, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inEnded, from: asOtherDevice, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inEnded, from: asStranger, code: messages.CodeForbidden},

	{msg: messages.TypeSignal, state: inUnknown, from: asCaller, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inUnknown, from: asCallerOther, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inUnknown, from: asDevice, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inUnknown, from: asOtherDevice, code: messages.CodeForbidden},
	{msg: messages.TypeSignal, state: inUnknown, from: asStranger, code: messages.CodeForbidden},
}

// TestAuthorizationMatrix runs every cell of PROTOCOL.md §13 against a
// fresh call: it sets the state up, has the sender send the message, checks the
// sender's answer and the exact frames every other connection gets (and,
// with barriers, that nothing else comes), then proves the call's state
// afterwards by using it.
func TestAuthorizationMatrix(t *testing.T) {
	m := Start(t, Options{})
	for i, tc := range matrix {
		if tc.state == inRinging && tc.from == asOtherDevice {
			t.Fatalf("row %d: in a ringing call every callee device is a ringing device: use %s", i, asDevice)
		}
		if _, self := tc.sees[tc.from]; self {
			t.Fatalf("row %d: the sender's own frames belong in code/accepted, not sees", i)
		}
		name := fmt.Sprintf("%02d/%s/%s/%s", i, tc.msg, tc.state, tc.from)
		t.Run(name, func(t *testing.T) {
			t.Parallel() // every row has its own users
			runMatrixCell(t, m.For(t), fmt.Sprintf("m%02d-", i), tc)
		})
	}
}

func runMatrixCell(t *testing.T, m *Mesh, prefix string, tc matrixCell) {
	w := setUpMatrixCall(t, m, prefix, tc.state)
	sender := w.clients[tc.from]

	id := "req-" + tc.msg
	env := &messages.Envelope{Type: tc.msg, ID: id, Call: w.target}
	if tc.msg == messages.TypeSignal {
		env.Data = json.RawMessage(fmt.Sprintf(`{"cell":%q}`, prefix))
	}
	sender.Send(env)
	if tc.code != "" {
		sender.ExpectError(id, tc.code)
	} else {
		sender.ExpectAck(id)
	}
	if tc.accepted {
		w.expect(sender, frameAccepted, nil)
	}
	for _, name := range matrixConns {
		for _, f := range tc.sees[name] {
			w.expect(w.clients[name], f, sender)
			if f.typ == messages.TypeSignal && !bytes.Equal(w.last.Data, env.Data) {
				t.Fatalf("%s: relayed data %s, sent %s", name, w.last.Data, env.Data)
			}
		}
	}
	w.barrier()

	after := tc.after
	if after == "" {
		after = tc.state
	}
	w.prove(after)
}

// matrixWorld is one row's connections and call.
type matrixWorld struct {
	t              *testing.T
	m              *Mesh
	caller, callee string
	call           string // the row's call
	target         string // the call id the request names
	clients        map[string]*Client
	last           *messages.Envelope // the frame expect checked last
}

// setUpMatrixCall dials the row's five connections and brings a call from C
// to the callee's devices into state (accepted for an unknown call id).
func setUpMatrixCall(t *testing.T, m *Mesh, prefix, state string) *matrixWorld {
	t.Helper()
	w := &matrixWorld{t: t, m: m, caller: prefix + "alice", callee: prefix + "bob", clients: map[string]*Client{}}
	w.clients[asCaller] = m.Dial(0, w.caller)
	w.clients[asCallerOther] = m.Dial(1, w.caller)
	w.clients[asDevice] = m.Dial(1, w.callee)
	w.clients[asOtherDevice] = m.Dial(0, w.callee)
	w.clients[asStranger] = m.Dial(1, prefix+"mallory")
	w.ring()
	w.target = w.call
	if state == inUnknown {
		w.target = messages.NewID() // well-formed, never issued
	}
	if state == inRinging {
		return w
	}
	c, d1, d2 := w.clients[asCaller], w.clients[asDevice], w.clients[asOtherDevice]
	d1.Do(messages.TypeAccept, w.call)
	w.expect(d1, frameAccepted, nil)
	w.expect(c, frameAccepted, nil)
	w.expect(d2, frameEnded(messages.ReasonAnsweredElsewhere), nil)
	if state == inAccepted || state == inUnknown {
		return w
	}
	c.Do(messages.TypeHangup, w.call)
	w.expect(d1, frameEnded(messages.ReasonHangup), nil)
	return w
}

// ring has C invite the callee and both devices ring.
func (w *matrixWorld) ring() {
	w.t.Helper()
	c := w.clients[asCaller]
	w.call = c.Invite(w.callee)
	if r := c.Expect(messages.TypeRinging); r.Call != w.call || r.To != w.callee {
		w.t.Fatalf("%s: ringing = %s", c, describe(r))
	}
	for _, d := range []*Client{w.clients[asDevice], w.clients[asOtherDevice]} {
		if in := d.Expect(messages.TypeIncoming); in.Call != w.call || in.From != w.caller {
			w.t.Fatalf("%s: incoming = %s", d, describe(in))
		}
	}
}

// expect checks that c's next frame is f for the row's call; a relayed
// signal must come from sender.
func (w *matrixWorld) expect(c *Client, f matrixFrame, sender *Client) {
	w.t.Helper()
	e := c.Expect(f.typ)
	from := ""
	switch f.typ {
	case messages.TypeAccepted:
		from = w.callee
	case messages.TypeSignal:
		from = sender.User
	}
	if e.Call != w.call || e.Reason != f.reason || e.From != from {
		w.t.Fatalf("%s: got %s, want %s{call %s, reason %q, from %q}", c, describe(e), f.typ, w.call, f.reason, from)
	}
	w.last = e
}

// barrier proves that nothing else is on its way to any connection.
func (w *matrixWorld) barrier() {
	w.t.Helper()
	for _, name := range matrixConns {
		w.m.Barrier(w.clients[name])
	}
}

// prove shows that the call is in state by using it.
func (w *matrixWorld) prove(state string) {
	w.t.Helper()
	c, d1, d2 := w.clients[asCaller], w.clients[asDevice], w.clients[asOtherDevice]
	switch state {
	case inRinging:
		// Both devices still ring: the caller's hangup cancels on each.
		c.Do(messages.TypeHangup, w.call)
		w.expect(d1, frameEnded(messages.ReasonCancelled), nil)
		w.expect(d2, frameEnded(messages.ReasonCancelled), nil)
	case inAccepted:
		// The two parties still relay, both ways, and nobody else hears it.
		for _, pair := range [][2]*Client{{c, d1}, {d1, c}} {
			data := json.RawMessage(fmt.Sprintf(`{"probe":%q}`, pair[0].User))
			pair[0].Send(&messages.Envelope{Type: messages.TypeSignal, ID: "probe", Call: w.call, Data: data})
			pair[0].ExpectAck("probe")
			relayed(w.t, pair[1], w.call, pair[0].User, data)
		}
	case inEnded:
		// Neither party can signal, and neither user is left busy: the
		// caller can call the callee again at once and both devices ring.
		for _, p := range []*Client{c, d1} {
			p.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "probe", Call: w.call, Data: json.RawMessage(`{}`)})
			p.ExpectError("probe", messages.CodeForbidden)
		}
		w.ring()
	case inUnknown:
		w.prove(inAccepted) // the request touched no call: the row's own goes on
		return
	default:
		w.t.Fatalf("unknown state %q", state)
	}
	w.barrier()
}
