package messages

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestPeekID(t *testing.T) {
	long := strings.Repeat("x", PeekLen)
	for _, tc := range []struct{ frame, want string }{
		{`{"type":"ping","id":"p1"}`, "p1"},
		{` { "type" : "invite" , "to":"bob", "data" : {"a":[1,{"id":"no"}],"b":"}\"{"} , "id" : "i-2" } `, "i-2"},
		{`{"call":"c","n":-1.5e3,"t":true,"f":null,"id":"s"}`, "s"},
		{`{"type":"signal","data":"` + long + `","id":"late"}`, ""}, // beyond PeekLen
		{`{"id":"` + strings.Repeat("i", MaxIDLen+1) + `"}`, ""},    // too long: Decode refuses it without id
		{`{"id":"a\"b"}`, ""}, // escaped: not read
		{`{"id":7}`, ""},
		{`{"ID":"x"}`, ""},
		{`{"idx":"x","id":"y"}`, "y"},
		{"{\"id\":\"\xff\"}", ""},
		{`{"id":"`, ""},
		{`{"data":{"id":"inner"}}`, ""},
		{`{"data":{"id":"inner"`, ""},
		{`["id","x"]`, ""},
		{`{"a" "id":"x"}`, ""},
		{``, ""},
	} {
		if got := PeekID([]byte(tc.frame)); got != tc.want {
			t.Errorf("PeekID(%.80q) = %q, want %q", tc.frame, got, tc.want)
		}
	}
	// What the Go client sends: the id right after the type.
	frame := Encode(&Envelope{Type: TypeSignal, ID: "sig-1", Call: "c", Data: json.RawMessage(`"` + long + `"`)})
	if got := PeekID(frame); got != "sig-1" {
		t.Errorf("PeekID of an encoded signal = %q", got)
	}
}

// FuzzPeekID: PeekID never panics, returns "" or an id Decode would
// accept, and never an id other than Decode's for a frame that names the
// id once (in any case: encoding/json folds case).
func FuzzPeekID(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping","id":"p1"}`,
		`{"to":"bob","data":{"id":"x"},"type":"invite","id":"r3"}`,
		`{"id":"a","id":"b"}`,
		`{"Id":"a","id":"b"}`,
		`{"data":[{"}":"]"}],"id":"q"}`,
		`{"id":"\u0041"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		id := PeekID(frame)
		if len(id) > MaxIDLen || strings.ContainsAny(id, "\"\\") {
			t.Fatalf("PeekID(%q) = %q", frame, id)
		}
		if id == "" || idKeys(frame) != 1 {
			return
		}
		var e Envelope
		if json.Unmarshal(frame, &e) == nil && e.ID != id {
			t.Fatalf("PeekID(%q) = %q, Decode reads %q", frame, id, e.ID)
		}
	})
}

// idKeys counts the top-level keys of a JSON object that encoding/json
// would read as "id" (-1 if frame is no JSON object).
func idKeys(frame []byte) int {
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(frame))
	if _, err := d.Token(); err != nil {
		return -1
	}
	if json.Unmarshal(frame, &m) != nil {
		return -1
	}
	n := 0
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return -1
		}
		if k, ok := tok.(string); ok && strings.EqualFold(k, "id") {
			n++
		}
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return -1
		}
	}
	return n
}
