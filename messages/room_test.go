package messages

import (
	"errors"
	"strings"
	"testing"
)

// TestDecodeRooms checks the room forms of client frames (PROTOCOL.md §14):
// what is accepted, and the code of what is refused.
func TestDecodeRooms(t *testing.T) {
	for _, tc := range []struct {
		name, frame, code string // code "" = accepted
	}{
		{"join", `{"type":"join","id":"1","room":"team.a *>"}`, ""},
		{"join creating invite-only", `{"type":"join","id":"1","room":"r","data":{"invite_only":true}}`, ""},
		{"join without room", `{"type":"join","id":"1"}`, CodeBadRequest},
		{"room too long", `{"type":"join","id":"1","room":"` + long + `"}`, CodeBadRequest},
		{"room with a lone surrogate", `{"type":"leave","id":"1","room":"\ud800x"}`, CodeBadRequest},
		{"leave", `{"type":"leave","id":"1","room":"r"}`, ""},
		{"lock", `{"type":"lock","id":"1","room":"r"}`, ""},
		{"unlock without room", `{"type":"unlock","id":"1","room":""}`, CodeBadRequest},
		{"kick", `{"type":"kick","id":"1","room":"r","conn":"H7d2LmQ0aXv5Rk9sTb1yPw"}`, ""},
		{"kick without conn", `{"type":"kick","id":"1","room":"r"}`, CodeBadRequest},
		{"kick of a malformed conn", `{"type":"kick","id":"1","room":"r","conn":"a.b"}`, CodeBadRequest},
		{"room signal", `{"type":"signal","room":"r","to_conn":"c1","data":{}}`, ""},
		{"room signal without to_conn", `{"type":"signal","room":"r","data":{}}`, CodeBadRequest},
		{"room signal without data", `{"type":"signal","room":"r","to_conn":"c1"}`, CodeBadRequest},
		{"signal with room and call", `{"type":"signal","room":"r","call":"c","to_conn":"c1","data":{}}`, CodeBadRequest},
		{"room invite", `{"type":"invite","id":"1","room":"r","to":"carol"}`, ""},
		{"moving a call into a room", `{"type":"invite","id":"1","room":"r","to":"carol","call":"Xr3kQ9pL2vNc8TgYw1Hs0A"}`, ""},
		{"invite with call but no room", `{"type":"invite","id":"1","to":"carol","call":"Xr3kQ9pL2vNc8TgYw1Hs0A"}`, CodeBadRequest},
		{"server event sent by a client", `{"type":"member_joined","room":"r"}`, CodeUnknownType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Decode([]byte(tc.frame), 0)
			var de *DecodeError
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.code != "" && !errors.As(err, &de):
				t.Fatalf("accepted %+v, want %s", e, tc.code)
			case tc.code != "" && de.Code != tc.code:
				t.Fatalf("code %s, want %s", de.Code, tc.code)
			}
		})
	}
}

// long is a room id one byte over the limit.
var long = strings.Repeat("r", MaxUserIDLen+1)

// TestDecodeClearsRoomServerFields: a client cannot speak for another
// member connection.
func TestDecodeClearsRoomServerFields(t *testing.T) {
	e, err := Decode([]byte(`{"type":"signal","room":"r","to_conn":"b1","from_conn":"x1","member":{"user":"eve","conn":"e1"},"members":[{"user":"eve","conn":"e1"}],"data":{}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.FromConn != "" || e.Member != nil || e.Members != nil {
		t.Fatalf("server-only room fields survived: %+v", *e)
	}
	if e.Room != "r" || e.ToConn != "b1" {
		t.Fatalf("room fields lost: %+v", *e)
	}
}

// TestRoomKey: hostile room ids are one key token, distinct from users'.
func TestRoomKey(t *testing.T) {
	for _, room := range []string{"a.b", "*", ">", "a b", "ñandú"} {
		k := RoomKey(room)
		if k != "room."+EncodeUserID(room) {
			t.Fatalf("RoomKey(%q) = %q", room, k)
		}
		if !ValidCallID(k[len("room."):]) {
			t.Fatalf("RoomKey(%q) = %q has an unsafe token", room, k)
		}
	}
}
