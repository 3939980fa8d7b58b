package meshtest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/callmesh/callmesh/messages"
)

// Test 1: alice on gateway A calls bob on gateway B, they exchange offer,
// answer and candidates, hang up, and can be called again at once.
func TestCallAcrossGateways(t *testing.T) {
	m := Start(t, Options{})
	alice, bob := m.Dial(0, "alice"), m.Dial(1, "bob")

	if len(alice.Welcome.ICEServers) == 0 || len(alice.Welcome.ICEServers[0].URLs) == 0 {
		t.Fatalf("welcome has no ice servers: %+v", alice.Welcome)
	}
	alice.Send(&messages.Envelope{Type: messages.TypeInvite, ID: "1", To: "bob", Data: json.RawMessage(`{"video":true}`)})
	call := alice.ExpectAck("1").Call
	if !messages.ValidCallID(call) {
		t.Fatalf("ack names no call: %q", call)
	}
	if r := alice.Expect(messages.TypeRinging); r.Call != call || r.To != "bob" {
		t.Fatalf("ringing = %+v", r)
	}
	in := bob.Expect(messages.TypeIncoming)
	if in.Call != call || in.From != "alice" || string(in.Data) != `{"video":true}` {
		t.Fatalf("incoming = %s", describe(in))
	}

	bob.Send(&messages.Envelope{Type: messages.TypeAccept, ID: "2", Call: call})
	bob.ExpectAck("2")
	for _, c := range []*Client{alice, bob} {
		if a := c.Expect(messages.TypeAccepted); a.Call != call || a.From != "bob" {
			t.Fatalf("%s: accepted = %s", c, describe(a))
		}
	}

	// SDP and ICE, byte-identical, with the server's from (a forged one is ignored).
	// Whitespace and <, >, & would not survive a JSON re-encoding.
	offer := json.RawMessage(`{ "type": "offer",
		"sdp": "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=<&>\r\nt=0 0\r\n" }`)
	alice.SendRaw([]byte(`{"type":"signal","call":"` + call + `","from":"mallory","data":` + string(offer) + `}`))
	relayed(t, bob, call, "alice", offer)
	answer := json.RawMessage(`{"type":"answer","sdp":"v=0\r\n…ünïcödé\r\n"}`)
	bob.Send(&messages.Envelope{Type: messages.TypeSignal, Call: call, Data: answer})
	relayed(t, alice, call, "bob", answer)
	for i, cand := range []string{
		`{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}`,
		`{"candidate":"candidate:2 1 udp 1686052607 198.51.100.7 61000 typ srflx raddr 192.0.2.1 rport 54400","sdpMid":"0"}`,
		`{"candidate":""}`,
	} {
		from, to, name := alice, bob, "alice"
		if i%2 == 1 {
			from, to, name = bob, alice, "bob"
		}
		from.Send(&messages.Envelope{Type: messages.TypeSignal, ID: "c", Call: call, Data: json.RawMessage(cand)})
		from.ExpectAck("c")
		relayed(t, to, call, name, json.RawMessage(cand))
	}

	alice.Do(messages.TypeHangup, call)
	bob.ExpectEnded(call, messages.ReasonHangup)
	m.Barrier(alice)

	// Both can be called again at once, in either direction.
	call2 := bob.Invite("alice")
	bob.Expect(messages.TypeRinging)
	if in := alice.Expect(messages.TypeIncoming); in.Call != call2 || in.From != "bob" {
		t.Fatalf("second incoming = %s", describe(in))
	}
	alice.Do(messages.TypeReject, call2)
	bob.ExpectEnded(call2, messages.ReasonRejected)
}

func relayed(t *testing.T, c *Client, call, from string, data json.RawMessage) {
	t.Helper()
	s := c.Expect(messages.TypeSignal)
	if s.Call != call || s.From != from || !bytes.Equal(s.Data, data) {
		t.Fatalf("%s: signal = %s, want call %s from %s data %s", c, describe(s), call, from, data)
	}
}
