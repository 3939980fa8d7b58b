package messages

import (
	"encoding/json"
	"testing"
)

// The server envelopes and the data shapes serialize with exactly the names
// of the wire contract (DESIGN.md, PROTOCOL.md). Clients depend on each one.
func TestWireNames(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"ack", Ack("1", validCall), `{"type":"ack","id":"1","call":"` + validCall + `"}`},
		{"ack without call", Ack("1", ""), `{"type":"ack","id":"1"}`},
		{"error", Error("1", CodeNotFound, "no such call"), `{"type":"error","id":"1","code":"not_found","message":"no such call"}`},
		{"error without id", Error("", CodeBadRequest, "x"), `{"type":"error","code":"bad_request","message":"x"}`},
		{"ended", Ended(validCall, ReasonAnsweredElsewhere), `{"type":"ended","call":"` + validCall + `","reason":"answered_elsewhere"}`},
		{"ringing", &Envelope{Type: TypeRinging, Call: "c", To: "bob"}, `{"type":"ringing","call":"c","to":"bob"}`},
		{"incoming", &Envelope{Type: TypeIncoming, Call: "c", From: "alice", Data: json.RawMessage(`{"video":true}`)},
			`{"type":"incoming","call":"c","from":"alice","data":{"video":true}}`},
		{"welcome", Welcome{
			User: "alice", Conn: "k", Resume: "r", ResumeGraceMS: 10000, RingTimeoutMS: 30000,
			ICEServers:         []ICEServer{{URLs: []string{"stun:s:3478"}}, {URLs: []string{"turn:t:3478"}, Username: "u", Credential: "p"}},
			ICETransportPolicy: "relay",
			Calls:              []CallInfo{{Call: "c", State: "accepted", Role: "caller", Peer: "bob"}},
			Rooms:              []RoomInfo{{Room: "r1", Members: []RoomMember{{User: "alice", Conn: "k"}}}},
		}, `{"user":"alice","conn":"k","resume":"r","resume_grace_ms":10000,"ring_timeout_ms":30000,` +
			`"ice_servers":[{"urls":["stun:s:3478"]},{"urls":["turn:t:3478"],"username":"u","credential":"p"}],` +
			`"ice_transport_policy":"relay","resumed":false,"calls":[{"call":"c","state":"accepted","role":"caller","peer":"bob"}],` +
			`"rooms":[{"room":"r1","members":[{"user":"alice","conn":"k"}]}]}`},
		{"room ack", RoomAck("1", "", "r1"), `{"type":"ack","id":"1","room":"r1"}`},
		{"goaway", Goaway{ReconnectMS: 500}, `{"reconnect_ms":500}`},
		{"refresh", RefreshData{Token: "t"}, `{"token":"t"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if string(b) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, b, tt.want)
		}
	}
}

// The reasons and codes are the contract's spelling.
func TestWireConstants(t *testing.T) {
	got := []string{
		ReasonHangup, ReasonCancelled, ReasonRejected, ReasonBusy, ReasonOffline, ReasonNoAnswer,
		ReasonAnsweredElsewhere, ReasonDisconnected, ReasonError,
		CodeBadRequest, CodeUnknownType, CodeTooLarge, CodeRateLimited, CodeNotFound, CodeForbidden,
		CodeInvalidState, CodeUnavailable, CodeInternal, CodeUnauthorized,
	}
	want := []string{
		"hangup", "cancelled", "rejected", "busy", "offline", "no_answer",
		"answered_elsewhere", "disconnected", "error",
		"bad_request", "unknown_type", "too_large", "rate_limited", "not_found", "forbidden",
		"invalid_state", "unavailable", "internal", "unauthorized",
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("constant %d = %q, want %q", i, got[i], want[i])
		}
	}
	closes := map[int]int{
		CloseNormal: 1000, CloseGoingAway: 1001, ClosePolicy: 1008, CloseTooBig: 1009, CloseInternal: 1011,
		CloseRestart: 1012, CloseTakenOver: 4001, CloseTokenExpired: 4002, CloseTooSlow: 4003, CloseTooManyConns: 4004,
	}
	for got, want := range closes {
		if got != want {
			t.Errorf("close code %d, want %d", got, want)
		}
	}
}
