package messages

import (
	"bytes"
	"strings"
	"testing"
)

func TestDecodeHeld(t *testing.T) {
	good := []*Envelope{
		{Type: TypeSignal, ID: "d1", Call: "c1", From: "bob", Data: []byte(`{"sdp":"x"}`)},
		{Type: TypeEnded, Call: "c1", Reason: "hangup"},
		{Type: TypeAck, ID: "7"},
		{Type: TypeIncoming, Call: "c2", From: "ñandú"},
		{Type: TypeSignal, ID: "d2", Room: "a.b", From: "bob", FromConn: "k1", Data: []byte(`{}`)},
		{Type: TypeMemberJoined, Room: "r", Member: &RoomMember{User: "bob", Conn: "k1"}},
		{Type: TypeJoined, Room: "r", Members: []RoomMember{{User: "bob", Conn: "k1"}}},
	}
	for _, e := range good {
		got, err := DecodeHeld(Encode(e), 0)
		if err != nil {
			t.Errorf("%s: %v", Encode(e), err)
			continue
		}
		if !bytes.Equal(Encode(got), Encode(e)) {
			t.Errorf("re-encoded %s, want %s", Encode(got), Encode(e))
		}
	}
	bad := map[string]string{
		"not json":                 `<script>alert(1)</script>`,
		"not an object":            `"signal"`,
		"invalid UTF-8":            "{\"type\":\"ack\",\"id\":\"\xff\"}",
		"welcome":                  `{"type":"welcome","data":{"user":"mallory"}}`,
		"goaway":                   `{"type":"goaway"}`,
		"client type":              `{"type":"invite","to":"bob"}`,
		"no type":                  `{"call":"c1"}`,
		"bad call":                 `{"type":"ended","call":"a.b"}`,
		"signal no call":           `{"type":"signal","from":"bob","data":{}}`,
		"long id":                  `{"type":"ack","id":"` + strings.Repeat("x", MaxIDLen+1) + `"}`,
		"long message":             `{"type":"error","message":"` + strings.Repeat("x", maxHeldText+1) + `"}`,
		"data over maxData":        `{"type":"signal","call":"c1","data":"` + strings.Repeat("x", DefaultMaxData) + `"}`,
		"trailing garbage":         `{"type":"ack"} {"type":"welcome"}`,
		"room signal no from_conn": `{"type":"signal","room":"r","from":"bob","data":{}}`,
		"room signal with call":    `{"type":"signal","room":"r","call":"c1","from":"bob","from_conn":"k","data":{}}`,
		"member_left no room":      `{"type":"member_left","member":{"user":"bob","conn":"k"}}`,
		"bad member conn":          `{"type":"member_joined","room":"r","member":{"user":"bob","conn":"a.b"}}`,
		"bad room":                 `{"type":"locked","room":"\ufffd"}`,
	}
	for name, f := range bad {
		if e, err := DecodeHeld([]byte(f), 0); err == nil {
			t.Errorf("%s: accepted as %+v", name, e)
		}
	}
}
