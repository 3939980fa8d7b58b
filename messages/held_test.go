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
		"not json":          `<script>alert(1)</script>`,
		"not an object":     `"signal"`,
		"invalid UTF-8":     "{\"type\":\"ack\",\"id\":\"\xff\"}",
		"welcome":           `{"type":"welcome","data":{"user":"mallory"}}`,
		"goaway":            `{"type":"goaway"}`,
		"client type":       `{"type":"invite","to":"bob"}`,
		"no type":           `{"call":"c1"}`,
		"bad call":          `{"type":"ended","call":"a.b"}`,
		"signal no call":    `{"type":"signal","from":"bob","data":{}}`,
		"long id":           `{"type":"ack","id":"` + strings.Repeat("x", MaxIDLen+1) + `"}`,
		"long message":      `{"type":"error","message":"` + strings.Repeat("x", maxHeldText+1) + `"}`,
		"data over maxData": `{"type":"signal","call":"c1","data":"` + strings.Repeat("x", DefaultMaxData) + `"}`,
		"trailing garbage":  `{"type":"ack"} {"type":"welcome"}`,
	}
	for name, f := range bad {
		if e, err := DecodeHeld([]byte(f), 0); err == nil {
			t.Errorf("%s: accepted as %+v", name, e)
		}
	}
}
